//! The admin API's JSON bodies, shared by the edge that serves them and the CLI that reads
//! them. Times are RFC 3339 strings in UTC, to the second.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /v1/tunnels`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTunnel {
    pub name: String,
}

/// `201` answer to `POST /v1/tunnels`: everything a credentials file needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTunnel {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    /// The 32-byte tunnel secret, hex; the edge keeps only its hash.
    pub secret: String,
    pub edge_addr: std::net::SocketAddr,
    pub edge_ca: String,
}

/// One element of `GET /v1/tunnels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSummary {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    /// Live connections, draining ones included.
    pub connections: usize,
}

/// `GET /v1/tunnels/{name-or-id}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    /// `active` with at least one live, not draining connection, else `inactive`.
    pub status: String,
    pub connections: Vec<ConnectionInfo>,
    pub routes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub id: Uuid,
    pub connector_id: Uuid,
    pub conn_index: u8,
    pub edge_worker: usize,
    pub opened_at: String,
    pub version: String,
    pub platform: String,
    /// The connector's address as the edge sees it.
    pub origin_addr: String,
    pub draining: bool,
}

/// `200` answer to `DELETE /v1/tunnels/{name-or-id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: Uuid,
}

/// `POST /v1/tunnels/{name-or-id}/routes`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRoute {
    pub hostname: String,
}

/// `201` (new) or `200` (already there) answer to adding a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAdded {
    pub hostname: String,
    pub tunnel_id: Uuid,
}

/// One element of `GET /v1/routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub hostname: String,
    pub tunnel_id: Uuid,
    pub tunnel_name: String,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    pub error: String,
}
