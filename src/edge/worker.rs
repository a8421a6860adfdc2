//! One edge worker's state: its routing snapshot, the tunnel connections it owns, and its
//! inbox for messages from other threads.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::drain::{ClientCounts, Stop};
use super::pick::{Candidate, Picker};
use crate::control::{ControlMsg, Snapshot};
use crate::metrics::edge::EdgeMetrics;
use crate::quic::Connection;

/// Messages a worker receives from other threads.
pub enum WorkerMsg {
    /// A new routing snapshot from the control plane.
    Snapshot(Arc<Snapshot>),
    /// A public connection accepted elsewhere for a tunnel this worker has connections of,
    /// with the bytes already read from it (moved, not copied).
    Handoff {
        stream: super::proxy::HandoffStream,
        peer: SocketAddr,
        buffered: BytesMut,
    },
    /// Stop accepting clients and close idle client connections ([`super::drain`]).
    Stop,
    /// Close every tunnel connection of this worker: the edge is stopping.
    Shutdown,
}

/// A registered tunnel connection owned by this worker.
pub struct TunnelConn {
    pub id: Uuid,
    /// The connector process (replica) that made the connection.
    pub connector: Uuid,
    pub conn: Connection,
    /// Set when the connector unregistered: no new streams go here.
    pub draining: Cell<bool>,
}

pub struct Worker {
    pub index: usize,
    pub limits: super::proxy::ClientLimits,
    snapshot: RefCell<Arc<Snapshot>>,
    tunnels: RefCell<FxHashMap<Uuid, Vec<Rc<TunnelConn>>>>,
    pub control: crossbeam_channel::Sender<ControlMsg>,
    /// Every worker's inbox, this one's included, by index.
    pub inboxes: Vec<UnboundedSender<WorkerMsg>>,
    picker: Picker,
    /// This worker's metrics; it is their only writer.
    pub metrics: Arc<EdgeMetrics>,
    /// Set when the edge stops accepting clients.
    pub stop: Stop,
    /// This worker's client connections, read by the main thread while draining.
    pub clients: Arc<ClientCounts>,
    /// Read buffers of client connections gone idle ([`super::idle`]).
    pub read_buffers: super::idle::Spares,
    /// Frame buffers of client connections gone idle ([`super::idle`]).
    pub frame_buffers: super::idle::Spares,
}

impl Worker {
    pub fn new(
        index: usize,
        limits: super::proxy::ClientLimits,
        control: crossbeam_channel::Sender<ControlMsg>,
        inboxes: Vec<UnboundedSender<WorkerMsg>>,
        metrics: Arc<EdgeMetrics>,
        clients: Arc<ClientCounts>,
    ) -> Worker {
        Worker {
            index,
            limits,
            snapshot: RefCell::new(Arc::new(Snapshot::default())),
            tunnels: RefCell::new(FxHashMap::default()),
            control,
            inboxes,
            picker: Picker::default(),
            metrics,
            stop: Stop::default(),
            clients,
            read_buffers: super::idle::Spares::read_buffers(),
            frame_buffers: super::idle::Spares::frame_buffers(),
        }
    }

    /// The current snapshot, borrowed: no reference count is touched per request.
    pub fn snapshot_ref(&self) -> std::cell::Ref<'_, Arc<Snapshot>> {
        self.snapshot.borrow()
    }

    /// Takes a new snapshot, closing the connections of tunnels it says were deleted.
    pub fn set_snapshot(&self, snapshot: Arc<Snapshot>) {
        let deleted: Vec<Uuid> = self
            .tunnels
            .borrow()
            .keys()
            .copied()
            .filter(|tunnel| snapshot.is_deleted(*tunnel))
            .collect();
        for tunnel in deleted {
            let conns = self
                .tunnels
                .borrow_mut()
                .remove(&tunnel)
                .unwrap_or_default();
            for conn in conns {
                let connection = conn.id;
                tracing::info!(%tunnel, %connection, "closing a deleted tunnel's connection");
                conn.conn
                    .close(super::tunnel::CLOSE_DELETED, b"tunnel deleted");
            }
        }
        *self.snapshot.borrow_mut() = snapshot;
    }

    pub fn add_connection(&self, tunnel: Uuid, conn: Rc<TunnelConn>) {
        self.tunnels
            .borrow_mut()
            .entry(tunnel)
            .or_default()
            .push(conn);
    }

    pub fn remove_connection(&self, tunnel: Uuid, id: Uuid) {
        let mut tunnels = self.tunnels.borrow_mut();
        if let Some(conns) = tunnels.get_mut(&tunnel) {
            conns.retain(|c| c.id != id);
            if conns.is_empty() {
                tunnels.remove(&tunnel);
            }
        }
    }

    /// A live connection of `tunnel` to open a stream on ([`super::pick`]); `skip`
    /// excludes one that just failed, `now` is the time of the pick.
    ///
    /// A lost connection stays in the table until its task removes it, but `is_closed`
    /// holds from the moment it failed, before any request waiting on it wakes: a request
    /// sent again after the loss never lands on the same connection.
    pub fn pick(&self, tunnel: Uuid, skip: Option<Uuid>, now: Instant) -> Option<Rc<TunnelConn>> {
        let tunnels = self.tunnels.borrow();
        let conns = tunnels.get(&tunnel)?;
        self.picker.pick(conns, skip, now).cloned()
    }
}

impl Candidate for Rc<TunnelConn> {
    fn id(&self) -> Uuid {
        self.id
    }

    fn usable(&self) -> bool {
        !self.draining.get() && !self.conn.is_closed()
    }

    fn open_streams(&self) -> usize {
        self.conn.open_streams()
    }

    fn connector(&self) -> Uuid {
        self.connector
    }

    fn last_heard(&self) -> Instant {
        self.conn.last_heard()
    }

    fn awaiting_answer(&self) -> bool {
        self.conn.awaiting_answer()
    }

    fn stalled(&self, now: Instant) -> bool {
        self.conn.stalled(now)
    }
}

/// Handles what other threads send this worker until every sender is gone.
pub async fn run_inbox(
    worker: Rc<Worker>,
    endpoint: crate::quic::Endpoint,
    mut inbox: UnboundedReceiver<WorkerMsg>,
) {
    use std::pin::Pin;
    loop {
        let next =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut inbox), cx));
        match next.await {
            Some(WorkerMsg::Snapshot(snapshot)) => worker.set_snapshot(snapshot),
            Some(WorkerMsg::Handoff {
                stream,
                peer,
                buffered,
            }) => adopt(&worker, stream, peer, buffered),
            Some(WorkerMsg::Stop) => worker.stop.trigger(),
            Some(WorkerMsg::Shutdown) => {
                endpoint.close(super::tunnel::CLOSE_SHUTDOWN, b"edge shutting down");
            }
            None => return,
        }
    }
}

/// Serves a client connection another worker handed over.
fn adopt(
    worker: &Rc<Worker>,
    stream: super::proxy::HandoffStream,
    peer: SocketAddr,
    buf: BytesMut,
) {
    use super::proxy::{serve_client, HandoffStream};

    match stream {
        HandoffStream::Plain(stream) => match monoio::net::TcpStream::from_std(stream) {
            Ok(stream) => {
                monoio::spawn(serve_client(worker.clone(), stream, peer, buf));
            }
            Err(err) => tracing::debug!(%peer, "cannot adopt handed-off connection: {err}"),
        },
        HandoffStream::Tls(tls) => tls.adopt(worker, peer, buf),
    }
}
