//! `adit load http|tcp`: runs a load, shows a progress line on a terminal, prints the
//! report and writes the `--json` and `--hgrm` files.

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{LoadCommand, LoadCommon, LoadHttpArgs, LoadTcpArgs, TcpModeArg};
use crate::load::{self, report::millis, HttpLoad, Progress, Report, TcpLoad, TcpMode};
use crate::runtime;

pub fn run(command: LoadCommand) -> anyhow::Result<ExitCode> {
    match command {
        LoadCommand::Http(args) => http(args),
        LoadCommand::Tcp(args) => tcp(args),
    }
}

/// An `http://host[:port]/path` URL split into its address, authority and path.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    authority: String,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> anyhow::Result<Url> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only http:// URLs are supported");
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('?') => (&rest[..at], format!("/{}", &rest[at..])),
        Some(at) => (&rest[..at], rest[at..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            let port = port
                .parse()
                .with_context(|| format!("{url}: invalid port"))?;
            (host, port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    Ok(Url {
        authority: authority.to_owned(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        path,
    })
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

fn parse_header(header: &str) -> anyhow::Result<(String, String)> {
    match header.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => bail!("header {header:?} is not 'Name: value'"),
    }
}

/// Descriptors a run needs besides one per connection: the runtimes' rings, standard
/// streams, the output files.
const SPARE_FILES: u64 = 64;

/// Refuses, before any load is sent, what would only fail once the run is over or make it
/// measure nothing: connections past the open-file limit, an output file in a directory
/// that does not exist.
fn preflight(common: &LoadCommon) -> anyhow::Result<()> {
    let limit = runtime::raise_open_files().context("cannot read the open-file limit")?;
    check_open_files(common.connections, limit)?;
    let outputs = [("--json", &common.json), ("--hgrm", &common.hgrm)];
    for (flag, path) in outputs {
        let Some((path, dir)) = path.as_deref().and_then(|p| Some((p, p.parent()?))) else {
            continue;
        };
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            bail!("{flag} {}: no directory {}", path.display(), dir.display());
        }
        if path.is_dir() {
            bail!("{flag} {}: is a directory", path.display());
        }
    }
    Ok(())
}

fn check_open_files(connections: usize, limit: u64) -> anyhow::Result<()> {
    let needed = connections as u64 + SPARE_FILES;
    if needed > limit {
        bail!(
            "--connections {connections} needs about {needed} open files, but this process \
             may open {limit} (ulimit -n); raise the limit (tuning/limits.conf) or lower \
             --connections"
        );
    }
    Ok(())
}

fn http(args: LoadHttpArgs) -> anyhow::Result<ExitCode> {
    preflight(&args.common)?;
    let url = parse_url(&args.url)?;
    let target = resolve(&url.host, url.port)?;
    let headers = args
        .header
        .iter()
        .map(|h| parse_header(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = match &args.body_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .into(),
        ),
        None => None,
    };
    let load = HttpLoad {
        target,
        host: args.host.clone().unwrap_or(url.authority),
        path: url.path,
        method: args.method.clone(),
        headers,
        body,
        connections: args.common.connections,
        workers: workers(&args.common),
        duration: args.common.duration,
        requests: args.common.requests,
        rate: args.rate,
        timeout: args.timeout,
    };

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "adit load {} ({target}): {} connections, {} workers, {}{}",
        args.url,
        load.connections,
        load.workers,
        span(load.duration, load.requests),
        load.rate
            .map_or(String::new(), |r| format!(", open loop at {r}/s")),
    )?;
    let report = with_progress(|progress| load::run_http(&load, progress))?;
    report.print(&mut out)?;
    if let Some(warning) = load.rate.and_then(|rate| rate_shortfall(&report, rate)) {
        eprintln!("adit load: {warning}");
    }
    let config = serde_json::json!({
        "kind": "http",
        "url": args.url,
        "target": target.to_string(),
        "method": load.method,
        "host": load.host,
        "connections": load.connections,
        "workers": load.workers,
        "duration_secs": load.duration.map(|d| d.as_secs_f64()),
        "requests": load.requests,
        "rate": load.rate,
        "timeout_secs": load.timeout.as_secs_f64(),
    });
    write_files(&report, config, &args.common)?;
    Ok(exit_code(&report))
}

fn mode_text(mode: TcpMode) -> String {
    match mode {
        TcpMode::RoundTrip { size } => format!("round trips of {size} bytes"),
        TcpMode::Upload => "upload".to_owned(),
        TcpMode::Download => "download".to_owned(),
    }
}

fn tcp(args: LoadTcpArgs) -> anyhow::Result<ExitCode> {
    preflight(&args.common)?;
    let target = match args.addr.rsplit_once(':') {
        Some((host, port)) => resolve(
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse()
                .with_context(|| format!("{}: invalid port", args.addr))?,
        )?,
        None => bail!("{}: expected HOST:PORT", args.addr),
    };
    let mode = match args.mode {
        TcpModeArg::Rtt => TcpMode::RoundTrip { size: args.size },
        TcpModeArg::Upload => TcpMode::Upload,
        TcpModeArg::Download => TcpMode::Download,
    };
    let load = TcpLoad {
        target,
        mode,
        connections: args.common.connections,
        workers: workers(&args.common),
        duration: args.common.duration,
        requests: args.common.requests,
    };

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "adit load tcp {target} ({}): {} connections, {} workers, {}",
        mode_text(mode),
        load.connections,
        load.workers,
        span(load.duration, load.requests),
    )?;
    let report = with_progress(|progress| load::run_tcp_with_progress(&load, progress))?;
    report.print(&mut out)?;
    let config = serde_json::json!({
        "kind": "tcp",
        "target": target.to_string(),
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "size": args.size,
        "connections": load.connections,
        "workers": load.workers,
        "duration_secs": load.duration.map(|d| d.as_secs_f64()),
        "requests": load.requests,
    });
    write_files(&report, config, &args.common)?;
    Ok(exit_code(&report))
}

/// An open-loop run that completed markedly fewer requests per second than `--rate`
/// (under 95%) measured a lighter load than it names: the target or this machine did not
/// keep up. Runs shorter than a second are not judged; their rate says little.
fn rate_shortfall(report: &Report, rate: f64) -> Option<String> {
    let achieved = report.requests_per_sec();
    if report.elapsed < Duration::from_secs(1) || achieved >= rate * 0.95 {
        return None;
    }
    Some(format!(
        "{achieved:.1} requests/s completed, below the --rate of {rate}/s: the target (or this \
         machine) did not keep up, and the latencies, which count from each request's due \
         time, include the backlog"
    ))
}

/// Failure (1) when not one request completed, so scripts notice a target that was down;
/// non-2xx responses are completed requests.
fn exit_code(report: &Report) -> ExitCode {
    if report.requests > 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!("adit load: no request completed");
    ExitCode::FAILURE
}

fn workers(common: &LoadCommon) -> usize {
    common
        .workers
        .unwrap_or_else(runtime::default_workers)
        .min(common.connections.max(1))
}

fn span(duration: Option<Duration>, requests: Option<u64>) -> String {
    match (duration, requests) {
        (Some(d), Some(n)) => format!("{n} requests or {}", humantime::format_duration(d)),
        (Some(d), None) => humantime::format_duration(d).to_string(),
        (None, Some(n)) => format!("{n} requests"),
        (None, None) => humantime::format_duration(load::DEFAULT_DURATION).to_string(),
    }
}

/// Runs `run` with a progress line on stderr when stderr is a terminal; Ctrl-C ends the
/// process (the report of an interrupted run is not printed).
fn with_progress(
    run: impl FnOnce(Option<&(dyn Fn(&Progress) + Sync)>) -> Result<Report, load::LoadError>,
) -> anyhow::Result<Report> {
    let (signals, received) = crossbeam_channel::bounded(1);
    super::signals::spawn_waiter(signals)?;
    std::thread::Builder::new()
        .name("load-interrupt".into())
        .spawn(move || {
            if received.recv().is_ok() {
                eprintln!("\ninterrupted");
                std::process::exit(130);
            }
        })?;

    let terminal = std::io::stderr().is_terminal();
    let line = |p: &Progress| {
        let rate = p.requests as f64 / p.elapsed.as_secs_f64().max(1e-9);
        let left = p
            .left
            .map_or(String::new(), |l| format!(", {:.0}s left", l.as_secs_f64()));
        eprint!(
            "\r\x1b[K{} requests, {rate:.0}/s, p99 {}, {} errors{left}",
            p.requests,
            millis(p.p99),
            p.errors
        );
    };
    let report = run(terminal.then_some(&line as &(dyn Fn(&Progress) + Sync)))?;
    if terminal {
        eprint!("\r\x1b[K");
    }
    Ok(report)
}

fn write_files(
    report: &Report,
    config: serde_json::Value,
    common: &LoadCommon,
) -> anyhow::Result<()> {
    if let Some(path) = &common.json {
        let mut json = report.to_json();
        json["config"] = config;
        let text = serde_json::to_string_pretty(&json)?;
        write_file(path, |out| writeln!(out, "{text}"))?;
    }
    if let Some(path) = &common.hgrm {
        write_file(path, |out| report.write_hgrm(out))?;
    }
    Ok(())
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    write(&mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_open_file_limit_are_refused() {
        assert!(check_open_files(936, 1000).is_ok());
        assert_eq!(
            check_open_files(1_000_000, 20_000).unwrap_err().to_string(),
            "--connections 1000000 needs about 1000064 open files, but this process may open \
             20000 (ulimit -n); raise the limit (tuning/limits.conf) or lower --connections"
        );
    }

    #[test]
    fn a_rate_well_below_the_one_asked_is_reported() {
        let mut report = Report::empty();
        report.elapsed = Duration::from_secs(2);
        report.requests = 16_000;
        assert_eq!(
            rate_shortfall(&report, 10_000.0).as_deref(),
            Some(
                "8000.0 requests/s completed, below the --rate of 10000/s: the target (or this \
                 machine) did not keep up, and the latencies, which count from each request's \
                 due time, include the backlog"
            )
        );
        // Within 5%: requests still in flight when the run ends are not counted.
        report.requests = 19_000;
        assert_eq!(rate_shortfall(&report, 10_000.0), None);
        // Too short to judge.
        report.elapsed = Duration::from_millis(500);
        report.requests = 10;
        assert_eq!(rate_shortfall(&report, 10_000.0), None);
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:8000/bytes/10?x=1").unwrap(),
            Url {
                authority: "127.0.0.1:8000".into(),
                host: "127.0.0.1".into(),
                port: 8000,
                path: "/bytes/10?x=1".into(),
            }
        );
        let url = parse_url("http://localhost").unwrap();
        assert_eq!((url.port, url.path.as_str()), (80, "/"));
        let url = parse_url("http://[::1]:9/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 9));
        assert!(parse_url("https://x/").is_err());
        assert!(parse_url("http://:80/").is_err());
    }

    #[test]
    fn headers_are_name_colon_value() {
        assert_eq!(
            parse_header("X-Test:  a: b ").unwrap(),
            ("X-Test".into(), "a: b".into())
        );
        assert!(parse_header("nocolon").is_err());
    }
}
