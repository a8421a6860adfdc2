//! The metrics server: a small blocking HTTP/1.1 server for scrapes and probes.
//!
//! One thread accepts; each connection gets a short-lived thread (at most
//! [`MAX_CONNECTIONS`] at once) that reads one request of at most [`MAX_REQUEST`] bytes
//! within [`IO_TIMEOUT`] per read and [`REQUEST_DEADLINE`] in all, answers it and closes
//! (`Connection: close`). Only `GET` and `HEAD` are served; anything malformed gets a 4xx.
//! It never runs on a data-plane worker.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::expose::CONTENT_TYPE;

const MAX_REQUEST: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;
const MAX_CONNECTIONS: usize = 8;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// An answer of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// What answers one path.
pub type Handler = Box<dyn Fn() -> Reply + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The OS error is part of the message and deliberately not a `source`: a caller
    /// printing the whole chain (`{:#}`) would otherwise show it twice.
    #[error("cannot bind the metrics server to {addr}: {error}")]
    Bind { addr: SocketAddr, error: io::Error },
}

/// Binds the metrics listener: `explicit` when given (a busy address is an error), else the
/// first free of `defaults`, else any free port on the first default's address (with a
/// warning, since scrapers configured for the default will miss it).
pub fn bind(
    explicit: Option<SocketAddr>,
    defaults: &[SocketAddr],
) -> Result<TcpListener, BindError> {
    if let Some(addr) = explicit {
        return TcpListener::bind(addr).map_err(|error| BindError::Bind { addr, error });
    }
    for addr in defaults {
        if let Ok(listener) = TcpListener::bind(addr) {
            return Ok(listener);
        }
    }
    let mut any = defaults
        .first()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    any.set_port(0);
    let listener = TcpListener::bind(any).map_err(|error| BindError::Bind { addr: any, error })?;
    if let Ok(addr) = listener.local_addr() {
        let tried: Vec<String> = defaults.iter().map(ToString::to_string).collect();
        tracing::warn!(
            %addr,
            "metrics server: {} taken, using a free port instead",
            tried.join(", ")
        );
    }
    Ok(listener)
}

struct Routes {
    metrics: Box<dyn Fn() -> String + Send + Sync>,
    extra: Vec<(&'static str, Handler)>,
    active: AtomicUsize,
}

/// A running metrics server.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the accept thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept with a connection of our own; a wildcard address is reached over
        // loopback.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, IO_TIMEOUT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `GET /metrics` with what `metrics` renders, and each `(path, handler)` of `extra`.
pub fn start(
    listener: TcpListener,
    metrics: impl Fn() -> String + Send + Sync + 'static,
    extra: Vec<(&'static str, Handler)>,
) -> io::Result<MetricsServer> {
    let addr = listener.local_addr()?;
    let routes = Arc::new(Routes {
        metrics: Box::new(metrics),
        extra,
        active: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("adit-metrics".into())
        .spawn(move || accept_loop(&listener, &routes, &stopped))?;
    tracing::info!(%addr, "metrics server listening");
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: &TcpListener, routes: &Arc<Routes>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!("metrics accept failed: {err}");
                // Out of descriptors, most likely: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if routes.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            routes.active.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let _ = write_reply(&mut stream, &Reply::text(503, "busy\n"), false);
            continue;
        }
        let conn_routes = routes.clone();
        let spawned = std::thread::Builder::new()
            .name("adit-metrics-conn".into())
            .spawn(move || {
                serve(stream, &conn_routes);
                conn_routes.active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(err) = spawned {
            tracing::warn!("cannot spawn a metrics connection thread: {err}");
            routes.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn serve(mut stream: TcpStream, routes: &Routes) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (reply, head_only) = match read_request(&mut stream) {
        Ok((method, path)) => (route(routes, &method, &path), method == "HEAD"),
        Err(reply) => (reply, false),
    };
    if let Err(err) = write_reply(&mut stream, &reply, head_only) {
        tracing::debug!("metrics response not delivered: {err}");
    }
}

fn route(routes: &Routes, method: &str, path: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::text(405, "only GET is served here\n");
    }
    let path = path.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        return Reply {
            status: 200,
            content_type: CONTENT_TYPE,
            body: (routes.metrics)(),
        };
    }
    match routes.extra.iter().find(|(p, _)| *p == path) {
        Some((_, handler)) => handler(),
        None => Reply::text(404, "not found\n"),
    }
}

/// Reads one request head; its method and target, or the reply that refuses it.
fn read_request(stream: &mut TcpStream) -> Result<(String, String), Reply> {
    let started = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or_default().to_owned();
                let path = request.path.unwrap_or_default().to_owned();
                return Ok((method, path));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Reply::text(431, "too many headers\n"))
            }
            Err(err) => return Err(Reply::text(400, format!("malformed request: {err}\n"))),
        }
        if buf.len() >= MAX_REQUEST {
            return Err(Reply::text(431, "request head too large\n"));
        }
        if started.elapsed() > REQUEST_DEADLINE {
            return Err(Reply::text(408, "request took too long\n"));
        }
        let want = chunk.len().min(MAX_REQUEST - buf.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(Reply::text(
                    400,
                    "connection closed before a full request\n",
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Reply::text(408, "request took too long\n")),
        }
    }
}

fn write_reply(stream: &mut TcpStream, reply: &Reply, head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        crate::http::head::reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(reply.body.as_bytes())?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> MetricsServer {
        let listener = bind(Some("127.0.0.1:0".parse().unwrap()), &[]).unwrap();
        let ready: Handler = Box::new(|| Reply::text(503, "no"));
        start(listener, || "m 1\n".to_owned(), vec![("/ready", ready)]).unwrap()
    }

    /// Sends `request` and returns everything the server wrote before closing.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server may answer and close before reading all of an oversized request.
        let _ = stream.write_all(request);
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn status_line(text: &str) -> &str {
        text.lines().next().unwrap_or_default()
    }

    #[test]
    fn serves_metrics_and_extra_routes() {
        let server = server();
        let addr = server.addr();
        let text = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\nm 1\n"
        );
        let text = exchange(addr, b"GET /ready?verbose=1 HTTP/1.1\r\n\r\n");
        assert_eq!(status_line(&text), "HTTP/1.1 503 Service Unavailable");
        assert!(text.ends_with("\r\n\r\nno"), "{text}");
        let text = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(text.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"));
        server.stop();
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        let server = server();
        let addr = server.addr();
        let cases: [(&[u8], &str); 4] = [
            (b"GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (b"\x00\x01garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics HTTP/1.1\r\n", "HTTP/1.1 400 Bad Request"),
        ];
        for (request, expected) in cases {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(request).unwrap();
            // A half-close tells the server no more bytes come.
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut out = Vec::new();
            let _ = stream.read_to_end(&mut out);
            let text = String::from_utf8_lossy(&out);
            assert_eq!(status_line(&text), expected, "{request:?}");
        }

        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        huge.resize(MAX_REQUEST + 100, b'a');
        let text = exchange(addr, &huge);
        assert_eq!(
            status_line(&text),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        server.stop();
    }

    #[test]
    fn explicit_busy_address_is_an_error_and_defaults_fall_back() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let err = bind(Some(busy), &[]).unwrap_err();
        // Printed the way `main` prints errors, the OS error comes once.
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            format!(
                "cannot bind the metrics server to {busy}: Address already in use (os error 98)"
            )
        );
        let fallback = bind(None, &[busy]).unwrap();
        let addr = fallback.local_addr().unwrap();
        assert_ne!(addr.port(), busy.port());
        assert_eq!(addr.ip(), busy.ip());
    }
}
