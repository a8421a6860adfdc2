//! Connection state shared between the driver and the [`Connection`] handles, and the
//! handles themselves.
//!
//! A connection's quinn-proto state sits in one `RefCell` next to the wakers of everything
//! waiting on it. Handles change it directly (open a stream, write, close) and then queue the
//! connection for the driver, which owns all IO and turns quinn-proto's events back into
//! wake-ups. Nothing holds a borrow across an `.await`.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn_proto::{ConnectionError, ConnectionHandle, Dir, StreamEvent, StreamId, VarInt};
use rustc_hash::FxHashMap;

use super::driver::{EpShared, QuicError};
use super::stream::{RecvStream, SendStream};

/// How long past four round trips sent stream data may go unanswered before the connection
/// counts as stalled: twice the longest a peer delays its acknowledgement (quinn's default
/// of 25 ms), so that one doing so is not taken for a dead one.
pub const STALL_AFTER: Duration = Duration::from_millis(50);

/// Path figures of one connection, for `tunnel info` and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionStats {
    pub rtt: Duration,
    pub cwnd: u64,
    pub lost_packets: u64,
    pub sent_packets: u64,
    /// UDP datagrams received (a datagram may carry several coalesced packets).
    pub received_packets: u64,
    /// The largest datagram the path is known to carry (what MTU discovery reached).
    pub mtu: u16,
}

/// One connection as the driver and the handles share it.
pub(super) struct ConnShared {
    pub(super) ep: Rc<EpShared>,
    pub(super) handle: ConnectionHandle,
    /// Distinguishes this connection from a later one reusing `handle` in timer entries.
    pub(super) generation: u64,
    /// Whether the connection is in the driver's work list already.
    pub(super) queued: Cell<bool>,
    /// When the driver last handed the connection a datagram from its peer.
    pub(super) heard: Cell<Instant>,
    /// When this side first gave quinn stream data or an end to send since the peer was last
    /// heard from; cleared by the next datagram from the peer.
    pub(super) unanswered: Cell<Option<Instant>>,
    /// The connection's smoothed round-trip time, as of the driver's last look at it.
    pub(super) rtt: Cell<Duration>,
    pub(super) state: RefCell<ConnState>,
}

pub(super) struct ConnState {
    pub(super) conn: quinn_proto::Connection,
    /// Why the connection ended; set once, on loss, local close or endpoint shutdown.
    pub(super) error: Option<ConnectionError>,
    pub(super) connected: bool,
    /// Removed from the endpoint (drained, or the driver stopped).
    pub(super) removed: bool,
    /// The deadline this connection has in the driver's timer heap, if any.
    pub(super) timer: Option<Instant>,
    pub(super) streams: FxHashMap<StreamId, StreamSlot>,
    pub(super) open_streams: usize,
    pub(super) connect_waiter: Option<Waker>,
    pub(super) accept_waiters: Vec<Waker>,
    pub(super) open_waiters: Vec<Waker>,
    pub(super) closed_waiters: Vec<Waker>,
}

/// Wakers and handle bookkeeping of one stream.
pub(super) struct StreamSlot {
    pub(super) reader: Option<Waker>,
    pub(super) writer: Option<Waker>,
    pub(super) stopped: Option<Waker>,
    send_done: bool,
    recv_done: bool,
    send_live: bool,
    recv_live: bool,
}

/// Which half of a stream a handle is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Half {
    Send,
    Recv,
}

impl ConnShared {
    pub(super) fn new(
        ep: Rc<EpShared>,
        handle: ConnectionHandle,
        generation: u64,
        conn: quinn_proto::Connection,
    ) -> ConnShared {
        ConnShared {
            ep,
            handle,
            generation,
            queued: Cell::new(false),
            heard: Cell::new(Instant::now()),
            unanswered: Cell::new(None),
            rtt: Cell::new(Duration::ZERO),
            state: RefCell::new(ConnState {
                conn,
                error: None,
                connected: false,
                removed: false,
                timer: None,
                streams: FxHashMap::default(),
                open_streams: 0,
                connect_waiter: None,
                accept_waiters: Vec::new(),
                open_waiters: Vec::new(),
                closed_waiters: Vec::new(),
            }),
        }
    }

    /// Queues the connection for the driver's next turn and wakes the driver: a handle
    /// changed something that may need sending.
    pub(super) fn touch(self: &Rc<Self>) {
        self.ep.wake.enqueue(self);
        self.ep.wake.notify();
    }

    /// As [`ConnShared::touch`], for a change that puts stream data or a stream's end on the
    /// wire, which the peer acknowledges within its round trip and ack delay.
    pub(super) fn touch_sending(self: &Rc<Self>) {
        if self.unanswered.get().is_none() {
            self.unanswered.set(Some(Instant::now()));
        }
        self.touch();
    }

    /// Closes the connection (quinn sends CONNECTION_CLOSE) and fails every waiter.
    pub(super) fn close(self: &Rc<Self>, code: u32, reason: &[u8]) {
        let mut wakers = Vec::new();
        {
            let mut state = self.state.borrow_mut();
            let reason = Bytes::copy_from_slice(reason);
            state
                .conn
                .close(Instant::now(), VarInt::from_u32(code), reason);
            state.fail(ConnectionError::LocallyClosed, &mut wakers);
        }
        self.touch();
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl ConnState {
    /// Records why the connection ended (the first reason wins) and hands out every waker.
    pub(super) fn fail(&mut self, error: ConnectionError, wakers: &mut Vec<Waker>) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        wakers.extend(self.connect_waiter.take());
        wakers.append(&mut self.accept_waiters);
        wakers.append(&mut self.open_waiters);
        wakers.append(&mut self.closed_waiters);
        for slot in self.streams.values_mut() {
            wakers.extend(slot.reader.take());
            wakers.extend(slot.writer.take());
            wakers.extend(slot.stopped.take());
        }
    }

    /// Turns one application event of quinn-proto into wake-ups; returns whether the
    /// handshake just completed.
    pub(super) fn on_event(&mut self, event: quinn_proto::Event, wakers: &mut Vec<Waker>) -> bool {
        use quinn_proto::Event;

        match event {
            Event::Connected => {
                self.connected = true;
                wakers.extend(self.connect_waiter.take());
                return true;
            }
            Event::ConnectionLost { reason } => self.fail(reason, wakers),
            Event::Stream(StreamEvent::Readable { id }) => {
                wakers.extend(self.streams.get_mut(&id).and_then(|s| s.reader.take()));
            }
            Event::Stream(StreamEvent::Writable { id }) => {
                wakers.extend(self.streams.get_mut(&id).and_then(|s| s.writer.take()));
            }
            Event::Stream(StreamEvent::Finished { id }) => {
                wakers.extend(self.streams.get_mut(&id).and_then(|s| s.stopped.take()));
            }
            Event::Stream(StreamEvent::Stopped { id, .. }) => {
                if let Some(slot) = self.streams.get_mut(&id) {
                    wakers.extend(slot.writer.take());
                    wakers.extend(slot.stopped.take());
                }
            }
            Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                wakers.append(&mut self.accept_waiters);
            }
            Event::Stream(StreamEvent::Available { dir: Dir::Bi }) => {
                wakers.append(&mut self.open_waiters);
            }
            _ => {}
        }
        false
    }

    /// Starts the bookkeeping of a stream just opened or accepted.
    fn add_stream(&mut self, id: StreamId) {
        self.streams.insert(
            id,
            StreamSlot {
                reader: None,
                writer: None,
                stopped: None,
                send_done: false,
                recv_done: false,
                send_live: true,
                recv_live: true,
            },
        );
        self.open_streams += 1;
    }

    /// Marks one half finished, reset or stopped; a stream stops counting as open once both
    /// halves are.
    pub(super) fn half_done(&mut self, id: StreamId, half: Half) {
        let Some(slot) = self.streams.get_mut(&id) else {
            return;
        };
        let was_open = !(slot.send_done && slot.recv_done);
        match half {
            Half::Send => slot.send_done = true,
            Half::Recv => slot.recv_done = true,
        }
        if was_open && slot.send_done && slot.recv_done {
            self.open_streams -= 1;
        }
    }

    /// Forgets a half whose handle was dropped; the slot goes once both handles are gone.
    pub(super) fn half_dropped(&mut self, id: StreamId, half: Half) {
        self.half_done(id, half);
        let Some(slot) = self.streams.get_mut(&id) else {
            return;
        };
        match half {
            Half::Send => slot.send_live = false,
            Half::Recv => slot.recv_live = false,
        }
        if !slot.send_live && !slot.recv_live {
            self.streams.remove(&id);
        }
    }
}

impl StreamSlot {
    pub(super) fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
        match slot {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
    }
}

/// Adds the task's waker to a list unless it is there already.
pub(super) fn register_in(list: &mut Vec<Waker>, cx: &Context<'_>) {
    if !list.iter().any(|w| w.will_wake(cx.waker())) {
        list.push(cx.waker().clone());
    }
}

/// The user's reference to a connection; the last one dropped closes the connection.
pub(super) struct ConnRef {
    pub(super) shared: Rc<ConnShared>,
}

impl Drop for ConnRef {
    fn drop(&mut self) {
        let open = self.shared.state.borrow().error.is_none();
        if open {
            self.shared.close(0, b"");
        }
    }
}

/// A handle to one connection. Cloning shares it; the connection lives while any handle or
/// stream does, or until closed.
#[derive(Clone)]
pub struct Connection {
    pub(super) inner: Rc<ConnRef>,
}

impl Connection {
    pub(super) fn new(shared: Rc<ConnShared>) -> Connection {
        Connection {
            inner: Rc::new(ConnRef { shared }),
        }
    }

    fn shared(&self) -> &Rc<ConnShared> {
        &self.inner.shared
    }

    /// When a datagram from the peer last arrived on this connection (as the driver's turn
    /// that received it saw the time).
    pub fn last_heard(&self) -> Instant {
        self.shared().heard.get()
    }

    /// Whether stream data or a stream end this side sent awaits an answer: nothing arrived
    /// from the peer since.
    pub fn awaiting_answer(&self) -> bool {
        self.shared().unanswered.get().is_some()
    }

    /// Whether stream data or a stream end this side sent has gone unanswered for longer
    /// than a live peer takes to acknowledge it: [`STALL_AFTER`] plus four round trips. A
    /// peer that died or whose path black-holes packets shows it within that time, long
    /// before the idle timeout closes the connection; a peer that merely has nothing to say
    /// does not, as it acknowledges what it receives.
    pub fn stalled(&self, now: Instant) -> bool {
        let shared = self.shared();
        shared.unanswered.get().is_some_and(|since| {
            now.saturating_duration_since(since) > STALL_AFTER + 4 * shared.rtt.get()
        })
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.shared().state.borrow().conn.remote_address()
    }

    /// Opens a bidirectional stream, waiting while the peer's stream limit is reached.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), QuicError> {
        poll_fn(|cx| self.poll_stream(cx, Side::Open)).await
    }

    /// Opens a bidirectional stream if the peer's stream limit allows one now; `None` when
    /// it does not (or the connection is closed): [`Connection::open_bi`] then waits.
    pub fn try_open_bi(&self) -> Option<(SendStream, RecvStream)> {
        let cx = Context::from_waker(Waker::noop());
        match self.poll_stream(&cx, Side::Open) {
            Poll::Ready(Ok(streams)) => Some(streams),
            Poll::Ready(Err(_)) | Poll::Pending => None,
        }
    }

    /// The next bidirectional stream the peer opened.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), QuicError> {
        poll_fn(|cx| self.poll_stream(cx, Side::Accept)).await
    }

    fn poll_stream(
        &self,
        cx: &Context<'_>,
        side: Side,
    ) -> Poll<Result<(SendStream, RecvStream), QuicError>> {
        let mut state = self.shared().state.borrow_mut();
        if let Some(error) = &state.error {
            return Poll::Ready(Err(QuicError::Connection(error.clone())));
        }

        let id = match side {
            Side::Open => state.conn.streams().open(Dir::Bi),
            Side::Accept => state.conn.streams().accept(Dir::Bi),
        };
        let Some(id) = id else {
            match side {
                Side::Open => register_in(&mut state.open_waiters, cx),
                Side::Accept => register_in(&mut state.accept_waiters, cx),
            }
            return Poll::Pending;
        };

        state.add_stream(id);
        drop(state);
        let send = SendStream::new(self.inner.clone(), id);
        let recv = RecvStream::new(self.inner.clone(), id);
        Poll::Ready(Ok((send, recv)))
    }

    /// Resolves when the connection is closed, with the reason.
    pub async fn closed(&self) -> QuicError {
        poll_fn(|cx| {
            let mut state = self.shared().state.borrow_mut();
            match &state.error {
                Some(error) => Poll::Ready(QuicError::Connection(error.clone())),
                None => {
                    register_in(&mut state.closed_waiters, cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Whether the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        let state = self.shared().state.borrow();
        state.error.is_some() || state.conn.is_closed()
    }

    pub fn close(&self, code: u32, reason: &[u8]) {
        self.shared().close(code, reason);
    }

    pub fn stats(&self) -> ConnectionStats {
        let stats = self.shared().state.borrow().conn.stats();
        ConnectionStats {
            rtt: stats.path.rtt,
            cwnd: stats.path.cwnd,
            lost_packets: stats.path.lost_packets,
            sent_packets: stats.path.sent_packets,
            received_packets: stats.udp_rx.datagrams,
            mtu: stats.path.current_mtu,
        }
    }

    /// Streams opened on this connection that are not yet finished both ways.
    pub fn open_streams(&self) -> usize {
        self.shared().state.borrow().open_streams
    }

    /// Streams whose sent data the peer has not all acknowledged yet (finished or not).
    /// Zero means closing now loses nothing this side sent.
    pub fn unacked_streams(&self) -> usize {
        self.shared()
            .state
            .borrow_mut()
            .conn
            .streams()
            .send_streams()
    }
}

#[derive(Clone, Copy)]
enum Side {
    Open,
    Accept,
}
