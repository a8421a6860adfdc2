//! A rustls session over a monoio stream, for either side: the connector's client sessions to
//! `https://` origins and the edge's server sessions on its public HTTPS listener.
//!
//! [`TlsStream`] must work the way the proxies use a plain socket: split into a read half and
//! a write half that run at the same time in one task (a response is read while the request
//! body is still being written), then reunited (and pooled, or handed to another worker).
//! Both halves reach the same `TlsStream`, so its state is split by who may touch it:
//!
//! - the rustls session sits in a `RefCell` that both sides borrow only between awaits, never
//!   across one, so a borrow can not overlap another;
//! - only the read side reads the socket, into its own ciphertext buffer, and feeds rustls;
//! - only the write side (`write`, `flush`, `shutdown`) writes the socket, from its own
//!   buffer. Records the read side makes rustls queue (a key update answer, an alert) wait
//!   in the session and leave at the next write, which TLS 1.3 allows: a key update must be
//!   answered before the next application data, not at once.
//!
//! The handshake runs inside [`TlsStream::handshake`], before the stream is ever split, so
//! there it reads and writes alone.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, Write};
use std::ops::DerefMut;

use bytes::{Buf, BytesMut};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, IoVecWrapper, IoVecWrapperMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::BufResult;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection};

use super::io::read_more;

/// A rustls session of either side: both dereference to the same `ConnectionCommon`, which
/// holds everything [`TlsStream`] uses.
pub trait Session: DerefMut<Target = ConnectionCommon<Self::Side>> {
    /// rustls' per-side state (`ClientConnectionData` or `ServerConnectionData`).
    type Side;
}

impl Session for ClientConnection {
    type Side = rustls::client::ClientConnectionData;
}

impl Session for ServerConnection {
    type Side = rustls::server::ServerConnectionData;
}

/// A TLS session `C` over the monoio stream `S`. See the module documentation for how its
/// read and write sides share it.
pub struct TlsStream<S, C> {
    io: S,
    session: RefCell<C>,
    /// Ciphertext read from the socket that rustls has not taken yet. Read side only; it is
    /// moved out while a socket read is in flight.
    incoming: RefCell<BytesMut>,
    /// Ciphertext on its way to the socket. Write side only; moved out while in flight.
    outgoing: Cell<Vec<u8>>,
}

impl<S: AsyncReadRent + AsyncWriteRent, C: Session> TlsStream<S, C> {
    /// Runs the whole handshake of a fresh `session` on `io`. The error says why it failed,
    /// in rustls' words for TLS failures ("invalid peer certificate: UnknownIssuer", say);
    /// the peer is sent the alert rustls chose, if it still listens.
    pub async fn handshake(io: S, session: C) -> io::Result<TlsStream<S, C>> {
        let mut stream = TlsStream::from_parts(io, session, BytesMut::new());
        match stream.run_handshake().await {
            Ok(()) => Ok(stream),
            Err(err) => {
                let _ = stream.flush_tls().await;
                Err(err)
            }
        }
    }

    async fn run_handshake(&mut self) -> io::Result<()> {
        loop {
            self.flush_tls().await?;
            if !self.session.borrow().is_handshaking() {
                return Ok(());
            }
            let (result, buf) = read_more(&mut self.io, self.incoming.take()).await;
            *self.incoming.borrow_mut() = buf;
            if result? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
            self.feed()?;
        }
    }

    /// Rebuilds a stream from [`TlsStream::into_parts`], on another worker say.
    pub fn from_parts(io: S, session: C, incoming: BytesMut) -> TlsStream<S, C> {
        TlsStream {
            io,
            session: RefCell::new(session),
            incoming: RefCell::new(incoming),
            outgoing: Cell::new(Vec::new()),
        }
    }

    /// The socket, the session (holding any plaintext received and records not yet sent)
    /// and the ciphertext read but not yet given to rustls. Nothing else is held between
    /// operations: every write leaves the outgoing buffer sent.
    pub fn into_parts(self) -> (S, C, BytesMut) {
        (
            self.io,
            self.session.into_inner(),
            self.incoming.into_inner(),
        )
    }

    /// The stream the session runs over.
    pub fn io(&self) -> &S {
        &self.io
    }

    /// Runs `f` on the session: what was negotiated, the peer's certificates, and so on.
    pub fn with_session<T>(&self, f: impl FnOnce(&C) -> T) -> T {
        f(&self.session.borrow())
    }

    /// Whether nothing received is waiting: no ciphertext in the buffer and no plaintext
    /// in the session. A pooled connection must be in this state to be reused.
    pub fn is_drained(&self) -> bool {
        if !self.incoming.borrow().is_empty() {
            return false;
        }
        let mut session = self.session.borrow_mut();
        let pending = session.reader().fill_buf().map(|plain| plain.len());
        matches!(pending, Err(ref err) if err.kind() == io::ErrorKind::WouldBlock)
    }

    /// Gives back the memory of the socket buffers while the connection sits idle.
    pub fn release_buffers(&self) {
        let mut incoming = self.incoming.borrow_mut();
        if incoming.is_empty() {
            *incoming = BytesMut::new();
        }
        drop(self.outgoing.take());
    }

    /// Hands rustls the buffered ciphertext and processes it. Returns how many bytes it
    /// took; it stops early when rustls holds as much plaintext as it will buffer.
    fn feed(&self) -> io::Result<usize> {
        let mut incoming = self.incoming.borrow_mut();
        let mut session = self.session.borrow_mut();
        let mut fed = 0;
        while !incoming.is_empty() {
            let mut rest: &[u8] = &incoming;
            match session.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(n) => {
                    incoming.advance(n);
                    fed += n;
                }
                // The plaintext buffer is full: it must be read before more is fed.
                Err(_) if fed > 0 => break,
                Err(err) => return Err(err),
            }
            session
                .process_new_packets()
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        }
        Ok(fed)
    }

    /// Copies received plaintext into `buf`. `Some(0)` once the session has ended (cleanly
    /// or not: the HTTP layer judges a short body by its framing), `None` when more
    /// ciphertext is needed.
    fn take_plaintext<T: IoBufMut>(&self, buf: &mut T) -> io::Result<Option<usize>> {
        let room = buf.bytes_total();
        let mut session = self.session.borrow_mut();
        let mut reader = session.reader();
        let copied = match reader.fill_buf() {
            Ok(plain) => {
                let n = plain.len().min(room);
                // SAFETY: `write_ptr` is valid for `bytes_total` writable bytes and `n` is at
                // most that; the plaintext is rustls' own buffer, so the two do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(plain.as_ptr(), buf.write_ptr(), n) };
                n
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::debug!("the peer closed its TLS connection without close_notify");
                0
            }
            Err(err) => return Err(err),
        };
        reader.consume(copied);
        // SAFETY: the first `copied` bytes at `write_ptr` were just written.
        unsafe { buf.set_init(copied) };
        Ok(Some(copied))
    }

    /// Writes every record rustls has queued to the socket. Write side only.
    async fn flush_tls(&mut self) -> io::Result<()> {
        loop {
            let mut out = self.outgoing.take();
            out.clear();
            {
                let mut session = self.session.borrow_mut();
                while session.wants_write() {
                    session.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                self.outgoing.set(out);
                return Ok(());
            }
            // The read side may queue more records while this write is in flight; the
            // loop takes them too.
            let (result, mut out) = self.io.write_all(out).await;
            // Nothing stays behind: the buffer holds only what was just sent (or failed).
            out.clear();
            self.outgoing.set(out);
            result?;
        }
    }
}

// SAFETY: monoio's split gives both halves the same stream, as it does for its own sockets;
// what each side then touches is disjoint or guarded. The read methods use only `io`'s read
// side, `incoming` and short `session` borrows; the write methods only `io`'s write side,
// `outgoing` and short `session` borrows. `S` is `Split`, so its reads and writes may run at
// the same time, and no `RefCell` borrow or `Cell` value is held across an await, so the two
// sides (one task, one thread) never hold the same one at once.
unsafe impl<S: Split, C> Split for TlsStream<S, C> {}

impl<S: AsyncReadRent + AsyncWriteRent, C: Session> AsyncReadRent for TlsStream<S, C> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            match self.take_plaintext(&mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(err) => return (Err(err), buf),
            }
            if !self.incoming.borrow().is_empty() {
                match self.feed() {
                    Ok(0) => {
                        let stalled = io::Error::other("rustls took none of the buffered input");
                        return (Err(stalled), buf);
                    }
                    Ok(_) => continue,
                    Err(err) => return (Err(err), buf),
                }
            }
            let (result, incoming) = read_more(&mut self.io, self.incoming.take()).await;
            *self.incoming.borrow_mut() = incoming;
            let fed = match result {
                // End of file: an empty read tells rustls, which then reports whether a
                // close_notify came first.
                Ok(0) => self.session.borrow_mut().read_tls(&mut io::empty()),
                Ok(_) => self.feed(),
                Err(err) => Err(err),
            };
            if let Err(err) = fed {
                return (Err(err), buf);
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // One iovec at a time: a short read is a valid answer.
        let buf = match IoVecWrapperMut::new(buf) {
            Ok(buf) => buf,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, buf) = self.read(buf).await;
        (result, buf.into_inner())
    }
}

impl<S: AsyncReadRent + AsyncWriteRent, C: Session> AsyncWriteRent for TlsStream<S, C> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // Queued records go first, so that rustls has room for all it can take of `buf`.
        if let Err(err) = self.flush_tls().await {
            return (Err(err), buf);
        }
        // SAFETY: `read_ptr` is valid for `bytes_init` bytes while `buf` lives, and `buf` is
        // neither moved nor changed while the slice is in use.
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let taken = self.session.borrow_mut().writer().write(data);
        let result = match taken {
            Ok(n) => self.flush_tls().await.map(|()| n),
            Err(err) => Err(err),
        };
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let buf = match IoVecWrapper::new(buf) {
            Ok(buf) => buf,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, buf) = self.write(buf).await;
        (result, buf.into_inner())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await?;
        self.io.flush().await
    }

    /// Sends close_notify, then shuts the socket's write side.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        self.flush_tls().await?;
        self.io.shutdown().await
    }
}
