//! The metrics servers of the edge and the connector: exact values after known traffic, the
//! connector's `/ready` before and after registration, `adit tunnel ready`, and how the
//! metrics address is chosen.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The connector's connections in these tests.
const HA: u8 = 2;

/// The origin's answer to `GET /`.
const HELLO: &str = "Hello from the adit origin\n";

/// Starts `adit tunnel run` for tunnel `web` with its metrics server on `metrics`.
/// The log line of a metrics server, with the address it bound.
const METRICS_LISTENING: &str = "metrics server listening";

fn start_connector_on(
    dir: &Path,
    cred: &Path,
    origin: SocketAddr,
    metrics: SocketAddr,
    edge: Option<SocketAddr>,
) -> Proc {
    let config = dir.join(format!("web-{}.yml", uuid::Uuid::new_v4()));
    let text = format!(
        "tunnel: web\ncredentials-file: {}\ningress:\n{}",
        cred.display(),
        origin_rule(origin)
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.join(format!("connector-{}.log", uuid::Uuid::new_v4()));
    let (ha, metrics) = (HA.to_string(), metrics.to_string());
    let mut args = vec![
        "tunnel",
        "run",
        "web",
        "--config",
        config.to_str().unwrap(),
        "--ha-connections",
        &ha,
        "--workers",
        "1",
        "--metrics",
        &metrics,
    ];
    let edge = edge.map(|edge| edge.to_string());
    if let Some(edge) = &edge {
        args.extend(["--edge", edge.as_str()]);
    }
    Proc::spawn(&args, log, &[])
}

/// The value of one series (`name` or `name{labels}`) in a scrape, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

fn scrape(addr: SocketAddr) -> String {
    let response = get(addr, "metrics", "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    response.text()
}

/// `adit tunnel ready --metrics addr`: exit code and the output lines.
fn tunnel_ready(addr: SocketAddr) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(["tunnel", "ready", "--metrics", &addr.to_string()])
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn counts_known_traffic_and_answers_readiness() {
    let dir = TempDir::new("metrics");
    let origin = start_origin();
    let (http, tunnel, admin) = (any_port(), any_port(), any_port());
    let extra = ["--metrics", "127.0.0.1:0"];
    let edge = Edge::start_with(dir.path(), http, tunnel, admin, &extra, &[]);
    let edge_metrics = edge.proc.logged_addr(METRICS_LISTENING);
    let cred = edge.create_tunnel("web");
    edge.route("web", "web.test");

    // A connector whose edge is not there: its probe says not ready.
    let nowhere = Some(free_udp_addr());
    let lonely = start_connector_on(dir.path(), &cred, origin, any_port(), nowhere);
    let lonely_metrics = lonely.logged_addr(METRICS_LISTENING);
    let ready = eventually(Duration::from_secs(20), "the connector's /ready", || {
        std::net::TcpStream::connect(lonely_metrics).ok()?;
        Some(get(lonely_metrics, "metrics", "/ready"))
    });
    assert_eq!(ready.status, 503);
    assert_eq!(ready.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(body["status"], 503);
    assert_eq!(body["readyConnections"], 0);
    assert!(body["connectorId"]
        .as_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .is_ok());
    let (code, _, stderr) = tunnel_ready(lonely_metrics);
    assert_eq!(code, Some(1));
    assert_eq!(stderr, "not ready: 0 connections registered");
    drop(lonely);

    // Nothing listens there any more: unreachable is not ready either.
    let (code, _, stderr) = tunnel_ready(lonely_metrics);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(&format!("cannot reach {lonely_metrics}: ")),
        "{stderr}"
    );

    let connector = start_connector_on(dir.path(), &cred, origin, any_port(), None);
    let connector_metrics = connector.logged_addr(METRICS_LISTENING);
    edge.wait_connections("web", usize::from(HA));
    let ready = eventually(Duration::from_secs(20), "readiness", || {
        let ready = get(connector_metrics, "metrics", "/ready");
        (ready.status == 200).then_some(ready)
    });
    let body: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(body["status"], 200);
    assert_eq!(body["readyConnections"], u64::from(HA));
    let (code, stdout, _) = tunnel_ready(connector_metrics);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, format!("ready: {HA} connections registered"));
    let health = get(connector_metrics, "metrics", "/healthcheck");
    assert_eq!((health.status, health.text().as_str()), (200, "OK"));

    // The known traffic: 7 answered by the origin, 3 for a hostname with no route, and one
    // 1000-byte echo.
    let mut client = Client::connect(edge.http);
    for _ in 0..7 {
        let response = client.request("GET", "web.test", "/", None);
        assert_eq!((response.status, response.text().as_str()), (200, HELLO));
    }
    for _ in 0..3 {
        assert_eq!(get(edge.http, "nowhere.test", "/").status, 404);
    }
    let body = pattern(1000);
    let echoed = client.request("POST", "web.test", "/echo", Some(&body));
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.body, body);

    let relayed = (7 * HELLO.len() + 1000) as f64;
    let ha = f64::from(HA);
    // The edge counts every registration, those of connections the connector then moved to
    // another edge worker included: one per connection record.
    let info = edge.info("web");
    let records = ["connections", "history"].map(|k| info[k].as_array().unwrap().len());
    let registrations = (records[0] + records[1]) as f64;
    // A worker records a response just after its last byte is written: wait for the last.
    let text = eventually(Duration::from_secs(10), "the edge's counts", || {
        let text = scrape(edge_metrics);
        let rtt_series = text.matches("\nadit_edge_quic_rtt_seconds{").count();
        let counted = sample(&text, "adit_edge_request_latency_seconds_count") == Some(11.0);
        (counted && rtt_series == usize::from(HA)).then_some(text)
    });
    let expected = [
        ("adit_edge_requests_total{class=\"1xx\"}", 0.0),
        ("adit_edge_requests_total{class=\"2xx\"}", 8.0),
        ("adit_edge_requests_total{class=\"3xx\"}", 0.0),
        ("adit_edge_requests_total{class=\"4xx\"}", 3.0),
        ("adit_edge_requests_total{class=\"5xx\"}", 0.0),
        ("adit_edge_request_latency_seconds_count", 11.0),
        (
            "adit_edge_request_latency_seconds_bucket{le=\"+Inf\"}",
            11.0,
        ),
        ("adit_edge_origin_latency_seconds_count", 8.0),
        ("adit_edge_active_streams", 0.0),
        ("adit_edge_bytes_total{direction=\"from_client\"}", 1000.0),
        ("adit_edge_bytes_total{direction=\"to_client\"}", relayed),
        ("adit_edge_tunnel_connections", ha),
        (
            "adit_edge_registrations_total{result=\"registered\"}",
            registrations,
        ),
        ("adit_edge_registrations_total{result=\"refused\"}", 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    let health = get(edge_metrics, "metrics", "/healthcheck");
    assert_eq!((health.status, health.text().as_str()), (200, "OK"));
    let tunnel_id = edge.info("web")["id"].as_str().unwrap().to_owned();
    let rtts: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("adit_edge_quic_rtt_seconds{"))
        .collect();
    assert_eq!(rtts.len(), usize::from(HA));
    for line in rtts {
        assert!(
            line.contains(&format!("tunnel=\"{tunnel_id}\",connection=\"")),
            "{line}"
        );
    }

    let text = eventually(Duration::from_secs(10), "the connector's counts", || {
        let text = scrape(connector_metrics);
        let done = sample(&text, "adit_connector_origin_latency_seconds_count") == Some(8.0)
            && sample(&text, "adit_connector_requests_total{class=\"2xx\"}") == Some(8.0);
        done.then_some(text)
    });
    let expected = [
        ("adit_connector_requests_total{class=\"4xx\"}", 0.0),
        ("adit_connector_requests_total{class=\"5xx\"}", 0.0),
        ("adit_connector_active_streams", 0.0),
        (
            "adit_connector_bytes_total{direction=\"to_origin\"}",
            1000.0,
        ),
        (
            "adit_connector_bytes_total{direction=\"from_origin\"}",
            relayed,
        ),
        ("adit_connector_registered_connections", ha),
        (
            "adit_connector_registrations_total{result=\"registered\"}",
            ha,
        ),
        (
            "adit_connector_registrations_total{result=\"refused\"}",
            0.0,
        ),
        ("adit_connector_reconnects_total", 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    for index in 0..HA {
        let series = format!("adit_connector_quic_rtt_seconds{{index=\"{index}\"}}");
        let rtt = sample(&text, &series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
        assert!(rtt > 0.0 && rtt < 1.0, "{series} = {rtt}");
    }

    assert!(edge
        .proc
        .log_text()
        .contains(&format!("metrics server listening addr={edge_metrics}")));
    drop(connector);
}

#[test]
fn a_busy_explicit_address_is_an_error() {
    let dir = TempDir::new("metrics-busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("edge-data");
    let (http, tunnel, admin) = (free_tcp_addr(), free_udp_addr(), free_tcp_addr());
    let (http, tunnel, admin) = (http.to_string(), tunnel.to_string(), admin.to_string());
    let args = [
        "edge",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen-http",
        &http,
        "--listen-tunnel",
        &tunnel,
        "--listen-admin",
        &admin,
        "--metrics",
        &busy,
    ];
    let mut edge = Proc::spawn(&args, dir.path().join("edge.log"), &[]);
    let status = edge
        .wait_exit(Duration::from_secs(20))
        .expect("the edge exits");
    assert_eq!(status.code(), Some(1));
    let log = edge.log_text();
    assert!(
        log.contains(&format!(
            "error: cannot bind the metrics server to {busy}: "
        )),
        "{log}"
    );

    // With a JSON log file the error lands there too, and still on standard error.
    let logfile = dir.path().join("edge-json.log");
    let mut json_args = args.to_vec();
    json_args.extend([
        "--logfile",
        logfile.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    let mut edge = Proc::spawn(&json_args, dir.path().join("edge-json.stderr"), &[]);
    let status = edge
        .wait_exit(Duration::from_secs(20))
        .expect("the edge exits");
    assert_eq!(status.code(), Some(1));
    let stderr = edge.log_text();
    let prefix = format!("error: cannot bind the metrics server to {busy}: ");
    assert!(stderr.starts_with(&prefix), "{stderr}");
    let text = std::fs::read_to_string(&logfile).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR", "{text}");
    let message = last["message"].as_str().unwrap();
    assert_eq!(format!("error: {message}\n"), stderr, "{text}");
}

#[test]
fn a_taken_default_address_falls_back_to_a_free_port() {
    // The edge's default is 127.0.0.1:7071. Hold it here so the edge must fall back; when
    // something else holds it already, the edge falls back just the same.
    let held = std::net::TcpListener::bind("127.0.0.1:7071");
    let dir = TempDir::new("metrics-default");
    let edge = Edge::start(dir.path());
    let log = eventually(Duration::from_secs(10), "the metrics server", || {
        let log = edge.proc.log_text();
        log.contains("metrics server listening").then_some(log)
    });
    assert!(
        log.contains("metrics server: 127.0.0.1:7071 taken, using a free port instead"),
        "{log}"
    );
    let addr: SocketAddr = log
        .lines()
        .find_map(|line| line.split("metrics server listening addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in:\n{log}"));
    assert_ne!(addr.port(), 7071);
    assert!(scrape(addr).contains("# TYPE adit_edge_requests_total counter\n"));
    drop(held);
}
