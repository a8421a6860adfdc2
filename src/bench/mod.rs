//! `adit bench`: runs the scenarios of `loadtest/` against the built-in origin directly and
//! through an edge and a connector (and, when asked, through nginx, HAProxy or rathole), and
//! reports throughput, latency percentiles, CPU per request or per GiB and peak memory of the
//! proxying processes, and the ratio of each path to the direct one.
//!
//! Rounds alternate between paths (direct, tunnel, peers, direct, tunnel, ...) so that drift
//! in the machine (thermal limits, other tenants) hits every path alike instead of whichever
//! ran last. CPU time comes from `/proc/PID/stat` deltas around each round of a path, peak
//! memory from `VmHWM`, reset before each scenario.
//!
//! The pieces: [`scenario`] parses the TOML files, [`stack`] starts what is measured,
//! [`peer`] the other programs, [`report`] accumulates rounds into the JSON model and the
//! table, [`svg`] draws the percentile curves and [`compare`] is the regression gate.

pub mod compare;
pub mod peer;
pub mod procstat;
pub mod rathole;
pub mod report;
pub mod scenario;
pub mod stack;
pub mod summary;
pub mod svg;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;

pub use peer::PeerKind;
pub use report::BenchReport;
pub use scenario::{Load, Scenario, ScenarioError, Stop, TcpScenario};

use procstat::CpuTicks;
use report::{PathTally, ScenarioReport};
use stack::Stack;

// What measures every path.
use crate::load;
const LOAD_GENERATOR: &str = "adit load (one monoio runtime per worker)";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("cannot start {what}: {error}")]
    Spawn { what: String, error: std::io::Error },
    #[error("{what} did not start: {reason}; its log ends:\n{log}")]
    Startup {
        what: String,
        reason: String,
        log: String,
    },
    #[error("cannot prepare {what}: {reason}")]
    Prepare { what: String, reason: String },
    #[error("{command} failed: {stderr}")]
    Control { command: String, stderr: String },
    #[error("{scenario} via {path}: {error}")]
    Load {
        scenario: String,
        path: String,
        error: load::LoadError,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What to run and how.
pub struct BenchOptions<'a> {
    /// The `adit` binary to start the edge, connector and access client from.
    pub exe: PathBuf,
    pub scenarios: Vec<Scenario>,
    pub peers: Vec<PeerKind>,
    /// Worker threads of the origins, the edge and the connector each.
    pub workers: usize,
    /// Overrides every scenario's rounds.
    pub rounds: Option<u32>,
    /// Overrides every scenario's duration (not its request count).
    pub duration: Option<Duration>,
    /// Set to stop after the current round.
    pub stop: &'a AtomicBool,
    /// Progress and notes for the user, one line each.
    pub say: &'a (dyn Fn(&str) + Sync),
}

/// One way to reach the origins: its name, its entry, and the processes in between.
struct Route {
    name: String,
    addr: std::net::SocketAddr,
    /// (role, PID) of the processes whose CPU and memory count for this path.
    processes: Vec<(String, u32)>,
}

/// Starts everything, runs every scenario, and stops everything again.
pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let with_tcp = options
        .scenarios
        .iter()
        .any(|s| matches!(s.load, Load::Tcp(_)));
    (options.say)("starting origin, edge and connector");
    let stack = Stack::start(&options.exe, options.workers, with_tcp)?;

    let mut peers = Vec::new();
    let mut skipped = Vec::new();
    for kind in &options.peers {
        let dir = stack.dir.path();
        for (path, started) in peer::start(*kind, dir, stack.origin, stack.echo, options.workers) {
            match started {
                Ok(peer) => peers.push(peer),
                Err(reason) => {
                    (options.say)(&format!("skipping {}: {reason}", path.name()));
                    skipped.push(report::SkippedPath {
                        path: path.name().to_owned(),
                        reason,
                    });
                }
            }
        }
    }

    let mut scenarios = Vec::new();
    for scenario in &options.scenarios {
        let routes = routes(scenario, &stack, &peers, options.say);
        scenarios.push(run_scenario(options, scenario, &routes)?);
    }
    let summary = summary::Summary::of(&scenarios);
    Ok(BenchReport {
        adit_version: env!("CARGO_PKG_VERSION").to_owned(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_generator: LOAD_GENERATOR.to_owned(),
        scenarios,
        skipped,
        summary,
    })
}

fn routes(
    scenario: &Scenario,
    stack: &Stack,
    peers: &[peer::Peer],
    say: &(dyn Fn(&str) + Sync),
) -> Vec<Route> {
    let tcp = matches!(scenario.load, Load::Tcp(_));
    let mut tunnel = vec![
        ("edge".to_owned(), stack.edge.pid()),
        ("connector".to_owned(), stack.connector.pid()),
    ];
    let (direct, entry) = if tcp {
        let access = stack
            .access
            .as_ref()
            .map(|(child, addr)| (child.pid(), *addr));
        if let Some((pid, _)) = access {
            tunnel.push(("access".to_owned(), pid));
        }
        (stack.echo, access.map_or(stack.edge_http, |a| a.1))
    } else {
        (stack.origin, stack.edge_http)
    };
    let mut routes = vec![
        Route {
            name: "direct".into(),
            addr: direct,
            processes: Vec::new(),
        },
        Route {
            name: "tunnel".into(),
            addr: entry,
            processes: tunnel,
        },
    ];
    for peer in peers {
        let addr = if tcp { peer.tcp } else { Some(peer.http) };
        let Some(addr) = addr else {
            say(&format!(
                "{}: {} cannot carry TCP here, skipped",
                scenario.name, peer.name
            ));
            continue;
        };
        routes.push(Route {
            name: peer.name.to_owned(),
            addr,
            processes: peer
                .processes
                .iter()
                .map(|c| (c.role.clone(), c.pid()))
                .collect(),
        });
    }
    routes
}

fn run_scenario(
    options: &BenchOptions,
    scenario: &Scenario,
    routes: &[Route],
) -> Result<ScenarioReport, BenchError> {
    let rounds = options.rounds.unwrap_or(scenario.rounds).max(1);
    let stop = match (scenario.stop, options.duration) {
        (Stop::Duration(_), Some(d)) => Stop::Duration(d),
        (stop, _) => stop,
    };
    let body = match &scenario.load {
        Load::Http(h) if h.body_size > 0 => Some(Bytes::from(vec![b'a'; h.body_size as usize])),
        _ => None,
    };
    for route in routes {
        for (_, pid) in &route.processes {
            procstat::tree_reset_peak_rss(*pid);
        }
    }

    let mut tallies: Vec<PathTally> = routes.iter().map(|r| PathTally::new(&r.name)).collect();
    for round in 1..=rounds {
        for (route, tally) in routes.iter().zip(&mut tallies) {
            if options.stop.load(Ordering::Relaxed) {
                return Err(BenchError::Interrupted);
            }
            (options.say)(&format!(
                "{}: round {round}/{rounds} via {}",
                scenario.name, route.name
            ));
            let before = ticks(&route.processes);
            let round = run_round(scenario, stop, route, body.clone()).map_err(|error| {
                BenchError::Load {
                    scenario: scenario.name.clone(),
                    path: route.name.clone(),
                    error,
                }
            })?;
            let after = ticks(&route.processes);
            let used: Vec<(String, CpuTicks)> = after
                .iter()
                .zip(&before)
                .map(|((role, a), (_, b))| (role.clone(), a.since(*b)))
                .collect();
            let bytes = round.bytes_read + round.bytes_written;
            let elapsed = round.elapsed.as_secs_f64();
            let errors = round.errors.transport() + round.errors.non_2xx();
            tally.add_round(
                round.requests,
                errors,
                bytes,
                elapsed,
                &round.latency,
                &used,
            );
        }
    }

    let tick_rate = procstat::ticks_per_second();
    let paths = routes
        .iter()
        .zip(&tallies)
        .map(|(route, tally)| {
            let peaks: Vec<(String, u64)> = route
                .processes
                .iter()
                .map(|(role, pid)| (role.clone(), procstat::tree_peak_rss_kib(*pid).unwrap_or(0)))
                .collect();
            tally.finish(scenario.is_bulk(), tick_rate, &peaks)
        })
        .collect();
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        kind: scenario.kind().to_owned(),
        description: scenario.description.clone(),
        unit: if scenario.is_bulk() { "GiB" } else { "request" }.to_owned(),
        paths,
        ratios: Default::default(),
    };
    report.compute_ratios();
    Ok(report)
}

fn ticks(processes: &[(String, u32)]) -> Vec<(String, CpuTicks)> {
    processes
        .iter()
        .map(|(role, pid)| {
            let ticks = procstat::tree_cpu_ticks(*pid).unwrap_or_default();
            (role.clone(), ticks)
        })
        .collect()
}

/// One round of `scenario` through `route`.
fn run_round(
    scenario: &Scenario,
    stop: Stop,
    route: &Route,
    body: Option<Bytes>,
) -> Result<load::Report, load::LoadError> {
    let (duration, requests) = match stop {
        Stop::Duration(d) => (Some(d), None),
        Stop::Requests(n) => (None, Some(n)),
    };
    match &scenario.load {
        Load::Http(http) => load::run_http(
            &load::HttpLoad {
                target: route.addr,
                host: stack::HTTP_HOST.to_owned(),
                path: http.path.clone(),
                method: http.method.clone(),
                headers: Vec::new(),
                body,
                connections: scenario.connections,
                workers: scenario.workers,
                duration,
                requests,
                rate: http.rate,
                timeout: scenario.timeout,
            },
            None,
        ),
        Load::Tcp(tcp) => load::run_tcp(&load::TcpLoad {
            target: route.addr,
            mode: match *tcp {
                TcpScenario::RoundTrip { size } => load::TcpMode::RoundTrip { size },
                TcpScenario::Upload => load::TcpMode::Upload,
                TcpScenario::Download => load::TcpMode::Download,
            },
            connections: scenario.connections,
            workers: scenario.workers,
            duration,
            requests,
        }),
    }
}

/// Writes the percentile plots: one document with every scenario when `path` ends in
/// `.svg`, else one `NAME.svg` per scenario in the directory `path`.
pub fn write_svg(report: &BenchReport, path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.extension().is_some_and(|e| e == "svg") {
        let all: Vec<&ScenarioReport> = report.scenarios.iter().collect();
        std::fs::write(path, svg::document(&all))?;
        return Ok(vec![path.to_owned()]);
    }
    std::fs::create_dir_all(path)?;
    let mut written = Vec::new();
    for scenario in &report.scenarios {
        let file = path.join(format!("{}.svg", scenario.name));
        std::fs::write(&file, svg::document(&[scenario]))?;
        written.push(file);
    }
    Ok(written)
}

/// Reads a `--json` result back.
pub fn read_report(path: &Path) -> Result<BenchReport, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a bench result: {e}", path.display()))
}
