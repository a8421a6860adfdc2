//! The `adit` command line: argument definitions and dispatch.
//!
//! Each role lives in its own file; this module only declares the arguments (the names are
//! an interface that scripts and docs depend on) and hands off to the role.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `println!` that returns the write's error instead of panicking on it (standard output
/// closed, or a pipe whose reader stopped).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` that returns the write's error instead of panicking on it.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod access;
mod admin_client;
mod bench;
mod ingress;
mod load;
mod logging;
mod quick;
mod ready;
mod roles;
mod signals;
mod tunnel;

pub use logging::init_logging;

/// adit: a self-hostable reverse tunnel.
#[derive(Debug, Parser)]
#[command(name = "adit", version, about, propagate_version = true)]
pub struct Cli {
    /// Log level filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "ADIT_LOGLEVEL", default_value = "info")]
    pub loglevel: String,

    /// Append logs to this file instead of writing them to standard error.
    #[arg(long, global = true, env = "ADIT_LOGFILE", value_name = "FILE")]
    pub logfile: Option<PathBuf>,

    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "ADIT_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the edge: public listeners, tunnel listener, admin API.
    Edge(EdgeArgs),
    /// Manage and run tunnels.
    #[command(subcommand)]
    Tunnel(TunnelCommand),
    /// Start an edge, a connector and an ephemeral tunnel in one process.
    Quick(QuickArgs),
    /// Run the built-in origin server (hello, echo, sha256, bytes, stream; TCP echo).
    Origin(OriginArgs),
    /// Reach a tunnel's TCP services (SSH, RDP, databases) through the edge.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Benchmark the scenarios of loadtest/ directly and through the tunnel, or compare runs.
    Bench(BenchArgs),
    /// Generate HTTP or TCP load and report throughput and latency percentiles.
    #[command(subcommand)]
    Load(LoadCommand),
}

#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// HTTP/1.1 load on keep-alive connections against URL (http://host:port/path).
    Http(LoadHttpArgs),
    /// Raw TCP load against an echo server at ADDR (host:port).
    Tcp(LoadTcpArgs),
}

/// Flags every load shares.
#[derive(Debug, Clone, Args)]
pub struct LoadCommon {
    /// Connections, spread over the workers.
    #[arg(long, short, default_value_t = 10)]
    pub connections: usize,
    /// Run this long, e.g. 10s or 1m (default 10s unless --requests is given).
    #[arg(long, short, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Stop after exactly this many completed requests (with --duration, whichever comes
    /// first).
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Worker threads, one runtime each (default: one per core, at most --connections).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Write the report and the configuration as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the latency distribution in HdrHistogram's percentile text format (.hgrm).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct LoadHttpArgs {
    /// Target URL, http://host:port/path.
    pub url: String,
    #[command(flatten)]
    pub common: LoadCommon,
    /// Request method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
    /// Extra request header, 'Name: value'; repeatable.
    #[arg(long, short = 'H')]
    pub header: Vec<String>,
    /// Send this file's contents as the request body.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Host header to send (default: the URL's host and port), e.g. to reach a hostname
    /// through an edge addressed by IP.
    #[arg(long)]
    pub host: Option<String>,
    /// Open loop at this many requests per second in total, latency measured from each
    /// request's intended send time (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// A request without a complete response after this long counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TcpModeArg {
    /// Round trips of --size byte messages: latency of write to full echo.
    Rtt,
    /// Bulk writes of 64 KiB blocks (what comes back is drained): bytes sent per second.
    Upload,
    /// Bulk blocks written and read back from an echo server: bytes received per second.
    Download,
}

#[derive(Debug, Clone, Args)]
pub struct LoadTcpArgs {
    /// Echo server address, host:port.
    pub addr: String,
    #[command(flatten)]
    pub common: LoadCommon,
    /// What to measure.
    #[arg(long, value_enum, default_value = "rtt")]
    pub mode: TcpModeArg,
    /// Message size in bytes for --mode rtt.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Scenario names (files in --dir without .toml) or paths [default: all in --dir].
    pub scenarios: Vec<String>,
    /// Directory of scenario files.
    #[arg(long, default_value = "loadtest")]
    pub dir: PathBuf,
    /// Write the results as JSON (the input of `adit bench compare`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write latency percentile plots: one file if it ends in .svg, else a directory with one
    /// NAME.svg per scenario.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Also run through these programs when installed (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub peer: Vec<crate::bench::PeerKind>,
    /// Worker threads of the origin, the edge, the connector and each peer.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Rounds per path, overriding each scenario's.
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Length of each round, overriding each scenario's duration (not a request count).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Compare two `adit bench --json` results; exit 1 when a scenario's throughput dropped
    /// or its p99 grew by more than --max-regression percent.
    Compare {
        base: PathBuf,
        new: PathBuf,
        /// Allowed regression, in percent.
        #[arg(long, default_value_t = 5.0)]
        max_regression: f64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Carry TCP to HOSTNAME's tcp:// service over a WebSocket: each connection accepted on
    /// --url, or standard input and output (as ssh's ProxyCommand).
    Tcp(AccessTcpArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AccessTcpArgs {
    /// Public hostname of the TCP service.
    #[arg(long)]
    pub hostname: String,
    /// Local address to listen on, e.g. 127.0.0.1:2222 (default: carry stdin and stdout).
    #[arg(long)]
    pub url: Option<String>,
    /// The edge's public HTTP listener, e.g. http://127.0.0.1:8080, when HOSTNAME does not
    /// resolve to the edge (default: http://HOSTNAME:80).
    #[arg(long)]
    pub edge: Option<String>,
}

/// Edge flags. Those without a value fall back to the `--config` file, then to the defaults
/// shown.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Edge config file (YAML) with any of these settings; flags override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Directory for the database, certificates and admin token; created when missing
    /// [default: adit-edge].
    #[arg(long, env = "ADIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// UDP address of the QUIC tunnel listener [default: 127.0.0.1:7844].
    #[arg(long)]
    pub listen_tunnel: Option<SocketAddr>,
    /// TCP address of the public HTTP listener [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen_http: Option<SocketAddr>,
    /// TCP address of the public HTTPS listener, started only when a certificate is
    /// configured [default: 127.0.0.1:8443].
    #[arg(long)]
    pub listen_https: Option<SocketAddr>,
    /// Certificate chain (PEM) for HTTPS; repeatable, paired in order with --tls-key. The
    /// first is served to clients whose SNI no certificate matches.
    #[arg(long)]
    pub tls_cert: Vec<PathBuf>,
    /// Private key (PEM) of the --tls-cert in the same position.
    #[arg(long)]
    pub tls_key: Vec<PathBuf>,
    /// TCP address of the admin API [default: 127.0.0.1:7070].
    #[arg(long)]
    pub listen_admin: Option<SocketAddr>,
    /// Data-plane worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Pin worker thread i to CPU i of those the process may run on (taskset, cpusets),
    /// wrapping around; off by default.
    #[arg(long)]
    pub pin_cpus: bool,
    /// Close a client connection that sends no request for this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// Answer 408 when a request head takes longer than this to arrive.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: std::time::Duration,
    /// TCP address of the Prometheus metrics server [default: 127.0.0.1:7071, or a free
    /// port when that one is taken].
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// On SIGTERM or SIGINT, stop accepting clients and let requests in flight finish for
    /// up to this long before exiting; a second signal exits at once [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub grace_period: Option<std::time::Duration>,
}

/// Where the control commands find the admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Admin API URL, e.g. http://127.0.0.1:7070.
    #[arg(long, env = "ADIT_ADMIN", global = true)]
    pub admin: Option<String>,
    /// Admin bearer token.
    #[arg(long, env = "ADIT_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Client config file with `admin` and `token` (default: ~/.adit/config.yml).
    #[arg(long, env = "ADIT_CLIENT_CONFIG", global = true)]
    pub client_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TunnelCommand {
    /// Create a tunnel and write its credentials file.
    Create {
        name: String,
        /// Where to write the credentials file (default: ./TUNNEL-ID.json).
        #[arg(long)]
        cred_file: Option<PathBuf>,
        #[arg(long, short, value_enum, default_value_t)]
        output: OutputFormat,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Bind a hostname to a tunnel.
    #[command(subcommand)]
    Route(RouteCommand),
    /// List tunnels, with their status, connections and uptime.
    List {
        #[command(flatten)]
        filter: ListFilterArgs,
        #[arg(long, short, value_enum, default_value_t)]
        output: OutputFormat,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a tunnel and its live connections.
    Info {
        /// Tunnel name or id.
        tunnel: String,
        #[arg(long, short, value_enum, default_value_t)]
        output: OutputFormat,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a tunnel (refused while it has live connections unless --force).
    Delete {
        /// Tunnel name or id.
        tunnel: String,
        #[arg(long, short)]
        force: bool,
        #[arg(long, short, value_enum, default_value_t)]
        output: OutputFormat,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drop a tunnel's leftover connection records (those of connections that are not live).
    Cleanup {
        /// Tunnel name or id.
        tunnel: String,
        #[arg(long, short, value_enum, default_value_t)]
        output: OutputFormat,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Exit 0 when the connector serving metrics at --metrics has a registered connection,
    /// else 1.
    Ready {
        /// The connector's metrics address, host:port.
        #[arg(long)]
        metrics: String,
    },
    /// Run the connector for a tunnel.
    Run(RunArgs),
    /// Check ingress rules.
    #[command(subcommand)]
    Ingress(IngressCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Active,
    Inactive,
    Degraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortArg {
    Name,
    Created,
    Uptime,
    Connections,
}

/// `adit tunnel list` filters; the admin API takes the same as query parameters.
#[derive(Debug, Clone, Default, Args)]
pub struct ListFilterArgs {
    /// Only the tunnel with exactly this name (not empty, like --name-prefix and --search).
    #[arg(long)]
    pub name: Option<String>,
    /// Only tunnels whose name starts with this.
    #[arg(long)]
    pub name_prefix: Option<String>,
    /// Only tunnels with this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only tunnels created after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub created_after: Option<String>,
    /// Only tunnels created before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub created_before: Option<String>,
    /// Only tunnels active for at least this long, e.g. 10m or 2h.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub min_uptime: Option<std::time::Duration>,
    /// Only tunnels whose name contains this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Sort order [default: created]: name A to Z and created oldest first; uptime and
    /// connections list the most first.
    #[arg(long, value_enum)]
    pub sort_by: Option<SortArg>,
    /// Reverse the sort order, whichever it is.
    #[arg(long)]
    pub invert_sort: bool,
    /// Include deleted tunnels.
    #[arg(long)]
    pub show_deleted: bool,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Route a hostname (a leading `*.` wildcard allowed) to a tunnel.
    Dns {
        /// Tunnel name or id.
        tunnel: String,
        hostname: String,
        #[arg(long, short, value_enum, default_value_t)]
        output: OutputFormat,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Tunnel name or id (default: the config's `tunnel`).
    pub tunnel: Option<String>,
    /// Connector config file (YAML).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Credentials file (default: the config's `credentials-file`).
    #[arg(long)]
    pub cred_file: Option<PathBuf>,
    /// Serve every request with this origin URL instead of ingress rules from a config.
    #[arg(long)]
    pub url: Option<String>,
    /// QUIC connections to keep open to the edge, 1 to 255 (the register frame carries the
    /// count and each connection's index in one byte).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=255))]
    pub ha_connections: u8,
    /// Edge tunnel address, overriding the credentials file.
    #[arg(long)]
    pub edge: Option<SocketAddr>,
    /// Data-plane worker threads (default: one per core, at most --ha-connections).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Pin worker thread i to CPU i of those the process may run on (taskset, cpusets),
    /// wrapping around; off by default.
    #[arg(long)]
    pub pin_cpus: bool,
    /// TCP address of the metrics server (/metrics, /ready, /healthcheck) [default: the
    /// first free of 127.0.0.1:20241-20245, else any free port].
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// On SIGTERM or SIGINT, let requests in flight finish for up to this long before
    /// exiting; a second signal exits at once (one within 250 ms of the first counts as the
    /// same signal).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace_period: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum IngressCommand {
    /// Validate the ingress rules of a config file.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print which ingress rule matches a URL.
    Rule {
        url: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct QuickArgs {
    /// Origin to expose (default: the built-in hello-world origin).
    #[arg(long)]
    pub url: Option<String>,
    /// Public HTTP listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen_http: SocketAddr,
    /// QUIC tunnel listener (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen_tunnel: SocketAddr,
    /// Data-plane worker threads for the edge and the connector each (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Pin edge and connector worker i alike to CPU i of those the process may run on.
    #[arg(long)]
    pub pin_cpus: bool,
}

#[derive(Debug, Clone, Args)]
pub struct OriginArgs {
    /// TCP address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Also run a raw TCP echo server on this address (echoes until the client half-closes,
    /// then half-closes too).
    #[arg(long)]
    pub tcp_echo: Option<SocketAddr>,
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    signals::block()?;
    init_logging(&cli.loglevel, cli.logfile.as_deref(), cli.log_format)?;
    match crate::runtime::raise_open_files() {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!("cannot raise the open file limit: {err}"),
    }
    // A fatal error also goes to the log file (or the JSON stream) an operator watches;
    // main prints it to standard error as well.
    let logged = cli.logfile.is_some() || cli.log_format == LogFormat::Json;
    let result = dispatch(cli.command);
    if let (Err(err), true) = (&result, logged) {
        tracing::error!("{}", report(err));
    }
    result
}

/// Whether `err` (or one of its causes) is a write to a pipe whose reader has gone.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose text the line
/// already holds (errors that name their cause in their own message).
pub fn report(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Edge(args) => roles::edge(args),
        Command::Quick(args) => quick::quick(args),
        Command::Origin(args) => roles::origin(args),
        Command::Access(AccessCommand::Tcp(args)) => access::tcp(args),
        Command::Bench(args) => bench::run(args),
        Command::Load(command) => load::run(command),
        Command::Tunnel(TunnelCommand::Run(args)) => roles::connector(args),
        Command::Tunnel(TunnelCommand::Ingress(cmd)) => ingress::run(cmd),
        Command::Tunnel(cmd) => tunnel::run(cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Result<RunArgs, String> {
        let argv = ["adit", "tunnel", "run"].iter().chain(args);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Tunnel(TunnelCommand::Run(run)) => Ok(run),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn a_broken_pipe_is_told_from_other_errors() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(
            &anyhow::Error::new(pipe).context("writing the list")
        ));
        let other = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(!is_broken_pipe(&anyhow::Error::new(other)));
    }

    #[test]
    fn reports_name_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let named = crate::tunnel::credentials::CredentialsError::Read {
            path: "c.json".into(),
            source: io,
        };
        let err = anyhow::Error::new(named).context("cannot start");
        assert_eq!(
            report(&err),
            "cannot start: cannot read credentials file c.json: entity not found"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(report(&plain), "outer: inner");
    }

    #[test]
    fn cpu_pinning_is_off_unless_asked() {
        assert!(!run_args(&[]).unwrap().pin_cpus);
        assert!(run_args(&["--pin-cpus"]).unwrap().pin_cpus);
    }

    #[test]
    fn ha_connections_range() {
        assert_eq!(run_args(&[]).unwrap().ha_connections, 4);
        assert_eq!(
            run_args(&["--ha-connections", "1"]).unwrap().ha_connections,
            1
        );
        assert_eq!(
            run_args(&["--ha-connections", "255"])
                .unwrap()
                .ha_connections,
            255
        );
        for (value, why) in [
            ("0", "0 is not in 1..=255"),
            ("256", "256 is not in 1..=255"),
        ] {
            let err = run_args(&["--ha-connections", value]).unwrap_err();
            let first = err.lines().next().unwrap_or_default().to_owned();
            assert_eq!(
                first,
                format!(
                    "error: invalid value '{value}' for '--ha-connections <HA_CONNECTIONS>': {why}"
                )
            );
        }
    }
}
