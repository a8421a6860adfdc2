//! Helpers for the end-to-end tests: the `adit` binary as child processes (edge, connector,
//! control commands), the built-in origin in-process, and a small blocking HTTP client.
//! Everything listens on 127.0.0.1 with ephemeral ports.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use adit::http::{self, BodyDecoder, MAX_HEADERS};

pub mod cdp;
pub mod script;

pub const BIN: &str = env!("CARGO_BIN_EXE_adit");

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("adit-test-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (by its own PID) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(args: &[&str], log: PathBuf, envs: &[(&str, &str)]) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .env("ADIT_LOGLEVEL", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    /// Sends SIGTERM to this child.
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) with this child's own PID and a valid signal number.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits up to `limit` for the child to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The address on the first log line that contains `marker` (as `addr=HOST:PORT`),
    /// waited for up to 20 s: where a listener given port 0 was bound.
    pub fn logged_addr(&self, marker: &str) -> SocketAddr {
        eventually(Duration::from_secs(20), marker, || {
            let log = self.log_text();
            let line = log.lines().find(|line| line.contains(marker))?;
            let addr = line
                .split(' ')
                .find_map(|field| field.strip_prefix("addr="))?;
            addr.parse().ok()
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_tcp_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Port 0 on loopback: the kernel picks a free port when the address is bound.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The edge's "edge ready" log line, which names every address it bound.
fn ready_line(log: &str) -> Option<String> {
    let line = log.lines().find(|line| line.contains("edge ready"))?;
    Some(line.to_owned())
}

pub fn free_udp_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// How long a connection count must hold before a test relies on it.
pub const SETTLED: Duration = Duration::from_millis(300);

/// Retries `f` every 50 ms until it returns `Some`, for at most `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running edge child process and where it listens.
pub struct Edge {
    pub proc: Proc,
    pub dir: PathBuf,
    pub http: SocketAddr,
    /// Where HTTPS is served when the edge was started with certificates.
    pub https: SocketAddr,
    pub tunnel: SocketAddr,
    pub admin: SocketAddr,
    pub token: String,
}

impl Edge {
    /// An edge on ports the kernel picks, read back from its log: a port chosen here and
    /// released before the edge binds it could be taken meanwhile by a parallel test.
    pub fn start(dir: &Path) -> Edge {
        Edge::start_on(dir, any_port(), any_port(), any_port())
    }

    pub fn start_on(dir: &Path, http: SocketAddr, tunnel: SocketAddr, admin: SocketAddr) -> Edge {
        Edge::start_with(dir, http, tunnel, admin, &[], &[])
    }

    /// An edge with HTTPS: each pair is a certificate chain file and its key file.
    pub fn start_tls(dir: &Path, pairs: &[(&Path, &Path)], envs: &[(&str, &str)]) -> Edge {
        let mut extra = Vec::new();
        for (cert, key) in pairs {
            extra.push("--tls-cert".to_owned());
            extra.push(cert.to_str().unwrap().to_owned());
            extra.push("--tls-key".to_owned());
            extra.push(key.to_str().unwrap().to_owned());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Edge::start_with(dir, any_port(), any_port(), any_port(), &extra, envs)
    }

    /// As [`Edge::start_on`], with more command-line arguments and environment variables.
    pub fn start_with(
        dir: &Path,
        http: SocketAddr,
        tunnel: SocketAddr,
        admin: SocketAddr,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Edge {
        let https = any_port();
        let data = dir.join("edge-data");
        let log = dir.join(format!("edge-{}.log", uuid::Uuid::new_v4()));
        let https_arg = https.to_string();
        let (http_arg, tunnel_arg, admin_arg) =
            (http.to_string(), tunnel.to_string(), admin.to_string());
        let mut args = vec![
            "edge",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-http",
            &http_arg,
            "--listen-https",
            &https_arg,
            "--listen-tunnel",
            &tunnel_arg,
            "--listen-admin",
            &admin_arg,
        ];
        // Two workers unless the caller chose.
        if !extra.contains(&"--workers") {
            args.extend_from_slice(&["--workers", "2"]);
        }
        args.extend_from_slice(extra);
        let proc = Proc::spawn(&args, log, envs);
        let mut proc = proc;
        let deadline = Instant::now() + Duration::from_secs(20);
        let (ready, token) = loop {
            let ready = ready_line(&proc.log_text());
            let token = std::fs::read_to_string(data.join("admin.token")).ok();
            if let (Some(ready), Some(token)) = (ready, token) {
                break (ready, token);
            }
            let exited = proc.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!("the edge did not start ({exited:?}):\n{}", proc.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let bound = |key: &str| -> Option<SocketAddr> {
            let value = ready.split(' ').find_map(|field| field.strip_prefix(key))?;
            value.parse().ok()
        };
        let (http, tunnel, admin) = (
            bound("http_addr=").unwrap(),
            bound("tunnel_addr=").unwrap(),
            bound("admin=").unwrap(),
        );
        let https = bound("https_addr=").unwrap_or(https);
        Edge {
            proc,
            dir: dir.to_owned(),
            http,
            https,
            tunnel,
            admin,
            token: token.trim().to_owned(),
        }
    }

    /// Runs an `adit` control command against this edge.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("ADIT_ADMIN", format!("http://{}", self.admin))
            .env("ADIT_TOKEN", &self.token)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }

    /// Creates a tunnel and returns its credentials file.
    pub fn create_tunnel(&self, name: &str) -> PathBuf {
        let cred = self.dir.join(format!("{name}.json"));
        let out = self.cli(&[
            "tunnel",
            "create",
            name,
            "--cred-file",
            cred.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cred
    }

    pub fn route(&self, name: &str, hostname: &str) {
        let out = self.cli(&["tunnel", "route", "dns", name, hostname]);
        assert!(
            out.status.success(),
            "route failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The tunnel's `info` as JSON.
    pub fn info(&self, name: &str) -> serde_json::Value {
        let out = self.cli(&["tunnel", "info", name, "--output", "json"]);
        assert!(
            out.status.success(),
            "info failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn connections(&self, name: &str) -> usize {
        self.info(name)["connections"]
            .as_array()
            .map_or(0, Vec::len)
    }

    /// Registered connections of tunnel `name` that are not draining.
    pub fn routable(&self, name: &str) -> usize {
        let info = self.info(name);
        let connections = info["connections"].as_array().cloned().unwrap_or_default();
        let routable = |c: &&serde_json::Value| c["draining"] == serde_json::Value::Bool(false);
        connections.iter().filter(routable).count()
    }

    /// Waits until tunnel `name` has at least `n` routable connections, held for
    /// [`SETTLED`]: a connector may still move one that just registered to another edge
    /// worker (it unregisters it within milliseconds).
    pub fn wait_connections(&self, name: &str, n: usize) {
        eventually(Duration::from_secs(30), "connector registration", || {
            (self.routable(name) >= n).then_some(())?;
            std::thread::sleep(SETTLED);
            (self.routable(name) >= n).then_some(())
        });
    }
}

/// Writes a connector config and starts `adit tunnel run` with it (two connections).
pub fn start_connector(dir: &Path, name: &str, cred: &Path, ingress_yaml: &str) -> Proc {
    start_connector_with(dir, name, cred, ingress_yaml, 2)
}

/// As [`start_connector`], with `ha` connections.
pub fn start_connector_with(
    dir: &Path,
    name: &str,
    cred: &Path,
    ingress_yaml: &str,
    ha: u8,
) -> Proc {
    let config = dir.join(format!("{name}-{}.yml", uuid::Uuid::new_v4()));
    let text = format!(
        "tunnel: {name}\ncredentials-file: {}\ningress:\n{ingress_yaml}",
        cred.display()
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.join(format!("connector-{name}-{}.log", uuid::Uuid::new_v4()));
    let args = [
        "tunnel",
        "run",
        name,
        "--config",
        config.to_str().unwrap(),
        "--ha-connections",
        &ha.to_string(),
        "--workers",
        "1",
    ];
    Proc::spawn(&args, log, &[])
}

/// The built-in origin, in this test process.
/// An in-process edge's configuration: one worker, every listener on an ephemeral
/// loopback port, default limits, no TLS.
pub fn loopback_edge_config(data_dir: PathBuf) -> adit::edge::EdgeConfig {
    let any = || "127.0.0.1:0".parse().unwrap();
    adit::edge::EdgeConfig {
        data_dir,
        listen_tunnel: any(),
        listen_http: any(),
        listen_https: any(),
        listen_admin: any(),
        workers: 1,
        limits: Default::default(),
        tls: Vec::new(),
        pin_cpus: false,
    }
}

pub fn start_origin() -> SocketAddr {
    adit::origin::spawn("127.0.0.1:0".parse().unwrap(), 1)
        .unwrap()
        .addr
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A blocking HTTP/1.1 client on one connection: plain TCP, or TLS over it.
pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

/// A blocking TLS client connection.
pub type TlsClientStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Client<TlsClientStream> {
    /// Connects over TLS, sending `sni` and trusting only `ca_pem`, and completes the
    /// handshake.
    pub fn connect_tls(addr: SocketAddr, sni: &str, ca_pem: &str) -> Client<TlsClientStream> {
        Client::tls(addr, sni, true, ca_pem)
    }

    /// As [`Client::connect_tls`] without sending SNI; the certificate must still name `name`.
    pub fn connect_tls_without_sni(
        addr: SocketAddr,
        name: &str,
        ca_pem: &str,
    ) -> Client<TlsClientStream> {
        Client::tls(addr, name, false, ca_pem)
    }

    fn tls(addr: SocketAddr, sni: &str, send_sni: bool, ca_pem: &str) -> Client<TlsClientStream> {
        use rustls_pki_types::pem::PemObject;

        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.enable_sni = send_sni;
        let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let plain = Client::connect(addr);
        let mut stream = rustls::StreamOwned::new(conn, plain.stream);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        Client {
            stream,
            buf: Vec::new(),
        }
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }
}

impl<S: Read + Write> Client<S> {
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request with a Content-Length body (when given) and reads the response.
    pub fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Response {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        self.send_raw(head.as_bytes());
        if let Some(body) = body {
            self.send_raw(body);
        }
        self.read_response(method == "HEAD").expect("a response")
    }

    /// Reads one response; `None` if the server closed before a complete head.
    pub fn read_response(&mut self, head_request: bool) -> Option<Response> {
        let (status, headers, framing, len) = loop {
            let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
            if let Some(head) = http::parse_response(&self.buf, &mut parsed).unwrap() {
                let method = if head_request { "HEAD" } else { "GET" };
                let framing = http::response_framing(method, head.status, head.headers).unwrap();
                let headers = head
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (head.status, headers, framing, head.len);
            }
            if !self.fill() {
                return None;
            }
        };
        self.buf.drain(..len);
        let mut decoder = BodyDecoder::new(framing);
        let mut body = Vec::new();
        loop {
            while !self.buf.is_empty() && !decoder.is_done() {
                let step = decoder.decode(&self.buf).unwrap();
                body.extend_from_slice(&self.buf[step.data.clone()]);
                self.buf.drain(..step.consumed);
                if step.consumed == 0 {
                    break;
                }
            }
            if decoder.is_done() {
                break;
            }
            if !self.fill() {
                decoder.eof().unwrap();
                break;
            }
        }
        Some(Response {
            status,
            headers,
            body,
        })
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    Client::connect(addr).request("GET", host, path, None)
}

/// Deterministic test bytes.
/// Makes the close of `stream` a reset (an SO_LINGER of zero).
pub fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;

    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid linger value and its size, on the stream's live descriptor.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// The body an HTTPS origin from [`start_tls_origin`] answers `GET /` with.
pub const TLS_ORIGIN_BODY: &str = "Hello over TLS\n";

/// An HTTPS origin in this test process, with a certificate from a CA of its own.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The CA that signed the origin's certificate, as PEM.
    pub ca_pem: String,
    /// Connections accepted so far.
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Starts an HTTPS origin on 127.0.0.1 whose certificate is valid for `127.0.0.1`,
/// `localhost` and `origin.test`. It answers `GET /` with [`TLS_ORIGIN_BODY`] and an
/// `x-sni` header naming the server name the client sent (`-` for none), anything else with
/// 404, and keeps connections alive.
pub fn start_tls_origin() -> TlsOrigin {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let name = format!("adit test origin CA {}", uuid::Uuid::new_v4());
    ca_params.distinguished_name.push(DnType::CommonName, name);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let names = ["127.0.0.1", "localhost", "origin.test"].map(str::to_owned);
    let leaf = CertificateParams::new(names.to_vec())
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = std::sync::Arc::new(config);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = connections.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let config = config.clone();
            std::thread::spawn(move || serve_tls_connection(config, sock));
        }
    });
    TlsOrigin {
        addr,
        ca_pem: ca_cert.pem(),
        connections,
    }
}

/// Serves requests on one connection until the client closes it or a read times out.
fn serve_tls_connection(config: std::sync::Arc<rustls::ServerConfig>, sock: TcpStream) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 16 * 1024];
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) if buf.len() + n <= 64 * 1024 => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let sni = tls.conn.server_name().unwrap_or("-").to_owned();
        let response = if head.starts_with("GET / ") {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nx-sni: {sni}\r\n\r\n{TLS_ORIGIN_BODY}",
                TLS_ORIGIN_BODY.len()
            )
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned()
        };
        if tls.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A test CA of its own, for certificates the edge serves.
pub struct TestCa {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate written to files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let name = format!("adit test edge CA {}", uuid::Uuid::new_v4());
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Signs a leaf for `names` and writes it to `{stem}.pem` and `{stem}.key` in `dir`.
    pub fn leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

/// An edge with one tunnel `web` routed at `web.test` and a connector (two connections)
/// serving `ingress`, all in a scratch directory removed with it.
pub struct Setup {
    pub dir: TempDir,
    pub edge: Edge,
    pub connector: Proc,
    pub cred: PathBuf,
}

pub fn setup(name: &str, ingress: &str) -> Setup {
    setup_in(TempDir::new(name), ingress, &[])
}

/// As [`setup`], with extra `adit edge` arguments.
pub fn setup_with(name: &str, ingress: &str, edge_args: &[&str]) -> Setup {
    setup_in(TempDir::new(name), ingress, edge_args)
}

/// As [`setup_with`], in a directory the test has already put files in.
pub fn setup_in(dir: TempDir, ingress: &str, edge_args: &[&str]) -> Setup {
    let edge = Edge::start_with(
        dir.path(),
        any_port(),
        any_port(),
        any_port(),
        edge_args,
        &[],
    );
    let cred = edge.create_tunnel("web");
    edge.route("web", "web.test");
    let connector = start_connector(dir.path(), "web", &cred, ingress);
    edge.wait_connections("web", 2);
    Setup {
        dir,
        edge,
        connector,
        cred,
    }
}

/// The ingress rule list with one catch-all rule to `origin`.
pub fn origin_rule(origin: SocketAddr) -> String {
    format!("  - service: http://{origin}\n")
}
