//! TCP services end to end: `adit access tcp` (listener and stdio modes) as a child process,
//! through an edge and a connector (child processes too) to the built-in TCP echo origin,
//! all on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const HOST: &str = "ssh.test";

/// An edge, one tunnel routed at [`HOST`], a connector whose rule for it is `service`.
struct Setup {
    dir: TempDir,
    edge: Edge,
    _connector: Proc,
}

fn setup(name: &str, service: &str) -> Setup {
    let dir = TempDir::new(name);
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("tcp");
    edge.route("tcp", HOST);
    let ingress =
        format!("  - hostname: {HOST}\n    service: {service}\n  - service: http_status:404\n");
    let connector = start_connector(dir.path(), "tcp", &cred, &ingress);
    edge.wait_connections("tcp", 2);
    Setup {
        dir,
        edge,
        _connector: connector,
    }
}

fn start_echo() -> SocketAddr {
    adit::origin::spawn_tcp_echo("127.0.0.1:0".parse().unwrap(), 1)
        .unwrap()
        .addr
}

impl Setup {
    fn edge_url(&self) -> String {
        format!("http://{}", self.edge.http)
    }

    /// `adit access tcp --url` for `hostname`, once it listens.
    fn listener(&self, hostname: &str) -> (Proc, SocketAddr) {
        let addr = free_tcp_addr();
        let log = self
            .dir
            .path()
            .join(format!("access-{}.log", uuid::Uuid::new_v4()));
        let args = [
            "access",
            "tcp",
            "--hostname",
            hostname,
            "--url",
            &addr.to_string(),
            "--edge",
            &self.edge_url(),
        ];
        let proc = Proc::spawn(&args, log, &[]);
        eventually(Duration::from_secs(20), "the access listener", || {
            proc.log_text()
                .contains("adit access listening")
                .then_some(())
        });
        (proc, addr)
    }

    /// `adit access tcp` in stdio mode for `hostname`, with piped standard streams.
    fn stdio(&self, hostname: &str) -> Killed {
        let child = Command::new(BIN)
            .args(["access", "tcp", "--hostname", hostname])
            .args(["--edge", &self.edge_url()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Killed(Some(child))
    }
}

/// A child killed (by its own PID) if the test ends before it exits.
struct Killed(Option<Child>);

impl Killed {
    /// Waits for the exit; returns the exit code and what it wrote to stdout and stderr.
    fn finish(&mut self, limit: Duration) -> (Option<i32>, Vec<u8>, String) {
        let mut child = self.0.take().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = child.id();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let readers = std::thread::spawn(move || {
            let (mut out, mut err) = (Vec::new(), String::new());
            let _ = stdout.read_to_end(&mut out);
            let _ = stderr.read_to_string(&mut err);
            (out, err)
        });
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(limit) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                // SAFETY: kill(2) with this test's own child's PID.
                unsafe {
                    libc::kill(id as i32, libc::SIGKILL);
                }
                panic!("adit access did not exit within {limit:?}");
            }
        };
        let (out, err) = readers.join().unwrap();
        (status.code(), out, err)
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn read_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Writes `data` from another thread (so the echo can flow back meanwhile), then
/// half-closes when `half_close`.
fn write_in_background(
    stream: &TcpStream,
    data: Vec<u8>,
    half_close: bool,
) -> std::thread::JoinHandle<()> {
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        if half_close {
            writer.shutdown(Shutdown::Write).unwrap();
        }
    })
}

#[test]
fn listener_mode_echoes_exact_bytes_and_carries_half_close() {
    let echo = start_echo();
    let s = setup("access-listen", &format!("tcp://{echo}"));
    let (_access, addr) = s.listener(HOST);

    // Small writes come back exactly, each on its own.
    let mut a = connect(addr);
    let mut b = connect(addr);
    a.write_all(b"hello\n").unwrap();
    b.write_all(b"other").unwrap();
    assert_eq!(read_exact(&mut a, 6), b"hello\n");
    assert_eq!(read_exact(&mut b, 5), b"other");
    a.write_all(&[0, 1, 2, 255]).unwrap();
    assert_eq!(read_exact(&mut a, 4), [0, 1, 2, 255]);

    // 8 MiB, echoed while it is still being sent.
    let data = pattern(8 * 1024 * 1024);
    let writer = write_in_background(&a, data.clone(), false);
    let echoed = read_exact(&mut a, data.len());
    writer.join().unwrap();
    assert!(echoed == data, "the 8 MiB echo differs");

    // Half-close: the client stops writing, still gets the whole echo, then the end.
    let data = pattern(1024 * 1024 + 7);
    let writer = write_in_background(&b, data.clone(), true);
    let started = Instant::now();
    let mut echoed = Vec::new();
    b.read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "the echo before the half-close differs");
    assert!(started.elapsed() < Duration::from_secs(20));

    // The first connection is still open both ways.
    a.write_all(b"still here").unwrap();
    assert_eq!(read_exact(&mut a, 10), b"still here");

    // Plain HTTP to a TCP service says how to connect.
    let page = get(s.edge.http, HOST, "/");
    assert_eq!(page.status, 400);
    assert!(
        page.text()
            .contains("ssh.test carries TCP: connect with adit access tcp"),
        "{}",
        page.text()
    );
}

#[test]
fn stdio_mode_carries_standard_streams_and_reports_refusals() {
    let echo = start_echo();
    let s = setup("access-stdio", &format!("tcp://{echo}"));

    let data = pattern(2 * 1024 * 1024 + 3);
    let mut access = s.stdio(HOST);
    let mut stdin = access.0.as_mut().unwrap().stdin.take().unwrap();
    let input = data.clone();
    // Closing stdin after the data is the half-close; the echo still arrives whole.
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let (code, out, err) = access.finish(Duration::from_secs(60));
    writer.join().unwrap();
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(out.len(), data.len());
    assert!(out == data, "the echo on stdout differs");

    // A hostname with no tunnel: the edge's 404 page, exit status 1.
    let mut access = s.stdio("nope.test");
    let (code, out, err) = access.finish(Duration::from_secs(30));
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert!(
        err.contains("the edge refused the connection: 404 Not Found\n")
            && err.contains("No tunnel is routed for nope.test."),
        "stderr: {err}"
    );
}

#[test]
fn an_unreachable_origin_is_reported_with_502() {
    let dead = free_tcp_addr();
    let s = setup("access-dead", &format!("tcp://{dead}"));

    let mut access = s.stdio(HOST);
    let (code, _, err) = access.finish(Duration::from_secs(30));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("the edge refused the connection: 502 Bad Gateway\n")
            && err.contains(&format!("could not connect to origin tcp://{dead}")),
        "stderr: {err}"
    );

    // In listener mode the refused connection is closed, and the log says why.
    let (access, addr) = s.listener(HOST);
    let mut conn = connect(addr);
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty());
    eventually(Duration::from_secs(10), "the refusal in the log", || {
        let log = access.log_text();
        (log.contains("502 Bad Gateway") && log.contains(&format!("tcp://{dead}"))).then_some(())
    });
}

#[test]
fn a_client_that_resets_while_its_echo_is_unread_ends_the_origin_connection() {
    // The client sends and never reads, so the echo backs up from the client's socket all
    // the way to the origin, whose writes stop; then the client resets. The origin
    // connection must end: the access client reads on (dropping the echo) until it sees the
    // reset, instead of leaving everything between blocked for ever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo = listener.local_addr().unwrap();
    let (ended_tx, ended) = crossbeam_channel::bounded(1);
    let origin = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(40)))
            .unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(40)))
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if conn.write_all(&buf[..n]).is_err() => break,
                Ok(_) => {}
            }
        }
        let _ = ended_tx.send(Instant::now());
    });
    let s = setup("access-reset", &format!("tcp://{echo}"));
    let (_access, addr) = s.listener(HOST);

    let mut client = connect(addr);
    client
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let block = pattern(64 * 1024);
    let mut sent = 0;
    // Until the writes stall (everything between is full), at most 64 MiB.
    while sent < 64 << 20 && client.write_all(&block).is_ok() {
        sent += block.len();
    }
    assert!(sent >= 1 << 20, "only {sent} bytes went out");
    // Unread bytes in its receive queue make the close a reset.
    let reset_at = Instant::now();
    drop(client);
    let ended = ended
        .recv_timeout(Duration::from_secs(20))
        .expect("the origin connection was still open 20 s after the client's reset");
    assert!(ended.duration_since(reset_at) < Duration::from_secs(20));
    origin.join().unwrap();
}

/// An origin for two connections, each sent `size` bytes of [`pattern`] and reset `wait`
/// later.
fn resetting_origin(size: usize, wait: Duration) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(&pattern(size)).unwrap();
            std::thread::sleep(wait);
            reset_on_close(&conn);
            drop(conn);
        }
    });
    (origin, server)
}

#[test]
fn an_origin_reset_ends_the_carried_connection_both_ways() {
    // The origin sends 1 MiB and then resets: the client gets every byte, and then the end
    // of both directions (not a half-close that goes on taking its bytes); in stdio mode the
    // process exits with an error while its standard input is still open.
    const SIZE: usize = 1 << 20;
    // One second: time for every byte to leave the origin's socket before the reset.
    let (origin, server) = resetting_origin(SIZE, Duration::from_secs(1));
    let s = setup("access-origin-reset", &format!("tcp://{origin}"));

    let (_access, addr) = s.listener(HOST);
    let mut client = connect(addr);
    assert!(read_exact(&mut client, SIZE) == pattern(SIZE));
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{} bytes after the end", rest.len());
    let ended = Instant::now();
    while client.write_all(b"still there?").is_ok() {
        assert!(
            ended.elapsed() < Duration::from_secs(10),
            "the access client still takes bytes 10 s after the origin's reset"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut access = s.stdio(HOST);
    let _stdin = access.0.as_mut().unwrap().stdin.take();
    let (code, out, err) = access.finish(Duration::from_secs(20));
    assert_eq!(out.len(), SIZE);
    assert!(out == pattern(SIZE));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: the service's connection broke off (WebSocket close 1011)"),
        "{err}"
    );
    server.join().unwrap();
}

/// Writes 64 KiB blocks into `out` until a write fails, for at most 30 s; returns whether
/// one failed and when the writing stopped.
fn send_until_refused(
    mut out: impl Write + Send + 'static,
) -> std::thread::JoinHandle<(bool, Instant)> {
    std::thread::spawn(move || {
        let block = pattern(64 * 1024);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if out.write_all(&block).is_err() {
                return (true, Instant::now());
            }
        }
        (false, Instant::now())
    })
}

#[test]
fn an_origin_reset_while_the_client_sends_ends_both_ways() {
    // As above, but the client sends all along: the connector's write to the origin then
    // meets the reset first and the origin's reading side ends without an error. That is
    // still a broken connection, not a half-close: the client must not go on sending into
    // nothing.
    const SENT: usize = 1000;
    let (origin, server) = resetting_origin(SENT, Duration::from_millis(300));
    let s = setup("access-origin-reset-sending", &format!("tcp://{origin}"));

    let (_access, addr) = s.listener(HOST);
    let mut client = connect(addr);
    let sender = send_until_refused(client.try_clone().unwrap());
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(got == pattern(SENT), "{} bytes", got.len());
    let (refused, _) = sender.join().unwrap();
    assert!(
        refused,
        "the client could still send 30 s after the origin's reset"
    );

    let mut access = s.stdio(HOST);
    let stdin = access.0.as_mut().unwrap().stdin.take().unwrap();
    let sender = send_until_refused(stdin);
    let (code, out, err) = access.finish(Duration::from_secs(20));
    assert!(out == pattern(SENT), "{} bytes", out.len());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: the service's connection broke off (WebSocket close 1011)"),
        "{err}"
    );
    let (refused, _) = sender.join().unwrap();
    assert!(refused);
    server.join().unwrap();
}
