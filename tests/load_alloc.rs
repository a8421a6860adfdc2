//! The load generator allocates nothing per request: ten times the requests cost no more
//! allocations than a run's fixed setup. The origin runs in a child process so only the load
//! generator's allocations are counted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use adit::load::{self, HttpLoad};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, ALLOCATIONS};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by one closed-loop run of `requests` GETs.
fn allocations_for(target: std::net::SocketAddr, requests: u64) -> u64 {
    let load = HttpLoad {
        target,
        host: "load.test".into(),
        path: "/".into(),
        method: "GET".into(),
        headers: Vec::new(),
        body: None,
        connections: 4,
        workers: 2,
        duration: None,
        requests: Some(requests),
        rate: None,
        timeout: Duration::from_secs(10),
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let report = load::run_http(&load, None).unwrap();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(report.requests, requests);
    assert_eq!(report.errors, load::Errors::default());
    after - before
}

#[test]
fn requests_do_not_allocate() {
    let mut origin = Command::new(env!("CARGO_BIN_EXE_adit"))
        .args(["--loglevel", "warn", "origin", "--listen", "127.0.0.1:0"])
        .args(["--workers", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(origin.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("adit origin listening on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap()
        .parse()
        .unwrap();

    let small = allocations_for(addr, 1_000);
    let large = allocations_for(addr, 10_000);
    origin.kill().unwrap();
    origin.wait().unwrap();

    // The setup (threads, runtimes, histograms, buffers) is the same for both runs; 9,000
    // more requests may add a handful (a connection's buffer regrown, say), not one each.
    assert!(
        large <= small + 100,
        "{small} allocations for 1,000 requests, {large} for 10,000"
    );
}
