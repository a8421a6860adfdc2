//! The tunnel side of the edge: accept QUIC connections from connectors, register each on
//! its control stream, and keep it in this worker's table until it closes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;

use super::worker::{TunnelConn, Worker};
use crate::control::{ControlMsg, Refusal, RegisterRequest};
use crate::quic::{Connection, Endpoint, RecvStream, SendStream};
use crate::tunnel::frame::{self, Frame, RefuseCode, Refused, Registered, PROTOCOL_VERSION};
use crate::tunnel::io::{read_frame, STREAM_READ};

/// How long a new connection has to open its control stream and register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// QUIC application close codes the edge uses.
pub const CLOSE_REFUSED: u32 = 1;
pub const CLOSE_PROTOCOL: u32 = 2;
pub const CLOSE_SHUTDOWN: u32 = 3;
pub const CLOSE_DELETED: u32 = 4;

/// Accepts connections on this worker's endpoint for as long as it runs.
pub async fn accept_loop(worker: Rc<Worker>, endpoint: Endpoint) {
    while let Some(conn) = endpoint.accept().await {
        monoio::spawn(serve_connection(worker.clone(), conn));
    }
}

async fn serve_connection(worker: Rc<Worker>, conn: Connection) {
    let remote = conn.remote_address();
    let registered = monoio::time::timeout(REGISTER_TIMEOUT, register(&worker, &conn)).await;
    let (tunnel_id, tunnel_conn, mut recv) = match registered {
        Ok(Ok(registered)) => registered,
        Ok(Err(why)) => {
            tracing::debug!(%remote, "registration failed: {why}");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "no registration within {REGISTER_TIMEOUT:?}");
            conn.close(CLOSE_PROTOCOL, b"registration timed out");
            return;
        }
    };
    let connection_id = tunnel_conn.id;
    worker.add_connection(tunnel_id, tunnel_conn.clone());
    worker.metrics.registrations_registered.inc();

    // The control stream stays open for the connection's life; the only thing a connector
    // sends on it after registering is an unregistration before it shuts down.
    let served = async {
        watch_control_stream(&worker, tunnel_id, &tunnel_conn, &mut recv).await;
        conn.closed().await
    };
    let reason = (worker.metrics)
        .serving(tunnel_id, connection_id, &conn, served)
        .await;
    tracing::debug!(%remote, %connection_id, "tunnel connection closed: {reason}");

    worker.remove_connection(tunnel_id, connection_id);
    let _ = worker.control.send(ControlMsg::Closed { connection_id });
}

/// Reads the registration, asks the control plane, answers the connector.
async fn register(
    worker: &Worker,
    conn: &Connection,
) -> Result<(uuid::Uuid, Rc<TunnelConn>, RecvStream), String> {
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let (frame_bytes, _) = read_frame(&mut recv, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    let register = match frame::decode(&frame_bytes) {
        Ok(Some((Frame::Register(register), _))) => register,
        _ => {
            conn.close(CLOSE_PROTOCOL, b"expected a registration");
            return Err("first frame was not a registration".into());
        }
    };
    if register.protocol_version != PROTOCOL_VERSION {
        let message = format!(
            "connector speaks tunnel protocol {}, this edge speaks {PROTOCOL_VERSION}",
            register.protocol_version
        );
        worker.metrics.registrations_refused.inc();
        refuse(conn, &mut send, RefuseCode::Version, &message).await;
        return Err(message);
    }

    let (reply, answer) = futures_channel::oneshot::channel();
    let request = RegisterRequest {
        tunnel_id: register.tunnel_id,
        secret: register.secret,
        connector_id: register.connector_id,
        conn_index: register.conn_index,
        ha_connections: register.ha_connections,
        version: register.version.to_owned(),
        platform: register.platform.to_owned(),
        remote_addr: conn.remote_address(),
        worker: worker.index,
    };
    let tunnel_id = register.tunnel_id;
    let connector_id = register.connector_id;
    // The control plane being gone (the edge is stopping) is one more refusal the
    // connector may retry.
    let shutting_down = || Refusal {
        code: RefuseCode::Unavailable,
        message: "edge is shutting down".into(),
    };
    let answered = match worker.control.send(ControlMsg::Register { request, reply }) {
        Ok(()) => answer.await.unwrap_or_else(|_| Err(shutting_down())),
        Err(_) => Err(shutting_down()),
    };
    let registration = match answered {
        Ok(registration) => registration,
        Err(refusal) => {
            worker.metrics.registrations_refused.inc();
            refuse(conn, &mut send, refusal.code, &refusal.message).await;
            return Err(refusal.message);
        }
    };

    let mut out = BytesMut::with_capacity(64);
    let edge_version = env!("CARGO_PKG_VERSION");
    frame::encode_registered(
        &mut out,
        &Registered {
            connection_id: registration.connection_id,
            edge_worker: worker.index as u16,
            // The workers are capped well below `u16::MAX` (see `edge::MAX_WORKERS`).
            edge_workers: worker.inboxes.len() as u16,
            edge_version,
        },
    );
    if let Err(err) = send.write(out.freeze()).await {
        let _ = worker.control.send(ControlMsg::Closed {
            connection_id: registration.connection_id,
        });
        return Err(err.to_string());
    }
    // The edge never writes on the control stream again; keep the send half alive by
    // finishing it cleanly.
    let _ = send.finish();
    let tunnel_conn = Rc::new(TunnelConn {
        id: registration.connection_id,
        connector: connector_id,
        conn: conn.clone(),
        draining: Cell::new(false),
    });
    Ok((tunnel_id, tunnel_conn, recv))
}

async fn refuse(conn: &Connection, send: &mut SendStream, code: RefuseCode, message: &str) {
    let mut out = BytesMut::with_capacity(64 + message.len());
    frame::encode_refused(&mut out, &Refused { code, message });
    if send.write(out.freeze()).await.is_ok() {
        let _ = send.finish();
    }
    // Give the refusal a moment to reach the connector before the close overtakes it.
    monoio::time::sleep(Duration::from_millis(100)).await;
    conn.close(CLOSE_REFUSED, message.as_bytes());
}

/// Waits on the control stream until it ends, marking the connection draining when the
/// connector unregisters.
async fn watch_control_stream(
    worker: &Worker,
    tunnel_id: uuid::Uuid,
    tunnel_conn: &TunnelConn,
    recv: &mut RecvStream,
) {
    let mut pending = BytesMut::new();
    while let Ok(Some(chunk)) = recv.read_chunk(STREAM_READ).await {
        pending.extend_from_slice(&chunk);
        match frame::decode(&pending) {
            Ok(Some((Frame::Unregister, used))) => {
                let _ = pending.split_to(used);
                tunnel_conn.draining.set(true);
                tracing::info!(
                    connection = %tunnel_conn.id,
                    tunnel = %tunnel_id,
                    "connection unregistered: no new streams go there"
                );
                let _ = worker.control.send(ControlMsg::Unregister {
                    connection_id: tunnel_conn.id,
                });
            }
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => {
                tunnel_conn
                    .conn
                    .close(CLOSE_PROTOCOL, b"unexpected control frame");
                return;
            }
        }
    }
}
