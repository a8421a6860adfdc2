//! Connections to origins: dialing them, and the per-worker keep-alive pool.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::buf::{IoBufMut, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::{TcpStream, UnixStream};
use monoio::BufResult;

use super::ingress::{OriginSettings, Service};

/// A connection to an origin service.
pub enum OriginConn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

// SAFETY: both variants are monoio streams that are `Split` themselves: their reads and
// writes are independent operations on one descriptor.
unsafe impl Split for OriginConn {}

impl AsyncReadRent for OriginConn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Tcp(s) => s.read(buf).await,
            OriginConn::Unix(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Tcp(s) => s.readv(buf).await,
            OriginConn::Unix(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for OriginConn {
    async fn write<T: monoio::buf::IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Tcp(s) => s.write(buf).await,
            OriginConn::Unix(s) => s.write(buf).await,
        }
    }

    async fn writev<T: monoio::buf::IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Tcp(s) => s.writev(buf).await,
            OriginConn::Unix(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Tcp(s) => s.flush().await,
            OriginConn::Unix(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Tcp(s) => s.shutdown().await,
            OriginConn::Unix(s) => s.shutdown().await,
        }
    }
}

impl OriginConn {
    fn raw_fd(&self) -> i32 {
        match self {
            OriginConn::Tcp(s) => s.as_raw_fd(),
            OriginConn::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Whether an idle pooled connection still looks usable: the origin has not closed it
    /// and has not sent anything unasked. A peek that would block means all is well.
    pub fn is_reusable(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: the descriptor is open for as long as `self` lives and the one-byte buffer
        // outlives the call; MSG_PEEK leaves the socket's data in place.
        let n = unsafe {
            libc::recv(
                self.raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("could not connect to origin {service}: {source}")]
    Io {
        service: String,
        source: std::io::Error,
    },
    #[error("connecting to origin {service} timed out after {timeout:?}")]
    Timeout { service: String, timeout: Duration },
    #[error("origin {service}: TLS origins are not supported yet")]
    Tls { service: String },
}

/// Opens a new connection to an HTTP or Unix-socket service.
pub async fn dial(service: &Service, settings: &OriginSettings) -> Result<OriginConn, DialError> {
    let name = || service.to_string();
    let connect = async {
        match service {
            Service::Http {
                tls: false,
                host,
                port,
            } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                let _ = stream.set_nodelay(true);
                Ok(OriginConn::Tcp(stream))
            }
            Service::Unix { tls: false, path } => {
                Ok(OriginConn::Unix(UnixStream::connect(path).await?))
            }
            _ => Err(std::io::Error::other("tls")),
        }
    };
    if matches!(
        service,
        Service::Http { tls: true, .. } | Service::Unix { tls: true, .. }
    ) {
        return Err(DialError::Tls { service: name() });
    }
    match monoio::time::timeout(settings.connect_timeout, connect).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(DialError::Io {
            service: name(),
            source,
        }),
        Err(_) => Err(DialError::Timeout {
            service: name(),
            timeout: settings.connect_timeout,
        }),
    }
}

/// Idle origin connections of one worker, per ingress rule.
#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<usize, Vec<(OriginConn, Instant)>>>,
}

impl Pool {
    /// The most recently used idle connection of `rule` that is still alive and younger
    /// than the keep-alive timeout; stale ones are closed on the way.
    pub fn take(&self, rule: usize, settings: &OriginSettings, now: Instant) -> Option<OriginConn> {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.get_mut(&rule)?;
        while let Some((conn, since)) = conns.pop() {
            if now.duration_since(since) < settings.keep_alive_timeout && conn.is_reusable() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse unless the rule's pool is full.
    pub fn put(&self, rule: usize, settings: &OriginSettings, conn: OriginConn, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.entry(rule).or_default();
        conns.retain(|(_, since)| now.duration_since(*since) < settings.keep_alive_timeout);
        if conns.len() < settings.keep_alive_connections {
            conns.push((conn, now));
        }
    }
}
