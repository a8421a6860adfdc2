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
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20Z
    const BASE: i64 = 1_700_000_000_000;
    const SECOND: i64 = 1_000;

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("adit-registry-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn state(&self, now: i64) -> State {
            let store = Store::open(&self.0.join("adit.db")).unwrap();
            let addr = "127.0.0.1:7844".parse().unwrap();
            State::load_at(store, addr, "ca".into(), now).unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A tunnel created at `now` and its secret.
    fn create(state: &mut State, name: &str, now: i64) -> (Uuid, [u8; SECRET_LEN]) {
        let created = state.create_tunnel_at(name, now).unwrap();
        let secret = hex::decode(&created.secret).unwrap().try_into().unwrap();
        (created.id, secret)
    }

    /// Registers connection `index` of `connector` (which asked for `ha`) at `now`.
    fn register(
        state: &mut State,
        tunnel: (Uuid, [u8; SECRET_LEN]),
        connector: u128,
        index: u8,
        ha: u8,
        now: i64,
    ) -> Uuid {
        let request = RegisterRequest {
            tunnel_id: tunnel.0,
            secret: tunnel.1,
            connector_id: Uuid::from_u128(connector),
            conn_index: index,
            ha_connections: ha,
            version: "0.1.0".into(),
            platform: "linux-x86_64".into(),
            remote_addr: "127.0.0.1:50000".parse().unwrap(),
            worker: usize::from(index),
        };
        state.register(&request, now).unwrap().connection_id
    }

    /// Status, uptime and the last active and inactive times of `name` at `now`.
    fn status(
        state: &State,
        name: &str,
        now: i64,
    ) -> (String, u64, Option<String>, Option<String>) {
        let info = state.tunnel_info_at(name, now).unwrap();
        let times = (info.last_active_at, info.last_inactive_at);
        (info.status, info.uptime_seconds, times.0, times.1)
    }

    fn at(ms: i64) -> Option<String> {
        Some(rfc3339(ms))
    }

    #[test]
    fn status_transitions_are_recorded() {
        let dir = TempDir::new();
        let mut state = dir.state(BASE);
        let web = create(&mut state, "web", BASE);
        let t = |seconds: i64| BASE + seconds * SECOND;
        assert_eq!(
            status(&state, "web", t(1)),
            ("inactive".into(), 0, None, None)
        );

        let a0 = register(&mut state, web, 1, 0, 2, t(10));
        assert_eq!(
            status(&state, "web", t(15)),
            ("degraded".into(), 5, at(t(10)), None)
        );
        let a1 = register(&mut state, web, 1, 1, 2, t(20));
        assert_eq!(
            status(&state, "web", t(30)),
            ("active".into(), 20, at(t(10)), None)
        );

        // A second connector with fewer connections than it asked for.
        let b0 = register(&mut state, web, 2, 0, 2, t(40));
        assert_eq!(status(&state, "web", t(40)).0, "degraded");
        // Draining, it no longer counts as a connector that routes.
        state.unregister(b0, t(50));
        assert_eq!(status(&state, "web", t(50)).0, "active");

        state.closed(a0, t(60));
        assert_eq!(
            status(&state, "web", t(60)),
            ("degraded".into(), 50, at(t(10)), None)
        );
        state.closed(a1, t(70));
        let inactive = ("inactive".into(), 0, at(t(10)), at(t(70)));
        assert_eq!(status(&state, "web", t(80)), inactive);
        // Closing a draining connection of an inactive tunnel changes no times.
        state.closed(b0, t(90));
        assert_eq!(status(&state, "web", t(90)), inactive);

        let info = state.tunnel_info_at("web", t(90)).unwrap();
        let history: Vec<(Uuid, u8, Option<String>)> = info
            .history
            .iter()
            .map(|c| (c.id, c.ha_connections, c.closed_at.clone()))
            .collect();
        assert_eq!(
            history,
            vec![(b0, 2, at(t(90))), (a1, 2, at(t(70))), (a0, 2, at(t(60)))]
        );
        assert_eq!(info.history[2].opened_at, rfc3339(t(10)));
        assert_eq!(info.history[2].origin_addr, "127.0.0.1:50000");
        assert_eq!(info.connections, vec![]);

        // Unregistering the last routable connection makes the tunnel inactive at once.
        let c0 = register(&mut state, web, 3, 0, 1, t(100));
        assert_eq!(
            status(&state, "web", t(100)),
            ("active".into(), 0, at(t(100)), at(t(70)))
        );
        state.unregister(c0, t(110));
        assert_eq!(
            status(&state, "web", t(120)),
            ("inactive".into(), 0, at(t(100)), at(t(110)))
        );
        let live = &state.tunnel_info_at("web", t(120)).unwrap().connections;
        assert_eq!(
            (live.len(), live[0].draining, live[0].ha_connections),
            (1, true, 1)
        );
    }

    #[test]
    fn cleanup_drops_records_that_are_not_live() {
        let dir = TempDir::new();
        let mut state = dir.state(BASE);
        let web = create(&mut state, "web", BASE);
        let other = create(&mut state, "other", BASE);
        let first = register(&mut state, web, 1, 0, 2, BASE + 1);
        register(&mut state, web, 1, 1, 2, BASE + 2);
        register(&mut state, other, 2, 0, 1, BASE + 3);
        state.closed(first, BASE + 4);
        register(&mut state, web, 1, 0, 2, BASE + 5);

        let cleaned = state.cleanup("web").unwrap();
        assert_eq!(cleaned.tunnel_id, web.0);
        assert_eq!(cleaned.removed, 1);
        let info = state.tunnel_info_at("web", BASE + 6).unwrap();
        assert_eq!((info.connections.len(), info.history.len()), (2, 0));
        assert_eq!(state.cleanup("web").unwrap().removed, 0);
        assert_eq!(state.cleanup("other").unwrap().removed, 0);
        let err = state.cleanup("nope").unwrap_err();
        assert_eq!(
            (err.status(), err.to_string()),
            (404, "tunnel nope does not exist".into())
        );
    }

    #[test]
    fn stale_records_are_closed_at_start() {
        let dir = TempDir::new();
        let (live, draining) = {
            let mut state = dir.state(BASE);
            let web = create(&mut state, "web", BASE);
            create(&mut state, "idle", BASE);
            let live = register(&mut state, web, 1, 0, 1, BASE + SECOND);
            let draining = register(&mut state, web, 2, 0, 1, BASE + SECOND);
            state.unregister(draining, BASE + 2 * SECOND);
            (live, draining)
        };

        let restart = BASE + 60 * SECOND;
        let state = dir.state(restart);
        let info = state.tunnel_info_at("web", restart + SECOND).unwrap();
        assert_eq!(info.status, "inactive");
        assert_eq!(info.uptime_seconds, 0);
        assert_eq!(info.last_active_at, at(BASE + SECOND));
        assert_eq!(info.last_inactive_at, at(restart));
        assert_eq!(info.connections, vec![]);
        let mut closed: Vec<(Uuid, Option<String>)> = info
            .history
            .iter()
            .map(|c| (c.id, c.closed_at.clone()))
            .collect();
        closed.sort();
        let mut expected = vec![(live, at(restart)), (draining, at(restart))];
        expected.sort();
        assert_eq!(closed, expected);
        // A tunnel with no open records keeps its times.
        assert_eq!(
            status(&state, "idle", restart),
            ("inactive".into(), 0, None, None)
        );
    }

    #[test]
    fn forced_delete_of_an_active_tunnel() {
        let dir = TempDir::new();
        let mut state = dir.state(BASE);
        let web = create(&mut state, "web", BASE);
        register(&mut state, web, 1, 0, 1, BASE + SECOND);
        let err = state
            .delete_tunnel_at("web", false, BASE + 2 * SECOND)
            .unwrap_err();
        assert_eq!(err.status(), 409);
        state
            .delete_tunnel_at("web", true, BASE + 3 * SECOND)
            .unwrap();

        let query = api::ListQuery {
            show_deleted: true,
            ..api::ListQuery::default()
        };
        let listed = state.list_tunnels_at(&query, BASE + 4 * SECOND).unwrap();
        let deleted = &listed.tunnels[0];
        assert_eq!(deleted.status, "deleted");
        assert_eq!(deleted.deleted_at, at(BASE + 3 * SECOND));
        assert_eq!(deleted.last_active_at, at(BASE + SECOND));
        assert_eq!(deleted.last_inactive_at, at(BASE + 3 * SECOND));
        let listed = state
            .list_tunnels_at(&api::ListQuery::default(), BASE)
            .unwrap();
        assert_eq!(listed.total, 0);
    }

    #[test]
    fn deleted_tunnels_answer_info() {
        let dir = TempDir::new();
        let mut state = dir.state(BASE);
        let old = create(&mut state, "web", BASE);
        state.add_route("web", "web.test").unwrap();
        let conn = register(&mut state, old, 1, 0, 1, BASE + SECOND);
        state.handle_at(
            ControlMsg::Closed {
                connection_id: conn,
            },
            BASE + 2 * SECOND,
        );
        state
            .delete_tunnel_at("web", false, BASE + 3 * SECOND)
            .unwrap();

        // By id, and by name while no live tunnel has the name.
        let info = state
            .tunnel_info_at(&old.0.to_string(), BASE + 4 * SECOND)
            .unwrap();
        assert_eq!(
            state.tunnel_info_at("web", BASE + 4 * SECOND).unwrap(),
            info
        );
        assert_eq!((info.id, info.name.as_str()), (old.0, "web"));
        assert_eq!(info.status, "deleted");
        assert_eq!(info.deleted_at, at(BASE + 3 * SECOND));
        assert_eq!(info.uptime_seconds, 0);
        assert_eq!(info.last_active_at, at(BASE + SECOND));
        assert_eq!(info.last_inactive_at, at(BASE + 2 * SECOND));
        assert_eq!(info.connections, []);
        assert_eq!(info.routes, Vec::<String>::new());
        let history: Vec<_> = info
            .history
            .iter()
            .map(|c| (c.id, c.closed_at.clone()))
            .collect();
        assert_eq!(history, [(conn, at(BASE + 2 * SECOND))]);

        // The name goes to the live tunnel again, then to the newest deleted one.
        let new = create(&mut state, "web", BASE + 5 * SECOND);
        let info = state.tunnel_info_at("web", BASE + 6 * SECOND).unwrap();
        assert_eq!(
            (info.id, info.status.as_str(), info.deleted_at),
            (new.0, "inactive", None)
        );
        state
            .delete_tunnel_at("web", false, BASE + 7 * SECOND)
            .unwrap();
        let info = state.tunnel_info_at("web", BASE + 8 * SECOND).unwrap();
        assert_eq!((info.id, info.deleted_at), (new.0, at(BASE + 7 * SECOND)));
        let info = state
            .tunnel_info_at(&old.0.to_string(), BASE + 8 * SECOND)
            .unwrap();
        assert_eq!(info.deleted_at, at(BASE + 3 * SECOND));

        // Everything else still wants a live tunnel.
        let err = state.cleanup("web").unwrap_err();
        assert_eq!(err.to_string(), "tunnel web does not exist");
        let err = state.tunnel_info_at("gone", BASE).unwrap_err();
        assert_eq!(
            (err.status(), err.to_string()),
            (404, "tunnel gone does not exist".into())
        );
    }

    #[test]
    fn listing_through_the_store() {
        let dir = TempDir::new();
        let mut state = dir.state(BASE);
        let hour = 3_600 * SECOND;
        let old = create(&mut state, "old", BASE);
        let new = create(&mut state, "new", BASE + 24 * hour);
        create(&mut state, "idle", BASE + 48 * hour);
        register(&mut state, old, 1, 0, 1, BASE + hour);
        register(&mut state, new, 2, 0, 2, BASE + 49 * hour);
        let now = BASE + 50 * hour;

        let names = |query: &str| -> Vec<String> {
            let query = crate::control::query::parse_query(query).unwrap();
            let listed = state.list_tunnels_at(&query, now).unwrap();
            listed.tunnels.into_iter().map(|t| t.name).collect()
        };
        assert_eq!(names(""), ["old", "new", "idle"]);
        assert_eq!(names("status=active"), ["old", "new"]);
        assert_eq!(names("status=degraded"), ["new"]);
        assert_eq!(names("status=inactive"), ["idle"]);
        assert_eq!(names("min_uptime=2h"), ["old"]);
        assert_eq!(names("min_uptime=1h"), ["old", "new"]);
        assert_eq!(names("created_after=2023-11-15T00:00:00Z"), ["new", "idle"]);
        assert_eq!(names("created_before=2023-11-15T00:00:00Z"), ["old"]);
        assert_eq!(names("sort_by=uptime"), ["old", "new", "idle"]);
        assert_eq!(names("sort_by=uptime&invert_sort"), ["idle", "new", "old"]);
        assert_eq!(names("sort_by=name"), ["idle", "new", "old"]);
        assert_eq!(names("search=E&per_page=1&page=2"), ["idle"]);

        let listed = state
            .list_tunnels_at(&api::ListQuery::default(), now)
            .unwrap();
        assert_eq!(listed.tunnels[0].uptime_seconds, 49 * 3_600);
        assert_eq!(listed.tunnels[1].uptime_seconds, 3_600);

        let bad = api::ListQuery {
            min_uptime: Some("long".into()),
            ..api::ListQuery::default()
        };
        let err = state.list_tunnels_at(&bad, now).unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(
            err.to_string(),
            "min_uptime: expected a duration like 90s, 10m or 2h, not \"long\""
        );
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn errors_map_to_statuses() {
        assert_eq!(OpError::Invalid("x".into()).status(), 400);
        assert_eq!(OpError::NotFound("x".into()).status(), 404);
        assert_eq!(OpError::Conflict("x".into()).status(), 409);
        let store = OpError::Store(StoreError::Corrupt("x".into()));
        assert_eq!(store.status(), 500);
    }
}
