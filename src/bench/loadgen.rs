//! A stand-in for `adit::load` with the same names and signatures, so the harness can be
//! built and tested before the real load generator lands; `bench/mod.rs` imports it in one
//! `use` line that the swap replaces.
//!
//! It is deliberately plain: one OS thread per connection with blocking sockets, so it is
//! far from the speed the real generator is built for. `workers` is accepted and ignored.

#![allow(
    dead_code,
    reason = "the stand-in mirrors the whole adit::load contract; the harness uses part of it"
)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use crate::http::{self, BodyDecoder, MAX_HEADERS};

/// Highest latency recorded, in microseconds (an hour); longer ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Bytes written per step in the TCP bulk modes.
const BULK_CHUNK: usize = 64 * 1024;
/// Stack of each connection thread: they only hold a read buffer on the heap.
const THREAD_STACK: usize = 256 * 1024;

pub struct HttpLoad {
    pub target: SocketAddr,
    pub host: String,
    pub path: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Bytes>,
    pub connections: usize,
    pub workers: usize,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub rate: Option<f64>,
    pub timeout: Duration,
}

pub enum TcpMode {
    RoundTrip { size: usize },
    Upload,
    Download,
}

pub struct TcpLoad {
    pub target: SocketAddr,
    pub mode: TcpMode,
    pub connections: usize,
    pub workers: usize,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
}

/// What a progress callback sees.
pub struct Progress {
    pub requests: u64,
    pub elapsed: Duration,
}

/// Failed requests by kind.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    pub connect: u64,
    pub timeout: u64,
    pub read: u64,
    pub write: u64,
    pub status: BTreeMap<u16, u64>,
}

impl Errors {
    /// Responses that were not 2xx.
    pub fn non_2xx(&self) -> u64 {
        self.status.values().sum()
    }

    /// Failed connects, timeouts, reads and writes.
    pub fn transport(&self) -> u64 {
        self.connect + self.timeout + self.read + self.write
    }

    fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.read += other.read;
        self.write += other.write;
        for (status, n) in &other.status {
            *self.status.entry(*status).or_default() += n;
        }
    }

    fn io(&mut self, err: &io::Error) {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timeout += 1,
            _ => self.read += 1,
        }
    }
}

pub struct Report {
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub elapsed: Duration,
    pub errors: Errors,
    /// Microseconds.
    pub latency: Histogram<u64>,
}

impl Report {
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn bytes_per_sec(&self) -> f64 {
        (self.bytes_read + self.bytes_written) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at percentile `q` (0 to 100).
    pub fn percentile(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency.value_at_quantile(q / 100.0))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "errors": self.errors.transport() + self.errors.non_2xx(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load: {0}")]
    Invalid(&'static str),
    #[error("cannot start a load thread: {0}")]
    Thread(io::Error),
}

/// One connection's tally, merged into the report.
struct Tally {
    requests: u64,
    bytes_read: u64,
    bytes_written: u64,
    errors: Errors,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: 0,
            bytes_read: 0,
            bytes_written: 0,
            errors: Errors::default(),
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    fn record(&mut self, took: Duration) {
        self.latency
            .saturating_record(took.as_micros().max(1) as u64);
    }
}

/// When to stop: a deadline, a shared request budget, or both.
struct Budget {
    deadline: Option<Instant>,
    left: Option<AtomicU64>,
}

impl Budget {
    fn new(duration: Option<Duration>, requests: Option<u64>) -> Result<Budget, LoadError> {
        if duration.is_none() && requests.is_none() {
            return Err(LoadError::Invalid("set a duration or a request count"));
        }
        Ok(Budget {
            deadline: duration.map(|d| Instant::now() + d),
            left: requests.map(AtomicU64::new),
        })
    }

    /// Takes one request from the budget; false once it is spent or time is up.
    fn take(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match &self.left {
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
            None => true,
        }
    }
}

pub fn run_http(
    load: &HttpLoad,
    progress: Option<&(dyn Fn(&Progress) + Sync)>,
) -> Result<Report, LoadError> {
    if load.connections == 0 {
        return Err(LoadError::Invalid("connections must be at least 1"));
    }
    let budget = Budget::new(load.duration, load.requests)?;
    let request = request_head(load);
    let interval = load
        .rate
        .filter(|r| *r > 0.0)
        .map(|rate| Duration::from_secs_f64(load.connections as f64 / rate));
    let started = Instant::now();
    let report = run_connections(load.connections, started, |index| {
        let mut conn = HttpConn {
            load,
            request: &request,
            stream: None,
            buf: Vec::new(),
        };
        // Spread the open-loop schedule so connections do not fire in lockstep.
        let offset = interval.map(|i| i * index as u32 / load.connections as u32);
        conn.run(&budget, interval, offset.unwrap_or_default())
    })?;
    if let Some(progress) = progress {
        progress(&Progress {
            requests: report.requests,
            elapsed: report.elapsed,
        });
    }
    Ok(report)
}

pub fn run_tcp(load: &TcpLoad) -> Result<Report, LoadError> {
    if load.connections == 0 {
        return Err(LoadError::Invalid("connections must be at least 1"));
    }
    let budget = Budget::new(load.duration, load.requests)?;
    run_connections(load.connections, Instant::now(), |_| {
        let mut tally = Tally::new();
        let stream = match TcpStream::connect_timeout(&load.target, Duration::from_secs(10)) {
            Ok(stream) => stream,
            Err(_) => {
                tally.errors.connect += 1;
                return tally;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        match load.mode {
            TcpMode::RoundTrip { size } => round_trips(stream, size, &budget, &mut tally),
            TcpMode::Upload | TcpMode::Download => bulk(stream, &budget, &mut tally),
        }
        tally
    })
}

/// Runs `each` on one thread per connection and merges what they tally.
fn run_connections<F>(connections: usize, started: Instant, each: F) -> Result<Report, LoadError>
where
    F: Fn(usize) -> Tally + Sync,
{
    let tallies = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(connections);
        for index in 0..connections {
            let each = &each;
            let handle = std::thread::Builder::new()
                .stack_size(THREAD_STACK)
                .spawn_scoped(scope, move || each(index))
                .map_err(LoadError::Thread)?;
            handles.push(handle);
        }
        let tallies: Vec<Tally> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        Ok::<_, LoadError>(tallies)
    })?;
    let mut total = Tally::new();
    for tally in &tallies {
        total.requests += tally.requests;
        total.bytes_read += tally.bytes_read;
        total.bytes_written += tally.bytes_written;
        total.errors.add(&tally.errors);
        // Same bounds on both sides, so adding cannot fail.
        let _ = total.latency.add(&tally.latency);
    }
    Ok(Report {
        requests: total.requests,
        bytes_read: total.bytes_read,
        bytes_written: total.bytes_written,
        elapsed: started.elapsed(),
        errors: total.errors,
        latency: total.latency,
    })
}

fn request_head(load: &HttpLoad) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        load.method, load.path, load.host
    );
    for (name, value) in &load.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = &load.body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

struct HttpConn<'a> {
    load: &'a HttpLoad,
    request: &'a [u8],
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl HttpConn<'_> {
    fn run(&mut self, budget: &Budget, interval: Option<Duration>, offset: Duration) -> Tally {
        let mut tally = Tally::new();
        let mut intended = Instant::now() + offset;
        while budget.take() {
            let sent = match interval {
                Some(interval) => {
                    // Open loop: latency counts from when the request was due, not from
                    // when a slow server let us send it.
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let due = intended;
                    intended += interval;
                    due
                }
                None => Instant::now(),
            };
            match self.exchange(&mut tally) {
                Ok(status) if (200..300).contains(&status) => tally.requests += 1,
                Ok(status) => {
                    tally.requests += 1;
                    *tally.errors.status.entry(status).or_default() += 1;
                }
                Err(()) => {
                    self.stream = None;
                    self.buf.clear();
                    continue;
                }
            }
            tally.record(sent.elapsed());
        }
        tally
    }

    /// One request and response; errors are tallied by kind.
    fn exchange(&mut self, tally: &mut Tally) -> Result<u16, ()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.load.target, self.load.timeout)
                .map_err(|_| tally.errors.connect += 1)?;
            let _ = stream.set_nodelay(true);
            let _ = stream.set_read_timeout(Some(self.load.timeout));
            let _ = stream.set_write_timeout(Some(self.load.timeout));
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(());
        };

        let mut written = stream.write_all(self.request);
        if let (Ok(()), Some(body)) = (&written, &self.load.body) {
            written = stream.write_all(body);
        }
        written.map_err(|_| tally.errors.write += 1)?;
        tally.bytes_written +=
            (self.request.len() + self.load.body.as_ref().map_or(0, Bytes::len)) as u64;

        let (status, keep) = read_response(stream, &mut self.buf, &self.load.method, tally)?;
        if !keep {
            self.stream = None;
            self.buf.clear();
        }
        Ok(status)
    }
}

/// Reads one response, discarding its body; returns the status and whether the connection
/// can carry another request.
fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    method: &str,
    tally: &mut Tally,
) -> Result<(u16, bool), ()> {
    let mut chunk = vec![0u8; 64 * 1024];
    let (status, keep, framing, len) = loop {
        let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match http::parse_response(buf, &mut parsed) {
            Ok(Some(head)) => {
                let framing = http::response_framing(method, head.status, head.headers)
                    .map_err(|_| tally.errors.read += 1)?;
                let keep = http::head::keep_alive(head.version, head.headers);
                break (head.status, keep, framing, head.len);
            }
            Ok(None) => fill(stream, buf, &mut chunk, tally)?,
            Err(_) => {
                tally.errors.read += 1;
                return Err(());
            }
        }
    };
    tally.bytes_read += len as u64;
    buf.drain(..len);

    let mut decoder = BodyDecoder::new(framing);
    while !decoder.is_done() {
        if buf.is_empty() {
            match fill(stream, buf, &mut chunk, tally) {
                Ok(()) => {}
                Err(()) if framing == http::BodyFraming::UntilClose => return Ok((status, false)),
                Err(()) => return Err(()),
            }
        }
        let step = decoder.decode(buf).map_err(|_| tally.errors.read += 1)?;
        tally.bytes_read += step.consumed as u64;
        buf.drain(..step.consumed);
        if step.consumed == 0 && !decoder.is_done() {
            fill(stream, buf, &mut chunk, tally)?;
        }
    }
    Ok((status, keep))
}

fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    tally: &mut Tally,
) -> Result<(), ()> {
    match stream.read(chunk) {
        Ok(0) => {
            tally.errors.read += 1;
            Err(())
        }
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(err) => {
            tally.errors.io(&err);
            Err(())
        }
    }
}

fn round_trips(mut stream: TcpStream, size: usize, budget: &Budget, tally: &mut Tally) {
    let message = vec![0x5a; size.max(1)];
    let mut back = vec![0u8; message.len()];
    while budget.take() {
        let sent = Instant::now();
        if stream.write_all(&message).is_err() {
            tally.errors.write += 1;
            return;
        }
        if let Err(err) = stream.read_exact(&mut back) {
            tally.errors.io(&err);
            return;
        }
        tally.requests += 1;
        tally.bytes_written += message.len() as u64;
        tally.bytes_read += back.len() as u64;
        tally.record(sent.elapsed());
    }
}

/// Writes chunks until the budget is spent while a second thread drains the echo.
fn bulk(stream: TcpStream, budget: &Budget, tally: &mut Tally) {
    let Ok(mut reader) = stream.try_clone() else {
        tally.errors.connect += 1;
        return;
    };
    let drained = std::thread::spawn(move || {
        let mut buf = vec![0u8; BULK_CHUNK];
        let mut total = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    let mut writer = stream;
    let chunk = vec![0x5a; BULK_CHUNK];
    while budget.take() {
        let sent = Instant::now();
        if writer.write_all(&chunk).is_err() {
            tally.errors.write += 1;
            break;
        }
        tally.requests += 1;
        tally.bytes_written += chunk.len() as u64;
        tally.record(sent.elapsed());
    }
    let _ = writer.shutdown(Shutdown::Write);
    tally.bytes_read += drained.join().unwrap_or(0);
}
