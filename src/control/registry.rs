//! The control plane's state behind one lock: the store, an in-memory copy of what routing
//! needs (tunnels and routes), the live connections, and the snapshot subscribers.
//!
//! Both the registration thread and the admin API change it; every change that affects
//! routing ends with [`State::publish`], which hands each subscriber a fresh [`Snapshot`]
//! built from memory alone, so a failing database never stops a publish.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::list::{self, LiveConnection, LiveSummary, Status};
use super::query::QueryError;
use super::store::{self, ConnectionRecord, Store, StoreError, TunnelKey, TunnelRecord};
use super::{api, pki, validate, ControlMsg, Refusal, RegisterRequest, Registration, Snapshot};
use crate::tunnel::credentials::SECRET_LEN;
use crate::tunnel::frame::RefuseCode;

/// Snapshot worker masks are a `u64`.
const MAX_WORKERS: usize = 64;

/// Closed connections shown in a tunnel's info.
const HISTORY_LEN: usize = 50;

pub type Subscriber = Box<dyn Fn(Arc<Snapshot>) + Send>;

/// The state, shared by the control plane's threads.
pub struct Shared(Mutex<State>);

impl Shared {
    pub fn new(state: State) -> Self {
        Shared(Mutex::new(state))
    }

    /// A panic elsewhere while holding the lock leaves the state consistent enough to go
    /// on: every change is a store call followed by in-memory updates that cannot fail.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why an operator's request failed, mapped to an HTTP status by the admin API.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

impl From<QueryError> for OpError {
    fn from(e: QueryError) -> Self {
        OpError::Invalid(e.0)
    }
}

impl OpError {
    pub fn status(&self) -> u16 {
        match self {
            OpError::Invalid(_) => 400,
            OpError::NotFound(_) => 404,
            OpError::Conflict(_) => 409,
            OpError::Store(_) => 500,
        }
    }
}

/// A registered connection.
struct Live {
    record: ConnectionRecord,
    draining: bool,
}

/// What adding a route did, with the validated hostname.
pub struct RouteOutcome {
    pub hostname: String,
    pub tunnel_id: Uuid,
    pub created: bool,
}

pub struct State {
    store: Store,
    tunnel_addr: SocketAddr,
    ca_pem: String,
    tunnels: HashSet<Uuid>,
    routes: HashMap<String, Uuid>,
    live: HashMap<Uuid, Live>,
    /// Tunnels deleted while this edge ran, so workers close their connections.
    deleted: HashSet<Uuid>,
    subscribers: Vec<Subscriber>,
    current: Arc<Snapshot>,
}

impl State {
    /// Loads routing state from `store`, after closing connection records a previous run
    /// left open.
    pub fn load(store: Store, tunnel_addr: SocketAddr, ca_pem: String) -> Result<Self, StoreError> {
        Self::load_at(store, tunnel_addr, ca_pem, now_ms())
    }

    fn load_at(
        mut store: Store,
        tunnel_addr: SocketAddr,
        ca_pem: String,
        now: i64,
    ) -> Result<Self, StoreError> {
        let stale = store.close_stale_connections(now)?;
        if stale > 0 {
            tracing::info!(
                count = stale,
                "closed connection records left by the previous run"
            );
        }
        let tunnels = store.tunnels()?.into_iter().map(|t| t.id).collect();
        let routes = store
            .routes()?
            .into_iter()
            .map(|r| (r.hostname, r.tunnel_id))
            .collect();
        let mut state = State {
            store,
            tunnel_addr,
            ca_pem,
            tunnels,
            routes,
            live: HashMap::new(),
            subscribers: Vec::new(),
            current: Arc::new(Snapshot::default()),
            deleted: HashSet::new(),
        };
        state.current = Arc::new(state.build_snapshot());
        Ok(state)
    }

    /// Adds a subscriber and hands it the current snapshot. `publish` runs under the state
    /// lock, so it must not call back into the control plane.
    pub fn subscribe(&mut self, publish: Subscriber) {
        publish(self.current.clone());
        self.subscribers.push(publish);
    }

    pub fn handle(&mut self, msg: ControlMsg) {
        self.handle_at(msg, now_ms());
    }

    fn handle_at(&mut self, msg: ControlMsg, now: i64) {
        match msg {
            ControlMsg::Register { request, reply } => {
                let result = self.register(&request, now);
                let connection_id = result.as_ref().ok().map(|r| r.connection_id);
                // The worker gave up waiting: the connection is gone, so is its record.
                if reply.send(result).is_err() {
                    if let Some(id) = connection_id {
                        tracing::debug!(connection = %id, "registration reply not delivered");
                        self.closed(id, now);
                    }
                }
            }
            ControlMsg::Unregister { connection_id } => self.unregister(connection_id, now),
            ControlMsg::Closed { connection_id } => self.closed(connection_id, now),
        }
    }

    fn register(&mut self, request: &RegisterRequest, now: i64) -> Result<Registration, Refusal> {
        let refuse = |code, message: String| Refusal { code, message };
        if request.worker >= MAX_WORKERS {
            return Err(refuse(
                RefuseCode::Unavailable,
                format!("edge worker {} is out of range", request.worker),
            ));
        }
        let unavailable = |e: StoreError| {
            tracing::warn!(error = %e, "registration: database call failed");
            refuse(RefuseCode::Unavailable, "edge database unavailable".into())
        };

        let tunnel = self
            .store
            .tunnel(TunnelKey::Id(request.tunnel_id))
            .map_err(unavailable)?
            .ok_or_else(|| {
                let message = format!("tunnel {} does not exist", request.tunnel_id);
                tracing::warn!(remote = %request.remote_addr, "registration refused: {message}");
                refuse(RefuseCode::UnknownTunnel, message)
            })?;
        let hash = pki::secret_hash(&request.secret);
        if !pki::constant_time_eq(&hash, &tunnel.secret_hash) {
            let message = "tunnel secret does not match".to_owned();
            tracing::warn!(
                tunnel = %tunnel.name,
                remote = %request.remote_addr,
                "registration refused: {message}"
            );
            return Err(refuse(RefuseCode::BadSecret, message));
        }

        let record = ConnectionRecord {
            id: Uuid::new_v4(),
            tunnel_id: tunnel.id,
            connector_id: request.connector_id,
            conn_index: request.conn_index,
            edge_worker: request.worker,
            remote_addr: request.remote_addr.to_string(),
            version: request.version.clone(),
            platform: request.platform.clone(),
            ha_connections: request.ha_connections,
            opened_at: now,
            closed_at: None,
        };
        self.store.open_connection(&record).map_err(unavailable)?;
        tracing::info!(
            tunnel = %tunnel.name,
            tunnel_id = %tunnel.id,
            connection = %record.id,
            connector = %record.connector_id,
            index = record.conn_index,
            worker = record.edge_worker,
            remote = %record.remote_addr,
            "connection registered"
        );

        let registration = Registration {
            connection_id: record.id,
            tunnel_name: tunnel.name,
        };
        let was_routable = self.routable(tunnel.id);
        self.live.insert(
            record.id,
            Live {
                record,
                draining: false,
            },
        );
        self.record_transition(tunnel.id, was_routable, now);
        self.publish();
        Ok(registration)
    }

    fn unregister(&mut self, id: Uuid, now: i64) {
        match self.live.get_mut(&id) {
            Some(live) if !live.draining => {
                live.draining = true;
                let tunnel = live.record.tunnel_id;
                tracing::debug!(connection = %id, "connection draining");
                self.record_transition(tunnel, true, now);
                self.publish();
            }
            Some(_) => {}
            None => tracing::debug!(connection = %id, "unregister for an unknown connection"),
        }
    }

    fn closed(&mut self, id: Uuid, now: i64) {
        // The record is closed even when the live entry is already gone (a forced delete).
        if let Err(e) = self.store.close_connection(id, now) {
            tracing::warn!(connection = %id, error = %e, "could not record a closed connection");
        }
        if let Some(live) = self.live.remove(&id) {
            if !live.draining {
                self.record_transition(live.record.tunnel_id, true, now);
            }
            tracing::info!(
                connection = %id,
                tunnel_id = %live.record.tunnel_id,
                connector = %live.record.connector_id,
                index = live.record.conn_index,
                worker = live.record.edge_worker,
                "connection closed"
            );
            self.publish();
        }
    }

    /// Whether the tunnel has a live connection that is not draining: whether it is active.
    fn routable(&self, tunnel: Uuid) -> bool {
        self.live
            .values()
            .any(|live| live.record.tunnel_id == tunnel && !live.draining)
    }

    /// Records in the store when the tunnel became active or inactive, given whether it
    /// was active before the change just made. The live state stays the truth when the
    /// database fails, so a failure is only logged.
    fn record_transition(&mut self, tunnel: Uuid, was_routable: bool, now: i64) {
        let routable = self.routable(tunnel);
        let recorded = match (was_routable, routable) {
            (false, true) => self.store.set_last_active(tunnel, now),
            (true, false) => self.store.set_last_inactive(tunnel, now),
            _ => return,
        };
        let state = if routable { "active" } else { "inactive" };
        tracing::debug!(tunnel_id = %tunnel, "tunnel became {state}");
        if let Err(e) = recorded {
            tracing::warn!(tunnel_id = %tunnel, error = %e, "could not record a tunnel {state}");
        }
    }

    /// Creates a tunnel with a fresh secret; the answer is the only place the secret appears.
    pub fn create_tunnel(&mut self, name: &str) -> Result<api::CreatedTunnel, OpError> {
        self.create_tunnel_at(name, now_ms())
    }

    fn create_tunnel_at(&mut self, name: &str, now: i64) -> Result<api::CreatedTunnel, OpError> {
        validate::tunnel_name(name).map_err(OpError::Invalid)?;
        let mut secret = [0u8; SECRET_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        let record = TunnelRecord {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            secret_hash: pki::secret_hash(&secret),
            created_at: now,
            deleted_at: None,
            last_active_at: None,
            last_inactive_at: None,
        };
        match self.store.create_tunnel(&record) {
            Err(StoreError::NameTaken(name)) => {
                return Err(OpError::Conflict(format!(
                    "a tunnel named {name:?} already exists"
                )))
            }
            other => other?,
        }
        tracing::info!(tunnel = %record.name, tunnel_id = %record.id, "tunnel created");

        self.tunnels.insert(record.id);
        self.publish();
        Ok(api::CreatedTunnel {
            id: record.id,
            name: record.name,
            created_at: rfc3339(record.created_at),
            secret: hex::encode(secret),
            edge_addr: self.tunnel_addr,
            edge_ca: self.ca_pem.clone(),
        })
    }

    pub fn add_route(&mut self, tunnel: &str, hostname: &str) -> Result<RouteOutcome, OpError> {
        let tunnel = self.find(tunnel)?;
        let hostname = validate::hostname(hostname).map_err(OpError::Invalid)?;
        let created = match self.store.add_route(&hostname, tunnel.id, now_ms())? {
            store::RouteAdded::Created => true,
            store::RouteAdded::Unchanged => false,
            store::RouteAdded::Taken { tunnel_id } => {
                let owner = match self.store.tunnel(TunnelKey::Id(tunnel_id))? {
                    Some(owner) => format!("{} ({tunnel_id})", owner.name),
                    None => tunnel_id.to_string(),
                };
                return Err(OpError::Conflict(format!(
                    "hostname {hostname} is already routed to tunnel {owner}"
                )));
            }
        };
        if created {
            tracing::info!(hostname = %hostname, tunnel = %tunnel.name, "route added");
            self.routes.insert(hostname.clone(), tunnel.id);
            self.publish();
        }
        Ok(RouteOutcome {
            hostname,
            tunnel_id: tunnel.id,
            created,
        })
    }

    /// Deletes a tunnel and its routes. Refused while it has live connections unless
    /// `force`, which also stops routing to them at once.
    pub fn delete_tunnel(&mut self, tunnel: &str, force: bool) -> Result<Uuid, OpError> {
        self.delete_tunnel_at(tunnel, force, now_ms())
    }

    fn delete_tunnel_at(&mut self, tunnel: &str, force: bool, now: i64) -> Result<Uuid, OpError> {
        let tunnel = self.find(tunnel)?;
        let live = self.live_count(tunnel.id);
        if live > 0 && !force {
            return Err(OpError::Conflict(format!(
                "tunnel {} has {live} live connection(s); stop its connectors first \
                 or delete with force",
                tunnel.name
            )));
        }
        let was_routable = self.routable(tunnel.id);
        self.store.delete_tunnel(tunnel.id, now)?;
        tracing::info!(tunnel = %tunnel.name, tunnel_id = %tunnel.id, "tunnel deleted");

        self.tunnels.remove(&tunnel.id);
        self.deleted.insert(tunnel.id);
        self.routes.retain(|_, id| *id != tunnel.id);
        self.live
            .retain(|_, live| live.record.tunnel_id != tunnel.id);
        self.record_transition(tunnel.id, was_routable, now);
        self.publish();
        Ok(tunnel.id)
    }

    /// One page of the tunnels matching `query`.
    pub fn list_tunnels(&self, query: &api::ListQuery) -> Result<api::TunnelList, OpError> {
        self.list_tunnels_at(query, now_ms())
    }

    fn list_tunnels_at(
        &self,
        query: &api::ListQuery,
        now: i64,
    ) -> Result<api::TunnelList, OpError> {
        let records = self.store.tunnels_with_deleted()?;
        Ok(list::list(&records, &self.summaries(), query, now)?)
    }

    pub fn tunnel_info(&self, tunnel: &str) -> Result<api::TunnelInfo, OpError> {
        self.tunnel_info_at(tunnel, now_ms())
    }

    /// A deleted tunnel answers too (see [`api::TunnelInfo`]): by id always, by name when no
    /// live tunnel has it.
    fn tunnel_info_at(&self, tunnel: &str, now: i64) -> Result<api::TunnelInfo, OpError> {
        let tunnel = self
            .store
            .tunnel_or_deleted(TunnelKey::parse(tunnel))?
            .ok_or_else(|| OpError::NotFound(format!("tunnel {tunnel} does not exist")))?;
        let deleted = tunnel.deleted_at.is_some();
        // A forced delete leaves connections live until the workers close them; they no
        // longer belong to the tunnel.
        let mut connections: Vec<&Live> = self
            .live
            .values()
            .filter(|live| !deleted && live.record.tunnel_id == tunnel.id)
            .collect();
        connections.sort_by_key(|live| {
            let r = &live.record;
            (r.connector_id, r.conn_index, r.opened_at, r.id)
        });
        let status = match deleted {
            true => Status::Deleted,
            false => {
                self.summaries()
                    .get(&tunnel.id)
                    .copied()
                    .unwrap_or_default()
                    .status
            }
        };
        let history = self.store.closed_connections(tunnel.id, HISTORY_LEN)?;
        let mut routes: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, id)| !deleted && **id == tunnel.id)
            .map(|(host, _)| host.clone())
            .collect();
        routes.sort();

        let uptime = list::uptime_ms(&tunnel, status, now) / 1000;
        Ok(api::TunnelInfo {
            id: tunnel.id,
            name: tunnel.name,
            created_at: rfc3339(tunnel.created_at),
            deleted_at: tunnel.deleted_at.map(rfc3339),
            status: status.as_str().to_owned(),
            uptime_seconds: u64::try_from(uptime).unwrap_or(0),
            last_active_at: tunnel.last_active_at.map(rfc3339),
            last_inactive_at: tunnel.last_inactive_at.map(rfc3339),
            connections: connections
                .into_iter()
                .map(|live| connection_info(&live.record, live.draining))
                .collect(),
            history: history.iter().map(|r| connection_info(r, false)).collect(),
            routes,
        })
    }

    /// Drops the tunnel's connection records that are not live; returns how many.
    pub fn cleanup(&mut self, tunnel: &str) -> Result<api::CleanedUp, OpError> {
        let tunnel = self.find(tunnel)?;
        let keep: Vec<Uuid> = self
            .live
            .values()
            .filter(|live| live.record.tunnel_id == tunnel.id)
            .map(|live| live.record.id)
            .collect();
        let removed = self.store.remove_connections(tunnel.id, &keep)?;
        tracing::debug!(tunnel = %tunnel.name, removed, "connection records dropped");
        Ok(api::CleanedUp {
            tunnel_id: tunnel.id,
            removed,
        })
    }

    /// Every tunnel with live connections, summed up.
    fn summaries(&self) -> HashMap<Uuid, LiveSummary> {
        list::summarize(self.live.values().map(|live| LiveConnection {
            tunnel_id: live.record.tunnel_id,
            connector_id: live.record.connector_id,
            ha_connections: live.record.ha_connections,
            draining: live.draining,
        }))
    }

    pub fn routes(&self) -> Result<Vec<api::Route>, OpError> {
        Ok(self
            .store
            .routes()?
            .into_iter()
            .map(|r| api::Route {
                hostname: r.hostname,
                tunnel_id: r.tunnel_id,
                tunnel_name: r.tunnel_name,
            })
            .collect())
    }

    fn find(&self, tunnel: &str) -> Result<TunnelRecord, OpError> {
        self.store
            .tunnel(TunnelKey::parse(tunnel))?
            .ok_or_else(|| OpError::NotFound(format!("tunnel {tunnel} does not exist")))
    }

    fn live_count(&self, tunnel: Uuid) -> usize {
        let of_tunnel = |live: &&Live| live.record.tunnel_id == tunnel;
        self.live.values().filter(of_tunnel).count()
    }

    fn publish(&mut self) {
        self.current = Arc::new(self.build_snapshot());
        for publish in &self.subscribers {
            publish(self.current.clone());
        }
    }

    fn build_snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for &tunnel in &self.tunnels {
            snapshot.insert_tunnel(tunnel);
        }
        for &tunnel in &self.deleted {
            snapshot.mark_deleted(tunnel);
        }
        for (hostname, &tunnel) in &self.routes {
            snapshot.insert_route(hostname, tunnel);
        }

        let mut masks: HashMap<Uuid, u64> = HashMap::new();
        let routable = self.live.values().filter(|live| !live.draining);
        for live in routable.filter(|live| live.record.edge_worker < MAX_WORKERS) {
            *masks.entry(live.record.tunnel_id).or_default() |= 1 << live.record.edge_worker;
        }
        for (tunnel, mask) in masks {
            snapshot.set_workers(tunnel, mask);
        }
        snapshot
    }
}

fn connection_info(r: &ConnectionRecord, draining: bool) -> api::ConnectionInfo {
    api::ConnectionInfo {
        id: r.id,
        connector_id: r.connector_id,
        conn_index: r.conn_index,
        ha_connections: r.ha_connections,
        edge_worker: r.edge_worker,
        opened_at: rfc3339(r.opened_at),
        closed_at: r.closed_at.map(rfc3339),
        version: r.version.clone(),
        platform: r.platform.clone(),
        origin_addr: r.remote_addr.clone(),
        draining,
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as RFC 3339 UTC, to the second.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests;
