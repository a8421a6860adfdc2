//! The edge's graceful stop end to end: on SIGTERM it closes its public listeners and idle
//! client connections, lets the requests in flight finish for up to `--grace-period`, then
//! closes the tunnel connections and exits 0; a second signal exits at once with 130.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::*;

/// How long a request sent before the signal is given to reach the edge and the origin.
const IN_FLIGHT: Duration = Duration::from_millis(500);

/// Sends `GET path` on a fresh connection from another thread; the response (or `None`
/// when the connection closed without one) arrives on the channel.
fn get_in_background(
    addr: SocketAddr,
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

fn wait_exit(edge: &mut Edge, limit: Duration) -> ExitStatus {
    let exited = edge.proc.wait_exit(limit);
    exited.unwrap_or_else(|| panic!("the edge did not exit:\n{}", edge.proc.log_text()))
}

#[test]
fn a_request_in_flight_completes_and_the_edge_exits_after_it() {
    let origin = start_origin();
    let mut s = setup("drain-done", &origin_rule(origin));

    // A keep-alive connection that already carried a request and now waits idle.
    let mut idle = Client::connect(s.edge.http);
    assert_eq!(idle.request("GET", "web.test", "/", None).status, 200);

    let slow = get_in_background(s.edge.http, "/delay/2000");
    std::thread::sleep(IN_FLIGHT);
    let signalled = Instant::now();
    // Twice at once, as GNU timeout does to the process and its group: one stop, not two.
    s.edge.proc.terminate();
    s.edge.proc.terminate();

    // The idle connection closes at once, without a response.
    assert!(idle.read_response(false).is_none());
    assert!(signalled.elapsed() < Duration::from_secs(1));

    let response = slow.recv_timeout(Duration::from_secs(10));
    let response = response.unwrap_or_else(|_| panic!("{}", s.edge.proc.log_text()));
    let response = response.expect("the request in flight gets its response");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "done\n");
    assert_eq!(response.header("connection"), Some("close"));

    let status = wait_exit(&mut s.edge, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", s.edge.proc.log_text());
    assert!(signalled.elapsed() < Duration::from_secs(4));
    let log = s.edge.proc.log_text();
    assert!(
        log.contains("edge shutting down: 1 requests in flight, waiting up to 30s"),
        "{log}"
    );
    assert!(log.contains("all requests done"), "{log}");
    assert!(log.contains("edge stopped"), "{log}");
}

#[test]
fn new_connections_are_refused_while_draining() {
    let origin = start_origin();
    let mut s = setup("drain-refuse", &origin_rule(origin));
    let slow = get_in_background(s.edge.http, "/delay/3000");
    std::thread::sleep(IN_FLIGHT);
    s.edge.proc.terminate();

    // Every worker closes its listener, after which the kernel refuses the connection.
    let http = s.edge.http;
    let refused = eventually(Duration::from_secs(2), "the listener to close", || {
        TcpStream::connect(http).err()
    });
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    let response = slow.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(response.expect("a response").text(), "done\n");
    let status = wait_exit(&mut s.edge, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_grace_period_bounds_the_wait() {
    let origin = start_origin();
    let rule = origin_rule(origin);
    let mut s = setup_with("drain-grace", &rule, &["--grace-period", "1s"]);
    let slow = get_in_background(s.edge.http, "/delay/30000");
    std::thread::sleep(IN_FLIGHT);
    let signalled = Instant::now();
    s.edge.proc.terminate();

    let status = wait_exit(&mut s.edge, Duration::from_secs(5));
    assert!(signalled.elapsed() < Duration::from_millis(2500));
    assert_eq!(status.code(), Some(0));
    // The request cut off when the tunnel connections closed gets a 502 page.
    let response = slow.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(response.map(|r| r.status), Some(502));
    let log = s.edge.proc.log_text();
    assert!(
        log.contains("edge shutting down: 1 requests in flight, waiting up to 1s"),
        "{log}"
    );
    assert!(
        log.contains("grace period over with 1 requests in flight"),
        "{log}"
    );
    assert!(log.contains("edge stopped"), "{log}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let origin = start_origin();
    let mut s = setup("drain-twice", &origin_rule(origin));
    let _slow = get_in_background(s.edge.http, "/delay/30000");
    std::thread::sleep(IN_FLIGHT);
    s.edge.proc.terminate();
    std::thread::sleep(Duration::from_millis(400));
    assert!(s.edge.proc.child.try_wait().unwrap().is_none());

    let second = Instant::now();
    s.edge.proc.terminate();
    let status = wait_exit(&mut s.edge, Duration::from_secs(5));
    assert!(second.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(130));
    let log = s.edge.proc.log_text();
    assert!(log.contains("second signal: exiting at once"), "{log}");
}
