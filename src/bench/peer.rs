//! Other programs run side by side with adit (`--peer`): nginx and HAProxy as a one-hop
//! reverse proxy in front of the same origins, rathole as a tunnel (server and client, over
//! its plain TCP and its TLS transport: two paths). Their configs are generated into the run's
//! scratch directory and listen on loopback only; a peer path that is not installed or does
//! not start is skipped with the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::rathole;
use super::stack::{echo_ok, free_tcp, http_ok, wait_all_ready, Child, HTTP_HOST};
use super::BenchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerKind {
    Nginx,
    Haproxy,
    Rathole,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Nginx => "nginx",
            PeerKind::Haproxy => "haproxy",
            PeerKind::Rathole => "rathole",
        }
    }

    pub fn install_hint(self) -> &'static str {
        match self {
            PeerKind::Nginx => "apt-get install nginx",
            PeerKind::Haproxy => "apt-get install haproxy",
            PeerKind::Rathole => "cargo install rathole",
        }
    }

    /// The paths this program is measured as.
    pub fn paths(self) -> &'static [PeerPath] {
        match self {
            PeerKind::Nginx => &[PeerPath::Nginx],
            PeerKind::Haproxy => &[PeerPath::Haproxy],
            PeerKind::Rathole => &[PeerPath::Rathole, PeerPath::RatholeTls],
        }
    }
}

/// One way through a peer program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPath {
    Nginx,
    Haproxy,
    /// rathole over its plain TCP transport.
    Rathole,
    /// rathole over its TLS transport.
    RatholeTls,
}

impl PeerPath {
    pub fn name(self) -> &'static str {
        match self {
            PeerPath::Nginx => "nginx",
            PeerPath::Haproxy => "haproxy",
            PeerPath::Rathole => "rathole",
            PeerPath::RatholeTls => "rathole-tls",
        }
    }
}

/// A running peer: where its HTTP and TCP entries listen, and its processes.
pub struct Peer {
    pub name: &'static str,
    pub http: SocketAddr,
    /// `None` when this peer cannot carry raw TCP here (nginx without its stream module).
    pub tcp: Option<SocketAddr>,
    pub processes: Vec<Child>,
}

/// `name` on PATH, or in the sbin directories Debian installs daemons into.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Starts every path of `kind` in front of `origin` and `echo`: each path with the running
/// peer, or the reason it is skipped.
pub fn start(
    kind: PeerKind,
    dir: &Path,
    origin: SocketAddr,
    echo: SocketAddr,
    workers: usize,
) -> Vec<(PeerPath, Result<Peer, String>)> {
    let Some(program) = find_program(kind.name()) else {
        let reason = format!("not installed (install it with `{}`)", kind.install_hint());
        return kind
            .paths()
            .iter()
            .map(|p| (*p, Err(reason.clone())))
            .collect();
    };
    let ends = Ends {
        program: &program,
        origin,
        echo,
        workers,
    };
    kind.paths()
        .iter()
        .map(|path| {
            let started = start_path(*path, &dir.join(path.name()), &ends);
            (*path, started.map_err(|e| e.to_string()))
        })
        .collect()
}

/// What every peer path is started with.
struct Ends<'a> {
    program: &'a Path,
    origin: SocketAddr,
    echo: SocketAddr,
    workers: usize,
}

fn start_path(path: PeerPath, dir: &Path, ends: &Ends) -> Result<Peer, BenchError> {
    std::fs::create_dir_all(dir)?;
    let (http, tcp) = (free_tcp()?, free_tcp()?);
    let (origin, echo, workers) = (ends.origin, ends.echo, ends.workers);
    let (tcp, processes) = match path {
        PeerPath::Nginx => {
            let stream = nginx_stream_module(ends.program);
            let tcp = stream.as_ref().map(|_| tcp);
            let conf = nginx_config(dir, http, origin, tcp.map(|t| (t, echo)), stream, workers);
            let conf_path = dir.join("nginx.conf");
            std::fs::write(&conf_path, conf)?;
            let args = args(&[
                "-p",
                &dir.to_string_lossy(),
                "-c",
                &conf_path.to_string_lossy(),
            ]);
            (tcp, vec![Child::spawn("nginx", ends.program, &args, dir)?])
        }
        PeerPath::Haproxy => {
            let conf_path = dir.join("haproxy.cfg");
            std::fs::write(&conf_path, haproxy_config(http, origin, tcp, echo, workers))?;
            let args = args(&["-db", "-f", &conf_path.to_string_lossy()]);
            (
                Some(tcp),
                vec![Child::spawn("haproxy", ends.program, &args, dir)?],
            )
        }
        PeerPath::Rathole | PeerPath::RatholeTls => {
            let transport = if path == PeerPath::RatholeTls {
                let files = rathole::make_identity(dir).map_err(|reason| BenchError::Prepare {
                    what: path.name().to_owned(),
                    reason,
                })?;
                rathole::Transport::Tls(files)
            } else {
                rathole::Transport::Tcp
            };
            let addrs = rathole::Addresses {
                control: free_tcp()?,
                http,
                origin,
                tcp,
                echo,
            };
            (
                Some(tcp),
                start_rathole(ends.program, dir, &addrs, &transport)?,
            )
        }
    };
    let mut peer = Peer {
        name: path.name(),
        http,
        tcp,
        processes,
    };
    wait_all_ready(&mut peer.processes, || {
        http_ok(http, HTTP_HOST) && tcp.is_none_or(echo_ok)
    })?;
    Ok(peer)
}

/// rathole's server, then its client; the server's config must exist before the client
/// dials, or the client waits out its retry interval.
fn start_rathole(
    program: &Path,
    dir: &Path,
    addrs: &rathole::Addresses,
    transport: &rathole::Transport,
) -> Result<Vec<Child>, BenchError> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let (server, client) = rathole::configs(addrs, &token, transport);
    let (server_path, client_path) = (dir.join("server.toml"), dir.join("client.toml"));
    std::fs::write(&server_path, server)?;
    std::fs::write(&client_path, client)?;
    let s_args = args(&["-s", &server_path.to_string_lossy()]);
    let c_args = args(&["-c", &client_path.to_string_lossy()]);
    // The client dials the server's control channel, so the server comes up first: a server
    // that cannot start is then the one named, whatever the client would have done.
    let mut server = Child::spawn("rathole-server", program, &s_args, dir)?;
    let control = addrs.control;
    server.wait_ready(|| {
        std::net::TcpStream::connect_timeout(&control, Duration::from_millis(200)).is_ok()
    })?;
    let client = Child::spawn("rathole-client", program, &c_args, dir)?;
    Ok(vec![server, client])
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The `load_module` line nginx needs for `stream {}` ("" when built in), or `None` when
/// this nginx has no stream module.
fn nginx_stream_module(program: &Path) -> Option<String> {
    let output = std::process::Command::new(program)
        .arg("-V")
        .output()
        .ok()?;
    let built = String::from_utf8_lossy(&output.stderr).into_owned();
    if built.contains("--with-stream ") || built.ends_with("--with-stream") {
        return Some(String::new());
    }
    let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
    (built.contains("--with-stream=dynamic") && module.is_file())
        .then(|| format!("load_module {};\n", module.display()))
}

fn nginx_config(
    dir: &Path,
    http: SocketAddr,
    origin: SocketAddr,
    tcp: Option<(SocketAddr, SocketAddr)>,
    stream_module: Option<String>,
    workers: usize,
) -> String {
    let d = dir.display();
    let stream = match tcp {
        Some((listen, echo)) => {
            format!("stream {{\n  server {{ listen {listen}; proxy_pass {echo}; }}\n}}\n")
        }
        None => String::new(),
    };
    // In the foreground, so the master is our child: SIGTERM to it stops its workers.
    format!(
        "{module}daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         upstream origin {{ server {origin}; keepalive 256; }}\n  \
         server {{\n    listen {http};\n    client_max_body_size 0;\n    \
         location / {{\n      proxy_pass http://origin;\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      proxy_request_buffering off;\n      \
         proxy_buffering off;\n    }}\n  }}\n}}\n{stream}",
        module = stream_module.unwrap_or_default(),
    )
}

fn haproxy_config(
    http: SocketAddr,
    origin: SocketAddr,
    tcp: SocketAddr,
    echo: SocketAddr,
    workers: usize,
) -> String {
    format!(
        "global\n  maxconn 4096\n  nbthread {workers}\n\
         defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  \
         timeout client 60s\n  timeout server 60s\n\
         frontend http_in\n  bind {http}\n  default_backend origin\n\
         backend origin\n  http-reuse always\n  server origin {origin}\n\
         frontend tcp_in\n  mode tcp\n  bind {tcp}\n  default_backend echo\n\
         backend echo\n  mode tcp\n  server echo {echo}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn haproxy_listens_on_loopback_only() {
        let cfg = haproxy_config(addr(1), addr(2), addr(3), addr(4), 2);
        assert_eq!(
            cfg,
            "global\n  maxconn 4096\n  nbthread 2\n\
             defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  \
             timeout client 60s\n  timeout server 60s\n\
             frontend http_in\n  bind 127.0.0.1:1\n  default_backend origin\n\
             backend origin\n  http-reuse always\n  server origin 127.0.0.1:2\n\
             frontend tcp_in\n  mode tcp\n  bind 127.0.0.1:3\n  default_backend echo\n\
             backend echo\n  mode tcp\n  server echo 127.0.0.1:4\n"
        );
    }

    #[test]
    fn rathole_runs_as_two_paths() {
        let names: Vec<&str> = PeerKind::Rathole.paths().iter().map(|p| p.name()).collect();
        assert_eq!(names, ["rathole", "rathole-tls"]);
        assert_eq!(PeerKind::Nginx.paths(), [PeerPath::Nginx]);
    }

    #[test]
    fn nginx_stream_only_with_its_module() {
        let dir = Path::new("/tmp/x");
        let without = nginx_config(dir, addr(1), addr(2), None, None, 1);
        assert!(without.starts_with("daemon off;\nworker_processes 1;\n"));
        assert!(!without.contains("stream {"));
        assert!(without.contains("    listen 127.0.0.1:1;\n"));
        let module = Some("load_module m.so;\n".to_owned());
        let with = nginx_config(dir, addr(1), addr(2), Some((addr(3), addr(4))), module, 1);
        assert!(with.starts_with("load_module m.so;\ndaemon off;\n"));
        assert!(with
            .ends_with("stream {\n  server { listen 127.0.0.1:3; proxy_pass 127.0.0.1:4; }\n}\n"));
    }
}
