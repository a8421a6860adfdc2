//! What an idle keep-alive client connection holds: its socket and its task, not a read
//! buffer nor a frame buffer.
//!
//! A read posted to io_uring owns its buffer until the client sends something, so a
//! connection waiting for its next request with a read in flight pins a whole read buffer
//! (64 KiB) for as long as it idles; ten thousand idle clients would hold 640 MiB. Between
//! requests a connection instead waits for readability (a poll, no buffer) and only then
//! takes a buffer; a TLS connection does so only when its session holds no received bytes,
//! which the socket's readiness would not announce. The buffer a request frame is encoded
//! into (4 KiB) likewise goes back while the connection idles. The buffers of connections
//! that went idle wait in a few per-worker spares, so a busy connection takes one back
//! without allocating.
//!
//! That readiness wait ([`Watch`]) is armed as soon as a request without a body (or with its
//! body all sent) has gone down the tunnel, not once its response is written: while the
//! response head is awaited the proxy polls it too, so a client that hangs up meanwhile is
//! noticed (see `proxy.rs`), and otherwise the same wait serves as the idle wait before the
//! next request. A request thus costs one readiness poll either way.

use std::cell::{RefCell, UnsafeCell};
use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use monoio::io::OwnedReadHalf;

use super::proxy::ClientStream;
use crate::runtime::io::{read_more, READ_CHUNK};

/// Spare buffers of each kind a worker keeps: enough for the requests that start while
/// others end, few enough that an idle worker holds at most half a MiB of read buffers.
const SPARES: usize = 8;

/// Capacity of a fresh frame buffer: a request frame is its head re-encoded, and heads are
/// rarely larger.
pub const FRAME_CAPACITY: usize = 4 * 1024;

/// A worker's spare buffers of one kind: read buffers or frame buffers.
pub struct Spares {
    spare: RefCell<Vec<BytesMut>>,
    /// A buffer with less room than this is not worth keeping.
    keep_from: usize,
    /// Capacity of the buffer handed out when no spare waits.
    fresh: usize,
}

impl Spares {
    /// Read buffers: a fresh one is empty and the next read sizes it.
    pub fn read_buffers() -> Spares {
        Spares {
            spare: RefCell::default(),
            keep_from: READ_CHUNK / 4,
            fresh: 0,
        }
    }

    /// Buffers request frames are encoded into.
    pub fn frame_buffers() -> Spares {
        Spares {
            spare: RefCell::default(),
            keep_from: FRAME_CAPACITY / 4,
            fresh: FRAME_CAPACITY,
        }
    }

    /// Keeps an empty buffer of a connection that goes idle, when there is room; one too
    /// small to use without growing is dropped instead.
    pub fn put(&self, mut buf: BytesMut) {
        let mut spare = self.spare.borrow_mut();
        if buf.is_empty() && buf.capacity() < self.fresh.max(self.keep_from) {
            // The room that frames or reads already handed on took is free again once
            // all of them were dropped: take it back instead of dropping the buffer.
            let _ = buf.try_reclaim(self.fresh.max(self.keep_from));
        }
        if buf.is_empty() && buf.capacity() >= self.keep_from && spare.len() < SPARES {
            spare.push(buf);
        }
    }

    /// A spare buffer, or a fresh one.
    pub fn take(&self) -> BytesMut {
        match self.spare.borrow_mut().pop() {
            Some(buf) => buf,
            None => BytesMut::with_capacity(self.fresh),
        }
    }

    /// How many buffers wait.
    pub fn len(&self) -> usize {
        self.spare.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads more of a client's request into `buf`. With `idle` (no request begun, nothing
/// buffered) the buffer goes to the spares while the connection waits for readability, and
/// the read that follows takes one back; otherwise it reads straight into `buf`.
pub async fn read_request<S: ClientStream, F: Future<Output = std::io::Result<()>>>(
    spares: &Spares,
    reader: &mut OwnedReadHalf<S>,
    buf: BytesMut,
    idle: bool,
    watch: &mut Watch<'_, S, F>,
) -> (std::io::Result<usize>, BytesMut) {
    if !idle {
        return read_more(reader, buf).await;
    }
    spares.put(buf);
    if let Err(err) = watch.readable(reader).await {
        return (Err(err), BytesMut::new());
    }
    let mut buf = spares.take();
    // SAFETY: as in `readiness`; no read of the connection is in flight.
    match unsafe { &*reader.0.get() }.read_ready(&mut buf) {
        Some(result) => (result, buf),
        None => read_more(reader, buf).await,
    }
}

/// The shared client connection behind both halves.
pub type Shared<S> = Rc<UnsafeCell<S>>;

/// Waits until the socket under `stream` is readable: the client sent something, closed or
/// reset. The wait holds a reference of the connection, which it gives back when dropped.
pub async fn readiness<S: ClientStream>(stream: Shared<S>) -> std::io::Result<()> {
    // SAFETY: the halves of the connection reach it through the same cell and monoio's own
    // halves take `&mut` from it while the other half is in use, so this shared reference
    // overlaps nothing that monoio's do not; it is only used to submit the poll (which
    // keeps its own handle of the descriptor) and reads no field the halves change.
    let socket = unsafe { &*stream.get() }.socket();
    socket.readable(false).await
}

/// A client connection's readiness wait, kept from the request that armed it to the idle
/// wait before the next one; see the module documentation.
///
/// The wait is built by `arm` (always [`readiness`]; a function pointer because its future
/// type has no name) and lives in `wait`, pinned by the connection's task. It never outlives
/// the request loop holding a reference of the connection past its completion, so the halves
/// can still be reunited for a handoff.
pub struct Watch<'p, S, F> {
    wait: Pin<&'p mut Option<F>>,
    /// The result of a wait that completed and was not used yet.
    fired: Option<std::io::Result<()>>,
    arm: fn(Shared<S>) -> F,
}

impl<'p, S: ClientStream, F: Future<Output = std::io::Result<()>>> Watch<'p, S, F> {
    pub fn new(wait: Pin<&'p mut Option<F>>, arm: fn(Shared<S>) -> F) -> Self {
        Watch {
            wait,
            fired: None,
            arm,
        }
    }

    /// Starts waiting for the client, unless a wait is already armed or completed, or the
    /// stream holds received bytes the socket's readiness would not announce. True when a
    /// wait is armed or completed.
    pub fn arm(&mut self, stream: &Shared<S>) -> bool {
        if self.fired.is_some() || self.wait.is_some() {
            return true;
        }
        // SAFETY: as in `readiness`; no read of the connection is in flight (the caller
        // reads nothing while it arms), so the stream's buffers are at rest.
        if !unsafe { &*stream.get() }.drained() {
            return false;
        }
        self.wait.set(Some((self.arm)(stream.clone())));
        true
    }

    /// Polls an armed wait. Ready once it completes; the result stays for
    /// [`Watch::readable`].
    pub fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.is_some() {
            return Poll::Ready(());
        }
        let Some(wait) = self.wait.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let fired = std::task::ready!(wait.poll(cx));
        // Dropped at once: the wait holds a reference of the connection.
        self.wait.set(None);
        self.fired = Some(fired);
        Poll::Ready(())
    }

    /// After the wait completed: whether the client has gone (the wait failed, or it
    /// [`hung_up`]) rather than only sent more.
    pub fn gone(&self, stream: &Shared<S>) -> bool {
        match &self.fired {
            Some(Err(_)) => true,
            // SAFETY: as in `readiness`; `hung_up` reads nothing from the connection.
            Some(Ok(())) => hung_up(unsafe { &*stream.get() }.socket()),
            None => false,
        }
    }

    /// Drops any wait in flight, so the connection can be reunited.
    pub fn disarm(&mut self) {
        self.wait.set(None);
        self.fired = None;
    }

    /// Returns once the client has sent something, through the armed wait when there is
    /// one. At once when the stream already holds received bytes.
    async fn readable(&mut self, rd: &OwnedReadHalf<S>) -> std::io::Result<()> {
        if !self.arm(&rd.0) {
            return Ok(());
        }
        std::future::poll_fn(|cx| self.poll_fired(cx)).await;
        self.fired.take().unwrap_or(Ok(()))
    }
}

/// Whether the client closed (FIN, even behind bytes still waiting to be read), reset or
/// broke the connection under `socket`. Reads nothing, so bytes that arrived (a pipelined
/// request, or over TLS any record, which cannot be told from a close_notify without
/// decrypting) stay for the next request.
pub fn hung_up(socket: &impl AsRawFd) -> bool {
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `poll` is one valid pollfd for the duration of the call; a zero timeout makes
    // the call return at once.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Bytes written to `socket` that its peer has not acknowledged yet (sent or not).
pub fn unacknowledged(socket: &impl AsRawFd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ for a TCP socket) writes one int through the pointer, which
    // is valid for the call.
    let ok = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    match ok {
        0 => usize::try_from(queued).unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::runtime::io::recv_ready;

    /// A connected pair on loopback: the client's end and the server's.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// Waits (bounded) until the server's end is readable.
    fn wait_readable(server: &TcpStream) {
        let mut poll = libc::pollfd {
            fd: server.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, 5000) };
        assert_eq!(ready, 1);
    }

    #[test]
    fn a_pipelined_request_is_not_a_hang_up_and_stays_readable() {
        let (mut client, server) = pair();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        wait_readable(&server);
        assert!(!hung_up(&server));

        // Data followed by a close: a hang-up, and the data is still there, unread.
        drop(client);
        assert!(hung_up(&server));
        let mut read = [0u8; 64];
        let n = std::io::Read::read(&mut &server, &mut read).unwrap();
        assert_eq!(&read[..n], b"GET / HTTP/1.1\r\n\r\n");
        assert!(hung_up(&server));
    }

    #[test]
    fn a_close_or_a_reset_is_a_hang_up() {
        let (client, server) = pair();
        assert!(!hung_up(&server));
        drop(client);
        wait_readable(&server);
        assert!(hung_up(&server));

        let (client, server) = pair();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid linger value and its size, on the client's live descriptor.
        let set = unsafe {
            libc::setsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::from_ref(&linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0);
        drop(client);
        wait_readable(&server);
        assert!(hung_up(&server));
    }

    #[test]
    fn a_ready_socket_is_read_without_the_ring_and_an_empty_one_is_left_to_it() {
        let (mut client, server) = pair();
        let mut buf = BytesMut::new();
        assert!(recv_ready(&server, &mut buf).is_none());
        assert_eq!(buf.len(), 0);

        client.write_all(b"GET /a HTTP/1.1\r\n\r\n").unwrap();
        wait_readable(&server);
        buf.extend_from_slice(b">");
        assert_eq!(recv_ready(&server, &mut buf).unwrap().unwrap(), 19);
        assert_eq!(&buf[..], b">GET /a HTTP/1.1\r\n\r\n");
        assert!(buf.capacity() - buf.len() >= READ_CHUNK / 4);

        drop(client);
        wait_readable(&server);
        assert_eq!(recv_ready(&server, &mut buf).unwrap().unwrap(), 0);
        assert_eq!(buf.len(), 20);
    }

    #[test]
    fn spares_are_bounded_and_only_usable_buffers_kept() {
        let spares = Spares::read_buffers();
        spares.put(BytesMut::new());
        spares.put(BytesMut::with_capacity(1024));
        let mut holding = BytesMut::with_capacity(READ_CHUNK);
        holding.extend_from_slice(b"GET");
        spares.put(holding);
        assert_eq!(spares.len(), 0);

        for _ in 0..SPARES + 3 {
            spares.put(BytesMut::with_capacity(READ_CHUNK));
        }
        assert_eq!(spares.len(), SPARES);

        let taken = spares.take();
        assert_eq!(taken.capacity(), READ_CHUNK);
        assert_eq!(spares.len(), SPARES - 1);
        while !spares.is_empty() {
            spares.take();
        }
        assert_eq!(spares.take().capacity(), 0);
    }

    #[test]
    fn frame_spares_hand_out_fresh_buffers_and_keep_roomy_ones() {
        let frames = Spares::frame_buffers();
        let mut frame = frames.take();
        assert_eq!(frame.capacity(), FRAME_CAPACITY);

        // Room whose frames were all dropped is taken back whole.
        frame.extend_from_slice(&[0; 100]);
        drop(frame.split());
        assert_eq!(frame.capacity(), FRAME_CAPACITY - 100);
        frames.put(frame);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames.take().capacity(), FRAME_CAPACITY);

        // A nearly used-up buffer whose frame is still held (unacknowledged) is dropped.
        let mut small = BytesMut::with_capacity(FRAME_CAPACITY);
        small.extend_from_slice(&[0; FRAME_CAPACITY - 100]);
        let held = small.split();
        frames.put(small);
        assert!(frames.is_empty());
        drop(held);

        // One with room left is kept even while its frame is held.
        let mut roomy = BytesMut::with_capacity(FRAME_CAPACITY);
        roomy.extend_from_slice(&[0; 100]);
        let held = roomy.split();
        frames.put(roomy);
        assert_eq!(frames.take().capacity(), FRAME_CAPACITY - 100);
        assert!(frames.is_empty());
        drop(held);
    }
}
