//! `adit access tcp`: carries TCP to a tunnel's `tcp://` service, from a local listener or
//! from standard input and output.

use std::process::ExitCode;

use anyhow::Context;

use super::AccessTcpArgs;
use crate::access::{self, Target};
use crate::runtime;

pub fn tcp(args: AccessTcpArgs) -> anyhow::Result<ExitCode> {
    let target = Target::new(&args.hostname, args.edge.as_deref())?;
    match args.url {
        Some(url) => listen(&url, target),
        None => stdio(&target),
    }
}

/// Listener mode: runs until SIGINT or SIGTERM.
fn listen(url: &str, target: Target) -> anyhow::Result<ExitCode> {
    let addr = url.strip_prefix("tcp://").unwrap_or(url);
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (hostname, edge) = (target.hostname.clone(), target.edge);

    let (stopped_tx, stopped) = crossbeam_channel::bounded::<String>(1);
    std::thread::Builder::new()
        .name("access".into())
        .spawn(move || {
            let why = match runtime::block_on(access::serve(listener, target)) {
                Ok(Ok(())) => "the listener stopped".to_owned(),
                Ok(Err(err)) => format!("the listener failed: {err}"),
                Err(err) => format!("cannot start the runtime: {err}"),
            };
            let _ = stopped_tx.send(why);
        })?;
    tracing::info!(%local, %hostname, %edge, "access listener started");
    let _ = outln!("adit access listening on {local}, carrying to {hostname} through {edge}");

    let (tx, signals) = crossbeam_channel::bounded(4);
    super::signals::spawn_waiter(tx)?;
    crossbeam_channel::select! {
        recv(stopped) -> why => {
            anyhow::bail!(why.unwrap_or_else(|_| "the listener stopped".into()))
        }
        recv(signals) -> _ => Ok(ExitCode::SUCCESS),
    }
}

/// Stdio mode: returns when both directions have ended; a signal ends the process at once.
fn stdio(target: &Target) -> anyhow::Result<ExitCode> {
    let (tx, signals) = crossbeam_channel::bounded(4);
    super::signals::spawn_waiter(tx)?;
    std::thread::Builder::new()
        .name("access-signals".into())
        .spawn(move || {
            if let Ok(signal) = signals.recv() {
                // The IO threads block in reads that nothing else would interrupt.
                std::process::exit(128 + signal);
            }
        })?;
    access::carry_stdio(target)?;
    Ok(ExitCode::SUCCESS)
}
