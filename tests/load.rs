//! The load generator against origins that count what they served: counts agree exactly,
//! `-n` is exact, chunked bodies and non-2xx statuses are counted right, an origin stall
//! shows in the open-loop percentiles, and the `.hgrm` file has HdrHistogram's layout.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adit::load::{self, HttpLoad, TcpLoad, TcpMode};

/// What a test origin writes for its n-th request (counting from 1): the response in pieces,
/// each written on its own so the load generator sees it split.
type Respond = dyn Fn(u64) -> Vec<Vec<u8>> + Send + Sync;

struct CountingOrigin {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
}

/// A thread-per-connection HTTP/1.1 origin that counts each response it finished writing.
/// Its threads end with the test process.
fn counting_origin(respond: Arc<Respond>) -> CountingOrigin {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let next = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (respond, counter, next) = (respond.clone(), counter.clone(), next.clone());
            std::thread::spawn(move || serve(stream, &*respond, &counter, &next));
        }
    });
    CountingOrigin { addr, served }
}

fn serve(stream: TcpStream, respond: &Respond, served: &AtomicU64, next: &AtomicU64) {
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // Requests here have no body: the head ends at the first empty line.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let n = next.fetch_add(1, Ordering::SeqCst) + 1;
        for piece in respond(n) {
            if writer.write_all(&piece).is_err() {
                return;
            }
        }
        served.fetch_add(1, Ordering::SeqCst);
    }
}

const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

fn hello(_: u64) -> Vec<Vec<u8>> {
    vec![HELLO.to_vec()]
}

fn http_load(target: SocketAddr) -> HttpLoad {
    HttpLoad {
        target,
        host: "load.test".into(),
        path: "/".into(),
        method: "GET".into(),
        headers: Vec::new(),
        body: None,
        connections: 8,
        workers: 2,
        duration: None,
        requests: None,
        rate: None,
        timeout: Duration::from_secs(10),
    }
}

const REQUEST_LEN: u64 = b"GET / HTTP/1.1\r\nHost: load.test\r\n\r\n".len() as u64;

#[test]
fn duration_run_counts_agree_with_the_origin() {
    let origin = counting_origin(Arc::new(hello));
    let mut load = http_load(origin.addr);
    load.duration = Some(Duration::from_millis(800));
    let report = load::run_http(&load, None).unwrap();

    // Requests still in flight when the duration ended were served but not counted; the
    // origin counts a response once fully written, so allow only those (one per connection).
    let served = origin.served.load(Ordering::SeqCst);
    assert!(report.requests > 0);
    assert!(
        served >= report.requests && served <= report.requests + 8,
        "served {served}, counted {}",
        report.requests
    );
    assert_eq!(report.errors, load::Errors::default());
    assert_eq!(report.latency.len(), report.requests);
}

#[test]
fn request_count_is_exact_across_workers() {
    let origin = counting_origin(Arc::new(hello));
    let mut load = http_load(origin.addr);
    load.connections = 7;
    load.requests = Some(1234);
    let report = load::run_http(&load, None).unwrap();

    assert_eq!(report.requests, 1234);
    assert_eq!(origin.served.load(Ordering::SeqCst), 1234);
    assert_eq!(report.latency.len(), 1234);
    assert_eq!(report.bytes_read, 1234 * HELLO.len() as u64);
    assert_eq!(report.bytes_written, 1234 * REQUEST_LEN);
    assert_eq!(report.errors, load::Errors::default());
}

#[test]
fn chunked_responses_are_read_to_their_end() {
    // Split inside the size line, inside data, and before the last chunk.
    let pieces: Vec<&[u8]> = vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhel",
        b"lo\r\n1",
        b"0\r\n0123456789abcdef\r\n",
        b"0\r\n\r\n",
    ];
    let total: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    let owned: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
    let origin = counting_origin(Arc::new(move |_| owned.clone()));
    let mut load = http_load(origin.addr);
    load.connections = 4;
    load.requests = Some(500);
    let report = load::run_http(&load, None).unwrap();

    assert_eq!(report.requests, 500);
    assert_eq!(origin.served.load(Ordering::SeqCst), 500);
    assert_eq!(report.bytes_read, 500 * total);
    assert_eq!(report.errors, load::Errors::default());
}

#[test]
fn non_2xx_responses_are_counted_by_status() {
    let origin = counting_origin(Arc::new(|n: u64| {
        let head: &[u8] = match n % 3 {
            0 => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            1 => b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
            _ => HELLO,
        };
        vec![head.to_vec()]
    }));
    let mut load = http_load(origin.addr);
    load.requests = Some(300);
    let report = load::run_http(&load, None).unwrap();

    assert_eq!(report.requests, 300);
    assert_eq!(
        report.errors.status,
        BTreeMap::from([(404, 100), (503, 100)])
    );
    assert_eq!(report.errors.transport(), 0);
}

#[test]
fn open_loop_charges_an_origin_stall_to_every_request_it_delayed() {
    // The 200th request freezes the whole origin for 500 ms: every connection's response
    // waits until the stall ends.
    let stall_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let origin = counting_origin(Arc::new(move |n: u64| {
        let until = {
            let mut until = stall_until.lock().unwrap();
            if n == 200 {
                *until = Some(Instant::now() + Duration::from_millis(500));
            }
            *until
        };
        if let Some(wait) = until.and_then(|u| u.checked_duration_since(Instant::now())) {
            std::thread::sleep(wait);
        }
        hello(n)
    }));
    let mut load = http_load(origin.addr);
    load.connections = 4;
    load.rate = Some(200.0);
    load.requests = Some(600);
    let report = load::run_http(&load, None).unwrap();

    assert_eq!(report.requests, 600);
    assert_eq!(origin.served.load(Ordering::SeqCst), 600);
    // The stalled request was due before it reached the origin, so it waited at least 500 ms.
    assert!(
        report.max() >= Duration::from_millis(500),
        "{:?}",
        report.max()
    );
    // At 200/s, 100 requests fell due during the stall, the one due at its start waiting
    // 500 ms and each later one 5 ms less. The top 1% of 600 is 6 requests, all of them due
    // in the first 30 ms of the stall, so p99 is at least 470 ms (450 leaves slack for the
    // histogram's precision and for the stall starting a little after request 200 was due).
    let p99 = report.percentile(99.0);
    assert!(p99 >= Duration::from_millis(450), "p99 {p99:?}");
    // Those due in the stall's first 250 ms, 50 of them, waited at least 250 ms. Closed loop
    // would hide this: only the 4 requests in flight would have waited.
    let delayed = report.latency.len() - report.latency.count_between(0, 249_000);
    assert!(delayed >= 45, "{delayed} requests waited 250 ms or more");
}

#[test]
fn hgrm_file_from_the_command_line() {
    let origin = counting_origin(Arc::new(hello));
    let dir = std::env::temp_dir().join(format!("adit-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hgrm, json) = (dir.join("run.hgrm"), dir.join("run.json"));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_adit"))
        .args(["load", "http", &format!("http://{}/", origin.addr)])
        .args([
            "-c",
            "4",
            "--workers",
            "2",
            "-n",
            "2000",
            "--loglevel",
            "warn",
        ])
        .args(["-H", "X-Test: 1", "--host", "load.test"])
        .arg("--hgrm")
        .arg(&hgrm)
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(json["requests"], 2000);
    assert_eq!(json["config"]["connections"], 4);
    assert_eq!(json["config"]["host"], "load.test");
    assert_eq!(json["latency"]["count"], 2000);

    let text = std::fs::read_to_string(&hgrm).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    assert_eq!(lines[1], "");
    let rows: Vec<Vec<f64>> = lines[2..lines.len() - 3]
        .iter()
        .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() > 10);
    for pair in rows.windows(2) {
        assert!(pair[1][0] >= pair[0][0], "values rise");
        assert!(pair[1][1] >= pair[0][1], "percentiles rise");
        assert!(pair[1][2] >= pair[0][2], "counts rise");
    }
    let last = rows.last().unwrap();
    assert_eq!((last[1], last[2], last.len()), (1.0, 2000.0, 3));
    assert!(rows[..rows.len() - 1].iter().all(|r| r.len() == 4));
    assert!(lines[lines.len() - 3].starts_with("#[Mean    ="));
    assert!(lines[lines.len() - 2].ends_with("Total count    =         2000]"));
    assert_eq!(
        lines[lines.len() - 1],
        "#[Buckets =           22, SubBuckets     =         2048]"
    );
}

#[test]
fn failures_are_counted_by_kind() {
    // Nothing listens on a port just released: every connect is refused.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut load = http_load(free);
    load.connections = 1;
    load.workers = 1;
    load.duration = Some(Duration::from_millis(200));
    let report = load::run_http(&load, None).unwrap();
    assert_eq!(report.requests, 0);
    assert!(report.errors.connect > 0);

    // An origin that reads requests and never answers: each attempt times out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(16) {
            held.push(stream);
        }
    });
    let mut load = http_load(addr);
    load.connections = 1;
    load.workers = 1;
    load.timeout = Duration::from_millis(100);
    load.duration = Some(Duration::from_millis(350));
    let report = load::run_http(&load, None).unwrap();
    assert_eq!(report.requests, 0);
    // Timeouts at 100, 200 and 300 ms; the attempt cut off by the run's end is not one.
    assert!(report.errors.timeout >= 1 && report.errors.timeout <= 3);
    assert_eq!(report.errors.connect + report.errors.read, 0);
}

#[test]
fn tcp_round_trips_against_the_echo_origin() {
    let echo = adit::origin::spawn_tcp_echo("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let load = TcpLoad {
        target: echo.addr,
        mode: TcpMode::RoundTrip { size: 100 },
        connections: 3,
        workers: 2,
        duration: None,
        requests: Some(1000),
    };
    let report = load::run_tcp(&load).unwrap();
    assert_eq!(report.requests, 1000);
    assert_eq!(report.bytes_written, 100_000);
    assert_eq!(report.bytes_read, 100_000);
    assert_eq!(report.latency.len(), 1000);
    assert_eq!(report.errors, load::Errors::default());
}

#[test]
fn tcp_bulk_modes_move_whole_blocks() {
    let echo = adit::origin::spawn_tcp_echo("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let block = 64 * 1024;
    for mode in [TcpMode::Upload, TcpMode::Download] {
        let load = TcpLoad {
            target: echo.addr,
            mode,
            connections: 2,
            workers: 1,
            duration: None,
            requests: Some(200),
        };
        let report = load::run_tcp(&load).unwrap();
        assert_eq!(report.requests, 200, "{mode:?}");
        assert_eq!(report.bytes_written, 200 * block, "{mode:?}");
        // The echo sends everything back before closing, and both modes read to the end.
        assert_eq!(report.bytes_read, 200 * block, "{mode:?}");
        assert_eq!(report.errors, load::Errors::default(), "{mode:?}");
    }
}

/// A port nothing listens on: one just released.
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn a_request_count_against_a_closed_port_ends() {
    let mut load = http_load(closed_port());
    load.connections = 5;
    load.requests = Some(10);
    load.timeout = Duration::from_millis(100);
    let report = load::run_http(&load, None).unwrap();
    assert_eq!(report.requests, 0);
    assert!(report.errors.connect > 0);
    // No request completed for twice the timeout.
    assert_eq!(report.stalled, Some(Duration::from_millis(200)));
    assert!(
        report.elapsed < Duration::from_secs(10),
        "{:?}",
        report.elapsed
    );
}

#[test]
fn a_request_count_against_a_silent_origin_ends() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(64) {
            held.push(stream);
        }
    });
    let mut load = http_load(addr);
    load.connections = 2;
    load.requests = Some(10);
    load.timeout = Duration::from_millis(100);
    let report = load::run_http(&load, None).unwrap();
    assert_eq!(report.requests, 0);
    assert!(report.errors.timeout > 0);
    assert_eq!(report.stalled, Some(Duration::from_millis(200)));
    assert!(
        report.elapsed < Duration::from_secs(10),
        "{:?}",
        report.elapsed
    );
}

/// Runs `adit load http` against `addr` with `args`; its exit code and stderr.
fn load_command(addr: SocketAddr, args: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_adit"))
        .args(["load", "http", &format!("http://{addr}/"), "-c", "2"])
        .args(["--workers", "1", "--loglevel", "warn"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn exit_status_says_whether_any_request_completed() {
    let (code, stderr) = load_command(closed_port(), &["-d", "1s"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("adit load: no request completed"),
        "{stderr}"
    );

    let origin = counting_origin(Arc::new(hello));
    let (code, stderr) = load_command(origin.addr, &["-n", "20"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(origin.served.load(Ordering::SeqCst), 20);

    // Only non-2xx responses: still completed requests.
    let failing = counting_origin(Arc::new(|_| {
        vec![b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()]
    }));
    let (code, stderr) = load_command(failing.addr, &["-n", "5"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_zero_duration_is_refused_like_a_zero_count() {
    let addr = closed_port();
    let (code, stderr) = load_command(addr, &["-d", "0s"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the duration must be above 0"), "{stderr}");
    let (code, stderr) = load_command(addr, &["-n", "0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the request count must be above 0"),
        "{stderr}"
    );
}
