//! What a benchmark runs against: the built-in origins in this process, and an edge, a
//! connector and (for TCP) an access client as child processes of the `adit` binary, all on
//! loopback with ephemeral ports and a scratch data directory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;

/// Hostname routed to the HTTP origin.
pub const HTTP_HOST: &str = "bench.adit.test";
/// Hostname routed to the TCP echo origin.
pub const TCP_HOST: &str = "bench-tcp.adit.test";
const TUNNEL: &str = "bench";
const STARTUP: Duration = Duration::from_secs(30);

/// A scratch directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("adit-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
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

/// A child process with its output in a log file; killed (by its own PID) when dropped.
pub struct Child {
    pub role: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    pub fn spawn(
        role: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> Result<Child, BenchError> {
        let log = dir.join(format!("{role}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(program);
        // SAFETY: the hook runs in the forked child before exec and calls only sigemptyset
        // and sigprocmask, which are async-signal-safe, on a set on its own stack.
        unsafe {
            command.pre_exec(|| {
                // This process blocks SIGINT and SIGTERM (see cli::signals); children that
                // are not adit must see them, or they could not be stopped gracefully.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = command
            .args(args)
            .current_dir(dir)
            .env("ADIT_LOGLEVEL", "warn")
            // rathole logs every visitor connection at its default level.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|error| BenchError::Spawn {
                what: format!("{role} ({})", program.display()),
                error,
            })?;
        Ok(Child {
            role: role.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` holds, failing early if the child exits.
    pub fn wait_ready(&mut self, ready: impl FnMut() -> bool) -> Result<(), BenchError> {
        wait_all_ready(std::slice::from_mut(self), ready)
    }

    /// Whether the child has exited, with its status.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn startup_error(&self, reason: String) -> BenchError {
        BenchError::Startup {
            what: self.role.clone(),
            reason,
            log: tail(&self.log_text(), 20),
        }
    }
}

/// Waits until `ready` holds, failing early (with that child's log) if any of `children`
/// exits: a tunnel's client dying must not look like a slow start.
pub fn wait_all_ready(
    children: &mut [Child],
    mut ready: impl FnMut() -> bool,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + STARTUP;
    loop {
        if ready() {
            return Ok(());
        }
        let exited = children
            .iter_mut()
            .find_map(|c| c.exited().map(|status| (c, status)));
        if let Some((child, status)) = exited {
            return Err(child.startup_error(format!("it exited ({status})")));
        }
        if Instant::now() > deadline {
            let Some(first) = children.first() else {
                return Ok(());
            };
            return Err(first.startup_error(format!("not ready after {STARTUP:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Child {
    /// SIGTERM first so a proxy with worker processes stops them too, SIGKILL after 3 s.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on this child's own PID with a valid signal number.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn free_tcp() -> Result<SocketAddr, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn free_udp() -> Result<SocketAddr, BenchError> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

/// One blocking `GET /` with `host`; true on a 200.
pub fn http_ok(addr: SocketAddr, host: &str) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes())?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    probe().unwrap_or(false)
}

/// One echoed message; true when it comes back intact.
pub fn echo_ok(addr: SocketAddr) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"adit-bench")?;
        let mut back = [0u8; 10];
        stream.read_exact(&mut back)?;
        Ok(&back == b"adit-bench")
    };
    probe().unwrap_or(false)
}

/// The origins (in this process) and adit's edge, connector and access client.
pub struct Stack {
    pub origin: SocketAddr,
    pub echo: SocketAddr,
    pub edge: Child,
    pub edge_http: SocketAddr,
    pub connector: Child,
    /// The access client's listener, when TCP scenarios run.
    pub access: Option<(Child, SocketAddr)>,
    /// Last, so the children are gone before their directory is.
    pub dir: TempDir,
}

impl Stack {
    pub fn start(exe: &Path, workers: usize, with_tcp: bool) -> Result<Stack, BenchError> {
        let dir = TempDir::new()?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let origin = crate::origin::spawn(any, workers)?.addr;
        let echo = crate::origin::spawn_tcp_echo(any, workers)?.addr;

        let (edge, edge_http, admin, token) = start_edge(exe, dir.path(), workers)?;
        let control = Control {
            exe,
            dir: dir.path(),
            admin: format!("http://{admin}"),
            token,
        };
        let cred = dir.path().join("bench.json");
        control.run(&[
            "tunnel",
            "create",
            TUNNEL,
            "--cred-file",
            &cred.to_string_lossy(),
        ])?;
        control.run(&["tunnel", "route", "dns", TUNNEL, HTTP_HOST])?;
        control.run(&["tunnel", "route", "dns", TUNNEL, TCP_HOST])?;

        let config = dir.path().join("connector.yml");
        let yaml = format!(
            "tunnel: {TUNNEL}\ncredentials-file: {}\ningress:\n  - hostname: {HTTP_HOST}\n    \
             service: http://{origin}\n  - hostname: {TCP_HOST}\n    service: tcp://{echo}\n  \
             - service: http_status:404\n",
            cred.display()
        );
        std::fs::write(&config, yaml)?;
        let ha = workers.max(2);
        let args: Vec<String> = ["tunnel", "run", TUNNEL, "--config"]
            .iter()
            .map(|s| s.to_string())
            .chain([config.to_string_lossy().into_owned()])
            .chain(["--ha-connections".into(), ha.to_string()])
            .chain(["--workers".into(), workers.to_string()])
            .collect();
        let mut connector = Child::spawn("connector", exe, &args, dir.path())?;
        connector.wait_ready(|| control.connections() >= ha && http_ok(edge_http, HTTP_HOST))?;

        let access = if with_tcp {
            Some(start_access(exe, dir.path(), edge_http)?)
        } else {
            None
        };
        tracing::info!(%origin, %echo, %edge_http, "benchmark stack ready");
        Ok(Stack {
            origin,
            echo,
            edge,
            edge_http,
            connector,
            access,
            dir,
        })
    }
}

fn start_edge(
    exe: &Path,
    dir: &Path,
    workers: usize,
) -> Result<(Child, SocketAddr, SocketAddr, String), BenchError> {
    let (http, https, admin, tunnel) = (free_tcp()?, free_tcp()?, free_tcp()?, free_udp()?);
    let data = dir.join("edge-data");
    let args: Vec<String> = vec![
        "edge".into(),
        "--data-dir".into(),
        data.to_string_lossy().into_owned(),
        "--listen-http".into(),
        http.to_string(),
        "--listen-https".into(),
        https.to_string(),
        "--listen-tunnel".into(),
        tunnel.to_string(),
        "--listen-admin".into(),
        admin.to_string(),
        "--workers".into(),
        workers.to_string(),
    ];
    let mut edge = Child::spawn("edge", exe, &args, dir)?;
    let token_file = data.join("admin.token");
    edge.wait_ready(|| TcpStream::connect(admin).is_ok() && token_file.exists())?;
    let token = std::fs::read_to_string(&token_file)?.trim().to_owned();
    Ok((edge, http, admin, token))
}

fn start_access(
    exe: &Path,
    dir: &Path,
    edge_http: SocketAddr,
) -> Result<(Child, SocketAddr), BenchError> {
    let addr = free_tcp()?;
    let args: Vec<String> = vec![
        "access".into(),
        "tcp".into(),
        "--hostname".into(),
        TCP_HOST.into(),
        "--url".into(),
        addr.to_string(),
        "--edge".into(),
        format!("http://{edge_http}"),
    ];
    let mut access = Child::spawn("access", exe, &args, dir)?;
    let log = dir.join("access.log");
    access.wait_ready(|| {
        let listening =
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("adit access listening"));
        listening && echo_ok(addr)
    })?;
    Ok((access, addr))
}

/// Runs `adit tunnel ...` control commands against the edge's admin API.
struct Control<'a> {
    exe: &'a Path,
    dir: &'a Path,
    admin: String,
    token: String,
}

impl Control<'_> {
    fn command(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new(self.exe)
            .args(args)
            .current_dir(self.dir)
            .env("ADIT_ADMIN", &self.admin)
            .env("ADIT_TOKEN", &self.token)
            .env("ADIT_LOGLEVEL", "warn")
            .stdin(Stdio::null())
            .output()
    }

    fn run(&self, args: &[&str]) -> Result<(), BenchError> {
        let output = self.command(args).map_err(|error| BenchError::Spawn {
            what: format!("adit {}", args.join(" ")),
            error,
        })?;
        if output.status.success() {
            return Ok(());
        }
        Err(BenchError::Control {
            command: format!("adit {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }

    /// Live connections of the benchmark tunnel (0 when the edge cannot say).
    fn connections(&self) -> usize {
        let Ok(output) = self.command(&["tunnel", "info", TUNNEL, "--output", "json"]) else {
            return 0;
        };
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .ok()
            .and_then(|v| v["connections"].as_array().map(Vec::len))
            .unwrap_or(0)
    }
}
