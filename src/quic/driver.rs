//! The endpoint handle and the state it shares with its driver task.
//!
//! [`Endpoint::new`] spawns the driver ([`super::run`]) on the current monoio runtime. The
//! handles and the driver share one [`EpShared`]: the quinn-proto endpoint and connection
//! table behind a `RefCell`, plus a [`DriverWake`] through which handles queue connections
//! for the driver and wake it.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use quinn_proto::{ConnectionError, ConnectionHandle, EndpointConfig, HashedConnectionIdGenerator};
use tracing::debug;

use super::conn::{register_in, ConnShared, Connection};
use super::run::Driver;
use super::udp::UdpIo;

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

/// How long [`Endpoint::close`] waits for connections to drain before the driver stops
/// anyway: about three probe timeouts on a slow WAN path.
const CLOSE_BOUND: Duration = Duration::from_secs(1);

/// One worker's QUIC endpoint on one UDP socket. Cloning shares it.
#[derive(Clone)]
pub struct Endpoint {
    inner: Rc<EndpointRef>,
}

/// The user's reference to the endpoint; when the last one goes, the endpoint stops
/// accepting and its driver ends once the remaining connections are gone.
struct EndpointRef {
    shared: Rc<EpShared>,
}

impl Drop for EndpointRef {
    fn drop(&mut self) {
        self.shared.state.borrow_mut().detached = true;
        self.shared.wake.notify();
    }
}

pub(super) struct EpShared {
    pub(super) state: RefCell<EpState>,
    pub(super) wake: DriverWake,
    local_addr: SocketAddr,
}

pub(super) struct EpState {
    pub(super) endpoint: quinn_proto::Endpoint,
    /// Connections by quinn handle index; a slot is freed when its connection drains.
    pub(super) conns: Vec<Option<Rc<ConnShared>>>,
    pub(super) live: usize,
    pub(super) next_generation: u64,
    /// Earliest quinn timeout per connection: (deadline, handle index, generation). Entries
    /// go stale when a connection's deadline moves; the connection's `timer` tells.
    pub(super) timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    pub(super) server: bool,
    /// The server config with the loopback transport, for clients on this host.
    pub(super) loopback_server: Option<Arc<quinn_proto::ServerConfig>>,
    pub(super) accepted: VecDeque<Connection>,
    pub(super) accept_waiters: Vec<Waker>,
    /// Every user handle was dropped.
    pub(super) detached: bool,
    /// Set by [`Endpoint::close`]: the time by which the driver stops even if connections
    /// have not drained.
    pub(super) closing: Option<Instant>,
    pub(super) stopped: bool,
    pub(super) stop_waiters: Vec<Waker>,
}

impl EpState {
    /// Registers a connection quinn-proto just created.
    pub(super) fn insert(
        &mut self,
        ep: &Rc<EpShared>,
        handle: ConnectionHandle,
        conn: quinn_proto::Connection,
    ) -> Rc<ConnShared> {
        self.next_generation += 1;
        let shared = Rc::new(ConnShared::new(
            ep.clone(),
            handle,
            self.next_generation,
            conn,
        ));
        if self.conns.len() <= handle.0 {
            self.conns.resize(handle.0 + 1, None);
        }
        self.conns[handle.0] = Some(shared.clone());
        self.live += 1;
        shared
    }

    pub(super) fn conn(&self, index: usize) -> Option<&Rc<ConnShared>> {
        self.conns.get(index).and_then(Option::as_ref)
    }

    /// Whether new connections are still welcome.
    pub(super) fn accepting(&self) -> bool {
        self.server && !self.detached && self.closing.is_none()
    }
}

/// How handles reach the driver: a work list of connections and a wake-up that is never
/// lost, even while the driver is busy sending (the flag stays set until its next turn).
pub(super) struct DriverWake {
    notified: Cell<bool>,
    waker: Cell<Option<Waker>>,
    dirty: RefCell<Vec<Rc<ConnShared>>>,
    /// The driver has ended; queueing would only keep connections alive.
    pub(super) stopped: Cell<bool>,
}

impl DriverWake {
    fn new() -> DriverWake {
        DriverWake {
            notified: Cell::new(false),
            waker: Cell::new(None),
            dirty: RefCell::new(Vec::new()),
            stopped: Cell::new(false),
        }
    }

    /// Puts a connection on the driver's work list for its next turn.
    pub(super) fn enqueue(&self, conn: &Rc<ConnShared>) {
        if !conn.queued.replace(true) && !self.stopped.get() {
            self.dirty.borrow_mut().push(conn.clone());
        }
    }

    /// Makes the driver run another turn.
    pub(super) fn notify(&self) {
        if !self.notified.replace(true) {
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }

    /// Starts a turn: later notifications call for another one.
    pub(super) fn begin_turn(&self) {
        self.notified.set(false);
    }

    pub(super) fn is_notified(&self) -> bool {
        self.notified.get()
    }

    pub(super) fn set_waker(&self, waker: &Waker) {
        self.waker.set(Some(waker.clone()));
    }

    /// Swaps the work list with `into` (an empty list whose capacity is kept for reuse).
    pub(super) fn take_dirty(&self, into: &mut Vec<Rc<ConnShared>>) {
        std::mem::swap(&mut *self.dirty.borrow_mut(), into);
    }
}

impl Endpoint {
    /// Takes a bound UDP socket (set non-blocking here), raises its buffers, and spawns the
    /// driver on the current monoio runtime. With `server` set, it accepts connections.
    ///
    /// Must be called inside a running monoio runtime (with its timer enabled); the endpoint
    /// and everything made from it belong to that runtime's thread.
    pub fn new(
        socket: std::net::UdpSocket,
        server: Option<Arc<quinn_proto::ServerConfig>>,
    ) -> std::io::Result<Endpoint> {
        Endpoint::with_reset_key(socket, server, None)
    }

    /// As [`Endpoint::new`], with the key that derives stateless-reset tokens. An edge keeps
    /// it across restarts, so after a crash the peers' packets for connections it forgot are
    /// answered with resets that the peers recognise, and they reconnect at once instead of
    /// waiting out the idle timeout. `None` picks a random key.
    pub fn with_reset_key(
        socket: std::net::UdpSocket,
        server: Option<Arc<quinn_proto::ServerConfig>>,
        reset_key: Option<&[u8]>,
    ) -> std::io::Result<Endpoint> {
        let (io, ready) = UdpIo::new(socket)?;
        let local_addr = io.local_addr()?;

        let mut config = EndpointConfig::default();
        if let Some(key) = reset_key {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            // Connection ids carry a check value keyed per endpoint; packets whose id fails it
            // are dropped without a reset, so that key must survive restarts too.
            let tag = ring::hmac::sign(&key, b"adit connection id key");
            let mut cid_key = [0u8; 8];
            cid_key.copy_from_slice(&tag.as_ref()[..8]);
            let cid_key = u64::from_le_bytes(cid_key);
            config = EndpointConfig::new(Arc::new(key));
            config.cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(cid_key)));
        }
        config
            .max_udp_payload_size(io.max_payload())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let is_server = server.is_some();
        let loopback_server = server.as_deref().map(super::config::loopback_server);
        let endpoint =
            quinn_proto::Endpoint::new(Arc::new(config), server, !io.may_fragment(), None);

        let shared = Rc::new(EpShared {
            state: RefCell::new(EpState {
                endpoint,
                loopback_server,
                conns: Vec::new(),
                live: 0,
                next_generation: 0,
                timers: BinaryHeap::new(),
                server: is_server,
                accepted: VecDeque::new(),
                accept_waiters: Vec::new(),
                detached: false,
                closing: None,
                stopped: false,
                stop_waiters: Vec::new(),
            }),
            wake: DriverWake::new(),
            local_addr,
        });
        monoio::spawn(Driver::new(shared.clone(), io).run(ready));
        debug!(%local_addr, server = is_server, "quic endpoint started");

        Ok(Endpoint {
            inner: Rc::new(EndpointRef { shared }),
        })
    }

    fn shared(&self) -> &Rc<EpShared> {
        &self.inner.shared
    }

    /// Connections not yet drained, for tests that check the table is cleaned.
    #[cfg(test)]
    pub(super) fn inner_live(&self) -> usize {
        let state = self.shared().state.borrow();
        debug_assert_eq!(state.conns.iter().flatten().count(), state.live);
        state.live
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared().local_addr
    }

    /// The next incoming connection, once its handshake completes; `None` once closed.
    pub async fn accept(&self) -> Option<Connection> {
        poll_fn(|cx| {
            let mut state = self.shared().state.borrow_mut();
            if let Some(conn) = state.accepted.pop_front() {
                return Poll::Ready(Some(conn));
            }
            if !state.accepting() || state.stopped {
                return Poll::Ready(None);
            }
            register_in(&mut state.accept_waiters, cx);
            Poll::Pending
        })
        .await
    }

    /// Dials `addr` and waits for the handshake to complete.
    pub async fn connect(
        &self,
        config: quinn_proto::ClientConfig,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, QuicError> {
        let shared = {
            let mut state = self.shared().state.borrow_mut();
            if state.closing.is_some() || state.stopped {
                return Err(QuicError::EndpointClosed);
            }
            let (handle, conn) =
                state
                    .endpoint
                    .connect(Instant::now(), config, addr, server_name)?;
            state.insert(self.shared(), handle, conn)
        };
        // Made before waiting so that a cancelled connect closes the connection.
        let connection = Connection::new(shared.clone());
        shared.touch();

        poll_fn(|cx| {
            let mut state = shared.state.borrow_mut();
            if let Some(error) = &state.error {
                return Poll::Ready(Err(QuicError::Connection(error.clone())));
            }
            if state.connected {
                return Poll::Ready(Ok(()));
            }
            state.connect_waiter = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(connection)
    }

    /// Resolves once the driver has stopped: after [`Endpoint::close`] once every connection
    /// drained (or the bound passed), or after the last handle went and no connection is left.
    /// Await it before leaving the runtime so that the CONNECTION_CLOSE frames get out.
    pub async fn stopped(&self) {
        poll_fn(|cx| {
            let mut state = self.shared().state.borrow_mut();
            if state.stopped {
                return Poll::Ready(());
            }
            register_in(&mut state.stop_waiters, cx);
            Poll::Pending
        })
        .await
    }

    /// Closes every connection with `code` and `reason` and stops the driver once they are
    /// drained.
    pub fn close(&self, code: u32, reason: &[u8]) {
        let (conns, accepted, waiters) = {
            let mut state = self.shared().state.borrow_mut();
            if state.closing.is_none() {
                state.closing = Some(Instant::now() + CLOSE_BOUND);
            }
            let conns: Vec<_> = state.conns.iter().flatten().cloned().collect();
            let accepted = std::mem::take(&mut state.accepted);
            (conns, accepted, std::mem::take(&mut state.accept_waiters))
        };

        for conn in &conns {
            let open = conn.state.borrow().error.is_none();
            if open {
                conn.close(code, reason);
            }
        }
        drop(accepted);
        waiters.into_iter().for_each(Waker::wake);
        self.shared().wake.notify();
    }
}

/// The error connections see when the endpoint stops under them.
pub(super) fn endpoint_stopped() -> ConnectionError {
    ConnectionError::LocallyClosed
}
