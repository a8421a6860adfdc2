//! The tunnel end to end: an edge and connectors as child processes, the built-in origin,
//! and requests through the edge's public listener, all on loopback.

mod common;

use std::time::Duration;

use common::*;

const ORIGIN_HELLO: &str = "Hello from the adit origin\n";

#[test]
fn get_returns_the_exact_body() {
    let origin = start_origin();
    let s = setup("get", &origin_rule(origin));
    let response = get(s.edge.http, "web.test", "/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), ORIGIN_HELLO);
    assert_eq!(response.header("content-length"), Some("27"));

    let bytes = get(s.edge.http, "web.test:8080", "/bytes/100000");
    assert_eq!(bytes.status, 200);
    assert_eq!(bytes.body.len(), 100_000);
    let expected: Vec<u8> = (0..100_000)
        .map(|i| b'a' + (i % (64 * 1024) % 26) as u8)
        .collect();
    assert_eq!(bytes.body, expected);
}

#[test]
fn post_of_ten_mib_reaches_the_origin_whole() {
    let origin = start_origin();
    let s = setup("post", &origin_rule(origin));
    let body = pattern(10 * 1024 * 1024);
    let expected = hex::encode(ring::digest::digest(&ring::digest::SHA256, &body));
    let mut client = Client::connect(s.edge.http);
    let response = client.request("POST", "web.test", "/sha256", Some(&body));
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), expected);

    // The same body, echoed back while it is still being sent.
    let echoed = client.request("POST", "web.test", "/echo", Some(&body));
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.body.len(), body.len());
    assert!(echoed.body == body, "echoed body differs");
}

#[test]
fn chunked_request_and_response_bodies_stream_through() {
    let origin = start_origin();
    let s = setup("chunked", &origin_rule(origin));

    let response = get(s.edge.http, "web.test", "/stream?chunks=500");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    let expected: String = (0..500).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(response.text(), expected);

    let mut client = Client::connect(s.edge.http);
    client.send_raw(
        b"POST /echo HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
    );
    let echoed = client.read_response(false).unwrap();
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.text(), "hello, world");
}

#[test]
fn two_hundred_requests_share_one_keep_alive_connection() {
    let origin = start_origin();
    let s = setup("keepalive", &origin_rule(origin));
    let mut client = Client::connect(s.edge.http);
    let local = client.stream.local_addr().unwrap();
    for i in 0..200 {
        let response = client.request("GET", "web.test", &format!("/status/200?i={i}"), None);
        assert_eq!(response.status, 200, "request {i}");
        assert_eq!(response.text(), "200 OK\n");
    }
    assert_eq!(client.stream.local_addr().unwrap(), local);
}

#[test]
fn hostnames_route_to_their_own_tunnels() {
    let origin = start_origin();
    let dir = TempDir::new("two-tunnels");
    let edge = Edge::start(dir.path());
    let first = edge.create_tunnel("first");
    let second = edge.create_tunnel("second");
    edge.route("first", "one.test");
    edge.route("second", "*.two.test");
    let _a = start_connector(dir.path(), "first", &first, &origin_rule(origin));
    let _b = start_connector(
        dir.path(),
        "second",
        &second,
        "  - service: http_status:418\n",
    );
    edge.wait_connections("first", 2);
    edge.wait_connections("second", 2);

    assert_eq!(get(edge.http, "one.test", "/").text(), ORIGIN_HELLO);
    assert_eq!(get(edge.http, "a.two.test", "/").status, 418);
    assert_eq!(get(edge.http, "A.B.Two.Test", "/").status, 418);
    assert_eq!(get(edge.http, "two.test", "/").status, 404);
}

#[test]
fn a_path_rule_selects_another_service() {
    let origin = start_origin();
    let ingress = format!(
        "  - hostname: web.test\n    path: ^/teapot\n    service: http_status:418\n\
         {}",
        origin_rule(origin)
    );
    let s = setup("path-rule", &ingress);
    assert_eq!(get(s.edge.http, "web.test", "/teapot/x").status, 418);
    // Spellings of the same path an origin would normalise cannot slip past the rule.
    for path in ["//teapot", "/./teapot", "/x/../teapot", "/%74eapot"] {
        assert_eq!(get(s.edge.http, "web.test", path).status, 418, "{path}");
    }
    assert_eq!(get(s.edge.http, "web.test", "/").text(), ORIGIN_HELLO);
    let miss = get(s.edge.http, "web.test", "/x?y=/teapot");
    assert_eq!(miss.status, 404);
    assert_eq!(miss.text(), "no such route on the adit origin\n");
}

#[test]
fn unknown_hostname_gets_404() {
    let origin = start_origin();
    let s = setup("unknown-host", &origin_rule(origin));
    let response = get(s.edge.http, "nobody.test", "/");
    assert_eq!(response.status, 404);
    assert!(response
        .text()
        .contains("No tunnel is routed for nobody.test"));
}

#[test]
fn stopped_connector_gets_502() {
    let origin = start_origin();
    let mut s = setup("stopped", &origin_rule(origin));
    assert_eq!(get(s.edge.http, "web.test", "/").status, 200);
    s.connector.terminate();
    let status = s
        .connector
        .wait_exit(Duration::from_secs(10))
        .expect("connector exits");
    assert!(status.success(), "connector exit: {status:?}");
    let response = eventually(Duration::from_secs(10), "502 from the edge", || {
        let response = get(s.edge.http, "web.test", "/");
        (response.status == 502).then_some(response)
    });
    assert!(
        response.text().contains("has no connector running"),
        "{}",
        response.text()
    );
    assert_eq!(s.edge.connections("web"), 0);
}

#[test]
fn unreachable_origin_gets_502_naming_the_service() {
    let closed = free_tcp_addr();
    let s = setup("origin-down", &format!("  - service: http://{closed}\n"));
    let response = get(s.edge.http, "web.test", "/");
    assert_eq!(response.status, 502);
    assert!(
        response.text().contains(&format!("http://{closed}")),
        "{}",
        response.text()
    );
}

#[test]
fn slow_origin_gets_504() {
    let origin = start_origin();
    let ingress =
        format!("  - service: http://{origin}\n    originRequest:\n      responseTimeout: 1s\n");
    let s = setup("slow-origin", &ingress);
    let response = get(s.edge.http, "web.test", "/delay/3000");
    assert_eq!(response.status, 504);
    assert!(
        response.text().contains("did not answer within 1s"),
        "{}",
        response.text()
    );
}

#[test]
fn malformed_and_oversized_requests_are_refused() {
    let origin = start_origin();
    let s = setup("bad-requests", &origin_rule(origin));

    let mut client = Client::connect(s.edge.http);
    client.send_raw(b"GET / HTTP/1.1\r\nHost web.test\r\n\r\n");
    assert_eq!(client.read_response(false).unwrap().status, 400);

    let mut client = Client::connect(s.edge.http);
    let big = "x".repeat(33 * 1024);
    client.send_raw(format!("GET / HTTP/1.1\r\nHost: web.test\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert_eq!(client.read_response(false).unwrap().status, 431);

    // A target past the limit is 414, whether or not its line ends within what was sent.
    for end in ["", " HTTP/1.1\r\nHost: web.test\r\n\r\n"] {
        let mut client = Client::connect(s.edge.http);
        let long = "a".repeat(40 * 1024);
        client.send_raw(format!("GET /{long}{end}").as_bytes());
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 414);
        assert!(response.text().contains("Request target too long"));
    }

    let mut client = Client::connect(s.edge.http);
    client.send_raw(
        b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(client.read_response(false).unwrap().status, 400);

    // The edge is still serving.
    assert_eq!(get(s.edge.http, "web.test", "/").status, 200);
}

#[test]
fn a_wrong_secret_is_refused_without_retrying() {
    let dir = TempDir::new("wrong-secret");
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("web");
    let text = std::fs::read_to_string(&cred).unwrap();
    let mut creds: serde_json::Value = serde_json::from_str(&text).unwrap();
    creds["TunnelSecret"] = serde_json::Value::String(hex::encode([9u8; 32]));
    std::fs::write(&cred, serde_json::to_string(&creds).unwrap()).unwrap();

    let mut connector = start_connector(dir.path(), "web", &cred, "  - service: hello_world\n");
    let status = connector
        .wait_exit(Duration::from_secs(20))
        .expect("connector gives up");
    assert_eq!(status.code(), Some(1));
    let log = connector.log_text();
    assert!(log.contains("tunnel secret does not match"), "{log}");
    assert_eq!(log.matches("reconnecting").count(), 0, "{log}");
}

#[test]
fn edge_restart_keeps_tunnels_and_the_connector_comes_back() {
    let origin = start_origin();
    let mut s = setup("restart", &origin_rule(origin));
    assert_eq!(get(s.edge.http, "web.test", "/").text(), ORIGIN_HELLO);

    let (http, tunnel, admin) = (s.edge.http, s.edge.tunnel, s.edge.admin);
    s.edge.proc.terminate();
    s.edge
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("edge exits");
    let dir = s.edge.dir.clone();
    s.edge = Edge::start_on(&dir, http, tunnel, admin);

    let list = s.edge.cli(&["tunnel", "list", "--output", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["tunnels"][0]["name"], "web");

    let response = eventually(Duration::from_secs(40), "the tunnel to come back", || {
        let response = get(http, "web.test", "/");
        (response.status == 200).then_some(response)
    });
    assert_eq!(response.text(), ORIGIN_HELLO);
    let _ = &s.cred;
}

#[test]
fn requests_on_a_worker_without_a_connection_are_handed_over() {
    // One tunnel connection lands on one of the edge's two workers; the kernel spreads the
    // public connections over both, so about half must move to the worker that owns it.
    let origin = start_origin();
    let dir = TempDir::new("handoff");
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("web");
    edge.route("web", "web.test");
    let _connector = start_connector_with(dir.path(), "web", &cred, &origin_rule(origin), 1);
    edge.wait_connections("web", 1);
    for i in 0..40 {
        let mut client = Client::connect(edge.http);
        let body = pattern(100_000 + i);
        let response = client.request("POST", "web.test", "/echo", Some(&body));
        assert_eq!(response.status, 200, "request {i}");
        assert!(response.body == body, "request {i}: echoed body differs");
        let again = client.request("GET", "web.test", "/", None);
        assert_eq!(again.text(), ORIGIN_HELLO, "request {i} (keep-alive)");
    }
}

#[test]
fn after_an_edge_crash_the_connector_is_back_well_before_the_idle_timeout() {
    let origin = start_origin();
    let mut s = setup("crash", &origin_rule(origin));
    assert_eq!(get(s.edge.http, "web.test", "/").text(), ORIGIN_HELLO);

    let (http, tunnel, admin) = (s.edge.http, s.edge.tunnel, s.edge.admin);
    s.edge.proc.child.kill().unwrap();
    s.edge.proc.child.wait().unwrap();
    let dir = s.edge.dir.clone();
    let restarted = std::time::Instant::now();
    s.edge = Edge::start_on(&dir, http, tunnel, admin);

    // The restarted edge answers the connector's packets for the old connections with
    // stateless resets (its reset key is kept in the data directory), so the connector
    // reconnects at once instead of waiting out the 30 s idle timeout.
    eventually(Duration::from_secs(15), "the tunnel to come back", || {
        (get(http, "web.test", "/").status == 200).then_some(())
    });
    assert!(restarted.elapsed() < Duration::from_secs(15));
}

/// An HTTPS origin and the directory its CA is written to, as `ca.pem`.
fn tls_origin(name: &str) -> (TlsOrigin, TempDir, std::path::PathBuf) {
    let origin = start_tls_origin();
    let dir = TempDir::new(name);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &origin.ca_pem).unwrap();
    (origin, dir, ca)
}

#[test]
fn https_origin_verified_with_ca_pool() {
    let (origin, dir, ca) = tls_origin("tls-ca-pool");
    let ingress = format!(
        "  - service: https://{}\n    originRequest:\n      caPool: {}\n",
        origin.addr,
        ca.display()
    );
    let s = setup_in(dir, &ingress, &[]);
    for _ in 0..3 {
        let response = get(s.edge.http, "web.test", "/");
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), TLS_ORIGIN_BODY);
        assert_eq!(
            response.header("x-sni"),
            Some("-"),
            "no SNI for an IP address"
        );
    }
    // One worker, requests one after another: the pooled TLS connection served them all.
    let connections = origin.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(connections, 1);
}

#[test]
fn https_origin_with_an_unknown_ca_gets_502() {
    let (origin, dir, _ca) = tls_origin("tls-unknown-ca");
    let s = setup_in(dir, &format!("  - service: https://{}\n", origin.addr), &[]);
    let response = get(s.edge.http, "web.test", "/");
    assert_eq!(response.status, 502);
    let expected = format!(
        "TLS handshake with origin https://{} failed: invalid peer certificate: UnknownIssuer",
        origin.addr
    );
    assert!(response.text().contains(&expected), "{}", response.text());
}

#[test]
fn https_origin_with_no_tls_verify() {
    let (origin, dir, _ca) = tls_origin("tls-no-verify");
    let ingress = format!(
        "  - service: https://{}\n    originRequest:\n      noTLSVerify: true\n",
        origin.addr
    );
    let s = setup_in(dir, &ingress, &[]);
    let response = get(s.edge.http, "web.test", "/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), TLS_ORIGIN_BODY);
}

#[test]
fn https_origin_with_origin_server_name() {
    let (origin, dir, ca) = tls_origin("tls-server-name");
    let ingress = format!(
        "  - service: https://{}\n    originRequest:\n      caPool: {}\n      \
         originServerName: origin.test\n",
        origin.addr,
        ca.display()
    );
    let s = setup_in(dir, &ingress, &[]);
    let response = get(s.edge.http, "web.test", "/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), TLS_ORIGIN_BODY);
    assert_eq!(response.header("x-sni"), Some("origin.test"));
}

#[test]
fn an_unreadable_ca_pool_stops_the_connector_at_start() {
    let dir = TempDir::new("tls-bad-ca-pool");
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("web");
    let missing = dir.path().join("missing-ca.pem");
    let ingress = format!(
        "  - service: https://127.0.0.1:9\n    originRequest:\n      caPool: {}\n",
        missing.display()
    );
    let mut connector = start_connector(dir.path(), "web", &cred, &ingress);
    let status = connector
        .wait_exit(Duration::from_secs(20))
        .expect("connector refuses to start");
    assert_eq!(status.code(), Some(1));
    let log = connector.log_text();
    let expected = format!(
        "ingress rule 1: caPool {} cannot be read: No such file or directory (os error 2)",
        missing.display()
    );
    assert!(log.contains(&expected), "{log}");
}

#[test]
fn a_second_edge_on_the_same_ports_or_data_directory_is_refused() {
    let dir = TempDir::new("second-edge");
    let edge = Edge::start(dir.path());
    let other = dir.path().join("other-data");
    let run = |args: &[&str]| std::process::Command::new(BIN).args(args).output().unwrap();

    let same_ports = run(&[
        "edge",
        "--data-dir",
        other.to_str().unwrap(),
        "--listen-http",
        &edge.http.to_string(),
        "--listen-tunnel",
        &free_udp_addr().to_string(),
        "--listen-admin",
        &free_tcp_addr().to_string(),
    ]);
    assert_eq!(same_ports.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&same_ports.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is already in use by another process",
            edge.http
        )),
        "{stderr}"
    );

    let data = dir.path().join("edge-data");
    let same_dir = run(&[
        "edge",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen-http",
        &free_tcp_addr().to_string(),
        "--listen-tunnel",
        &free_udp_addr().to_string(),
        "--listen-admin",
        &free_tcp_addr().to_string(),
    ]);
    assert_eq!(same_dir.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&same_dir.stderr);
    assert!(
        stderr.contains("another edge is already using the data directory"),
        "{stderr}"
    );
}

#[test]
fn a_forced_delete_closes_the_tunnel_and_its_connector_stops() {
    let mut s = setup("forced-delete", "  - service: hello_world\n");
    let refused = s.edge.cli(&["tunnel", "delete", "web"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("live connection"), "{stderr}");

    let forced = s.edge.cli(&["tunnel", "delete", "web", "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let status = s
        .connector
        .wait_exit(Duration::from_secs(20))
        .expect("connector stops");
    assert_eq!(status.code(), Some(1));
    let log = s.connector.log_text();
    assert!(log.contains("does not exist"), "{log}");
    assert_eq!(get(s.edge.http, "web.test", "/").status, 404);
}
