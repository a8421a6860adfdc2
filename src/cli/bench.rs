//! `adit bench` and `adit bench compare`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};

use super::{BenchArgs, BenchCommand};
use crate::bench::{self, compare, report, scenario, BenchOptions};

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(BenchCommand::Compare {
            base,
            new,
            max_regression,
        }) => {
            let base = bench::read_report(&base).map_err(anyhow::Error::msg)?;
            let new = bench::read_report(&new).map_err(anyhow::Error::msg)?;
            let result = compare::compare(&base, &new, max_regression);
            out!("{}", result.render(max_regression))?;
            Ok(if result.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        None => run_scenarios(args),
    }
}

fn run_scenarios(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let scenarios = scenario::resolve(&args.dir, &args.scenarios)?;
    if scenarios.is_empty() {
        bail!("no scenarios in {}", args.dir.display());
    }
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }

    // SIGINT or SIGTERM stops after the current round, so the children are stopped too.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::bounded(4);
    super::signals::spawn_waiter(tx)?;
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            if rx.recv().is_ok() {
                eprintln!("stopping after this round");
                flag.store(true, Ordering::Relaxed);
            }
        })?;

    let say = |line: &str| eprintln!("{line}");
    let options = BenchOptions {
        exe: std::env::current_exe().context("cannot find the adit binary")?,
        scenarios,
        peers: args.peer,
        workers: args.workers,
        rounds: args.rounds,
        duration: args.duration,
        stop: &stop,
        say: &say,
    };
    let result = bench::run(&options)?;

    out!("{}", report::table(&result))?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        let written = bench::write_svg(&result, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        for file in written {
            eprintln!("wrote {}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
