//! The driver task: one loop per endpoint that moves datagrams between the UDP socket and
//! quinn-proto and turns quinn-proto's events into wake-ups of the handles.
//!
//! Each turn takes `now` once and runs these steps: receive a few batches of datagrams (when
//! the socket announced some since it was last found empty) and hand them to the endpoint
//! and its connections; queue connections whose timers are due; then, for every queued
//! connection, fire its timeout, pass endpoint events both ways, deliver its application
//! events, and poll up to a bounded number of transmits, sending each as one GSO train. A
//! turn that moved anything is followed by another (after letting other tasks run); an idle
//! driver sleeps until the socket is readable, a handle notifies it, or the earliest
//! connection timer is due.

use std::cmp::Reverse;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quinn_proto::{ConnectionError, DatagramEvent, EcnCodepoint};
use tracing::{debug, warn};

use super::conn::{ConnShared, Connection};
use super::driver::{endpoint_stopped, EpShared};
use super::udp::{log_send_error, Outgoing, UdpIo, MAX_UDP_PAYLOAD, RECV_SLOTS};

/// Receive batches per turn, so that a flood of input cannot starve sending.
const RECV_BATCHES_PER_TURN: usize = 4;

/// Transmits polled per connection per turn, so that one busy connection cannot starve the
/// others; each is a GSO train of up to `MAX_GSO_SEGMENTS` datagrams.
const TRANSMITS_PER_TURN: usize = 16;

/// Datagrams per GSO train: 44 full-size datagrams still fit the 64 KiB a send may carry,
/// and measured 15–25 % faster than quinn's default of 10.
const MAX_GSO_SEGMENTS: usize = 44;

/// The most bytes one GSO send may carry.
const MAX_TRAIN: usize = u16::MAX as usize;

const _: () = assert!(MAX_GSO_SEGMENTS * MAX_UDP_PAYLOAD as usize <= MAX_TRAIN);

/// Attempts to send one transmit while the socket keeps reporting itself full.
const SEND_ATTEMPTS: usize = 16;

/// Size of each block received datagrams are copied into: one full GRO train.
const RX_BLOCK: usize = 64 * 1024;

pub(super) struct Driver {
    shared: Rc<EpShared>,
    io: UdpIo,
    /// Transmit buffer, reused for every poll_transmit.
    tx: Vec<u8>,
    /// Buffer for datagrams the endpoint answers by itself (refusals, version negotiation).
    response: Vec<u8>,
    /// The block received trains are copied into and split off (see [`take_train`]).
    rx: BytesMut,
    work: Vec<Rc<ConnShared>>,
    wakers: Vec<Waker>,
}

/// What ended an idle wait.
enum Woke {
    Notified,
    Readable(io::Result<()>),
    Timer,
}

impl Driver {
    pub(super) fn new(shared: Rc<EpShared>, io: UdpIo) -> Driver {
        Driver {
            shared,
            io,
            tx: Vec::with_capacity(MAX_TRAIN),
            response: Vec::new(),
            rx: BytesMut::new(),
            work: Vec::new(),
            wakers: Vec::new(),
        }
    }

    /// Runs until the endpoint is closed and drained, or detached with no connections left.
    pub(super) async fn run(mut self, ready: monoio::net::udp::UdpSocket) {
        // The readiness wait survives turns: it is armed again only once a receive found
        // the queue empty, so no poll operation is cancelled and resubmitted per turn, and a
        // turn that a handle's notification or a timer started makes no receive call that
        // would only find the queue empty (two of every three in the open-loop bench).
        let mut readable = pin!(ready.readable(false));
        let mut armed = true;
        // Whether the socket may hold datagrams: it announced readability since the last
        // receive that emptied it, or the last receive stopped at the per-turn limit.
        let mut input = true;
        let mut sleep = pin!(monoio::time::sleep(Duration::from_secs(1)));

        loop {
            self.shared.wake.begin_turn();
            let now = Instant::now();
            if armed {
                let polled = poll_fn(|cx| Poll::Ready(readable.as_mut().poll(cx))).await;
                if let Poll::Ready(result) = polled {
                    if !fired(result, &mut armed, &mut input) {
                        break;
                    }
                }
            }
            let mut busy = false;
            if input {
                (busy, input) = self.receive(now);
            }
            if !armed && !input {
                readable.set(ready.readable(false));
                armed = true;
            }
            self.fire_timers(now);
            busy |= self.process(now, &ready).await;
            if self.finished(Instant::now()) {
                break;
            }
            if busy {
                yield_now().await;
                continue;
            }

            let deadline = self.next_deadline();
            if let Some(deadline) = deadline {
                sleep
                    .as_mut()
                    .reset(monoio::time::Instant::from_std(deadline));
            }
            let wake = &self.shared.wake;
            let woke = poll_fn(|cx| {
                if wake.is_notified() {
                    return Poll::Ready(Woke::Notified);
                }
                if armed {
                    if let Poll::Ready(result) = readable.as_mut().poll(cx) {
                        return Poll::Ready(Woke::Readable(result));
                    }
                }
                if deadline.is_some() && sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Timer);
                }
                wake.set_waker(cx.waker());
                Poll::Pending
            })
            .await;

            if let Woke::Readable(result) = woke {
                if !fired(result, &mut armed, &mut input) {
                    break;
                }
            }
        }
        self.shutdown();
    }

    /// Receives up to a few batches and feeds every datagram to the endpoint. Returns
    /// whether it received anything, and whether the socket may hold more: the last batch
    /// filled every slot.
    fn receive(&mut self, now: Instant) -> (bool, bool) {
        let mut busy = false;
        for _ in 0..RECV_BATCHES_PER_TURN {
            let count = match self.io.recv() {
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return (busy, false),
                Err(error) => {
                    debug!(%error, "udp receive failed");
                    return (busy, false);
                }
            };
            busy = true;

            for i in 0..count {
                let Some((meta, data)) = self.io.datagrams(i) else {
                    break;
                };
                let mut train = take_train(&mut self.rx, data);
                let stride = if meta.stride == 0 {
                    train.len()
                } else {
                    meta.stride
                };
                let (remote, local_ip) = (meta.addr, meta.dst_ip);
                let ecn = meta.ecn.and_then(|e| EcnCodepoint::from_bits(e as u8));
                while !train.is_empty() {
                    let datagram = train.split_to(stride.min(train.len()));
                    self.handle_datagram(now, remote, local_ip, ecn, datagram);
                }
            }
            if count < RECV_SLOTS {
                // A short batch means the queue was empty; readiness announces what comes next.
                return (busy, false);
            }
        }
        (busy, true)
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local_ip: Option<IpAddr>,
        ecn: Option<EcnCodepoint>,
        datagram: BytesMut,
    ) {
        let Driver {
            shared,
            io,
            response,
            ..
        } = self;
        let mut ep = shared.state.borrow_mut();
        response.clear();
        let event = ep
            .endpoint
            .handle(now, remote, local_ip, ecn, datagram, response);

        match event {
            Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                if let Some(conn) = ep.conn(handle.0) {
                    conn.heard.set(now);
                    conn.unanswered.set(None);
                    conn.state.borrow_mut().conn.handle_event(event);
                    shared.wake.enqueue(conn);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                if !ep.accepting() {
                    let transmit = ep.endpoint.refuse(incoming, response);
                    send_response(io, &transmit, response);
                    return;
                }
                let config = match remote.ip().is_loopback() {
                    true => ep.loopback_server.clone(),
                    false => None,
                };
                match ep.endpoint.accept(incoming, now, response, config) {
                    Ok((handle, conn)) => {
                        debug!(%remote, "quic connection incoming");
                        let conn = ep.insert(shared, handle, conn);
                        shared.wake.enqueue(&conn);
                    }
                    Err(error) => {
                        debug!(%remote, cause = %error.cause, "quic connection refused");
                        if let Some(transmit) = error.response {
                            send_response(io, &transmit, response);
                        }
                    }
                }
            }
            Some(DatagramEvent::Response(transmit)) => send_response(io, &transmit, response),
            None => {}
        }
    }

    /// Queues the connections whose timers are due.
    fn fire_timers(&mut self, now: Instant) {
        let mut ep = self.shared.state.borrow_mut();
        while let Some(&Reverse((deadline, index, generation))) = ep.timers.peek() {
            if deadline > now {
                break;
            }
            ep.timers.pop();
            let Some(conn) = ep.conn(index) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            let mut state = conn.state.borrow_mut();
            if state.timer == Some(deadline) {
                state.timer = None;
                drop(state);
                self.shared.wake.enqueue(conn);
            }
        }
    }

    /// Drives every queued connection; returns whether anything was sent.
    async fn process(&mut self, now: Instant, ready: &monoio::net::udp::UdpSocket) -> bool {
        let mut work = std::mem::take(&mut self.work);
        self.shared.wake.take_dirty(&mut work);
        let mut busy = false;
        for conn in work.drain(..) {
            conn.queued.set(false);
            busy |= self.drive(&conn, now, ready).await;
        }
        self.work = work;
        busy
    }

    async fn drive(
        &mut self,
        conn: &Rc<ConnShared>,
        now: Instant,
        ready: &monoio::net::udp::UdpSocket,
    ) -> bool {
        if !self.service(conn, now) {
            return false;
        }

        let mut sent = 0;
        while sent < TRANSMITS_PER_TURN {
            let (out, size) = {
                let mut state = conn.state.borrow_mut();
                let segments = self.segments(state.conn.current_mtu());
                self.tx.clear();
                match state.conn.poll_transmit(now, segments, &mut self.tx) {
                    Some(transmit) => (Outgoing::from(&transmit), transmit.size),
                    None => break,
                }
            };
            self.send(&out, size, ready).await;
            sent += 1;
        }
        if sent == TRANSMITS_PER_TURN {
            self.shared.wake.enqueue(conn);
        }

        self.service(conn, now);
        sent > 0
    }

    /// GSO segments for one transmit at the connection's current MTU.
    fn segments(&self, mtu: u16) -> usize {
        let fit = MAX_TRAIN / usize::from(mtu.max(1));
        self.io
            .max_gso_segments()
            .min(MAX_GSO_SEGMENTS)
            .min(fit)
            .max(1)
    }

    async fn send(&self, out: &Outgoing, size: usize, ready: &monoio::net::udp::UdpSocket) {
        let Some(contents) = self.tx.get(..size) else {
            return;
        };
        for _ in 0..SEND_ATTEMPTS {
            match self.io.send(out, contents) {
                Ok(()) => return,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(error) = ready.writable(false).await {
                        debug!(%error, "waiting for udp send room failed");
                        return;
                    }
                }
                Err(error) => {
                    log_send_error(&error);
                    return;
                }
            }
        }
    }

    /// Fires a due timeout, passes endpoint events both ways, delivers application events,
    /// removes a drained connection and re-arms its timer. Returns whether it is still live.
    fn service(&mut self, conn: &Rc<ConnShared>, now: Instant) -> bool {
        let mut ep = self.shared.state.borrow_mut();
        let mut state = conn.state.borrow_mut();
        if state.removed {
            return false;
        }

        if state.conn.poll_timeout().is_some_and(|t| t <= now) {
            state.conn.handle_timeout(now);
        }
        while let Some(event) = state.conn.poll_endpoint_events() {
            if let Some(event) = ep.endpoint.handle_event(conn.handle, event) {
                state.conn.handle_event(event);
            }
        }
        conn.rtt.set(state.conn.rtt());
        let mut connected = false;
        while let Some(event) = state.conn.poll() {
            connected |= state.on_event(event, &mut self.wakers);
        }

        let live = !state.conn.is_drained();
        if !live {
            debug!(remote = %state.conn.remote_address(), "quic connection drained");
            state.removed = true;
            state.fail(ConnectionError::LocallyClosed, &mut self.wakers);
            let index = conn.handle.0;
            if ep
                .conn(index)
                .is_some_and(|c| c.generation == conn.generation)
            {
                ep.conns[index] = None;
                ep.live -= 1;
            }
        } else if let Some(deadline) = state.conn.poll_timeout() {
            if state.timer.is_none_or(|armed| deadline < armed) {
                state.timer = Some(deadline);
                ep.timers
                    .push(Reverse((deadline, conn.handle.0, conn.generation)));
            }
        }

        let mut refused = None;
        if connected && state.conn.side().is_server() {
            drop(state);
            let connection = Connection::new(conn.clone());
            if ep.accepting() {
                ep.accepted.push_back(connection);
                self.wakers.append(&mut ep.accept_waiters);
            } else {
                refused = Some(connection);
            }
        }
        drop(ep);
        // Dropping the only handle closes the connection, which needs the borrows released.
        drop(refused);

        self.wakers.drain(..).for_each(Waker::wake);
        live
    }

    fn next_deadline(&self) -> Option<Instant> {
        let ep = self.shared.state.borrow();
        let timer = ep.timers.peek().map(|Reverse((deadline, ..))| *deadline);
        match (timer, ep.closing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn finished(&self, now: Instant) -> bool {
        let ep = self.shared.state.borrow();
        if let Some(deadline) = ep.closing {
            return ep.live == 0 || now >= deadline;
        }
        ep.detached && ep.live == 0
    }

    /// Fails whatever is still open and wakes every waiter: nothing will drive them now.
    fn shutdown(&mut self) {
        self.shared.wake.stopped.set(true);
        let mut dirty = Vec::new();
        self.shared.wake.take_dirty(&mut dirty);
        drop(dirty);

        let (conns, accepted) = {
            let mut ep = self.shared.state.borrow_mut();
            ep.stopped = true;
            ep.live = 0;
            ep.timers.clear();
            self.wakers.append(&mut ep.accept_waiters);
            self.wakers.append(&mut ep.stop_waiters);
            let conns: Vec<_> = ep.conns.drain(..).flatten().collect();
            (conns, std::mem::take(&mut ep.accepted))
        };
        for conn in &conns {
            let mut state = conn.state.borrow_mut();
            state.removed = true;
            state.fail(endpoint_stopped(), &mut self.wakers);
        }
        drop(accepted);
        self.wakers.drain(..).for_each(Waker::wake);
        let local_addr = self.io.local_addr();
        let local_addr = local_addr.map_or_else(|e| e.to_string(), |a| a.to_string());
        debug!(%local_addr, "quic endpoint stopped");
    }
}

/// Takes in a readiness wait that completed: the socket may hold datagrams, and the wait is
/// armed again once a receive finds it empty. False when the socket failed.
fn fired(result: io::Result<()>, armed: &mut bool, input: &mut bool) -> bool {
    if let Err(error) = result {
        warn!(%error, "quic endpoint socket failed; stopping its driver");
        return false;
    }
    (*armed, *input) = (false, true);
    true
}

/// Copies a received train into the receive block and splits it off.
///
/// quinn-proto keeps received stream data as slices of the train's buffer, so a train cannot
/// live in the socket's receive slots. Trains are copied one after another into a block
/// that is taken back once every slice of it is gone (read by the streams, or dropped with
/// them), so in the steady state receiving allocates nothing; only when a slice still pins
/// the block as it fills does a new one replace it, and the old one is freed with its last
/// slice. The cost: an unread chunk pins its block (at most `RX_BLOCK` bytes) rather than
/// just its own train, which quinn's receive accounting does not see.
fn take_train(rx: &mut BytesMut, data: &[u8]) -> BytesMut {
    if !rx.try_reclaim(data.len()) {
        *rx = BytesMut::with_capacity(RX_BLOCK.max(data.len()));
    }
    rx.extend_from_slice(data);
    rx.split()
}

/// Sends a datagram the endpoint produced by itself; if the socket is full it is dropped,
/// as the peer retries.
fn send_response(io: &UdpIo, transmit: &quinn_proto::Transmit, buf: &[u8]) {
    let Some(contents) = buf.get(..transmit.size) else {
        return;
    };
    if let Err(error) = io.send(&Outgoing::from(transmit), contents) {
        if error.kind() != io::ErrorKind::WouldBlock {
            log_send_error(&error);
        }
    }
}

/// Lets the other tasks of the runtime run before the driver's next turn.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
