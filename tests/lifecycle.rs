//! Replicas and the connector's lifecycle end to end: several connectors of one tunnel
//! sharing the load, graceful shutdown (unregister, grace period, second signal), a rolling
//! restart under steady load, an edge restart, and the logs that tell an operator so.
//!
//! Two replicas are told apart by the Host header each sends its origin
//! (`httpHostHeader`), which the origin's `/headers` route echoes back.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// The Host header replica `name` sends the origin.
fn replica_host(name: &str) -> String {
    format!("{name}.replica")
}

/// Starts a connector of tunnel `web` (two connections, one worker) named `name`, whose
/// origin requests carry `Host: NAME.replica`, with more `tunnel run` arguments.
fn start_replica(
    dir: &Path,
    cred: &Path,
    origin: std::net::SocketAddr,
    name: &str,
    extra: &[&str],
) -> Proc {
    let config = dir.join(format!("{name}.yml"));
    let text = format!(
        "tunnel: web\ncredentials-file: {}\ningress:\n  - service: http://{origin}\n    \
         originRequest:\n      httpHostHeader: {}\n",
        cred.display(),
        replica_host(name)
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.join(format!("replica-{name}-{}.log", uuid::Uuid::new_v4()));
    let mut args = vec![
        "tunnel",
        "run",
        "web",
        "--config",
        config.to_str().unwrap(),
        "--ha-connections",
        "2",
        "--workers",
        "1",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&args, log, &[])
}

/// Registered connections of tunnel `web` that are not draining.
fn live_connections(edge: &Edge) -> usize {
    let info = edge.info("web");
    let connections = info["connections"].as_array().cloned().unwrap_or_default();
    connections
        .iter()
        .filter(|c| c["draining"] == serde_json::Value::Bool(false))
        .count()
}

/// Waits for `n` routable connections, held for a moment: a connector may still move one
/// that just registered to another edge worker (it unregisters it within milliseconds).
fn wait_live(edge: &Edge, n: usize) {
    eventually(Duration::from_secs(30), "live connections", || {
        (live_connections(edge) == n).then_some(())?;
        std::thread::sleep(SETTLED);
        (live_connections(edge) == n).then_some(())
    });
}

/// Which replica answered a `/headers` request.
fn answered_by(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    let headers: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    headers["host"].as_str().unwrap_or_default().to_owned()
}

/// An edge with tunnel `web` routed at `web.test`, and the built-in origin.
fn edge_and_origin(name: &str) -> (TempDir, Edge, PathBuf, std::net::SocketAddr) {
    let dir = TempDir::new(name);
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("web");
    edge.route("web", "web.test");
    (dir, edge, cred, start_origin())
}

/// Sends SIGTERM, waits (bounded) for the exit and returns it with how long it took.
fn terminate(proc: &mut Proc, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let asked = Instant::now();
    proc.terminate();
    let status = proc
        .wait_exit(limit)
        .unwrap_or_else(|| panic!("no exit within {limit:?}:\n{}", proc.log_text()));
    (status, asked.elapsed())
}

/// Runs a GET on a thread of its own; the answer comes back on the returned channel.
fn get_in_background(
    addr: std::net::SocketAddr,
    path: &str,
) -> crossbeam_channel::Receiver<Option<Response>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        client.send_raw(format!("GET {path} HTTP/1.1\r\nHost: web.test\r\n\r\n").as_bytes());
        let _ = tx.send(client.read_response(false));
    });
    rx
}

#[test]
fn two_replicas_both_serve_requests() {
    let (dir, edge, cred, origin) = edge_and_origin("replicas");
    let _a = start_replica(dir.path(), &cred, origin, "a", &[]);
    let _b = start_replica(dir.path(), &cred, origin, "b", &[]);
    wait_live(&edge, 4);

    let (mut a, mut b) = (0, 0);
    for _ in 0..40 {
        let host = answered_by(&get(edge.http, "web.test", "/headers"));
        match host.as_str() {
            "a.replica" => a += 1,
            "b.replica" => b += 1,
            other => panic!("answered by {other:?}"),
        }
    }
    assert_eq!(a + b, 40);
    assert!(a > 0 && b > 0, "replica a served {a}, replica b served {b}");
}

#[test]
fn during_the_grace_period_new_requests_go_to_the_other_replica() {
    let (dir, edge, cred, origin) = edge_and_origin("grace-other");
    let mut a = start_replica(dir.path(), &cred, origin, "a", &["--grace-period", "10s"]);
    wait_live(&edge, 2);
    // Only replica a is up: the slow request is in flight there.
    let slow = get_in_background(edge.http, "/delay/3000");
    std::thread::sleep(Duration::from_millis(300));
    let _b = start_replica(dir.path(), &cred, origin, "b", &[]);
    wait_live(&edge, 4);

    a.terminate();
    eventually(Duration::from_secs(10), "replica a to unregister", || {
        (live_connections(&edge) == 2).then_some(())
    });
    for _ in 0..20 {
        let host = answered_by(&get(edge.http, "web.test", "/headers"));
        assert_eq!(host, "b.replica");
    }
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "replica a left early"
    );

    let slow = slow
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("a response to the slow request");
    assert_eq!((slow.status, slow.text().as_str()), (200, "done\n"));
    let status = a
        .wait_exit(Duration::from_secs(10))
        .expect("replica a exits");
    assert_eq!(status.code(), Some(0));
    let log = a.log_text();
    assert!(
        log.contains("unregistered 2 connections; waiting up to 10s for 1 requests in flight"),
        "{log}"
    );
    assert!(log.contains("all requests done"), "{log}");
}

#[test]
fn the_grace_period_bounds_the_wait_and_the_request_in_flight_gets_an_answer() {
    let (dir, edge, cred, origin) = edge_and_origin("grace-bound");
    let mut a = start_replica(dir.path(), &cred, origin, "a", &["--grace-period", "2s"]);
    wait_live(&edge, 2);
    let slow = get_in_background(edge.http, "/delay/30000");
    std::thread::sleep(Duration::from_millis(300));

    let (status, took) = terminate(&mut a, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(took >= Duration::from_secs(2), "exited after {took:?}");
    assert!(
        took < Duration::from_secs(3) + Duration::from_millis(800),
        "{took:?}"
    );

    let answer = slow
        .recv_timeout(Duration::from_secs(5))
        .expect("the slow request is answered, not left hanging")
        .expect("a response");
    assert!(
        matches!(answer.status, 502 | 504),
        "{} {}",
        answer.status,
        answer.text()
    );
    let log = a.log_text();
    assert!(
        log.contains("grace period over with 1 requests in flight"),
        "{log}"
    );
}

/// The connector's `/ready` answer: status and body.
fn ready(metrics: std::net::SocketAddr) -> (u16, String) {
    let response = get(metrics, "metrics", "/ready");
    (response.status, response.text())
}

/// The registered-connections gauge of a connector's scrape.
fn registered_gauge(metrics: std::net::SocketAddr) -> String {
    let text = get(metrics, "metrics", "/metrics").text();
    let line = text
        .lines()
        .find(|line| line.starts_with("adit_connector_registered_connections "));
    line.unwrap_or_default().to_owned()
}

#[test]
fn a_second_signal_exits_at_once() {
    let (dir, edge, cred, origin) = edge_and_origin("second-signal");
    let extra = ["--grace-period", "20s", "--metrics", "127.0.0.1:0"];
    let mut a = start_replica(dir.path(), &cred, origin, "a", &extra);
    let metrics = a.logged_addr("metrics server listening");
    wait_live(&edge, 2);
    let slow = get_in_background(edge.http, "/delay/30000");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ready(metrics).0, 200);
    assert_eq!(
        registered_gauge(metrics),
        "adit_connector_registered_connections 2"
    );

    // During the drain the connections stay open but are no longer ready.
    let first = Instant::now();
    a.terminate();
    eventually(Duration::from_secs(5), "the first signal's drain", || {
        a.log_text()
            .contains("unregistered 2 connections")
            .then_some(())
    });
    let (status, body) = ready(metrics);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("{\"status\":503,\"readyConnections\":0,"),
        "{body}"
    );
    assert_eq!(
        registered_gauge(metrics),
        "adit_connector_registered_connections 0"
    );

    // The second signal closes the connections: the edge answers the slow request now,
    // not after its idle timeout. (One within 250 ms of the first would be taken for a
    // repeat of it.)
    std::thread::sleep(Duration::from_millis(400).saturating_sub(first.elapsed()));
    let (status, took) = terminate(&mut a, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after the second signal"
    );
    let answer = slow
        .recv_timeout(Duration::from_secs(1))
        .expect("the slow request is answered within a second of the second signal")
        .expect("a response");
    assert_eq!(answer.status, 502, "{}", answer.text());
}

#[test]
fn a_connector_that_never_registered_stops_at_once() {
    let (dir, _edge, cred, origin) = edge_and_origin("never-registered");
    // Nothing answers on this UDP port.
    let nowhere = free_udp_addr().to_string();
    let mut a = start_replica(dir.path(), &cred, origin, "a", &["--edge", &nowhere]);
    eventually(Duration::from_secs(10), "a failed registration", || {
        a.log_text()
            .contains("cannot register with the edge")
            .then_some(())
    });
    let (status, took) = terminate(&mut a, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_millis(400), "exited after {took:?}");
}

#[test]
fn json_logs_to_a_file_and_the_tunnel_comes_back_after_an_edge_restart() {
    let (dir, mut edge, cred, origin) = edge_and_origin("logs");
    let logfile = dir.path().join("connector.json.log");
    let logfile_arg = logfile.to_str().unwrap().to_owned();
    let extra = ["--logfile", &logfile_arg, "--log-format", "json"];
    let mut a = start_replica(dir.path(), &cred, origin, "a", &extra);
    wait_live(&edge, 2);
    // The connector logs a registration once the connection stays where it landed.
    eventually(Duration::from_secs(10), "two kept registrations", || {
        let text = std::fs::read_to_string(&logfile).ok()?;
        (text.matches("\"connection registered\"").count() == 2).then_some(())
    });

    let (http, tunnel, admin) = (edge.http, edge.tunnel, edge.admin);
    let (status, _) = terminate(&mut edge.proc, Duration::from_secs(10));
    assert!(status.success());
    edge = Edge::start_on(dir.path(), http, tunnel, admin);
    eventually(
        Duration::from_secs(40),
        "the tunnel to be active again",
        || {
            let info = edge.info("web");
            (info["status"] == "active" && live_connections(&edge) == 2).then_some(())
        },
    );
    assert_eq!(
        answered_by(&get(edge.http, "web.test", "/headers")),
        "a.replica"
    );
    let (status, _) = terminate(&mut a, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));

    let text = std::fs::read_to_string(&logfile).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let messages = |what: &str| {
        lines
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(what)))
            .count()
    };
    // Two connections registered with the first edge, two again with the second.
    assert_eq!(messages("connection registered"), 4, "{text}");
    let registered = lines
        .iter()
        .find(|l| l["message"] == "connection registered")
        .unwrap();
    assert_eq!(registered["level"], "INFO");
    assert!(registered["index"].is_u64(), "{registered}");
    assert!(registered["edge_worker"].is_u64(), "{registered}");
    assert_eq!(registered["edge"], tunnel.to_string());
    assert!(messages("reconnecting to the edge in") >= 2, "{text}");
    assert_eq!(messages("all requests done"), 1, "{text}");
    // Nothing but JSON lines went to the file, and nothing to standard error.
    assert!(!a.log_text().contains("connection registered"));
}

#[test]
fn a_rolling_restart_under_load_loses_no_request() {
    let (dir, edge, cred, origin) = edge_and_origin("rolling");
    let grace = ["--grace-period", "10s"];
    let mut a = start_replica(dir.path(), &cred, origin, "a", &grace);
    let mut b = start_replica(dir.path(), &cred, origin, "b", &grace);
    wait_live(&edge, 4);

    // 300 requests/s of a 20 ms request for 16 s: requests are in flight at every signal.
    let report = dir.path().join("load.json");
    let url = format!("http://{}/delay/20", edge.http);
    let load_args = [
        "load",
        "http",
        &url,
        "--host",
        "web.test",
        "--rate",
        "300",
        "--requests",
        "4800",
        "--duration",
        "40s",
        "--connections",
        "8",
        "--json",
        report.to_str().unwrap(),
    ];
    let mut load = Proc::spawn(&load_args, dir.path().join("load.log"), &[]);
    let started = Instant::now();

    std::thread::sleep(Duration::from_secs(2));
    for (name, replica) in [("a", &mut a), ("b", &mut b)] {
        let (status, took) = terminate(replica, Duration::from_secs(15));
        assert_eq!(status.code(), Some(0), "{}", replica.log_text());
        let log = replica.log_text();
        let unregistered = log
            .lines()
            .find(|l| l.contains("unregistered 2 connections"));
        eprintln!("replica {name} drained in {took:?}: {unregistered:?}");
        assert!(log.contains("all requests done"), "{log}");
        *replica = start_replica(dir.path(), &cred, origin, name, &grace);
        wait_live(&edge, 4);
        eprintln!("replica {name} back after {:?}", started.elapsed());
        std::thread::sleep(Duration::from_secs(3));
    }

    let status = load
        .wait_exit(Duration::from_secs(45))
        .expect("the load ends");
    assert!(status.success(), "{}", load.log_text());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let errors = &report["errors"];
    assert_eq!(errors["connect"], 0, "{report}");
    assert_eq!(errors["timeout"], 0, "{report}");
    assert_eq!(errors["read"], 0, "{report}");
    assert_eq!(errors["write"], 0, "{report}");
    assert_eq!(errors["status"], serde_json::json!({}), "{report}");
    assert_eq!(report["requests"], 4800, "{report}");
    eprintln!(
        "load: {} requests in {:.1}s, p99 {} us, max {} us",
        report["requests"],
        report["elapsed_secs"].as_f64().unwrap_or(0.0),
        report["latency"]["p99_us"],
        report["latency"]["max_us"]
    );
    // The whole restart sequence happened while the load ran.
    assert!(started.elapsed() >= Duration::from_secs(15));
}

/// Sends `request` (raw bytes) on a thread of its own; the answer and how long it took come
/// back on the returned channel.
fn send_in_background(
    addr: std::net::SocketAddr,
    request: Vec<u8>,
) -> crossbeam_channel::Receiver<(Option<Response>, Duration)> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let sent = Instant::now();
        let mut client = Client::connect(addr);
        client.send_raw(&request);
        let answer = client.read_response(false);
        let _ = tx.send((answer, sent.elapsed()));
    });
    rx
}

#[test]
fn requests_on_a_killed_replica_go_to_the_other_unless_they_carry_a_body() {
    let dir = TempDir::new("killed");
    // One edge worker, so every connection of both replicas is one `pick` away.
    let (http, tunnel, admin) = (any_port(), any_port(), any_port());
    let edge = Edge::start_with(dir.path(), http, tunnel, admin, &["--workers", "1"], &[]);
    let cred = edge.create_tunnel("web");
    edge.route("web", "web.test");
    let origin = start_origin();

    // While replica a is alone, a POST with a body goes there and stays in flight.
    let mut a = start_replica(dir.path(), &cred, origin, "a", &[]);
    wait_live(&edge, 2);
    let post = b"POST /delay/30000 HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nhello";
    let post_sent = Instant::now();
    let post = send_in_background(edge.http, post.to_vec());
    std::thread::sleep(Duration::from_millis(300));
    let _b = start_replica(dir.path(), &cred, origin, "b", &[]);
    wait_live(&edge, 4);

    // The edge spreads these over all four connections, so about half are on replica a
    // when it dies.
    let get = b"GET /delay/500 HTTP/1.1\r\nHost: web.test\r\n\r\n";
    let gets: Vec<_> = (0..20)
        .map(|_| send_in_background(edge.http, get.to_vec()))
        .collect();
    std::thread::sleep(Duration::from_millis(250));
    let killed = Instant::now();
    a.child.kill().unwrap();

    let mut took = Vec::new();
    for answer in gets {
        let (response, elapsed) = answer.recv_timeout(Duration::from_secs(20)).unwrap();
        let response = response.expect("a response");
        assert_eq!((response.status, response.text().as_str()), (200, "done\n"));
        assert!(elapsed < Duration::from_secs(8), "a GET took {elapsed:?}");
        took.push(elapsed);
    }
    took.sort();
    let resent = took.iter().filter(|t| **t > Duration::from_secs(3)).count();
    eprintln!("GETs: {took:?}; {resent} waited for the dead connections");
    assert!(resent > 0, "no GET was on the killed replica: {took:?}");

    let (response, elapsed) = post.recv_timeout(Duration::from_secs(20)).unwrap();
    let response = response.expect("a response to the POST");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response.text().contains("connection lost: timed out"),
        "{}",
        response.text()
    );
    let after_kill = elapsed.saturating_sub(killed.duration_since(post_sent));
    eprintln!("POST: 502 {after_kill:?} after the kill");
    assert!(after_kill < Duration::from_secs(8), "{after_kill:?}");
}
