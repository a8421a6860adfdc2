//! The edge's public HTTPS listener end to end: certificates chosen by SNI, requests through
//! the tunnel over TLS, TLS connections handed between workers, and start-up checks of the
//! certificate files. Everything on loopback.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

const ORIGIN_HELLO: &str = "Hello from the adit origin\n";

/// An edge serving `a.test` and `*.b.test` over HTTPS, with one tunnel `web` routed at both
/// and a connector (with `ha` connections) to the built-in origin.
struct Setup {
    dir: TempDir,
    ca: TestCa,
    a: Leaf,
    b: Leaf,
    edge: Edge,
    _connector: Proc,
}

fn setup(name: &str, ha: u8, envs: &[(&str, &str)]) -> Setup {
    let origin = start_origin();
    let dir = TempDir::new(name);
    let ca = TestCa::new();
    let a = ca.leaf(dir.path(), "a", &["a.test"]);
    let b = ca.leaf(dir.path(), "b", &["*.b.test"]);
    let pairs = [
        (a.cert.as_path(), a.key.as_path()),
        (b.cert.as_path(), b.key.as_path()),
    ];
    let edge = Edge::start_tls(dir.path(), &pairs, envs);
    let cred = edge.create_tunnel("web");
    edge.route("web", "a.test");
    edge.route("web", "*.b.test");
    let rule = format!("  - service: http://{origin}\n");
    let connector = start_connector_with(dir.path(), "web", &cred, &rule, ha);
    edge.wait_connections("web", usize::from(ha));
    Setup {
        dir,
        ca,
        a,
        b,
        edge,
        _connector: connector,
    }
}

/// The certificate the server presented, DER.
fn presented(client: &Client<TlsClientStream>) -> Vec<u8> {
    let certs = client.stream.conn.peer_certificates().unwrap();
    certs[0].to_vec()
}

#[test]
fn https_requests_get_the_certificate_of_their_name() {
    let s = setup("https-sni", 2, &[]);

    let mut client = Client::connect_tls(s.edge.https, "a.test", &s.ca.pem);
    assert!(
        presented(&client) == s.a.der,
        "a.test got another certificate"
    );
    assert_eq!(client.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let local = client.stream.sock.local_addr().unwrap();
    for i in 0..3 {
        let response = client.request("GET", "a.test", "/", None);
        assert_eq!(response.status, 200, "request {i}");
        assert_eq!(response.text(), ORIGIN_HELLO, "request {i}");
    }
    // Keep-alive: the three went over one TLS connection.
    assert_eq!(client.stream.sock.local_addr().unwrap(), local);

    let mut client = Client::connect_tls(s.edge.https, "x.b.test", &s.ca.pem);
    assert!(
        presented(&client) == s.b.der,
        "x.b.test got another certificate"
    );
    let response = client.request("GET", "x.b.test", "/", None);
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), ORIGIN_HELLO);
}

#[test]
fn the_origin_sees_https_and_bodies_arrive_whole() {
    let s = setup("https-body", 2, &[]);
    let mut client = Client::connect_tls(s.edge.https, "a.test", &s.ca.pem);

    let response = client.request("GET", "a.test", "/headers", None);
    assert_eq!(response.status, 200);
    let headers: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(headers["x-forwarded-proto"], "https");

    let body = pattern(1024 * 1024);
    let expected = hex::encode(ring::digest::digest(&ring::digest::SHA256, &body));
    let response = client.request("POST", "a.test", "/sha256", Some(&body));
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), expected);
}

#[test]
fn tls_connections_are_handed_to_the_worker_with_the_tunnel() {
    // One tunnel connection lands on one of the edge's two workers; the kernel spreads the
    // public connections over both, so about half must move, TLS session and all.
    let s = setup(
        "https-handoff",
        1,
        &[("ADIT_LOGLEVEL", "adit::edge::proxy=debug,info")],
    );
    for i in 0..20 {
        let mut client = Client::connect_tls(s.edge.https, "a.test", &s.ca.pem);
        let body = pattern(100_000 + i);
        let response = client.request("POST", "a.test", "/echo", Some(&body));
        assert_eq!(response.status, 200, "connection {i}");
        assert!(response.body == body, "connection {i}: echoed body differs");
        let again = client.request("GET", "a.test", "/", None);
        assert_eq!(again.text(), ORIGIN_HELLO, "connection {i} (keep-alive)");
    }
    let handoffs = s
        .edge
        .proc
        .log_text()
        .matches("handing the client connection over")
        .count();
    assert!(handoffs > 0, "no connection was handed over");
}

#[test]
fn plain_http_on_the_https_port_is_disconnected() {
    let s = setup("https-plain", 2, &[]);
    let mut plain = std::net::TcpStream::connect(s.edge.https).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    match plain.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset),
    }
    // Whatever came back (a TLS alert at most) is no HTTP response.
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // The edge is still up and serving.
    let mut client = Client::connect_tls(s.edge.https, "a.test", &s.ca.pem);
    assert_eq!(client.request("GET", "a.test", "/", None).status, 200);
    let log = s.edge.proc.log_text();
    assert!(!log.contains("panicked"), "{log}");
    let _ = &s.dir;
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_edge_at_start() {
    let dir = TempDir::new("https-bad-key");
    let ca = TestCa::new();
    let a = ca.leaf(dir.path(), "a", &["a.test"]);
    let b = ca.leaf(dir.path(), "b", &["*.b.test"]);
    let data = dir.path().join("edge-data");
    let args = [
        "edge",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen-http",
        &free_tcp_addr().to_string(),
        "--listen-https",
        &free_tcp_addr().to_string(),
        "--listen-tunnel",
        &free_udp_addr().to_string(),
        "--listen-admin",
        &free_tcp_addr().to_string(),
        "--tls-cert",
        a.cert.to_str().unwrap(),
        "--tls-key",
        b.key.to_str().unwrap(),
    ];
    let mut edge = Proc::spawn(&args, dir.path().join("edge.log"), &[]);
    let status = edge
        .wait_exit(Duration::from_secs(20))
        .expect("the edge refuses to start");
    assert_eq!(status.code(), Some(1));
    let log = edge.log_text();
    let expected = format!(
        "the private key in {} does not match the certificate in {}",
        b.key.display(),
        a.cert.display()
    );
    assert!(log.contains(&expected), "{log}");
}

#[test]
fn certificates_come_from_the_edge_config_file() {
    let origin = start_origin();
    let dir = TempDir::new("https-config");
    let ca = TestCa::new();
    let a = ca.leaf(dir.path(), "a", &["a.test"]);
    // Paths relative to the config file's directory.
    let config = dir.path().join("edge.yml");
    std::fs::write(&config, "tls:\n  - cert: a.pem\n    key: a.key\n").unwrap();

    let (http, tunnel, admin) = (any_port(), any_port(), any_port());
    let extra = ["--config", config.to_str().unwrap()];
    let edge = Edge::start_with(dir.path(), http, tunnel, admin, &extra, &[]);
    let cred = edge.create_tunnel("web");
    edge.route("web", "a.test");
    let rule = format!("  - service: http://{origin}\n");
    let _connector = start_connector_with(dir.path(), "web", &cred, &rule, 1);
    edge.wait_connections("web", 1);

    // No SNI at all: the first certificate.
    let mut client = Client::connect_tls_without_sni(edge.https, "a.test", &ca.pem);
    assert!(presented(&client) == a.der);
    let response = client.request("GET", "a.test", "/", None);
    assert_eq!(response.text(), ORIGIN_HELLO);
}
