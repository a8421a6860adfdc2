//! A connector spreads its connections over the edge's workers: each connection dials from a
//! UDP port of its own, and one that lands on an edge worker already holding another is
//! dialed again from a new port while some edge worker holds none.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

/// Fresh connector starts, each of which must end up on both edge workers.
const STARTS: usize = 5;

/// The id the connector logged when it started, once it has.
fn connector_id(connector: &Proc) -> Option<String> {
    let log = connector.log_text();
    let at = log.find("connector_id=")? + "connector_id=".len();
    log.get(at..at + 36).map(str::to_owned)
}

/// How many registrations the edge has logged so far.
fn registrations(edge: &Edge) -> usize {
    edge.proc
        .log_text()
        .matches("connection registered")
        .count()
}

/// Waits until `connector` has `ha` connections registered and kept (it logs each kept one;
/// the ones it closes to move are not logged), then returns their edge workers as the edge
/// lists them.
fn settled_workers(edge: &Edge, connector: &Proc, ha: usize) -> Vec<u64> {
    let id = eventually(Duration::from_secs(20), "connector id", || {
        connector_id(connector)
    });
    eventually(Duration::from_secs(30), "placement to settle", || {
        let kept = connector
            .log_text()
            .matches("connection registered")
            .count();
        if kept < ha {
            return None;
        }
        let info = edge.info("web");
        let connections = info["connections"].as_array()?;
        let workers: Vec<u64> = connections
            .iter()
            .filter(|c| c["connector_id"].as_str() == Some(id.as_str()))
            .filter_map(|c| c["edge_worker"].as_u64())
            .collect();
        (workers.len() == ha).then_some(workers)
    })
}

/// Stops `connector` gracefully so its connections leave the edge's table at once.
fn stop(mut connector: Proc) {
    connector.terminate();
    assert!(
        connector.wait_exit(Duration::from_secs(15)).is_some(),
        "connector did not stop"
    );
}

/// Waits until the tunnel has no live connection left.
fn wait_gone(edge: &Edge) {
    eventually(Duration::from_secs(15), "connections to close", || {
        (edge.connections("web") == 0).then_some(())
    });
}

#[test]
fn four_connections_cover_both_edge_workers() {
    let dir = TempDir::new("balance");
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("web");
    edge.route("web", "web.test");
    let rule = "  - service: hello_world\n";

    let mut redials = Vec::with_capacity(STARTS);
    for start in 0..STARTS {
        let before = registrations(&edge);
        let connector = start_connector_with(dir.path(), "web", &cred, rule, 4);
        let workers = settled_workers(&edge, &connector, 4);
        let covered: BTreeSet<u64> = workers.iter().copied().collect();
        assert_eq!(
            covered,
            BTreeSet::from([0, 1]),
            "start {start}: edge workers {workers:?}\n{}",
            connector.log_text()
        );
        redials.push(registrations(&edge) - before - 4);
        assert_eq!(get(edge.http, "web.test", "/").status, 200);
        stop(connector);
        wait_gone(&edge);
    }
    eprintln!("redials per start: {redials:?}");

    // Closing a connection to move it is routine: the edge does not warn about it.
    let log = edge.proc.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && (l.contains("edge::") || l.contains("control::")))
        .collect();
    assert_eq!(warnings, Vec::<&str>::new());
}

#[test]
fn a_single_connection_never_redials() {
    let dir = TempDir::new("balance-one");
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("web");
    edge.route("web", "web.test");
    let rule = "  - service: hello_world\n";

    for _ in 0..2 {
        let before = registrations(&edge);
        let connector = start_connector_with(dir.path(), "web", &cred, rule, 1);
        let workers = settled_workers(&edge, &connector, 1);
        assert_eq!(workers.len(), 1);
        // A redial would register again within a handshake; leave room for one.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(registrations(&edge) - before, 1);
        stop(connector);
        wait_gone(&edge);
    }
}
