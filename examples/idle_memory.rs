//! Measures what an idle adit costs in memory: the resident size of an edge and a connector
//! at rest, then what each idle keep-alive client connection adds to the edge.
//!
//! It starts the `adit` binary next to this example (build both with
//! `cargo build --release --bin adit --example idle_memory`, or run `tuning/idle-memory.sh`)
//! as an edge and a connector on loopback, with a temporary data directory and ephemeral
//! ports, the connector serving the built-in hello-world origin. Then it opens N client
//! connections to the edge's HTTP port, sends one keep-alive GET on each, reads the answer
//! and leaves the connection open and idle. Resident sizes come from `/proc/PID/status`.
//!
//! ```text
//! idle_memory [--connections N] [--workers N]      (defaults: 10000, 2)
//! ```
//!
//! Everything stays on 127.0.0.1, every wait is bounded, and only the processes started
//! here are stopped, through their own handles.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const HOSTNAME: &str = "idle.localhost";

/// Connections opened at once before their requests go out, below the listen backlog.
const BATCH: usize = 500;

/// How long the whole run of connections may take.
const LOAD_LIMIT: Duration = Duration::from_secs(180);

/// How long a process is left to settle before its size is read.
const SETTLE: Duration = Duration::from_secs(2);

/// A child process killed, by its own handle, when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<()> {
    let (connections, workers) = parse_args()?;
    let bin = adit_binary()?;
    raise_open_files(connections)?;

    let dir = std::env::temp_dir().join(format!("adit-idle-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let scratch = Scratch(dir);
    let dir = scratch.0.as_path();

    let (edge, http, admin) = start_edge(&bin, dir, workers)?;
    let token = wait_for_token(&dir.join("edge-data"), admin)?;
    let cred = dir.join("idle.json");
    let cred_arg = path_arg(&cred)?;
    control(
        &bin,
        admin,
        &token,
        &["tunnel", "create", "idle", "--cred-file", cred_arg],
    )?;
    control(
        &bin,
        admin,
        &token,
        &["tunnel", "route", "dns", "idle", HOSTNAME],
    )?;
    let connector = start_connector(&bin, dir, &cred, workers)?;
    wait_until_served(http)?;

    std::thread::sleep(SETTLE);
    let edge_idle = rss(edge.0.id())?;
    let connector_idle = rss(connector.0.id())?;
    println!("workers per process:        {workers}");
    println!("edge idle rss:              {}", mib(edge_idle));
    println!("connector idle rss:         {}", mib(connector_idle));
    println!(
        "edge + connector idle rss:  {} (target: under 32 MiB)",
        mib(edge_idle + connector_idle)
    );

    let started = Instant::now();
    let clients = open_idle_clients(http, connections)?;
    std::thread::sleep(SETTLE);
    let edge_loaded = rss(edge.0.id())?;
    let per_connection = edge_loaded.saturating_sub(edge_idle) / connections.max(1) as u64;
    println!(
        "edge rss with {} idle keep-alive clients: {} (opened in {:.1} s)",
        clients.len(),
        mib(edge_loaded),
        started.elapsed().as_secs_f64()
    );
    println!(
        "per idle keep-alive client: {:.2} KiB (target: under 10 KiB)",
        per_connection as f64 / 1024.0
    );

    drop(clients);
    drop(connector);
    drop(edge);
    drop(scratch);

    // The per-client figure includes the edge's fixed start-up growth spread over the
    // clients, so it is only meaningful with many of them (the default 10,000).
    let idle_ok = edge_idle + connector_idle < IDLE_TARGET;
    let per_client_ok = per_connection < PER_CLIENT_TARGET;
    if idle_ok && per_client_ok {
        println!("both targets met");
        Ok(())
    } else {
        println!("target missed");
        std::process::exit(1);
    }
}

/// Edge plus connector at rest must stay under this.
const IDLE_TARGET: u64 = 32 << 20;

/// An idle keep-alive client must cost the edge less than this.
const PER_CLIENT_TARGET: u64 = 10 << 10;

fn parse_args() -> Result<(usize, usize)> {
    let mut connections = 10_000;
    let mut workers = 2;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--connections" => connections = value.parse()?,
            "--workers" => workers = value.parse()?,
            _ => return Err(format!("unknown argument {flag}").into()),
        }
    }
    Ok((connections, workers))
}

/// The `adit` binary of the same build profile: this example lives in `target/PROFILE/examples`.
fn adit_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the build directory")?;
    let bin = profile_dir.join("adit");
    if !bin.exists() {
        return Err(format!(
            "{} is missing: cargo build --release --bin adit",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// Raises this process's open-file limit to its hard limit (the children inherit it): every
/// client connection is a descriptor here and one in the edge.
fn raise_open_files(connections: usize) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit whose soft value does not exceed its hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let needed = connections as u64 + 256;
    if limit.rlim_cur < needed {
        let hard = limit.rlim_max;
        let message = format!(
            "{connections} connections need {needed} open files; the hard limit is {hard} \
             (see tuning/README.md)"
        );
        return Err(message.into());
    }
    Ok(())
}

fn free_tcp() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn free_udp() -> Result<SocketAddr> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

fn path_arg(path: &Path) -> Result<&str> {
    Ok(path.to_str().ok_or("a temporary path is not UTF-8")?)
}

fn spawn(bin: &Path, args: &[&str], log: &Path) -> Result<Proc> {
    let file = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .env("ADIT_LOGLEVEL", "warn")
        .spawn()?;
    Ok(Proc(child))
}

/// Starts the edge; returns it with its public HTTP and admin addresses.
fn start_edge(bin: &Path, dir: &Path, workers: usize) -> Result<(Proc, SocketAddr, SocketAddr)> {
    let (http, https, admin, metrics) = (free_tcp()?, free_tcp()?, free_tcp()?, free_tcp()?);
    let tunnel = free_udp()?;
    let data = dir.join("edge-data");
    let addrs = [http, https, tunnel, admin, metrics].map(|addr| addr.to_string());
    let workers = workers.to_string();
    let args = [
        "edge",
        "--data-dir",
        path_arg(&data)?,
        "--listen-http",
        &addrs[0],
        "--listen-https",
        &addrs[1],
        "--listen-tunnel",
        &addrs[2],
        "--listen-admin",
        &addrs[3],
        "--metrics",
        &addrs[4],
        "--workers",
        &workers,
    ];
    let edge = spawn(bin, &args, &dir.join("edge.log"))?;
    Ok((edge, http, admin))
}

fn start_connector(bin: &Path, dir: &Path, cred: &Path, workers: usize) -> Result<Proc> {
    let metrics = free_tcp()?.to_string();
    let workers = workers.to_string();
    let args = [
        "tunnel",
        "run",
        "idle",
        "--cred-file",
        path_arg(cred)?,
        "--url",
        "hello_world",
        "--metrics",
        &metrics,
        "--workers",
        &workers,
    ];
    spawn(bin, &args, &dir.join("connector.log"))
}

/// The admin token, once the edge has written it and its admin port answers.
fn wait_for_token(data: &Path, admin: SocketAddr) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(admin).is_ok() {
            if let Ok(token) = std::fs::read_to_string(data.join("admin.token")) {
                return Ok(token.trim().to_owned());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the edge did not start within 20 s".into())
}

/// Runs one `adit tunnel ...` control command against the edge.
fn control(bin: &Path, admin: SocketAddr, token: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(bin)
        .args(args)
        .env("ADIT_ADMIN", format!("http://{admin}"))
        .env("ADIT_TOKEN", token)
        .output()?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!("adit {}: {why}", args.join(" ")).into());
    }
    Ok(())
}

/// Waits until a request through the tunnel is answered 200.
fn wait_until_served(http: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let status = TcpStream::connect(http)
            .map_err(Into::into)
            .and_then(|mut stream| request(&mut stream));
        if let Ok(200) = status {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("no request went through the tunnel within 30 s".into())
}

/// Opens `count` connections, each served one keep-alive GET and then left idle.
fn open_idle_clients(http: SocketAddr, count: usize) -> Result<Vec<TcpStream>> {
    let deadline = Instant::now() + LOAD_LIMIT;
    let mut clients = Vec::with_capacity(count);
    while clients.len() < count {
        if Instant::now() > deadline {
            return Err(format!("only {} connections within {LOAD_LIMIT:?}", clients.len()).into());
        }
        let batch = BATCH.min(count - clients.len());
        let mut opened = Vec::with_capacity(batch);
        for _ in 0..batch {
            let stream = TcpStream::connect(http)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.set_nodelay(true)?;
            opened.push(stream);
        }
        for stream in &mut opened {
            stream.write_all(request_bytes().as_bytes())?;
        }
        for stream in &mut opened {
            let status = response_status(stream)?;
            if status != 200 {
                return Err(format!("a keep-alive GET was answered {status}").into());
            }
        }
        clients.append(&mut opened);
    }
    Ok(clients)
}

fn request_bytes() -> String {
    format!("GET / HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: keep-alive\r\n\r\n")
}

fn request(stream: &mut TcpStream) -> Result<u16> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request_bytes().as_bytes())?;
    response_status(stream)
}

/// Reads one whole response (head and a `Content-Length` body) and returns its status.
fn response_status(stream: &mut TcpStream) -> Result<u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("the edge closed a connection before answering".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("a response without a status")?;
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or("a response without Content-Length")?;
    let mut body = buf.len() - head_end;
    while body < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("the edge closed a connection inside a body".into());
        }
        body += n;
    }
    Ok(status)
}

/// Resident set size of a process, in bytes, from `/proc/PID/status`.
fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or("no VmRSS line")?;
    Ok(kib * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
