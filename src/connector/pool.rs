//! Connections to origins: dialing them, and the per-worker keep-alive pool.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Split, Splitable};
use monoio::net::{TcpStream, UnixStream};
use monoio::BufResult;
use rustc_hash::FxHashMap;

use super::ingress::{OriginSettings, Service};
use super::tls::{OriginTls, TlsStream};

/// A plain socket to an origin service; TLS sessions run over one too.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A connection to an origin service.
pub enum OriginConn {
    Plain(Socket),
    Tls(Box<TlsStream<Socket>>),
}

// SAFETY: both variants are monoio streams that are `Split` themselves: their reads and
// writes are independent operations on one descriptor.
unsafe impl Split for Socket {}

// SAFETY: `Plain` is `Split` (above). `Tls` is `Split` over a `Socket` (see its own impl):
// its read and write sides touch disjoint buffers and borrow the shared session only
// between awaits.
unsafe impl Split for OriginConn {}

impl AsyncReadRent for Socket {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Socket::Tcp(s) => s.read(buf).await,
            Socket::Unix(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Socket::Tcp(s) => s.readv(buf).await,
            Socket::Unix(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Socket {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Socket::Tcp(s) => s.write(buf).await,
            Socket::Unix(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Socket::Tcp(s) => s.writev(buf).await,
            Socket::Unix(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush().await,
            Socket::Unix(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown().await,
            Socket::Unix(s) => s.shutdown().await,
        }
    }
}

impl AsyncReadRent for OriginConn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.read(buf).await,
            OriginConn::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.readv(buf).await,
            OriginConn::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for OriginConn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.write(buf).await,
            OriginConn::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.writev(buf).await,
            OriginConn::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Plain(s) => s.flush().await,
            OriginConn::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Plain(s) => s.shutdown().await,
            OriginConn::Tls(s) => s.shutdown().await,
        }
    }
}

impl Socket {
    fn raw_fd(&self) -> i32 {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl OriginConn {
    fn raw_fd(&self) -> i32 {
        match self {
            OriginConn::Plain(s) => s.raw_fd(),
            OriginConn::Tls(s) => s.io().raw_fd(),
        }
    }

    /// Whether an idle pooled connection still looks usable: the origin has not closed it
    /// and has not sent anything unasked. A peek that would block means all is well. Over
    /// TLS, any record arriving while idle (even one that carries no data) counts as unasked:
    /// such a connection is closed rather than risk a stale byte in the next response.
    pub fn is_reusable(&self) -> bool {
        if let OriginConn::Tls(s) = self {
            if !s.is_drained() {
                return false;
            }
        }
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

    /// Frees what an idle connection need not hold (TLS buffers).
    fn release_buffers(&self) {
        if let OriginConn::Tls(s) = self {
            s.release_buffers();
        }
    }
}

/// An origin connection split into its read half and write half, for requests whose body
/// and response flow at the same time. It stays split from its first request to its close:
/// splitting puts the connection behind an `Rc`, an allocation a pooled connection would
/// otherwise cost each request.
pub struct OriginHalves {
    pub rd: OwnedReadHalf<OriginConn>,
    pub wr: OwnedWriteHalf<OriginConn>,
}

impl OriginHalves {
    pub fn new(conn: OriginConn) -> OriginHalves {
        let (rd, wr) = conn.into_split();
        OriginHalves { rd, wr }
    }

    fn conn(&self) -> &OriginConn {
        // SAFETY: both halves are borrowed shared here, and a read or a write needs one of
        // them borrowed mutably: nothing else uses the connection for as long as the
        // reference lives.
        unsafe { &*self.rd.0.get() }
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
    #[error("TLS handshake with origin {service} failed: {message}")]
    Tls { service: String, message: String },
}

/// Where a dial failed.
enum Step {
    Connect(std::io::Error),
    Tls(String),
}

/// Opens a new connection to an HTTP or Unix-socket service. For a TLS service, `tls` is
/// the rule's TLS settings and the handshake completes within the connect timeout.
pub async fn dial(
    service: &Service,
    settings: &OriginSettings,
    tls: Option<&OriginTls>,
) -> Result<OriginConn, DialError> {
    let name = || service.to_string();
    let connect = async {
        let (plain, wants_tls) = match service {
            Service::Http { tls, host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(Step::Connect)?;
                let _ = stream.set_nodelay(true);
                (Socket::Tcp(stream), *tls)
            }
            Service::Unix { tls, path } => {
                let stream = UnixStream::connect(path).await.map_err(Step::Connect)?;
                (Socket::Unix(stream), *tls)
            }
            _ => {
                let why = "the service is not reached over a socket";
                return Err(Step::Connect(std::io::Error::other(why)));
            }
        };
        if !wants_tls {
            return Ok(OriginConn::Plain(plain));
        }
        let tls = tls.ok_or_else(|| Step::Tls("the rule has no TLS settings".to_owned()))?;
        match TlsStream::connect(plain, tls).await {
            Ok(stream) => Ok(OriginConn::Tls(Box::new(stream))),
            Err(err) => Err(Step::Tls(err.to_string())),
        }
    };
    match monoio::time::timeout(settings.connect_timeout, connect).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(Step::Connect(source))) => Err(DialError::Io {
            service: name(),
            source,
        }),
        Ok(Err(Step::Tls(message))) => Err(DialError::Tls {
            service: name(),
            message,
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
    idle: RefCell<FxHashMap<usize, Vec<(OriginHalves, Instant)>>>,
}

impl Pool {
    /// The most recently used idle connection of `rule` that is still alive and younger
    /// than the keep-alive timeout; stale ones are closed on the way.
    pub fn take(
        &self,
        rule: usize,
        settings: &OriginSettings,
        now: Instant,
    ) -> Option<OriginHalves> {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.get_mut(&rule)?;
        while let Some((conn, since)) = conns.pop() {
            if now.duration_since(since) < settings.keep_alive_timeout && conn.conn().is_reusable()
            {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse unless the rule's pool is full.
    pub fn put(&self, rule: usize, settings: &OriginSettings, conn: OriginHalves, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.entry(rule).or_default();
        conns.retain(|(_, since)| now.duration_since(*since) < settings.keep_alive_timeout);
        if conns.len() < settings.keep_alive_connections {
            conn.conn().release_buffers();
            conns.push((conn, now));
        }
    }
}
