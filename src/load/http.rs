//! HTTP/1.1 load: the request is built once and each write sends a clone of the same `Bytes`
//! (a reference count, not a copy). Each connection reads into one buffer it keeps; response
//! heads are parsed in place and bodies decoded and dropped without being copied.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use monoio::net::TcpStream;

use super::pacer::Pacer;
use super::schedule::Schedule;
use super::worker::{drive, Plan, Worker, RECONNECT_PAUSE};
use super::{HttpLoad, LoadError, Progress, Report};
use crate::http::{self, BodyDecoder, BodyFraming, HeadError, MAX_HEADERS};
use crate::runtime::io::{read_more, write_all, READ_CHUNK};

/// What every connection of one HTTP load needs, shared read-only.
struct Shared {
    target: SocketAddr,
    request: Bytes,
    head_request: bool,
    timeout: Duration,
    rate: Option<f64>,
    connections: usize,
}

pub(super) fn run(
    load: &HttpLoad,
    progress: Option<&(dyn Fn(&Progress) + Sync)>,
) -> Result<Report, LoadError> {
    if load.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(LoadError::Invalid("the rate must be a positive number"));
    }
    if load.timeout.is_zero() {
        return Err(LoadError::Invalid("the timeout must be above 0"));
    }
    if load.timeout > super::MAX_DURATION {
        return Err(LoadError::Invalid("the timeout must be at most a year"));
    }
    let shared = Arc::new(Shared {
        target: load.target,
        request: build_request(load)?,
        head_request: load.method == "HEAD",
        timeout: load.timeout,
        rate: load.rate,
        connections: load.connections,
    });
    let plan = Plan {
        connections: load.connections,
        workers: load.workers,
        duration: load.duration,
        requests: load.requests,
        stall: stall_limit(load.timeout, load.rate),
    };
    drive(&plan, progress, move |worker, index| {
        connection(worker, shared.clone(), index)
    })
}

/// How long a `-n` run without a duration goes on with no completed request: long enough
/// for a connect and then an exchange that each take up to the timeout, plus, in open loop,
/// the time between two requests of the schedule.
fn stall_limit(timeout: Duration, rate: Option<f64>) -> Duration {
    let interval = rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r));
    timeout.saturating_mul(2).saturating_add(interval)
}

/// The request bytes: request line, Host (unless `headers` has one), the extra fields,
/// Content-Length for a body, then the body.
pub(super) fn build_request(load: &HttpLoad) -> Result<Bytes, LoadError> {
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    let field_value = |s: &str| !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    if !token(&load.method) {
        return Err(LoadError::Invalid("the method must be a token"));
    }
    if !load.path.starts_with('/') || !token(&load.path) {
        return Err(LoadError::Invalid(
            "the path must start with / and hold no spaces",
        ));
    }
    if !field_value(&load.host)
        || load
            .headers
            .iter()
            .any(|(n, v)| !token(n) || !field_value(v))
    {
        return Err(LoadError::Invalid("header fields must be single lines"));
    }

    let has = |name: &str| {
        load.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let body = load.body.as_deref().unwrap_or_default();
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.put_slice(format!("{} {} HTTP/1.1\r\n", load.method, load.path).as_bytes());
    if !has("host") {
        out.put_slice(format!("Host: {}\r\n", load.host).as_bytes());
    }
    for (name, value) in &load.headers {
        out.put_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if load.body.is_some() && !has("content-length") && !has("transfer-encoding") {
        out.put_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    Ok(out.freeze())
}

/// One connection's socket and read buffer.
struct Conn {
    stream: Option<TcpStream>,
    buf: BytesMut,
}

/// How one attempt at a request ended.
enum Attempt {
    Done {
        status: u16,
    },
    Failed(Failure),
    /// The run's duration ended while waiting.
    RunOver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Timeout,
    Read,
    Write,
}

/// Sends requests on one connection (reopening it when it fails or the server closes it)
/// until the budget is spent or the run ends.
async fn connection(worker: Rc<Worker>, shared: Arc<Shared>, index: usize) {
    let mut schedule = shared
        .rate
        .map(|rate| Schedule::new(worker.start, rate, shared.connections, index));
    let mut conn = Conn {
        stream: None,
        buf: BytesMut::with_capacity(READ_CHUNK),
    };
    let mut pacer = schedule.as_ref().and_then(|_| Pacer::new());
    // The intended time of the request holding a ticket, kept across failed attempts.
    let mut due: Option<Instant> = None;
    loop {
        if due.is_none() {
            if !worker.tickets.take() {
                return;
            }
            due = Some(
                schedule
                    .as_mut()
                    .map_or_else(Instant::now, Schedule::next_due),
            );
        }
        if let (Some(at), Some(_)) = (due, &schedule) {
            if !worker.pace(pacer.as_mut(), at).await {
                return;
            }
        } else if worker.expired(Instant::now()) {
            return;
        }

        // Closed loop measures each attempt from its own send; open loop from the schedule.
        let intended = schedule.as_ref().and(due);
        match attempt(&worker, &shared, &mut conn, intended).await {
            Attempt::Done { status } => {
                due = None;
                if !(200..300).contains(&status) {
                    let mut stats = worker.stats.borrow_mut();
                    *stats.errors.status.entry(status).or_default() += 1;
                }
            }
            Attempt::Failed(failure) => {
                conn.stream = None;
                conn.buf.clear();
                count_failure(&worker, failure);
                if failure == Failure::Connect
                    && !worker.sleep_until(Instant::now() + RECONNECT_PAUSE).await
                {
                    return;
                }
            }
            Attempt::RunOver => return,
        }
    }
}

fn count_failure(worker: &Worker, failure: Failure) {
    let mut stats = worker.stats.borrow_mut();
    let errors = &mut stats.errors;
    match failure {
        Failure::Connect => errors.connect += 1,
        Failure::Timeout => errors.timeout += 1,
        Failure::Read => errors.read += 1,
        Failure::Write => errors.write += 1,
    }
}

/// One request and its response, opening the connection first when needed. Records the
/// latency and byte counts of a completed exchange.
async fn attempt(
    worker: &Worker,
    shared: &Shared,
    conn: &mut Conn,
    intended: Option<Instant>,
) -> Attempt {
    let stream = match conn.stream.as_mut() {
        Some(stream) => stream,
        None => {
            let (until, run_end) = worker.wait_until(Instant::now(), shared.timeout);
            match monoio::time::timeout_at(until, TcpStream::connect(shared.target)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    conn.stream.insert(stream)
                }
                Ok(Err(err)) => {
                    tracing::debug!("load connect to {}: {err}", shared.target);
                    return Attempt::Failed(Failure::Connect);
                }
                Err(_) if run_end => return Attempt::RunOver,
                Err(_) => return Attempt::Failed(Failure::Connect),
            }
        }
    };

    let sent = Instant::now();
    let mut io = Counts::default();
    let (until, run_end) = worker.wait_until(sent, shared.timeout);
    let exchange = exchange(stream, &mut conn.buf, shared, &mut io);
    let result = monoio::time::timeout_at(until, exchange).await;
    let mut stats = worker.stats.borrow_mut();
    stats.bytes_read += io.read;
    stats.bytes_written += io.written;
    match result {
        Ok(Ok(response)) => {
            let done = Instant::now();
            let micros = (done - intended.unwrap_or(sent)).as_micros();
            stats
                .latency
                .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
            stats.requests += 1;
            worker.completed(done);
            if !response.keep_alive {
                conn.stream = None;
            }
            Attempt::Done {
                status: response.status,
            }
        }
        Ok(Err(failure)) => Attempt::Failed(failure),
        Err(_) if run_end => Attempt::RunOver,
        Err(_) => Attempt::Failed(Failure::Timeout),
    }
}

/// Bytes moved by one exchange, kept outside it so a timed-out exchange still counts them.
#[derive(Default)]
struct Counts {
    read: u64,
    written: u64,
}

struct Response {
    status: u16,
    keep_alive: bool,
}

/// A response head, reduced to what the connection needs once the buffer moves on.
enum Head {
    Partial,
    /// A 1xx other than 101: skipped, the final response follows.
    Interim {
        len: usize,
    },
    Final {
        status: u16,
        framing: BodyFraming,
        keep_alive: bool,
        len: usize,
    },
}

fn parse_head(buf: &[u8], head_request: bool) -> Result<Head, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some(head) = http::parse_response(buf, &mut headers)? else {
        return Ok(Head::Partial);
    };
    if (100..200).contains(&head.status) && head.status != 101 {
        return Ok(Head::Interim { len: head.len });
    }
    let method = if head_request { "HEAD" } else { "GET" };
    let framing = http::response_framing(method, head.status, head.headers)?;
    Ok(Head::Final {
        status: head.status,
        framing,
        keep_alive: head.status != 101 && http::head::keep_alive(head.version, head.headers),
        len: head.len,
    })
}

/// Writes the request and reads one complete response.
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    shared: &Shared,
    io: &mut Counts,
) -> Result<Response, Failure> {
    write_all(stream, shared.request.clone())
        .await
        .map_err(|_| Failure::Write)?;
    io.written += shared.request.len() as u64;

    let (status, framing, mut keep_alive) = loop {
        match parse_head(buf, shared.head_request).map_err(|_| Failure::Read)? {
            Head::Final {
                status,
                framing,
                keep_alive,
                len,
            } => {
                buf.advance(len);
                break (status, framing, keep_alive);
            }
            Head::Interim { len } => buf.advance(len),
            Head::Partial => {
                if fill(stream, buf, io).await.map_err(|_| Failure::Read)? == 0 {
                    return Err(Failure::Read);
                }
            }
        }
    };

    let mut decoder = BodyDecoder::new(framing);
    while !decoder.is_done() {
        if !buf.is_empty() {
            let step = decoder.decode(buf).map_err(|_| Failure::Read)?;
            buf.advance(step.consumed);
            if step.consumed > 0 {
                continue;
            }
        }
        if fill(stream, buf, io).await.map_err(|_| Failure::Read)? == 0 {
            decoder.eof().map_err(|_| Failure::Read)?;
            keep_alive = false;
        }
    }
    Ok(Response { status, keep_alive })
}

/// Reads once more into `buf`; 0 at end of stream.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut, io: &mut Counts) -> io::Result<usize> {
    let (result, filled) = read_more(stream, std::mem::take(buf)).await;
    *buf = filled;
    let n = result?;
    io.read += n as u64;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load() -> HttpLoad {
        HttpLoad {
            target: "127.0.0.1:1".parse().unwrap(),
            host: "example.test".into(),
            path: "/echo".into(),
            method: "POST".into(),
            headers: vec![("X-One".into(), "1".into())],
            body: Some(Bytes::from_static(b"hello")),
            connections: 1,
            workers: 1,
            duration: None,
            requests: Some(1),
            rate: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn stall_limit_covers_a_connect_an_exchange_and_a_schedule_gap() {
        let second = Duration::from_secs(1);
        assert_eq!(stall_limit(second, None), Duration::from_secs(2));
        assert_eq!(stall_limit(second, Some(4.0)), Duration::from_millis(2250));
    }

    #[test]
    fn request_is_built_once_with_host_and_length() {
        let bytes = build_request(&load()).unwrap();
        assert_eq!(
            &bytes[..],
            b"POST /echo HTTP/1.1\r\nHost: example.test\r\nX-One: 1\r\n\
              Content-Length: 5\r\n\r\nhello"
        );
    }

    #[test]
    fn a_host_header_replaces_the_default_one() {
        let mut load = load();
        load.method = "GET".into();
        load.body = None;
        load.headers = vec![("host".into(), "other.test".into())];
        let bytes = build_request(&load).unwrap();
        assert_eq!(
            &bytes[..],
            b"GET /echo HTTP/1.1\r\nhost: other.test\r\n\r\n"
        );
    }

    #[test]
    fn line_breaks_in_fields_are_refused() {
        let mut bad = load();
        bad.headers = vec![("X".into(), "a\r\nEvil: 1".into())];
        assert!(matches!(build_request(&bad), Err(LoadError::Invalid(_))));
        let mut bad = load();
        bad.path = "no-slash".into();
        assert!(matches!(build_request(&bad), Err(LoadError::Invalid(_))));
    }

    #[test]
    fn heads_are_reduced_to_framing() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        match parse_head(head, false).unwrap() {
            Head::Final {
                status,
                framing,
                keep_alive,
                len,
            } => {
                assert_eq!(status, 200);
                assert_eq!(framing, BodyFraming::Length(3));
                assert!(keep_alive);
                assert_eq!(len, head.len() - 3);
            }
            _ => panic!("expected a final head"),
        }
        assert!(matches!(
            parse_head(b"HTTP/1.1 100 Continue\r\n\r\n", false).unwrap(),
            Head::Interim { len: 25 }
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\n", false).unwrap(),
            Head::Partial
        ));
        match parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).unwrap() {
            Head::Final { framing, .. } => assert_eq!(framing, BodyFraming::None),
            _ => panic!("expected a final head"),
        }
    }
}
