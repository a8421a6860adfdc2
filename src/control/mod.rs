//! The edge's control plane. It runs on its own threads, never on a data-plane worker,
//! because database calls block.
//!
//! It owns the store (tunnels, routes, hashed secrets, connection history), the certificate
//! authority and the admin API, answers registrations sent by the workers over a channel,
//! and publishes an immutable [`Snapshot`] of routes and live connections to every worker
//! whenever either changes.

pub mod snapshot;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use crate::tunnel::credentials::{Credentials, SECRET_LEN};
use crate::tunnel::frame::RefuseCode;

pub use snapshot::Snapshot;

/// What the control plane needs to start.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub data_dir: PathBuf,
    pub listen_admin: SocketAddr,
    /// The tunnel listener's address, written into credentials files.
    pub tunnel_addr: SocketAddr,
    /// Number of data-plane workers (snapshot bitmasks hold at most 64).
    pub workers: usize,
}

/// A worker asks the control plane to register one connection.
#[derive(Debug)]
pub struct RegisterRequest {
    pub tunnel_id: Uuid,
    pub secret: [u8; SECRET_LEN],
    pub connector_id: Uuid,
    pub conn_index: u8,
    pub version: String,
    pub platform: String,
    /// The connector's address as the edge sees it.
    pub remote_addr: SocketAddr,
    /// The edge worker that owns the connection.
    pub worker: usize,
}

#[derive(Debug, Clone)]
pub struct Registration {
    pub connection_id: Uuid,
    pub tunnel_name: String,
}

#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: RefuseCode,
    pub message: String,
}

/// Messages from the data-plane workers.
#[derive(Debug)]
#[non_exhaustive]
pub enum ControlMsg {
    Register {
        request: RegisterRequest,
        reply: futures_channel::oneshot::Sender<Result<Registration, Refusal>>,
    },
    /// The connector asked to stop receiving new streams on this connection.
    Unregister { connection_id: Uuid },
    /// The connection is gone.
    Closed { connection_id: Uuid },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(String),
    #[error("certificates: {0}")]
    Pki(String),
    #[error("admin listener {addr}: {source}")]
    AdminListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// A cheap, cloneable handle to the running control plane.
#[derive(Clone)]
pub struct ControlHandle {}

/// Opens or creates the data directory (database, CA and edge certificate, admin token),
/// logs where each is at info, starts the admin API and the registration thread.
pub fn start(config: ControlConfig) -> Result<ControlHandle, ControlError> {
    let _ = config;
    todo!()
}

impl ControlHandle {
    /// Where workers send [`ControlMsg`]s.
    pub fn sender(&self) -> crossbeam_channel::Sender<ControlMsg> {
        todo!()
    }

    /// QUIC server config with the edge certificate.
    pub fn quic_server_config(&self) -> Arc<quinn_proto::ServerConfig> {
        todo!()
    }

    /// PEM of the CA that signed the edge certificate.
    pub fn ca_pem(&self) -> String {
        todo!()
    }

    /// The admin API's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        todo!()
    }

    pub fn admin_token(&self) -> String {
        todo!()
    }

    /// Calls `publish` with the current snapshot now and with every new one after.
    pub fn subscribe(&self, publish: Box<dyn Fn(Arc<Snapshot>) + Send>) {
        let _ = publish;
        todo!()
    }

    /// Creates a tunnel directly (for `adit quick`), returning its credentials.
    pub fn create_tunnel(&self, name: &str) -> Result<Credentials, ControlError> {
        let _ = name;
        todo!()
    }

    /// Routes `hostname` to the tunnel named or identified by `tunnel`.
    pub fn route(&self, tunnel: &str, hostname: &str) -> Result<(), ControlError> {
        let _ = (tunnel, hostname);
        todo!()
    }
}
