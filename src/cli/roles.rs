//! The long-running roles: edge, connector, origin. (The quick tunnel is in `quick.rs`.)

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::{EdgeArgs, OriginArgs, RunArgs};
use crate::connector::{self, config::Config, ingress::Ingress, ConnectorConfig};
use crate::edge::{self, proxy::ClientLimits, EdgeConfig};
use crate::runtime;
use crate::tunnel::credentials::Credentials;

pub fn edge(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    let edge = edge::start(EdgeConfig {
        data_dir: args.data_dir,
        listen_tunnel: args.listen_tunnel,
        listen_http: args.listen_http,
        listen_admin: args.listen_admin,
        workers: args.workers.unwrap_or_else(runtime::default_workers),
        limits: ClientLimits {
            idle_timeout: args.idle_timeout,
            header_timeout: args.header_timeout,
        },
    })?;
    let signal = wait_for_signal()?;
    tracing::info!(signal, "edge shutting down");
    edge.shutdown();
    // Give the workers a moment to send their close frames.
    std::thread::sleep(std::time::Duration::from_millis(200));
    Ok(ExitCode::SUCCESS)
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> anyhow::Result<i32> {
    let (tx, rx) = crossbeam_channel::bounded(4);
    super::signals::spawn_waiter(tx)?;
    Ok(rx.recv()?)
}

/// Runs a started connector until a signal (clean exit) or a fatal error.
pub fn run_connector(connector: connector::Connector) -> anyhow::Result<ExitCode> {
    let (tx, signals) = crossbeam_channel::bounded(4);
    super::signals::spawn_waiter(tx)?;
    crossbeam_channel::select! {
        recv(connector.fatal()) -> why => {
            let why = why.unwrap_or_else(|_| "every connector worker stopped".into());
            bail!(why)
        }
        recv(signals) -> signal => {
            tracing::info!(signal = signal.unwrap_or(0), "connector shutting down");
            connector.shutdown();
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
    let connector = connector::start(ConnectorConfig {
        credentials,
        ingress,
        ha_connections: args.ha_connections,
        workers,
        edge: args.edge,
    })?;
    run_connector(connector)
}

pub fn origin(args: OriginArgs) -> anyhow::Result<ExitCode> {
    let workers = args.workers.unwrap_or_else(runtime::default_workers);
    let origin = crate::origin::spawn(args.listen, workers)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("adit origin listening on http://{}/", origin.addr);
    let _echo = match args.tcp_echo {
        Some(addr) => {
            let echo = crate::origin::spawn_tcp_echo(addr, workers)
                .with_context(|| format!("cannot listen on {addr}"))?;
            println!("adit origin echoing TCP on {}", echo.addr);
            Some(echo)
        }
        None => None,
    };
    wait_for_signal()?;
    Ok(ExitCode::SUCCESS)
}
