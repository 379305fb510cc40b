//! Captures a guest's stdout and stderr: keeps the first bytes, counts the rest, and
//! never fails a write, so a chatty plugin is not stopped by its own output and its
//! panic message is still seen.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: usize,
}

/// A bounded in-memory console shared by the guest's stdout and stderr.
#[derive(Debug, Clone)]
pub(crate) struct Console {
    capacity: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl Console {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            buffer: Arc::default(),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.capacity.saturating_sub(buffer.kept.len());
        let take = room.min(bytes.len());
        buffer.kept.extend_from_slice(&bytes[..take]);
        buffer.dropped += bytes.len() - take;
    }

    /// What was kept, as text, with a note of what was dropped.
    pub(crate) fn text(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::from_utf8_lossy(&buffer.kept).into_owned();
        if buffer.dropped > 0 {
            text.push_str(&format!("\n[… {} more bytes not kept]", buffer.dropped));
        }
        text
    }

    /// Total bytes written, kept or not.
    pub(crate) fn bytes_written(&self) -> usize {
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.kept.len() + buffer.dropped
    }
}

impl IsTerminal for Console {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Console {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Console {
    async fn ready(&mut self) {}
}

impl OutputStream for Console {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for Console {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let console = Console::new(4);
        console.append(b"abc");
        console.append(b"defg");
        assert_eq!(console.text(), "abcd\n[… 3 more bytes not kept]");
        assert_eq!(console.bytes_written(), 7);
    }
}
