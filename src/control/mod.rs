//! The edge's control plane. It runs on its own threads, never on a data-plane worker,
//! because database calls block.
//!
//! It owns the store (tunnels, routes, hashed secrets, connection history), the certificate
//! authority and the admin API, answers registrations sent by the workers over a channel,
//! and publishes an immutable [`Snapshot`] of routes and live connections to every worker
//! whenever either changes.

mod admin;
pub mod api;
mod dashboard;
mod list;
mod pki;
mod query;
mod registry;
pub mod snapshot;
mod store;
mod timestamp;
mod validate;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use uuid::Uuid;

use registry::{OpError, Shared, State};

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
    /// How many connections the connector keeps open in all.
    pub ha_connections: u8,
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
    #[error("cannot start a control-plane thread: {0}")]
    Thread(std::io::Error),
}

/// A cheap, cloneable handle to the running control plane.
#[derive(Clone)]
pub struct ControlHandle {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    sender: crossbeam_channel::Sender<ControlMsg>,
    identity: pki::EdgeIdentity,
    /// Built on first use, so starting the control plane never needs the QUIC layer.
    quic: OnceLock<Arc<quinn_proto::ServerConfig>>,
    admin_addr: SocketAddr,
    token: String,
    reset_key: Vec<u8>,
    /// Held for the life of the control plane: one edge per data directory.
    _lock: std::fs::File,
    tunnel_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stop_registration: crossbeam_channel::Sender<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Opens or creates the data directory (database, CA and edge certificate, admin token),
/// logs where each is at info, starts the admin API and the registration thread.
pub fn start(config: ControlConfig) -> Result<ControlHandle, ControlError> {
    if config.workers > 64 {
        return Err(ControlError::Refused(format!(
            "at most 64 data-plane workers are supported, not {}",
            config.workers
        )));
    }
    let dir = &config.data_dir;
    pki::data_dir(dir)?;
    let lock = lock_data_dir(dir)?;

    let db_path = dir.join("adit.db");
    let database =
        |e: store::StoreError| ControlError::Database(format!("{}: {e}", db_path.display()));
    let store = store::Store::open(&db_path).map_err(database)?;
    let identity = pki::edge_identity(dir)?;
    let token_path = dir.join("admin.token");
    let token = pki::admin_token(&token_path)?;
    let reset_key = pki::admin_token(&dir.join("quic-reset.key"))?;
    let reset_key = hex::decode(reset_key.as_bytes()).map_err(|_| {
        ControlError::Pki(format!(
            "{} is not hex",
            dir.join("quic-reset.key").display()
        ))
    })?;
    let state =
        State::load(store, config.tunnel_addr, identity.ca_pem.clone()).map_err(database)?;
    let shared = Arc::new(Shared::new(state));

    let listen = config.listen_admin;
    let admin_err = |source| ControlError::AdminListen {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).map_err(admin_err)?;
    let admin_addr = listener.local_addr().map_err(admin_err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let admin_thread = admin::spawn(listener, shared.clone(), token.clone(), stop.clone())
        .map_err(ControlError::Thread)?;

    let (sender, messages) = crossbeam_channel::unbounded();
    let (stop_registration, stop_rx) = crossbeam_channel::bounded(1);
    let registration_shared = shared.clone();
    let registration_thread = std::thread::Builder::new()
        .name("adit-control".into())
        .spawn(move || registration_loop(&messages, &stop_rx, &registration_shared))
        .map_err(ControlError::Thread)?;

    tracing::info!(path = %db_path.display(), "control database");
    tracing::info!(
        ca = %identity.ca_path.display(),
        cert = %identity.cert_path.display(),
        key = %identity.key_path.display(),
        "edge certificate"
    );
    tracing::info!(path = %token_path.display(), "admin token");
    tracing::info!(addr = %admin_addr, "admin API listening");

    Ok(ControlHandle {
        inner: Arc::new(Inner {
            shared,
            sender,
            identity,
            quic: OnceLock::new(),
            admin_addr,
            token,
            reset_key,
            _lock: lock,
            tunnel_addr: config.tunnel_addr,
            stop,
            stop_registration,
            threads: Mutex::new(vec![admin_thread, registration_thread]),
        }),
    })
}

/// Takes an exclusive lock on `DIR/edge.lock`, so a second edge on the same data directory
/// is refused instead of rewriting the first one's connection records.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, ControlError> {
    use std::os::fd::AsRawFd;

    let path = dir.join("edge.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ControlError::DataDir {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor this function owns; it only changes lock state.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(ControlError::Refused(format!(
            "another edge is already using the data directory {}",
            dir.display()
        )));
    }
    Ok(file)
}

/// Handles the workers' messages one at a time, until stopped.
fn registration_loop(
    messages: &crossbeam_channel::Receiver<ControlMsg>,
    stop: &crossbeam_channel::Receiver<()>,
    shared: &Shared,
) {
    loop {
        crossbeam_channel::select! {
            recv(messages) -> msg => match msg {
                Ok(msg) => shared.lock().handle(msg),
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        }
    }
}

fn control_error(e: OpError) -> ControlError {
    match e {
        OpError::Store(e) => ControlError::Database(e.to_string()),
        other => ControlError::Refused(other.to_string()),
    }
}

impl ControlHandle {
    /// Where workers send [`ControlMsg`]s.
    pub fn sender(&self) -> crossbeam_channel::Sender<ControlMsg> {
        self.inner.sender.clone()
    }

    /// QUIC server config with the edge certificate.
    pub fn quic_server_config(&self) -> Arc<quinn_proto::ServerConfig> {
        let identity = &self.inner.identity;
        self.inner
            .quic
            .get_or_init(|| {
                crate::quic::server_config(identity.chain.clone(), identity.key.clone_key())
                    .expect("the edge certificate and key were checked to form a pair at start")
            })
            .clone()
    }

    /// The key QUIC stateless resets are derived from, kept in the data directory so it
    /// survives restarts.
    pub fn quic_reset_key(&self) -> Vec<u8> {
        self.inner.reset_key.clone()
    }

    /// PEM of the CA that signed the edge certificate.
    pub fn ca_pem(&self) -> String {
        self.inner.identity.ca_pem.clone()
    }

    /// The admin API's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.inner.admin_addr
    }

    pub fn admin_token(&self) -> String {
        self.inner.token.clone()
    }

    /// Calls `publish` with the current snapshot now and with every new one after.
    /// `publish` runs on the control plane's threads while its state is locked: it should
    /// only hand the snapshot on (over a channel, say) and must not call this handle.
    pub fn subscribe(&self, publish: Box<dyn Fn(Arc<Snapshot>) + Send>) {
        self.inner.shared.lock().subscribe(publish);
    }

    /// Creates a tunnel directly (for `adit quick`), returning its credentials.
    pub fn create_tunnel(&self, name: &str) -> Result<Credentials, ControlError> {
        let created = self
            .inner
            .shared
            .lock()
            .create_tunnel(name)
            .map_err(control_error)?;
        Ok(Credentials {
            tunnel_id: created.id,
            tunnel_name: created.name,
            tunnel_secret: created.secret,
            edge_addr: self.inner.tunnel_addr,
            edge_ca: created.edge_ca,
        })
    }

    /// Routes `hostname` to the tunnel named or identified by `tunnel`.
    pub fn route(&self, tunnel: &str, hostname: &str) -> Result<(), ControlError> {
        let mut state = self.inner.shared.lock();
        state
            .add_route(tunnel, hostname)
            .map(drop)
            .map_err(control_error)
    }

    /// Stops the admin API and the registration thread and waits for them; later messages
    /// to [`ControlHandle::sender`] go unanswered. Calling it twice is harmless.
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let _ = self.inner.stop_registration.try_send(());

        // `accept` only returns for a connection, so make one.
        let wake = admin::wake_addr(self.inner.admin_addr);
        let _ = std::net::TcpStream::connect_timeout(&wake, std::time::Duration::from_secs(1));

        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    /// A running control plane on a temporary directory, stopped and removed on drop.
    struct TestEdge {
        handle: ControlHandle,
        dir: PathBuf,
        remove: bool,
    }

    impl TestEdge {
        fn start(dir: PathBuf, remove: bool) -> Self {
            let handle = start(ControlConfig {
                data_dir: dir.clone(),
                listen_admin: "127.0.0.1:0".parse().unwrap(),
                tunnel_addr: "127.0.0.1:7844".parse().unwrap(),
                workers: 4,
            })
            .unwrap();
            TestEdge {
                handle,
                dir,
                remove,
            }
        }

        fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
            let token = self.handle.admin_token();
            let auth = format!("Authorization: Bearer {token}\r\n");
            http(self.handle.admin_addr(), method, path, &auth, body)
        }
    }

    impl Drop for TestEdge {
        fn drop(&mut self) {
            self.handle.shutdown();
            if self.remove {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("adit-control-{}", Uuid::new_v4()))
    }

    fn http(
        addr: SocketAddr,
        method: &str,
        path: &str,
        extra: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    fn register(
        handle: &ControlHandle,
        tunnel_id: Uuid,
        secret: [u8; SECRET_LEN],
        worker: usize,
    ) -> Result<Registration, Refusal> {
        let (reply, mut answer) = futures_channel::oneshot::channel();
        let request = RegisterRequest {
            tunnel_id,
            secret,
            connector_id: Uuid::from_u128(42),
            conn_index: 0,
            ha_connections: 1,
            version: "0.1.0".into(),
            platform: "linux-x86_64".into(),
            remote_addr: "127.0.0.1:50000".parse().unwrap(),
            worker,
        };
        handle
            .sender()
            .send(ControlMsg::Register { request, reply })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(result) = answer.try_recv().unwrap() {
                return result;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("no registration answer within 5 s");
    }

    /// Waits until the latest snapshot satisfies `check` (messages are asynchronous).
    fn wait_for(latest: &Mutex<Option<Arc<Snapshot>>>, check: impl Fn(&Snapshot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if latest.lock().unwrap().as_deref().is_some_and(&check) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("snapshot condition not reached within 5 s");
    }

    #[test]
    fn admin_api_endpoints() {
        let edge = TestEdge::start(temp_dir(), true);
        let addr = edge.handle.admin_addr();

        let (status, body) = http(addr, "GET", "/v1/tunnels", "", None);
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!({"error": "missing or wrong admin token (send Authorization: Bearer <token>)"})
        );
        let wrong = "Authorization: Bearer nope\r\n";
        assert_eq!(http(addr, "GET", "/v1/tunnels", wrong, None).0, 401);

        let (status, created) = edge.request("POST", "/v1/tunnels", Some(json!({"name": "web"})));
        assert_eq!(status, 201);
        assert_eq!(created["name"], "web");
        assert_eq!(created["secret"].as_str().unwrap().len(), 64);
        assert_eq!(created["edge_addr"], "127.0.0.1:7844");
        assert_eq!(created["edge_ca"], edge.handle.ca_pem());
        let id = created["id"].as_str().unwrap().to_owned();

        let (status, body) = edge.request("POST", "/v1/tunnels", Some(json!({"name": "web"})));
        assert_eq!(status, 409);
        assert_eq!(
            body,
            json!({"error": "a tunnel named \"web\" already exists"})
        );
        let uuid_name = json!({"name": Uuid::new_v4().to_string()});
        let (status, body) = edge.request("POST", "/v1/tunnels", Some(uuid_name));
        assert_eq!(status, 400);
        assert_eq!(body, json!({"error": "a tunnel name may not be a UUID"}));
        let (status, body) = edge.request("POST", "/v1/tunnels", Some(json!({"nom": 1})));
        assert_eq!(status, 400);
        assert_eq!(
            body["error"],
            "invalid JSON body: missing field `name` at line 1 column 9"
        );

        let route = Some(json!({"hostname": "App.Example.com"}));
        let path = "/v1/tunnels/web/routes";
        let (status, body) = edge.request("POST", path, route.clone());
        assert_eq!(status, 201);
        assert_eq!(
            body,
            json!({"hostname": "app.example.com", "tunnel_id": id})
        );
        assert_eq!(edge.request("POST", path, route).0, 200);
        let bad = Some(json!({"hostname": "a.com:80"}));
        assert_eq!(edge.request("POST", path, bad).0, 400);

        edge.request("POST", "/v1/tunnels", Some(json!({"name": "api"})));
        let taken = Some(json!({"hostname": "app.example.com"}));
        let (status, body) = edge.request("POST", "/v1/tunnels/api/routes", taken);
        assert_eq!(status, 409);
        assert_eq!(
            body["error"],
            format!("hostname app.example.com is already routed to tunnel web ({id})")
        );

        let (status, list) = edge.request("GET", "/v1/tunnels", None);
        assert_eq!(status, 200);
        assert_eq!(list["total"], 2);
        let list = &list["tunnels"];
        assert_eq!(list[0]["name"], "web");
        assert_eq!(list[0]["connections"], 0);
        assert_eq!(list[0]["status"], "inactive");
        assert_eq!(list[1]["name"], "api");
        assert_eq!(list.as_array().unwrap().len(), 2);
        assert_eq!(list[0]["uptime_seconds"], 0);
        assert_eq!(list[0]["last_active_at"], Value::Null);
        assert_eq!(list[0]["deleted_at"], Value::Null);

        let (status, list) = edge.request("GET", "/v1/tunnels?sort_by=name&per_page=1", None);
        assert_eq!(status, 200);
        assert_eq!(
            (&list["total"], &list["page"], &list["per_page"]),
            (&json!(2), &json!(1), &json!(1))
        );
        assert_eq!(list["tunnels"][0]["name"], "api");
        let (_, list) = edge.request("GET", "/v1/tunnels?search=W%45&status=inactive", None);
        assert_eq!(list["tunnels"][0]["name"], "web");
        assert_eq!(list["total"], 1);
        let (_, list) = edge.request("GET", "/v1/tunnels?status=active", None);
        assert_eq!(
            list,
            json!({"tunnels": [], "page": 1, "per_page": 100, "total": 0})
        );
        let (status, body) = edge.request("GET", "/v1/tunnels?status=up", None);
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error": "status: expected active, inactive or degraded, not \"up\""})
        );
        let (status, body) = edge.request("GET", "/v1/tunnels?colour=red", None);
        assert_eq!(status, 400);
        assert_eq!(body, json!({"error": "unknown query parameter \"colour\""}));

        let (status, routes) = edge.request("GET", "/v1/routes", None);
        assert_eq!(status, 200);
        assert_eq!(
            routes,
            json!([{"hostname": "app.example.com", "tunnel_id": id, "tunnel_name": "web"}])
        );

        let (status, info) = edge.request("GET", &format!("/v1/tunnels/{id}"), None);
        assert_eq!(status, 200);
        assert_eq!(info["name"], "web");
        assert_eq!(info["status"], "inactive");
        assert_eq!(info["connections"], json!([]));
        assert_eq!(info["routes"], json!(["app.example.com"]));
        assert_eq!(info["created_at"], created["created_at"]);
        assert_eq!(info["history"], json!([]));
        assert_eq!(info["uptime_seconds"], 0);
        assert_eq!(info["deleted_at"], Value::Null);

        // Path segments are percent-decoded like query values; bad escapes are refused.
        let (status, by_escape) = edge.request("GET", "/v1/tunnels/w%65b", None);
        assert_eq!((status, by_escape), (200, info.clone()));
        let (status, body) = edge.request("GET", "/v1/tunnels/%E0", None);
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error": "path segment \"%E0\": not UTF-8 once percent-decoded"})
        );
        // Every endpoint refuses query parameters it does not know.
        for (method, path) in [
            ("GET", "/v1/tunnels/web?x=1"),
            ("GET", "/v1/routes?x=1"),
            ("DELETE", "/v1/tunnels/web/connections?x=1"),
            ("POST", "/v1/tunnels/web/routes?x=1"),
            ("POST", "/v1/tunnels?x=1"),
            ("DELETE", "/v1/tunnels/web?x=1&force"),
        ] {
            let (status, body) = edge.request(method, path, Some(json!({"name": "n"})));
            assert_eq!(status, 400, "{method} {path}");
            assert_eq!(body, json!({"error": "unknown query parameter \"x\""}));
        }
        let (status, body) = edge.request("DELETE", "/v1/tunnels/web?force=maybe", None);
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error": "force: expected true, false, 1 or 0, not \"maybe\""})
        );

        let (status, body) = edge.request("DELETE", "/v1/tunnels/web/connections", None);
        assert_eq!(status, 200);
        assert_eq!(body, json!({"tunnel_id": id, "removed": 0}));
        let (status, body) = edge.request("DELETE", "/v1/tunnels/nope/connections", None);
        assert_eq!(status, 404);
        assert_eq!(body, json!({"error": "tunnel nope does not exist"}));
        assert_eq!(
            edge.request("GET", "/v1/tunnels/web/connections", None).0,
            405
        );

        let (status, body) = edge.request("GET", "/v1/tunnels/nope", None);
        assert_eq!(status, 404);
        assert_eq!(body, json!({"error": "tunnel nope does not exist"}));
        assert_eq!(edge.request("GET", "/v1/nothing", None).0, 404);
        assert_eq!(edge.request("PUT", "/v1/tunnels", None).0, 405);

        let (status, body) = edge.request("DELETE", "/v1/tunnels/web", None);
        assert_eq!(status, 200);
        assert_eq!(body, json!({"deleted": id}));
        // A deleted tunnel still answers, by id and by its name while no live tunnel has it.
        let (status, deleted) = edge.request("GET", &format!("/v1/tunnels/{id}"), None);
        assert_eq!(status, 200);
        assert_eq!(deleted["status"], "deleted");
        assert!(deleted["deleted_at"].is_string());
        assert_eq!(deleted["routes"], json!([]));
        assert_eq!(deleted["connections"], json!([]));
        assert_eq!(edge.request("GET", "/v1/tunnels/web", None), (200, deleted));
        assert_eq!(edge.request("DELETE", "/v1/tunnels/web", None).0, 404);
        assert_eq!(edge.request("GET", "/v1/routes", None).1, json!([]));
    }

    #[test]
    fn registration_updates_snapshots() {
        let edge = TestEdge::start(temp_dir(), true);
        let creds = edge.handle.create_tunnel("reg").unwrap();
        edge.handle.route("reg", "*.reg.test").unwrap();
        let secret = creds.secret().unwrap();

        let latest: Arc<Mutex<Option<Arc<Snapshot>>>> = Arc::default();
        let sink = latest.clone();
        edge.handle
            .subscribe(Box::new(move |s| *sink.lock().unwrap() = Some(s)));
        wait_for(&latest, |s| {
            s.tunnel_for_host("a.reg.test") == Some(creds.tunnel_id)
        });
        assert_eq!(
            latest
                .lock()
                .unwrap()
                .as_ref()
                .unwrap()
                .workers_with_connections(creds.tunnel_id),
            0
        );

        let registration = register(&edge.handle, creds.tunnel_id, secret, 2).unwrap();
        assert_eq!(registration.tunnel_name, "reg");
        wait_for(&latest, |s| {
            s.workers_with_connections(creds.tunnel_id) == 0b100
        });

        let refusal = register(&edge.handle, creds.tunnel_id, [0; SECRET_LEN], 1).unwrap_err();
        assert_eq!(refusal.code, RefuseCode::BadSecret);
        assert_eq!(refusal.message, "tunnel secret does not match");
        let unknown = Uuid::from_u128(5);
        let refusal = register(&edge.handle, unknown, secret, 1).unwrap_err();
        assert_eq!(refusal.code, RefuseCode::UnknownTunnel);
        assert_eq!(refusal.message, format!("tunnel {unknown} does not exist"));

        let second = register(&edge.handle, creds.tunnel_id, secret, 0).unwrap();
        wait_for(&latest, |s| {
            s.workers_with_connections(creds.tunnel_id) == 0b101
        });
        let (_, info) = edge.request("GET", "/v1/tunnels/reg", None);
        assert_eq!(info["status"], "active");
        assert_eq!(info["connections"].as_array().unwrap().len(), 2);
        assert_eq!(info["connections"][0]["origin_addr"], "127.0.0.1:50000");
        assert_eq!(info["connections"][0]["version"], "0.1.0");
        assert_eq!(info["connections"][0]["ha_connections"], 1);
        assert_eq!(info["history"], json!([]));
        assert!(info["last_active_at"].is_string());
        assert_eq!(info["last_inactive_at"], Value::Null);
        let (_, list) = edge.request("GET", "/v1/tunnels?status=active", None);
        assert_eq!(list["tunnels"][0]["name"], "reg");
        assert_eq!(list["tunnels"][0]["connections"], 2);
        assert_eq!(list["tunnels"][0]["connectors"], 1);

        let send = |msg| edge.handle.sender().send(msg).unwrap();
        send(ControlMsg::Unregister {
            connection_id: second.connection_id,
        });
        wait_for(&latest, |s| {
            s.workers_with_connections(creds.tunnel_id) == 0b100
        });
        send(ControlMsg::Closed {
            connection_id: registration.connection_id,
        });
        wait_for(&latest, |s| {
            s.workers_with_connections(creds.tunnel_id) == 0
        });
        let (_, info) = edge.request("GET", "/v1/tunnels/reg", None);
        assert_eq!(info["status"], "inactive");
        assert_eq!(info["connections"][0]["draining"], true);
        assert!(info["last_inactive_at"].is_string());
        let history = info["history"].as_array().unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0]["id"], registration.connection_id.to_string());
        assert!(history[0]["closed_at"].is_string());
        let path = "/v1/tunnels/reg/connections";
        let (status, body) = edge.request("DELETE", path, None);
        assert_eq!((status, &body["removed"]), (200, &json!(1)));
        let (_, info) = edge.request("GET", "/v1/tunnels/reg", None);
        assert_eq!(info["history"], json!([]));
        assert_eq!(info["connections"].as_array().unwrap().len(), 1);

        let (status, body) = edge.request("DELETE", "/v1/tunnels/reg", None);
        assert_eq!(status, 409);
        assert_eq!(
            body["error"],
            "tunnel reg has 1 live connection(s); stop its connectors first or delete with force"
        );
        let (status, _) = edge.request("DELETE", "/v1/tunnels/reg?force=true", None);
        assert_eq!(status, 200);
        wait_for(&latest, |s| {
            !s.tunnel_exists(creds.tunnel_id) && s.tunnel_for_host("a.reg.test").is_none()
        });
        let refusal = register(&edge.handle, creds.tunnel_id, secret, 0).unwrap_err();
        assert_eq!(refusal.code, RefuseCode::UnknownTunnel);
    }

    #[test]
    fn restart_keeps_tunnels_routes_and_secrets() {
        let dir = temp_dir();
        let (creds, token, ca) = {
            let edge = TestEdge::start(dir.clone(), false);
            let creds = edge.handle.create_tunnel("keep").unwrap();
            edge.handle
                .route(&creds.tunnel_id.to_string(), "keep.test")
                .unwrap();
            register(&edge.handle, creds.tunnel_id, creds.secret().unwrap(), 0).unwrap();
            (creds, edge.handle.admin_token(), edge.handle.ca_pem())
        };

        let edge = TestEdge::start(dir, true);
        assert_eq!(edge.handle.admin_token(), token);
        assert_eq!(edge.handle.ca_pem(), ca);
        let (_, info) = edge.request("GET", "/v1/tunnels/keep", None);
        assert_eq!(info["id"], creds.tunnel_id.to_string());
        assert_eq!(info["routes"], json!(["keep.test"]));
        // The previous run's connection is not live any more.
        assert_eq!(info["connections"], json!([]));
        let again = register(&edge.handle, creds.tunnel_id, creds.secret().unwrap(), 1);
        assert_eq!(again.unwrap().tunnel_name, "keep");
        assert_eq!(
            edge.handle
                .route("keep", "keep.test")
                .map_err(|e| e.to_string()),
            Ok(())
        );
        assert_eq!(
            edge.handle.create_tunnel("keep").err().unwrap().to_string(),
            "a tunnel named \"keep\" already exists"
        );
    }
}
