//! Memory stays bounded when one side is slow: a 1 GiB download to a client that reads
//! slower than the tunnel delivers, and a 1 GiB upload to an origin that reads slower than
//! the client sends. Back-pressure must come from QUIC flow control, not from queues, so
//! edge and connector together stay under 64 MiB above their idle RSS.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const GIB: u64 = 1 << 30;
const LIMIT_KIB: u64 = 64 * 1024;

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples the summed RSS of `pids` every 100 ms until stopped; returns the peak.
fn watch(pids: Vec<u32>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(pids.iter().map(|&p| rss_kib(p)).sum());
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

/// Reads or writes `total` bytes in 64 KiB pieces, pausing 2 ms after each MiB: about
/// 300 MiB/s at most, slower than the tunnel, so the far side has to wait.
fn throttle(done: u64) {
    if done % (1 << 20) < 64 * 1024 {
        std::thread::sleep(Duration::from_millis(2));
    }
}

trait Watched {
    fn pids(&self) -> Vec<u32>;
    fn idle_rss(&self) -> u64;
}

impl Watched for Setup {
    fn pids(&self) -> Vec<u32> {
        vec![self.edge.proc.child.id(), self.connector.child.id()]
    }

    /// RSS after a few small requests, once allocators have settled.
    fn idle_rss(&self) -> u64 {
        for _ in 0..3 {
            assert_eq!(get(self.edge.http, "web.test", "/").status, 200);
        }
        std::thread::sleep(Duration::from_millis(300));
        self.pids().iter().map(|&p| rss_kib(p)).sum()
    }
}

#[test]
fn a_slow_client_downloading_a_gib_keeps_memory_bounded() {
    let origin = start_origin();
    let s = setup("slow-client", &origin_rule(origin));
    let idle = s.idle_rss();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch(s.pids(), stop.clone());

    let mut client = std::net::TcpStream::connect(s.edge.http).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
        .write_all(format!("GET /bytes/{GIB} HTTP/1.1\r\nHost: web.test\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut body: u64 = 0;
    loop {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {body} body bytes");
        if head.is_empty() || !head.ends_with(b"\r\n\r\n") {
            // The head is small and arrives first; the rest of this read is body.
            let mut split = n;
            for (i, &b) in buf[..n].iter().enumerate() {
                head.push(b);
                if head.ends_with(b"\r\n\r\n") {
                    split = i + 1;
                    break;
                }
            }
            body += (n - split) as u64;
        } else {
            body += n as u64;
        }
        throttle(body);
        if body >= GIB {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.join().unwrap();
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {GIB}\r\n")),
        "{head}"
    );
    assert_eq!(body, GIB);
    let growth = peak.saturating_sub(idle);
    eprintln!("edge + connector: idle {idle} KiB, peak growth {growth} KiB");
    assert!(
        growth < LIMIT_KIB,
        "edge + connector grew {growth} KiB above {idle} KiB"
    );
}

#[test]
fn a_slow_origin_receiving_a_gib_keeps_memory_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap();
    let script = std::thread::spawn(move || {
        // Warm-up requests first (answered at once), then the slow upload.
        loop {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                conn.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            if head.starts_with("GET ") {
                conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                )
                .unwrap();
                continue;
            }
            let mut buf = vec![0u8; 64 * 1024];
            let mut got: u64 = 0;
            while got < GIB {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "upload ended after {got} bytes");
                got += n as u64;
                throttle(got);
            }
            conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{got}",
                    got.to_string().len()
                )
                .as_bytes(),
            )
            .unwrap();
            return got;
        }
    });
    let s = setup("slow-origin", &origin_rule(origin));
    let idle = s.idle_rss();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch(s.pids(), stop.clone());

    let mut client = Client::connect(s.edge.http);
    client.send_raw(
        format!("POST /upload HTTP/1.1\r\nHost: web.test\r\nContent-Length: {GIB}\r\n\r\n")
            .as_bytes(),
    );
    let block = vec![b'u'; 1 << 20];
    for _ in 0..1024 {
        client.send_raw(&block);
    }
    let response = client.read_response(false).unwrap();
    stop.store(true, Ordering::Relaxed);
    let peak = peak.join().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), GIB.to_string());
    assert_eq!(script.join().unwrap(), GIB);
    let growth = peak.saturating_sub(idle);
    eprintln!("edge + connector: idle {idle} KiB, peak growth {growth} KiB");
    assert!(
        growth < LIMIT_KIB,
        "edge + connector grew {growth} KiB above {idle} KiB"
    );
}
