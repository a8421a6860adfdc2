//! The endpoint driver and the handles it serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn_proto::ConnectError),
    #[error("connection lost: {0}")]
    Connection(#[from] quinn_proto::ConnectionError),
    #[error("endpoint is closed")]
    EndpointClosed,
    #[error("socket error: {0}")]
    Io(Arc<std::io::Error>),
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("stream reset by peer with code {0}")]
    Reset(u64),
    #[error("peer stopped the stream with code {0}")]
    Stopped(u64),
    #[error("connection lost: {0}")]
    ConnectionLost(quinn_proto::ConnectionError),
    #[error("stream already finished or reset")]
    ClosedStream,
}

/// Path figures of one connection, for `tunnel info` and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionStats {
    pub rtt: Duration,
    pub cwnd: u64,
    pub lost_packets: u64,
    pub sent_packets: u64,
}

/// One worker's QUIC endpoint on one UDP socket. Cloning shares it.
#[derive(Clone)]
pub struct Endpoint {}

impl Endpoint {
    /// Takes a bound UDP socket (set non-blocking here), raises its buffers, and spawns the
    /// driver on the current monoio runtime. With `server` set, it accepts connections.
    pub fn new(
        socket: std::net::UdpSocket,
        server: Option<Arc<quinn_proto::ServerConfig>>,
    ) -> std::io::Result<Endpoint> {
        let _ = (socket, server);
        todo!()
    }

    pub fn local_addr(&self) -> SocketAddr {
        todo!()
    }

    /// The next incoming connection, once its handshake completes; `None` once closed.
    pub async fn accept(&self) -> Option<Connection> {
        todo!()
    }

    /// Dials `addr` and waits for the handshake to complete.
    pub async fn connect(
        &self,
        config: quinn_proto::ClientConfig,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, QuicError> {
        let _ = (config, addr, server_name);
        todo!()
    }

    /// Closes every connection with `code` and `reason` and stops the driver once they are
    /// drained.
    pub fn close(&self, code: u32, reason: &[u8]) {
        let _ = (code, reason);
        todo!()
    }
}

/// A handle to one connection. Cloning shares it; the connection lives while any handle or
/// stream does, or until closed.
#[derive(Clone)]
pub struct Connection {}

impl Connection {
    pub fn remote_address(&self) -> SocketAddr {
        todo!()
    }

    /// Opens a bidirectional stream, waiting while the peer's stream limit is reached.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), QuicError> {
        todo!()
    }

    /// The next bidirectional stream the peer opened.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), QuicError> {
        todo!()
    }

    /// Resolves when the connection is closed, with the reason.
    pub async fn closed(&self) -> QuicError {
        todo!()
    }

    /// Whether the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        todo!()
    }

    pub fn close(&self, code: u32, reason: &[u8]) {
        let _ = (code, reason);
        todo!()
    }

    pub fn stats(&self) -> ConnectionStats {
        todo!()
    }

    /// Streams opened on this connection that are not yet finished both ways.
    pub fn open_streams(&self) -> usize {
        todo!()
    }
}

/// The sending half of a stream. Dropping it without [`SendStream::finish`] resets it.
pub struct SendStream {}

impl SendStream {
    /// Queues `data` on the stream, moving the buffer (no copy), waiting while flow control
    /// has no room for it. Returns once all of `data` is queued.
    pub async fn write(&mut self, data: Bytes) -> Result<(), StreamError> {
        let _ = data;
        todo!()
    }

    /// Ends the stream cleanly after the queued data.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        todo!()
    }

    /// Abandons the stream with an application error code.
    pub fn reset(&mut self, code: u32) {
        let _ = code;
        todo!()
    }

    /// Resolves when the peer stops the stream (it no longer wants the data), with the code.
    pub async fn stopped(&mut self) -> Result<u64, StreamError> {
        todo!()
    }
}

/// The receiving half of a stream. Dropping it before the end stops it.
pub struct RecvStream {}

impl RecvStream {
    /// The next chunk of at most `max` bytes, in order; `Ok(None)` at the end of the stream.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        let _ = max;
        todo!()
    }

    /// Tells the peer to stop sending, with an application error code.
    pub fn stop(&mut self, code: u32) {
        let _ = code;
        todo!()
    }
}
