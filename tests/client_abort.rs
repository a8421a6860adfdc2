//! A client that hangs up before its response head arrives: the edge abandons the stream
//! (its active-stream gauge returns to 0 and the request counts as a 499, a 4xx) and the
//! connector closes the origin connection instead of waiting for an answer. A client that
//! sends its next request meanwhile has not hung up: both requests are answered, in order;
//! but one that closes after such bytes has, and is found by the periodic check.
//!
//! The edge and the connector run in this process (one worker each), in front of an origin
//! written here that answers `/hang` never, `/wait` when the test says so, and anything else
//! at once.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, reset_on_close, TempDir};

/// How long any step of these tests may take before it counts as failed.
const LIMIT: Duration = Duration::from_secs(20);

/// Origin connections served at most, so its accept loop is bounded.
const ORIGIN_CONNECTIONS: usize = 16;

/// What the origin saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Request(String),
    /// The connection that held `/hang` was closed by the connector.
    HangClosed,
}

/// Reads one request head; its path, or `None` once the connection closed.
fn read_path(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split(' ').nth(1)?.to_owned();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        if header == "\r\n" {
            return Some(path);
        }
    }
}

fn answer(stream: &mut TcpStream, body: &str) {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn serve_origin_conn(stream: TcpStream, seen: Sender<Seen>, go: Arc<Mutex<Receiver<()>>>) {
    stream.set_read_timeout(Some(LIMIT * 3)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(path) = read_path(&mut reader) {
        let _ = seen.send(Seen::Request(path.clone()));
        match path.as_str() {
            "/hang" => {
                // Never answers; reads until the connector closes the connection.
                let mut rest = [0u8; 64];
                while matches!(reader.read(&mut rest), Ok(n) if n > 0) {}
                let _ = seen.send(Seen::HangClosed);
                return;
            }
            "/wait" => {
                let released = go.lock().unwrap().recv_timeout(LIMIT * 3);
                assert_eq!(released, Ok(()));
                answer(&mut writer, "waited\n");
            }
            other => answer(&mut writer, &format!("at once {other}\n")),
        }
    }
}

/// Starts the origin; returns its address, what it sees, and the switch that answers `/wait`.
fn start_origin() -> (SocketAddr, Receiver<Seen>, Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = channel();
    let (go, go_rx) = channel();
    let go_rx = Arc::new(Mutex::new(go_rx));
    std::thread::spawn(move || {
        for _ in 0..ORIGIN_CONNECTIONS {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let (seen, go) = (seen_tx.clone(), go_rx.clone());
            std::thread::spawn(move || serve_origin_conn(stream, seen, go));
        }
    });
    (addr, seen, go)
}

struct Stack {
    edge: adit::edge::Edge,
    connector: Option<adit::connector::Connector>,
    _dir: TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(connector) = self.connector.take() {
            connector.shutdown();
        }
        self.edge.shutdown();
    }
}

impl Stack {
    fn start(origin: SocketAddr) -> Stack {
        let dir = TempDir::new("client-abort");
        let edge =
            adit::edge::start(common::loopback_edge_config(dir.path().join("edge"))).unwrap();
        let credentials = edge.control.create_tunnel("abort").unwrap();
        edge.control.route("abort", "abort.test").unwrap();
        let ingress =
            adit::connector::ingress::Ingress::single(&format!("http://{origin}")).unwrap();
        let connector = adit::connector::start(adit::connector::ConnectorConfig {
            credentials,
            ingress,
            ha_connections: 1,
            workers: 1,
            edge: Some(edge.tunnel_addr),
            pin_cpus: false,
        })
        .unwrap();
        Stack {
            edge,
            connector: Some(connector),
            _dir: dir,
        }
    }

    fn metrics(&self) -> String {
        adit::metrics::edge::render(&self.edge.metrics)
    }

    /// The edge's responses of a status class (`4xx`, say).
    fn requests(&self, class: &str) -> u64 {
        let series = format!("adit_edge_requests_total{{class=\"{class}\"}} ");
        let text = self.metrics();
        let value = text.lines().find_map(|line| line.strip_prefix(&series));
        value.unwrap().parse().unwrap()
    }

    fn active_streams(&self) -> i64 {
        self.edge
            .metrics
            .iter()
            .map(|m| m.active_streams.value())
            .sum()
    }

    fn client(&self) -> TcpStream {
        let stream = TcpStream::connect(self.edge.http_addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream
    }
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: abort.test\r\n\r\n")
}

/// Reads one response with a Content-Length body; its status line and body.
fn read_response(reader: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut len = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header == "\r\n" || header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    (
        status.trim_end().to_owned(),
        String::from_utf8(body).unwrap(),
    )
}

/// Waits until the tunnel answers, by sending `/ready` until it gets a 200.
fn wait_ready(stack: &Stack, seen: &Receiver<Seen>) {
    eventually(LIMIT, "the tunnel to serve the route", || {
        let mut client = stack.client();
        client.write_all(request("/ready").as_bytes()).ok()?;
        let mut reader = BufReader::new(client);
        let (status, _) = read_response(&mut reader);
        status.starts_with("HTTP/1.1 200").then_some(())
    });
    while let Ok(Seen::Request(_)) = seen.try_recv() {}
}

/// The origin's next event.
fn next_seen(seen: &Receiver<Seen>) -> Seen {
    seen.recv_timeout(LIMIT).expect("the origin saw nothing")
}

/// Waits until the origin saw its `/hang` connection closed and the edge counted `count`
/// abandoned requests (4xx) with no stream left.
fn expect_abandoned(stack: &Stack, seen: &Receiver<Seen>, count: u64) {
    assert_eq!(next_seen(seen), Seen::HangClosed);
    let counted = eventually(LIMIT, "the abandoned request to be counted", || {
        let counted = stack.requests("4xx");
        (counted == count && stack.active_streams() == 0).then_some(counted)
    });
    assert_eq!(counted, count);
}

#[test]
fn a_client_that_hangs_up_before_the_head_abandons_the_origin_request() {
    let (origin, seen, _go) = start_origin();
    let stack = Stack::start(origin);
    wait_ready(&stack, &seen);
    // Requests sent before the tunnel was up got error pages: count from here.
    let errors = stack.requests("5xx");
    assert_eq!(stack.requests("4xx"), 0);

    // A close (FIN) while the origin holds the request.
    let mut client = stack.client();
    client.write_all(request("/hang").as_bytes()).unwrap();
    assert_eq!(next_seen(&seen), Seen::Request("/hang".into()));
    assert_eq!(stack.active_streams(), 1);
    drop(client);

    assert_eq!(next_seen(&seen), Seen::HangClosed);
    let active = eventually(LIMIT, "the edge's stream to end", || {
        let active = stack.active_streams();
        (active == 0).then_some(active)
    });
    assert_eq!(active, 0);
    let counted = eventually(LIMIT, "the abandoned request to be counted", || {
        let counted = stack.requests("4xx");
        (counted == 1).then_some(counted)
    });
    assert_eq!(counted, 1);

    // A reset (RST) instead of a close.
    let client = stack.client();
    (&client).write_all(request("/hang").as_bytes()).unwrap();
    assert_eq!(next_seen(&seen), Seen::Request("/hang".into()));
    reset_on_close(&client);
    drop(client);

    expect_abandoned(&stack, &seen, 2);
    assert_eq!(stack.active_streams(), 0);
    assert_eq!(stack.requests("5xx"), errors);
}

#[test]
fn a_request_sent_before_the_previous_response_is_answered() {
    let (origin, seen, go) = start_origin();
    let stack = Stack::start(origin);
    wait_ready(&stack, &seen);

    let mut client = stack.client();
    client.write_all(request("/wait").as_bytes()).unwrap();
    assert_eq!(next_seen(&seen), Seen::Request("/wait".into()));
    // The next request arrives while the first one's head is awaited: the edge's watch of
    // the client fires on it, and must leave it for after the first response.
    client.write_all(request("/second").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stack.active_streams(), 1);
    go.send(()).unwrap();

    let mut reader = BufReader::new(client);
    assert_eq!(
        read_response(&mut reader),
        ("HTTP/1.1 200 OK".into(), "waited\n".into())
    );
    assert_eq!(
        read_response(&mut reader),
        ("HTTP/1.1 200 OK".into(), "at once /second\n".into())
    );
    assert_eq!(next_seen(&seen), Seen::Request("/second".into()));

    // The connection still serves requests.
    reader
        .get_mut()
        .write_all(request("/third").as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut reader),
        ("HTTP/1.1 200 OK".into(), "at once /third\n".into())
    );
    assert_eq!(stack.requests("4xx"), 0);
}

#[test]
fn a_client_that_closes_after_sending_more_bytes_is_noticed_too() {
    let (origin, seen, _go) = start_origin();
    let stack = Stack::start(origin);
    wait_ready(&stack, &seen);
    let errors = stack.requests("5xx");

    // Bytes past the request fire the watch without a hang-up; the close comes later, when
    // the socket's readiness has nothing more to say.
    let mut client = stack.client();
    client.write_all(request("/hang").as_bytes()).unwrap();
    assert_eq!(next_seen(&seen), Seen::Request("/hang".into()));
    client.write_all(b"\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stack.active_streams(), 1);
    drop(client);

    expect_abandoned(&stack, &seen, 1);

    // The same with a reset, and with the bytes and the close arriving together.
    let client = stack.client();
    reset_on_close(&client);
    (&client).write_all(request("/hang").as_bytes()).unwrap();
    assert_eq!(next_seen(&seen), Seen::Request("/hang".into()));
    (&client).write_all(request("/next").as_bytes()).unwrap();
    drop(client);

    expect_abandoned(&stack, &seen, 2);
    assert_eq!(stack.requests("5xx"), errors);
}

#[test]
fn a_client_that_resets_while_sending_its_body_counts_as_gone_not_as_an_origin_error() {
    let (origin, seen, _go) = start_origin();
    let stack = Stack::start(origin);
    wait_ready(&stack, &seen);
    let errors = stack.requests("5xx");

    let client = stack.client();
    reset_on_close(&client);
    let head = "POST /hang HTTP/1.1\r\nHost: abort.test\r\nContent-Length: 1000000\r\n\r\n";
    (&client).write_all(head.as_bytes()).unwrap();
    (&client).write_all(&[b'x'; 100]).unwrap();
    assert_eq!(next_seen(&seen), Seen::Request("/hang".into()));
    drop(client);

    expect_abandoned(&stack, &seen, 1);
    assert_eq!(stack.requests("5xx"), errors);
}

#[test]
fn a_client_that_hangs_up_while_its_upgrade_awaits_the_101_is_noticed() {
    let (origin, seen, _go) = start_origin();
    let stack = Stack::start(origin);
    wait_ready(&stack, &seen);
    let errors = stack.requests("5xx");

    let mut client = stack.client();
    let head = "GET /hang HTTP/1.1\r\nHost: abort.test\r\nConnection: Upgrade\r\n\
                Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    client.write_all(head.as_bytes()).unwrap();
    assert_eq!(next_seen(&seen), Seen::Request("/hang".into()));
    assert_eq!(stack.active_streams(), 1);
    drop(client);

    expect_abandoned(&stack, &seen, 1);
    assert_eq!(stack.requests("5xx"), errors);
}
