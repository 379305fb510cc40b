//! A TCP proxy that stalls: it forwards a connection both ways, but once it has passed
//! a set number of bytes from the server to the client, it stops reading from the
//! server for a while, once per connection. A slow or congested link between abacsync
//! and its directory: the server's writes block, so that an operation in progress
//! takes as long as the stall.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The proxy's receive buffer towards the server. Small, so that the server's writes
/// block soon after the proxy stops reading, instead of filling megabytes of buffers.
const UPSTREAM_RECEIVE_BUFFER: u32 = 16 * 1024;

/// A running proxy on a free loopback port; stopped on drop.
pub struct StallingProxy {
    address: SocketAddr,
    stalls: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl StallingProxy {
    /// Starts a proxy to `upstream` that stalls each connection for `pause` once
    /// `after_bytes` bytes of the server's have gone through.
    ///
    /// # Errors
    /// When no port can be bound or the runtime cannot start.
    pub fn start(upstream: SocketAddr, after_bytes: usize, pause: Duration) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        let stalls = Arc::new(AtomicUsize::new(0));
        let counter = stalls.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    // A connection the server refuses ends here; the client sees it
                    // closed.
                    let _ = forward(client, upstream, after_bytes, pause, &counter).await;
                });
            }
        });
        Ok(Self {
            address,
            stalls,
            runtime: Some(runtime),
        })
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn ldap_url(&self) -> String {
        format!("ldap://{}", self.address)
    }

    /// How many times a connection has stalled.
    pub fn stalls(&self) -> usize {
        self.stalls.load(Ordering::SeqCst)
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    after_bytes: usize,
    pause: Duration,
    stalls: &AtomicUsize,
) -> io::Result<()> {
    let socket = if upstream.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_recv_buffer_size(UPSTREAM_RECEIVE_BUFFER)?;
    let server = socket.connect(upstream).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let copied = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
        copied.map(|_| ())
    };
    let answers = async {
        let mut buffer = vec![0u8; 8 * 1024];
        let mut passed = 0usize;
        let mut stalled = false;
        loop {
            let read = server_read.read(&mut buffer).await?;
            if read == 0 {
                let _ = client_write.shutdown().await;
                return Ok::<(), io::Error>(());
            }
            client_write.write_all(&buffer[..read]).await?;
            passed += read;
            if !stalled && passed >= after_bytes {
                stalled = true;
                stalls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
            }
        }
    };
    tokio::try_join!(requests, answers).map(|_| ())
}
