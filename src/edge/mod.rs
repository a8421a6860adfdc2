//! The edge's data plane: per-worker public HTTP(S) listeners and QUIC tunnel endpoints.
//!
//! Each worker owns one `SO_REUSEPORT` TCP listener for public HTTP, one for public HTTPS
//! when certificates are configured ([`tls`]), one `SO_REUSEPORT` UDP
//! socket with its own QUIC endpoint for tunnel connections, and the tunnel connections
//! that endpoint accepted. A public request is served on the worker that accepted it when
//! that worker owns a connection of the target tunnel; otherwise the accepted socket and
//! the bytes already read move to a worker that does ([`worker::WorkerMsg::Handoff`]).
//! The control plane (its own threads) answers registrations and publishes routing
//! snapshots into every worker's inbox.
//!
//! Departure from `DESIGN.md`: workers do not yet listen on a UDP port of their own, so a
//! connector cannot aim a connection at a chosen worker; the kernel's `SO_REUSEPORT` hash
//! spreads them and the handoff covers requests that land elsewhere.

mod close;
pub mod config;
pub mod drain;
pub mod error;
mod idle;
pub mod pick;
pub mod proxy;
pub mod response;
pub mod tls;
pub mod tunnel;
mod upload;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::BytesMut;
use monoio::net::TcpStream;

use crate::control::{self, ControlConfig, ControlHandle};
use crate::metrics::edge::EdgeMetrics;
use crate::quic::Endpoint;
use crate::runtime;
use worker::{Worker, WorkerMsg};

/// Largest worker count: snapshots keep a 64-bit mask of workers per tunnel.
pub const MAX_WORKERS: usize = 64;

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub data_dir: PathBuf,
    pub listen_tunnel: SocketAddr,
    pub listen_http: SocketAddr,
    /// The public HTTPS listener; bound only when `tls` names a certificate.
    pub listen_https: SocketAddr,
    pub listen_admin: SocketAddr,
    pub workers: usize,
    /// Pin worker `i` to the `i`-th CPU the process may run on.
    pub pin_cpus: bool,
    pub limits: proxy::ClientLimits,
    /// The certificates of the HTTPS listener; the first is the default (see [`tls`]).
    pub tls: Vec<tls::CertFiles>,
}

/// A running edge.
pub struct Edge {
    pub http_addr: SocketAddr,
    /// `None` when no certificate is configured.
    pub https_addr: Option<SocketAddr>,
    pub tunnel_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub control: ControlHandle,
    pub threads: Vec<JoinHandle<()>>,
    /// Each worker's metrics, by worker index, for the metrics server to sum.
    pub metrics: Vec<Arc<EdgeMetrics>>,
    inboxes: Vec<futures_channel::mpsc::UnboundedSender<WorkerMsg>>,
    /// Each worker's client connections, by worker index, for [`Edge::drain`].
    clients: Vec<Arc<drain::ClientCounts>>,
}

impl Edge {
    /// Closes every tunnel connection so connectors learn at once that this edge is going
    /// (they reconnect with backoff). [`Edge::drain`] first lets client requests finish.
    pub fn shutdown(&self) {
        for inbox in &self.inboxes {
            let _ = inbox.unbounded_send(WorkerMsg::Shutdown);
        }
    }
}

/// What one edge worker starts with.
struct WorkerSockets {
    http: std::net::TcpListener,
    https: Option<std::net::TcpListener>,
    tunnel: std::net::UdpSocket,
    inbox: futures_channel::mpsc::UnboundedReceiver<WorkerMsg>,
}

/// Binds every socket, starts the control plane and the workers.
pub fn start(config: EdgeConfig) -> anyhow::Result<Edge> {
    use anyhow::Context;

    let workers = config.workers.clamp(1, MAX_WORKERS);
    if workers != config.workers {
        tracing::warn!(
            asked = config.workers,
            workers,
            "workers must be 1 to {MAX_WORKERS}; running {workers}"
        );
    }
    let tls_config = match tls::CertResolver::load(&config.tls)? {
        Some(resolver) => Some(tls::server_config(resolver)?),
        None => {
            tracing::info!("no TLS certificate configured: the HTTPS listener is not started");
            None
        }
    };
    let tunnel_sockets = runtime::bind_udp_group(config.listen_tunnel, workers)
        .with_context(|| format!("cannot bind the tunnel listener {}", config.listen_tunnel))?;
    let http_listeners = runtime::bind_tcp_group(config.listen_http, workers)
        .with_context(|| format!("cannot bind the HTTP listener {}", config.listen_http))?;
    let https_listeners = match &tls_config {
        Some(_) => runtime::bind_tcp_group(config.listen_https, workers)
            .with_context(|| format!("cannot bind the HTTPS listener {}", config.listen_https))?,
        None => Vec::new(),
    };
    let tunnel_addr = tunnel_sockets[0].local_addr()?;
    let http_addr = http_listeners[0].local_addr()?;
    let https_addr = match https_listeners.first() {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };

    let control = control::start(ControlConfig {
        data_dir: config.data_dir.clone(),
        listen_admin: config.listen_admin,
        tunnel_addr,
        workers,
    })?;
    let server_config = control.quic_server_config();
    let reset_key: Arc<[u8]> = control.quic_reset_key().into();

    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| futures_channel::mpsc::unbounded())
        .unzip();
    for inbox in &inboxes {
        let inbox = inbox.clone();
        control.subscribe(Box::new(move |snapshot| {
            let _ = inbox.unbounded_send(WorkerMsg::Snapshot(snapshot));
        }));
    }

    let mut https_listeners = https_listeners.into_iter();
    let items = http_listeners
        .into_iter()
        .zip(tunnel_sockets)
        .zip(receivers)
        .map(|((http, tunnel), inbox)| WorkerSockets {
            http,
            https: https_listeners.next(),
            tunnel,
            inbox,
        })
        .collect();
    let sender = control.sender();
    let limits = config.limits;
    let worker_inboxes = inboxes.clone();
    let metrics: Vec<Arc<EdgeMetrics>> = (0..workers).map(|_| Arc::default()).collect();
    let worker_metrics = metrics.clone();
    let clients: Vec<Arc<drain::ClientCounts>> = (0..workers).map(|_| Arc::default()).collect();
    let worker_clients = clients.clone();
    let pin = config.pin_cpus;
    let threads = runtime::spawn_workers("edge", items, pin, move |index, sockets| {
        let worker = Rc::new(Worker::new(
            index,
            limits,
            sender.clone(),
            inboxes.clone(),
            worker_metrics[index].clone(),
            worker_clients[index].clone(),
        ));
        let server_config = server_config.clone();
        let reset_key = reset_key.clone();
        let tls_config = tls_config.clone();
        async move { run_worker(worker, sockets, server_config, reset_key, tls_config).await }
    })?;

    tracing::info!(listener = "tunnel", addr = %tunnel_addr, workers, "listener bound");
    tracing::info!(listener = "http", addr = %http_addr, workers, "listener bound");
    if let Some(addr) = https_addr {
        tracing::info!(listener = "https", %addr, workers, "listener bound");
    }
    tracing::info!(listener = "admin", addr = %control.admin_addr(), "listener bound");
    let https = https_addr.map_or_else(|| "-".to_owned(), |addr| addr.to_string());
    tracing::info!(
        %http_addr,
        https_addr = %https,
        %tunnel_addr,
        admin = %control.admin_addr(),
        workers,
        "edge ready"
    );
    Ok(Edge {
        http_addr,
        https_addr,
        tunnel_addr,
        admin_addr: control.admin_addr(),
        control,
        threads,
        metrics,
        inboxes: worker_inboxes,
        clients,
    })
}

async fn run_worker(
    worker: Rc<Worker>,
    sockets: WorkerSockets,
    server_config: Arc<quinn_proto::ServerConfig>,
    reset_key: Arc<[u8]>,
    tls_config: Option<Arc<rustls::ServerConfig>>,
) {
    let endpoint = Endpoint::with_reset_key(sockets.tunnel, Some(server_config), Some(&reset_key));
    let endpoint = match endpoint {
        Ok(endpoint) => endpoint,
        Err(err) => {
            tracing::error!(
                worker = worker.index,
                "cannot start the QUIC endpoint: {err}"
            );
            return;
        }
    };
    monoio::spawn(tunnel::accept_loop(worker.clone(), endpoint.clone()));

    if let (Some(listener), Some(config)) = (sockets.https, tls_config) {
        let https_worker = worker.clone();
        monoio::spawn(accept_clients(
            worker.clone(),
            listener,
            "HTTPS",
            move |stream, peer| {
                let serve =
                    tls::serve_tls_client(https_worker.clone(), stream, peer, config.clone());
                monoio::spawn(serve);
            },
        ));
    }
    let http_worker = worker.clone();
    monoio::spawn(accept_clients(
        worker.clone(),
        sockets.http,
        "HTTP",
        move |stream, peer| {
            let serve = proxy::serve_client(http_worker.clone(), stream, peer, BytesMut::new());
            monoio::spawn(serve);
        },
    ));

    // The worker lives as long as its inbox: the accept loops end when the edge stops
    // accepting clients, while the requests in flight and the tunnels still need it.
    worker::run_inbox(worker.clone(), endpoint, sockets.inbox).await;
}

/// Accepts public connections on one of this worker's listeners and hands each to `serve`.
async fn accept_clients(
    worker: Rc<Worker>,
    listener: std::net::TcpListener,
    what: &str,
    serve: impl Fn(TcpStream, SocketAddr),
) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(
                worker = worker.index,
                "cannot adopt the {what} listener: {err}"
            );
            return;
        }
    };
    // Stopping returns from here and drops the listener: the kernel then refuses new
    // connections once every worker's listener of the group is closed.
    while let Some(accepted) = worker.stop.until(listener.accept()).await {
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                serve(stream, peer);
            }
            Err(err) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!(worker = worker.index, "{what} accept failed: {err}");
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    tracing::debug!(worker = worker.index, "{what} listener closed");
}
