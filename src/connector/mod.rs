//! The connector: outbound QUIC connections to the edge, ingress rules, origin proxy.
//!
//! `--ha-connections` connections are spread over the connector's workers (connection `i`
//! lives on worker `i % workers`); each connection has its own QUIC endpoint on a UDP socket
//! of its own, so the edge's `SO_REUSEPORT` hash can place each on a different edge worker
//! (see `balance.rs`). Each worker has its own pool of origin connections and serves the
//! streams of the connections it owns. The TLS settings
//! of `https://` and `unix+tls:` rules are built once, when the connector starts (a bad
//! `caPool` stops it there); each worker then keeps its own TLS session cache.
//!
//! On shutdown the main thread asks every worker to drain ([`Connector::drain`], see
//! `drain.rs`): unregister each connection, serve the streams in flight, close when they are
//! done or the grace period ends. [`Connector::shutdown`] alone closes at once.

mod balance;
pub mod config;
mod drain;
pub mod ingress;
mod link;
mod origin;
mod pool;
mod response;
mod serve;
mod tcp;
mod tls;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;
use uuid::Uuid;

use crate::metrics::connector::ConnectorMetrics;
use crate::quic;
use crate::runtime;
use crate::tunnel::credentials::Credentials;
use balance::LinkEndpoints;
use ingress::Ingress;
use link::LinkSettings;
use serve::Local;

pub use drain::{DrainOutcome, SETTLE};
pub use link::backoff;
pub use response::{origin_head, Head};

/// QUIC application close code a connector uses when it stops.
pub const CLOSE_SHUTDOWN: u32 = 3;

/// How long a worker without a registered connection lets its endpoint send close frames.
const CLOSE_TURN: std::time::Duration = std::time::Duration::from_millis(20);

/// What a connector runs with.
pub struct ConnectorConfig {
    pub credentials: Credentials,
    pub ingress: Ingress,
    pub ha_connections: u8,
    pub workers: usize,
    /// Pin worker `i` to the `i`-th CPU the process may run on.
    pub pin_cpus: bool,
    /// The edge's tunnel address; the credentials file's when `None`.
    pub edge: Option<SocketAddr>,
}

/// A running connector.
pub struct Connector {
    pub connector_id: Uuid,
    pub threads: Vec<JoinHandle<()>>,
    /// Each worker's metrics, for the metrics server to sum.
    pub metrics: Vec<Arc<ConnectorMetrics>>,
    fatal: crossbeam_channel::Receiver<String>,
    /// Each worker's inbox.
    commands: Vec<futures_channel::mpsc::UnboundedSender<WorkerCmd>>,
    drain_reports: crossbeam_channel::Receiver<drain::DrainReport>,
}

/// What the main thread tells a connector worker.
enum WorkerCmd {
    /// Unregister and wait for the streams in flight, until `deadline` at the latest.
    Drain { deadline: Instant },
    /// Close every connection and stop.
    Stop,
}

impl Connector {
    /// Receives why the connector cannot go on (the edge refused the tunnel, say).
    pub fn fatal(&self) -> &crossbeam_channel::Receiver<String> {
        &self.fatal
    }

    /// Closes every connection to the edge and waits (a bounded time) for the workers.
    pub fn shutdown(self) {
        for command in &self.commands {
            let _ = command.unbounded_send(WorkerCmd::Stop);
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Checks the origin TLS settings of every rule as [`start`] does before it connects: a
/// `caPool` that can be read and holds certificates, a valid server name.
pub fn check_origin_tls(ingress: &ingress::Ingress) -> Result<(), ingress::IngressError> {
    tls::origin_configs(ingress).map(drop)
}

/// Starts the workers, which connect and register on their own.
pub fn start(config: ConnectorConfig) -> anyhow::Result<Connector> {
    let secret = config
        .credentials
        .secret()
        .context("the credentials file's tunnel secret is not 32 hex-encoded bytes")?;
    let mut client_config = quic::client_config(&config.credentials.edge_ca)
        .context("the credentials file's edge CA is not usable")?;
    let origin_tls = Arc::new(tls::origin_configs(&config.ingress)?);
    let edge = config.edge.unwrap_or(config.credentials.edge_addr);
    if edge.ip().is_loopback() {
        client_config.transport_config(quic::loopback_transport_config());
    }
    let connector_id = Uuid::new_v4();
    let ha = config.ha_connections.max(1);
    let workers = config.workers.clamp(1, usize::from(ha));

    let settings = LinkSettings {
        edge,
        client_config,
        tunnel_id: config.credentials.tunnel_id,
        secret,
        connector_id,
        platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        ha_connections: ha,
        placement: Default::default(),
    };
    let settings = Arc::new(settings);
    let ingress = Arc::new(config.ingress);
    let (fatal_tx, fatal) = crossbeam_channel::unbounded();
    let (reports_tx, drain_reports) = crossbeam_channel::unbounded();

    // An edge on loopback is reached from loopback; otherwise the kernel picks the route.
    let local_ip = match edge.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let mut commands = Vec::with_capacity(workers);
    let mut items = Vec::with_capacity(workers);
    for index in 0..workers {
        let mut sockets = Vec::new();
        for i in (0..ha).filter(|i| usize::from(*i) % workers == index) {
            let socket = std::net::UdpSocket::bind(SocketAddr::new(local_ip, 0))
                .context("cannot bind a UDP socket for the tunnel")?;
            sockets.push((i, socket));
        }
        let (command, inbox) = futures_channel::mpsc::unbounded::<WorkerCmd>();
        commands.push(command);
        items.push((sockets, inbox));
    }

    let metrics: Vec<Arc<ConnectorMetrics>> = (0..workers).map(|_| Arc::default()).collect();
    let worker_metrics = metrics.clone();
    let pin = config.pin_cpus;
    let threads = runtime::spawn_workers("connector", items, pin, move |index, item| {
        let (sockets, inbox) = item;
        let metrics = worker_metrics[index].clone();
        let settings = settings.clone();
        let ingress = ingress.clone();
        let origin_tls = origin_tls.clone();
        let fatal = fatal_tx.clone();
        let reports = reports_tx.clone();
        async move {
            let endpoints = Rc::new(LinkEndpoints::new(local_ip));
            let mut links = Vec::with_capacity(sockets.len());
            for (i, socket) in sockets {
                if let Err(err) = endpoints.add(i, socket) {
                    let _ = fatal.send(format!("cannot start the QUIC endpoint: {err}"));
                    return;
                }
                links.push(i);
            }
            let tls = origin_tls
                .iter()
                .map(|rule| rule.as_ref().map(tls::OriginTls::for_worker))
                .collect();
            let local = Rc::new(Local {
                ingress,
                pool: Default::default(),
                stopping: Default::default(),
                tls,
                metrics,
                in_flight: Default::default(),
                links: Default::default(),
                buffers: Default::default(),
                tasks: Default::default(),
            });
            let settings = Rc::new(LinkSettings::clone(&settings));
            for i in links {
                let link = link::run_link(
                    local.clone(),
                    endpoints.clone(),
                    settings.clone(),
                    i,
                    fatal.clone(),
                );
                monoio::spawn(link);
            }
            // Runs until told to stop (or until the Connector is dropped).
            follow_commands(&local, inbox, &reports).await;
            local.stopping.set(true);
            // Parked server tasks hold `local`; they end instead of waiting for streams.
            local.tasks.close();
            // The close frames must leave before the runtime goes away. With no connection
            // registered (the edge unreachable, say) there is no one to wait for: the
            // drivers get one short turn to send what they have, no more.
            let reason = b"connector shutting down";
            if local.links.borrow().is_empty() {
                let closing = endpoints.close_all(CLOSE_SHUTDOWN, reason);
                let _ = monoio::time::timeout(CLOSE_TURN, closing).await;
            } else {
                endpoints.close_all(CLOSE_SHUTDOWN, reason).await;
            }
        }
    })?;
    tracing::info!(%connector_id, %edge, connections = ha, workers, "connector started");
    Ok(Connector {
        connector_id,
        threads,
        metrics,
        fatal,
        commands,
        drain_reports,
    })
}

/// Carries out the main thread's commands until it says stop or is gone.
async fn follow_commands(
    local: &Local,
    mut inbox: futures_channel::mpsc::UnboundedReceiver<WorkerCmd>,
    reports: &crossbeam_channel::Sender<drain::DrainReport>,
) {
    use std::pin::Pin;
    loop {
        let next =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut inbox), cx));
        match next.await {
            Some(WorkerCmd::Drain { deadline }) => {
                if drain::drain(local, deadline, reports, &mut inbox).await {
                    return;
                }
            }
            Some(WorkerCmd::Stop) | None => return,
        }
    }
}
