//! A mail sink speaking enough SMTP (RFC 5321) for a client to deliver to it: on a
//! free loopback port, keeping every message it receives, stopped on drop. For tests
//! of two-factor codes by email.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed.
    pub data: String,
}

/// A running sink.
pub struct SmtpSink {
    address: SocketAddr,
    messages: Arc<Mutex<Vec<Delivered>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts a sink on a free loopback port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (messages, stop) = (messages.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let messages = messages.clone();
                            std::thread::spawn(move || {
                                // A client that breaks off just delivers nothing.
                                let _ = serve(stream, &messages);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(Self {
            address,
            messages,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The port it listens on (host 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The messages delivered so far.
    pub fn messages(&self) -> Vec<Delivered> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(stream: TcpStream, messages: &Mutex<Vec<Delivered>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 sink.test ESMTP ready\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            writer.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?;
        } else if let Some(rest) = upper.strip_prefix("MAIL FROM:") {
            from = command[command.len() - rest.len()..].trim().to_owned();
            to.clear();
            writer.write_all(b"250 OK\r\n")?;
        } else if let Some(rest) = upper.strip_prefix("RCPT TO:") {
            to.push(command[command.len() - rest.len()..].trim().to_owned());
            writer.write_all(b"250 OK\r\n")?;
        } else if upper == "DATA" {
            writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                data.push_str(text.strip_prefix('.').unwrap_or(text));
                data.push('\n');
            }
            messages
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Delivered {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
            writer.write_all(b"250 OK: queued\r\n")?;
        } else if upper == "QUIT" {
            writer.write_all(b"221 Bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            writer.write_all(b"250 OK\r\n")?;
        } else {
            writer.write_all(b"502 Command not implemented\r\n")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_kept() {
        let sink = SmtpSink::start().unwrap();
        let stream = TcpStream::connect(("127.0.0.1", sink.port())).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let mut expect = |reader: &mut BufReader<TcpStream>, code: &str| loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "{line}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        };
        expect(&mut reader, "220");
        for (command, code) in [
            ("EHLO client\r\n", "250"),
            ("MAIL FROM:<a@x>\r\n", "250"),
            ("RCPT TO:<b@y>\r\n", "250"),
            ("DATA\r\n", "354"),
            ("Subject: hi\r\n\r\n..dot\r\n.\r\n", "250"),
            ("QUIT\r\n", "221"),
        ] {
            writer.write_all(command.as_bytes()).unwrap();
            expect(&mut reader, code);
        }
        let messages = sink.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].to, ["<b@y>"]);
        assert_eq!(messages[0].data, "Subject: hi\n\n.dot\n");
    }
}
