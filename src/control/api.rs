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

/// The query of `GET /v1/tunnels`: every field is optional and they combine with AND.
/// As query parameters they keep these names (`?status=active&sort_by=uptime&page=2`);
/// `min_uptime` is a duration (`90s`, `10m`, `2h`), times are RFC 3339 with any offset
/// (`2026-01-31T12:00:00Z`, `2026-01-31T13:00:00+01:00`). A parameter given with an empty
/// value (`?name=`) is the same as leaving it out, so `name=` lists every tunnel; the CLI
/// refuses empty `--name`, `--name-prefix` and `--search` before asking. Unknown or
/// repeated parameters are refused with 400.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Exactly this name.
    pub name: Option<String>,
    pub name_prefix: Option<String>,
    /// `active`, `inactive` or `degraded` (degraded tunnels are also active).
    pub status: Option<String>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    pub min_uptime: Option<String>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    /// `name`, `created` (the default), `uptime` or `connections`. Names and creation times
    /// sort ascending (A to Z, oldest first), uptimes and connection counts descending (the
    /// most first); ties go by name.
    pub sort_by: Option<String>,
    /// Reverses the order `sort_by` gives, whichever it is.
    #[serde(default)]
    pub invert_sort: bool,
    #[serde(default)]
    pub show_deleted: bool,
    /// 1-based page number (default 1, so 1 to 4294967295).
    pub page: Option<u32>,
    /// Tunnels per page (default 100, at most 1000).
    pub per_page: Option<u32>,
}

/// `GET /v1/tunnels`: one page of the tunnels that match the query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelList {
    pub tunnels: Vec<TunnelSummary>,
    pub page: u32,
    pub per_page: u32,
    /// Tunnels matching the query, over all pages.
    pub total: u64,
}

/// One element of [`TunnelList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSummary {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    /// Set on deleted tunnels (listed only with `show_deleted`).
    pub deleted_at: Option<String>,
    /// `active`, `inactive`, `degraded` or `deleted`.
    pub status: String,
    /// Live connections, draining ones included.
    pub connections: usize,
    /// Distinct connectors among the live connections.
    pub connectors: usize,
    /// Seconds since the tunnel last became active; 0 when it is not active.
    pub uptime_seconds: u64,
    /// When the tunnel last became active and inactive, if ever.
    pub last_active_at: Option<String>,
    pub last_inactive_at: Option<String>,
}

/// `GET /v1/tunnels/{name-or-id}`. An id names a deleted tunnel too (status `deleted`, no
/// connections or routes, its history kept). A name means the live tunnel of that name, or,
/// when there is none, the one of that name deleted last (names are reused after deletion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    /// Set when the tunnel is deleted.
    pub deleted_at: Option<String>,
    /// `active` with at least one live, not draining connection, `degraded` when active
    /// but a connector has fewer live connections than it asked for, `deleted`, else
    /// `inactive`.
    pub status: String,
    pub uptime_seconds: u64,
    pub last_active_at: Option<String>,
    pub last_inactive_at: Option<String>,
    /// Live connections.
    pub connections: Vec<ConnectionInfo>,
    /// The most recent closed connections, newest first (at most 50).
    pub history: Vec<ConnectionInfo>,
    pub routes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub id: Uuid,
    pub connector_id: Uuid,
    pub conn_index: u8,
    /// How many connections its connector asked for.
    pub ha_connections: u8,
    pub edge_worker: usize,
    pub opened_at: String,
    /// Set on closed connections (in `history`).
    pub closed_at: Option<String>,
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

/// `200` answer to `DELETE /v1/tunnels/{name-or-id}/connections`: the tunnel's records of
/// connections that are not live were dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanedUp {
    pub tunnel_id: Uuid,
    pub removed: u64,
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
