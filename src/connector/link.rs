//! One of the connector's connections to the edge: dial, register on a control stream,
//! serve streams, and dial again with jittered exponential backoff when it drops. A
//! connection that registers on a crowded edge worker is dialed again at once from a new
//! source port (see `balance.rs`).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use uuid::Uuid;

use super::balance::{self, LinkEndpoints, Placement, CLOSE_REBALANCE};
use super::drain::{self, LinkEntry};
use super::serve::{serve_connection, serve_counted, Local};
use crate::quic::{Connection, Endpoint, QuicError, SendStream};
use crate::tunnel::credentials::SECRET_LEN;
use crate::tunnel::frame::{self, Frame, RefuseCode, Register, PROTOCOL_VERSION};
use crate::tunnel::io::{read_frame, FrameReadError};
use crate::tunnel::EDGE_SERVER_NAME;

/// How long the edge has to answer a registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// First retry delay; each failure doubles it up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(16);

/// What every link of one connector shares.
#[derive(Clone)]
pub struct LinkSettings {
    pub edge: SocketAddr,
    pub client_config: quinn_proto::ClientConfig,
    pub tunnel_id: Uuid,
    pub secret: [u8; SECRET_LEN],
    pub connector_id: Uuid,
    pub platform: String,
    /// How many connections this connector keeps open.
    pub ha_connections: u8,
    /// Where the connector's registered connections sit, shared by its worker threads.
    pub placement: std::sync::Arc<Placement>,
}

/// A connection the edge accepted, as [`connect`] returns it.
struct Registration {
    conn: Connection,
    /// The control stream's send half, which must live as long as the connection.
    control: SendStream,
    connection_id: Uuid,
    edge_worker: u16,
    edge_workers: u16,
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Quic(#[from] QuicError),
    #[error("{0}")]
    Frame(#[from] FrameReadError),
    #[error("the edge refused the connection: {message}")]
    Refused { code: RefuseCode, message: String },
    #[error("the edge sent an unexpected answer to the registration")]
    Protocol,
    #[error("the edge did not answer the registration within {REGISTER_TIMEOUT:?}")]
    Timeout,
}

/// Keeps connection `index` registered for as long as the worker runs. A refusal that
/// retrying cannot fix (unknown tunnel, wrong secret) goes to `fatal` and ends the link.
pub async fn run_link(
    local: Rc<Local>,
    endpoints: Rc<LinkEndpoints>,
    settings: Rc<LinkSettings>,
    index: u8,
    fatal: crossbeam_channel::Sender<String>,
) {
    let mut failures = 0u32;
    let mut redials = 0u32;
    while !local.stopping.get() {
        let Some(endpoint) = endpoints.get(index) else {
            return;
        };
        match connect(&endpoint, &settings, index).await {
            Ok(registration) => {
                failures = 0;
                let placed = settings.placement.enter(registration.edge_worker);
                if let Some(old) = rebalance(
                    &endpoints,
                    &settings,
                    index,
                    &registration,
                    &placed,
                    redials,
                ) {
                    redials += 1;
                    monoio::spawn(retire(local.clone(), old, registration));
                    continue;
                }
                redials = 0;
                let why = serve(&local, &settings, index, registration).await;
                drop(placed);
                if local.stopping.get() {
                    return;
                }
                if edge_stopping(&why) {
                    tracing::info!(index, "the edge is shutting down: {why}");
                } else {
                    tracing::warn!(index, "connection to the edge lost: {why}");
                }
            }
            Err(LinkError::Refused { code, message }) if !code.retryable() => {
                local.metrics.registrations_refused.inc();
                let _ = fatal.send(format!(
                    "the edge refused tunnel {}: {message}",
                    settings.tunnel_id
                ));
                return;
            }
            Err(_) if local.stopping.get() => return,
            Err(err) => {
                match err {
                    LinkError::Refused { .. } => local.metrics.registrations_refused.inc(),
                    _ => local.metrics.registrations_failed.inc(),
                }
                let edge = settings.edge;
                tracing::warn!(index, %edge, "cannot register with the edge: {err}");
            }
        }
        let delay = backoff(failures, rand::random());
        failures = failures.saturating_add(1);
        local.metrics.reconnects.inc();
        tracing::info!(
            index,
            "reconnecting to the edge in {} ms",
            delay.as_millis()
        );
        monoio::time::sleep(delay).await;
    }
}

/// Serves a connection that stays where it registered until it ends; returns why it ended.
async fn serve(
    local: &Rc<Local>,
    settings: &LinkSettings,
    index: u8,
    registration: Registration,
) -> QuicError {
    tracing::info!(
        index,
        connection = %registration.connection_id,
        edge_worker = registration.edge_worker,
        edge = %settings.edge,
        "connection registered"
    );
    let conn = registration.conn;
    // A drain that is under way unregisters this connection too.
    drain::add_link(
        local,
        LinkEntry {
            index,
            conn: conn.clone(),
            control: Some(registration.control),
        },
    );
    let served = serve_connection(local.clone(), conn.clone());
    let why = local.metrics.serving(index, &conn, served).await;
    drain::remove_link(local, index);
    why
}

/// Moves link `index` to a new source port when its connection registered on an edge worker
/// already holding another of this connector's connections while another holds none.
/// Returns the old endpoint (`Some(None)` if there was none) when it did: the connection on
/// it must then be retired with [`retire`], as the edge may already have sent it a request.
fn rebalance(
    endpoints: &LinkEndpoints,
    settings: &LinkSettings,
    index: u8,
    registration: &Registration,
    placed: &balance::Placed<'_>,
    redials: u32,
) -> Option<Option<Endpoint>> {
    let worker = registration.edge_worker;
    let ha = settings.ha_connections;
    if !balance::should_rebalance(
        &placed.others,
        worker,
        registration.edge_workers,
        ha,
        redials,
    ) {
        return None;
    }
    let old = match endpoints.renew(index) {
        Ok(old) => old,
        Err(err) => {
            tracing::debug!(index, "cannot open a new tunnel socket, staying: {err}");
            return None;
        }
    };
    tracing::debug!(
        index,
        edge_worker = worker,
        redial = redials + 1,
        "edge worker already holds a connection of this connector; dialing again from a new port"
    );
    Some(old)
}

/// Whether the edge closed the connection because it is stopping, an expected event.
fn edge_stopping(why: &QuicError) -> bool {
    use quinn_proto::ConnectionError::ApplicationClosed;
    let shutdown = quinn_proto::VarInt::from_u32(crate::edge::tunnel::CLOSE_SHUTDOWN);
    matches!(why, QuicError::Connection(ApplicationClosed(close)) if close.error_code == shutdown)
}

/// How often a retiring connection checks whether it can close, and how long it may take.
const RETIRE_TICK: Duration = Duration::from_millis(20);
const RETIRE_LIMIT: Duration = Duration::from_secs(10);

/// Takes a connection that moves to another edge worker out of service without losing what
/// the edge sent it before it learned: unregister it (the edge stops routing there), serve
/// what arrives, and close it once nothing is in flight and everything sent is acknowledged,
/// no sooner than [`drain::SETTLE`] after unregistering, and at the latest after
/// [`RETIRE_LIMIT`]. Then the old endpoint goes too.
async fn retire(local: Rc<Local>, old: Option<Endpoint>, registration: Registration) {
    let Registration { conn, control, .. } = registration;
    if let Err(err) = drain::unregister(control).await {
        tracing::debug!("cannot unregister a connection being moved: {err}");
    }
    let serving = Rc::new(Cell::new(0));
    monoio::spawn(serve_counted(local.clone(), conn.clone(), serving.clone()));
    let started = Instant::now();
    loop {
        monoio::time::sleep(RETIRE_TICK).await;
        let idle = serving.get() == 0 && conn.unacked_streams() == 0;
        let waited = started.elapsed();
        let stopping = local.stopping.get() && serving.get() == 0;
        if (idle && waited >= drain::SETTLE) || stopping || waited >= RETIRE_LIMIT {
            break;
        }
        if conn.is_closed() {
            break;
        }
    }
    conn.close(CLOSE_REBALANCE, b"rebalancing");
    if let Some(old) = old {
        old.close(CLOSE_REBALANCE, b"rebalancing");
        old.stopped().await;
    }
}

/// Dials the edge and registers.
async fn connect(
    endpoint: &Endpoint,
    settings: &LinkSettings,
    index: u8,
) -> Result<Registration, LinkError> {
    let conn = endpoint
        .connect(
            settings.client_config.clone(),
            settings.edge,
            EDGE_SERVER_NAME,
        )
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut out = BytesMut::with_capacity(128);
    frame::encode_register(
        &mut out,
        &Register {
            protocol_version: PROTOCOL_VERSION,
            tunnel_id: settings.tunnel_id,
            secret: settings.secret,
            connector_id: settings.connector_id,
            conn_index: index,
            ha_connections: settings.ha_connections,
            version: env!("CARGO_PKG_VERSION"),
            platform: &settings.platform,
        },
    );
    send.write(out.freeze())
        .await
        .map_err(|err| LinkError::Frame(err.into()))?;

    let (frame_bytes, _) =
        monoio::time::timeout(REGISTER_TIMEOUT, read_frame(&mut recv, bytes::Bytes::new()))
            .await
            .map_err(|_| LinkError::Timeout)??;
    match frame::decode(&frame_bytes) {
        Ok(Some((Frame::Registered(registered), _))) => Ok(Registration {
            conn,
            control: send,
            connection_id: registered.connection_id,
            edge_worker: registered.edge_worker,
            edge_workers: registered.edge_workers,
        }),
        Ok(Some((Frame::Refused(refused), _))) => Err(LinkError::Refused {
            code: refused.code,
            message: refused.message.to_owned(),
        }),
        _ => Err(LinkError::Protocol),
    }
}

/// Delay before retry number `failures` (0-based): exponential from `BACKOFF_BASE`,
/// capped at `BACKOFF_MAX`, with the upper half jittered by `jitter` in `[0, 1)` so many
/// connectors that lost one edge do not come back in lockstep.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_MAX);
    let half = ceiling / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 0.5), Duration::from_millis(3000));
        assert_eq!(backoff(10, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(u32::MAX, 1.0), Duration::from_secs(16));
    }
}
