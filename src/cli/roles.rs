//! The long-running roles: edge, connector, origin. (The quick tunnel is in `quick.rs`.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{EdgeArgs, OriginArgs, RunArgs};
use crate::connector::{self, config::Config, ingress::Ingress, ConnectorConfig, DrainOutcome};
use crate::edge::config::EdgeFile;
use crate::edge::tls::CertFiles;
use crate::edge::{self, proxy::ClientLimits, EdgeConfig};
use crate::metrics::{self, server};
use crate::runtime;
use crate::tunnel::credentials::Credentials;

/// Runs the edge until a signal. The first drains it: close the public listeners, let the
/// requests in flight finish for up to the grace period, close the tunnel connections and
/// the control plane, exit 0. A second signal exits at once, with status 130.
pub fn edge(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    let metrics = server::bind(args.metrics, &[SocketAddr::from(([127, 0, 0, 1], 7071))])?;
    let (config, grace) = edge_config(args)?;
    let edge = edge::start(config)?;
    let sets = edge.metrics.clone();
    let health: server::Handler = Box::new(|| server::Reply::text(200, "OK"));
    let routes = vec![("/healthcheck", health)];
    let _metrics = server::start(metrics, move || metrics::edge::render(&sets), routes)
        .context("cannot start the metrics server")?;

    let (tx, signals) = crossbeam_channel::bounded(4);
    super::signals::spawn_waiter(tx)?;
    let signal = signals.recv()?;
    tracing::debug!(signal, "signal received");
    let outcome = edge.drain(grace, std::time::Instant::now(), &signals);

    edge.shutdown();
    // Give the workers a moment to send their close frames.
    std::thread::sleep(CLOSE_FRAMES);
    if outcome == edge::drain::DrainOutcome::Interrupted {
        tracing::warn!("second signal: exiting at once");
        return Ok(ExitCode::from(130));
    }
    edge.control.shutdown();
    tracing::info!("edge stopped");
    Ok(ExitCode::SUCCESS)
}

/// How long the edge waits after closing its tunnel connections, for the close frames to go.
const CLOSE_FRAMES: Duration = Duration::from_millis(200);

/// How long a stopping edge waits for requests in flight unless told otherwise.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// The edge's settings, and its grace period: flags first, then the config file, then the
/// defaults.
fn edge_config(args: EdgeArgs) -> anyhow::Result<(EdgeConfig, Duration)> {
    let file = match &args.config {
        Some(path) => EdgeFile::load(path)?,
        None => EdgeFile::default(),
    };
    if args.tls_cert.len() != args.tls_key.len() {
        bail!(
            "--tls-cert and --tls-key go in pairs: got {} --tls-cert and {} --tls-key",
            args.tls_cert.len(),
            args.tls_key.len()
        );
    }
    let tls = if args.tls_cert.is_empty() {
        file.tls
    } else {
        let pairs = args.tls_cert.into_iter().zip(args.tls_key);
        pairs.map(|(cert, key)| CertFiles { cert, key }).collect()
    };
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let grace = args
        .grace_period
        .or(file.grace_period)
        .unwrap_or(DEFAULT_GRACE);
    let config = EdgeConfig {
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("adit-edge")),
        listen_tunnel: args
            .listen_tunnel
            .or(file.listen_tunnel)
            .unwrap_or(local(7844)),
        listen_http: args.listen_http.or(file.listen_http).unwrap_or(local(8080)),
        listen_https: args
            .listen_https
            .or(file.listen_https)
            .unwrap_or(local(8443)),
        listen_admin: args
            .listen_admin
            .or(file.listen_admin)
            .unwrap_or(local(7070)),
        workers: args
            .workers
            .or(file.workers)
            .unwrap_or_else(runtime::default_workers),
        pin_cpus: args.pin_cpus || file.pin_cpus.unwrap_or(false),
        tls,
        limits: ClientLimits {
            idle_timeout: args.idle_timeout,
            header_timeout: args.header_timeout,
        },
    };
    Ok((config, grace))
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> anyhow::Result<i32> {
    let (tx, rx) = crossbeam_channel::bounded(4);
    super::signals::spawn_waiter(tx)?;
    Ok(rx.recv()?)
}

/// How long a second signal waits for the connectors' close frames to leave.
const ABORT_BOUND: Duration = Duration::from_millis(300);

/// Runs a started connector until a signal or a fatal error. The first signal drains it:
/// unregister, let requests in flight finish for up to `grace`, close, exit 0; a second
/// signal exits at once, with status 130.
pub fn run_connector(connector: connector::Connector, grace: Duration) -> anyhow::Result<ExitCode> {
    let (tx, signals) = crossbeam_channel::bounded(4);
    super::signals::spawn_waiter(tx)?;
    crossbeam_channel::select! {
        recv(connector.fatal()) -> why => {
            let why = why.unwrap_or_else(|_| "every connector worker stopped".into());
            bail!(why)
        }
        recv(signals) -> signal => {
            let signal = signal.unwrap_or(0);
            tracing::info!(signal, "connector shutting down: unregistering");
            if connector.drain(grace, &signals) == DrainOutcome::Interrupted {
                tracing::warn!("second signal: closing the connections and exiting at once");
                connector.abort(ABORT_BOUND);
                return Ok(ExitCode::from(130));
            }
            tracing::info!("closing the connections to the edge");
            connector.shutdown();
            tracing::info!("connector stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn connector(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (ingress, tunnel, cred_file) = match (&args.config, &args.url) {
        (Some(_), Some(_)) => bail!("pass either --config or --url, not both"),
        (Some(path), None) => {
            let config = Config::load(path).map_err(|err| anyhow::anyhow!("{err}"))?;
            let tunnel = args.tunnel.clone().or(config.tunnel);
            let cred_file = args.cred_file.clone().or(config.credentials_file);
            (config.ingress, tunnel, cred_file)
        }
        (None, Some(url)) => {
            let ingress =
                Ingress::single(url).map_err(|err| anyhow::anyhow!("--url: {}", err.message))?;
            (ingress, args.tunnel.clone(), args.cred_file.clone())
        }
        (None, None) => bail!("no ingress rules: pass --config FILE or --url URL"),
    };
    let cred_file: PathBuf = cred_file
        .context("no credentials file: set credentials-file in the config or pass --cred-file")?;
    let credentials = Credentials::load(&cred_file)?;
    if let Some(tunnel) = &tunnel {
        let id = credentials.tunnel_id.to_string();
        if *tunnel != credentials.tunnel_name && *tunnel != id {
            bail!(
                "{} holds the credentials of tunnel {} ({id}), not {tunnel}",
                cred_file.display(),
                credentials.tunnel_name
            );
        }
    }
    let workers = args.workers.unwrap_or_else(runtime::default_workers);
    let defaults: Vec<SocketAddr> = (20241..=20245)
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .collect();
    let metrics = server::bind(args.metrics, &defaults)?;
    let connector = connector::start(ConnectorConfig {
        credentials,
        ingress,
        ha_connections: args.ha_connections,
        workers,
        pin_cpus: args.pin_cpus,
        edge: args.edge,
    })?;
    let _metrics = connector_metrics(&connector, metrics)?;
    run_connector(connector, args.grace_period)
}

/// Serves the connector's `/metrics`, `/ready` and `/healthcheck` on `listener`.
fn connector_metrics(
    connector: &connector::Connector,
    listener: std::net::TcpListener,
) -> anyhow::Result<server::MetricsServer> {
    let sets = connector.metrics.clone();
    let ready_sets = sets.clone();
    let id = connector.connector_id;
    let ready: server::Handler = Box::new(move || metrics::connector::ready(&ready_sets, id));
    let health: server::Handler = Box::new(|| server::Reply::text(200, "OK"));
    let routes = vec![("/ready", ready), ("/healthcheck", health)];
    server::start(listener, move || metrics::connector::render(&sets), routes)
        .context("cannot start the metrics server")
}

pub fn origin(args: OriginArgs) -> anyhow::Result<ExitCode> {
    let workers = args.workers.unwrap_or_else(runtime::default_workers);
    let origin = crate::origin::spawn(args.listen, workers)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let _ = outln!("adit origin listening on http://{}/", origin.addr);
    let _echo = match args.tcp_echo {
        Some(addr) => {
            let echo = crate::origin::spawn_tcp_echo(addr, workers)
                .with_context(|| format!("cannot listen on {addr}"))?;
            let _ = outln!("adit origin echoing TCP on {}", echo.addr);
            Some(echo)
        }
        None => None,
    };
    wait_for_signal()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn edge_args(args: &[&str]) -> EdgeArgs {
        let cli = Cli::try_parse_from([&["adit", "edge"], args].concat()).unwrap();
        match cli.command {
            Command::Edge(args) => args,
            _ => unreachable!("parsed an edge command line"),
        }
    }

    fn files(cert: &str, key: &str) -> CertFiles {
        CertFiles {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        }
    }

    #[test]
    fn flags_override_the_config_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("adit-edge-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("edge.yml");
        let text = "listen-http: 127.0.0.1:80\nlisten-https: 127.0.0.1:443\nworkers: 3\n\
                    pin-cpus: true\ngrace-period: 5s\ntls:\n  - cert: a.pem\n    key: a.key\n";
        std::fs::write(&path, text).unwrap();
        let config_arg = path.to_str().unwrap();

        let (config, grace) = edge_config(edge_args(&[
            "--config",
            config_arg,
            "--listen-http",
            "127.0.0.1:81",
            "--data-dir",
            "state",
        ]))
        .unwrap();
        assert_eq!(grace, Duration::from_secs(5));
        assert_eq!(config.listen_http, "127.0.0.1:81".parse().unwrap());
        assert_eq!(config.listen_https, "127.0.0.1:443".parse().unwrap());
        assert_eq!(config.listen_tunnel, "127.0.0.1:7844".parse().unwrap());
        assert_eq!(config.listen_admin, "127.0.0.1:7070".parse().unwrap());
        assert_eq!(config.workers, 3);
        assert!(config.pin_cpus);
        assert_eq!(config.data_dir, PathBuf::from("state"));
        let a = (dir.join("a.pem"), dir.join("a.key"));
        assert_eq!(
            config.tls,
            vec![files(a.0.to_str().unwrap(), a.1.to_str().unwrap())]
        );

        // Certificates on the command line replace the file's.
        let (config, grace) = edge_config(edge_args(&[
            "--config",
            config_arg,
            "--grace-period",
            "1s",
            "--tls-cert",
            "b.pem",
            "--tls-key",
            "b.key",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "c.key",
        ]))
        .unwrap();
        assert_eq!(grace, Duration::from_secs(1));
        assert_eq!(
            config.tls,
            vec![files("b.pem", "b.key"), files("c.pem", "c.key")]
        );

        // Without a file, the defaults; the flag alone pins.
        let (config, grace) = edge_config(edge_args(&[])).unwrap();
        assert_eq!(grace, Duration::from_secs(30));
        assert!(!config.pin_cpus);
        let (config, _) = edge_config(edge_args(&["--pin-cpus"])).unwrap();
        assert!(config.pin_cpus);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn certificates_and_keys_must_pair_up() {
        let err = edge_config(edge_args(&["--tls-cert", "a.pem"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--tls-cert and --tls-key go in pairs: got 1 --tls-cert and 0 --tls-key"
        );
    }
}
