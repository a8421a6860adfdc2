//! The admin API: JSON over HTTP/1.1, one request per connection, bearer token required.
//!
//! It runs on plain blocking threads: one accepts, and each connection gets a short-lived
//! thread of its own (at most [`MAX_CONNECTIONS`] at once), with read and write timeouts
//! and a deadline so a slow client cannot hold one forever. Requests are bounded to
//! [`MAX_REQUEST`] bytes and parsed with `httparse`.
//!
//! `GET /` and the few files it loads answer the [`dashboard`] page without a token; the
//! page then signs in and reads the JSON API like any other client.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::registry::{OpError, Shared};
use super::{api, dashboard, pki, query};

const MAX_REQUEST: usize = 64 * 1024;
const MAX_HEADERS: usize = 32;
const MAX_CONNECTIONS: usize = 16;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// What every connection thread needs.
struct Context {
    shared: Arc<Shared>,
    token: String,
    active: AtomicUsize,
}

/// Starts accepting on `listener` until `stop` is set and the listener is woken.
pub fn spawn(
    listener: TcpListener,
    shared: Arc<Shared>,
    token: String,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let context = Arc::new(Context {
        shared,
        token,
        active: AtomicUsize::new(0),
    });
    std::thread::Builder::new()
        .name("adit-admin".into())
        .spawn(move || accept_loop(&listener, &context, &stop))
}

fn accept_loop(listener: &TcpListener, context: &Arc<Context>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                // Out of descriptors and the like: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if context.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            context.active.fetch_sub(1, Ordering::AcqRel);
            let mut stream = stream;
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let busy = error(503, "admin API busy, retry later");
            let _ = write_response(&mut stream, &busy, false);
            continue;
        }
        let conn_context = context.clone();
        let spawned = std::thread::Builder::new()
            .name("adit-admin-conn".into())
            .spawn(move || {
                serve(stream, &conn_context);
                conn_context.active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot spawn an admin connection thread");
            context.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Where to connect to wake a listener bound to `addr` out of `accept`.
pub fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut wake = addr;
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        wake.set_ip(loopback);
    }
    wake
}

/// A response: status, type and body (JSON, but for the dashboard's files).
pub struct Response {
    status: u16,
    content_type: &'static str,
    body: Cow<'static, str>,
}

const JSON: &str = "application/json";

fn json<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => Response {
            status,
            content_type: JSON,
            body: body.into(),
        },
        Err(e) => error(500, &format!("cannot encode the answer: {e}")),
    }
}

fn error(status: u16, message: &str) -> Response {
    let body = api::Error {
        error: message.to_owned(),
    };
    Response {
        status,
        content_type: JSON,
        body: serde_json::to_string(&body)
            .unwrap_or_else(|_| "{}".into())
            .into(),
    }
}

fn op_error(e: &OpError) -> Response {
    if let OpError::Store(store) = e {
        tracing::warn!(error = %store, "admin API: database call failed");
    }
    error(e.status(), &e.to_string())
}

fn serve(mut stream: TcpStream, context: &Context) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (response, head_only) = match read_request(&mut stream) {
        Ok(request) => {
            let response = handle(&request, context);
            tracing::debug!(
                method = %request.method,
                path = %request.path,
                status = response.status,
                "admin request"
            );
            (response, request.method == "HEAD")
        }
        Err(response) => (response, false),
    };
    if let Err(e) = write_response(&mut stream, &response, head_only) {
        tracing::debug!(error = %e, "admin response not delivered");
    }
}

/// A parsed request: what the handlers need, owned.
pub struct Request {
    method: String,
    /// Path without the query.
    path: String,
    query: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

/// Reads one request, or the error response to send instead.
fn read_request(stream: &mut TcpStream) -> Result<Request, Response> {
    let started = Instant::now();
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(request) = parse_request(&buf)? {
            return Ok(request);
        }
        if buf.len() >= MAX_REQUEST {
            return Err(error(413, "request larger than 64 KiB"));
        }
        if started.elapsed() > REQUEST_DEADLINE {
            return Err(error(408, "request took too long"));
        }
        let want = chunk.len().min(MAX_REQUEST - buf.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(error(400, "connection closed before a full request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(error(408, "request took too long")),
        }
    }
}

/// `Ok(None)` while more bytes are needed.
fn parse_request(buf: &[u8]) -> Result<Option<Request>, Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(error(431, "too many headers")),
        Err(e) => return Err(error(400, &format!("malformed request: {e}"))),
    };

    let mut content_length = 0usize;
    let mut authorization = None;
    for header in parsed.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| error(400, "invalid Content-Length"))?;
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(error(411, "chunked request bodies are not supported"));
        } else if header.name.eq_ignore_ascii_case("authorization") {
            authorization = std::str::from_utf8(header.value).ok().map(str::to_owned);
        }
    }
    if head_len.saturating_add(content_length) > MAX_REQUEST {
        return Err(error(413, "request larger than 64 KiB"));
    }
    let Some(body) = buf.get(head_len..head_len + content_length) else {
        return Ok(None);
    };

    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method: parsed.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        authorization,
        body: body.to_vec(),
    }))
}

/// Writes `response`; `head_only` (a HEAD request) leaves out the body but not its length.
fn write_response(stream: &mut TcpStream, response: &Response, head_only: bool) -> io::Result<()> {
    // The security fields go on every answer: they cost nothing on JSON and the page's
    // files must never be framed, sniffed as another type or allowed inline code.
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nContent-Security-Policy: {}\r\n\
         X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        dashboard::CONTENT_SECURITY_POLICY,
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(response.body.as_bytes())?;
    }
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

fn authorized(request: &Request, token: &str) -> bool {
    let Some(value) = request.authorization.as_deref() else {
        return false;
    };
    let Some((scheme, presented)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && pki::constant_time_eq(presented.trim().as_bytes(), token.as_bytes())
}

/// The endpoints a path names, before the method is checked; keys are percent-decoded.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Tunnels,
    Tunnel(String),
    TunnelRoutes(String),
    TunnelConnections(String),
    Routes,
}

/// The endpoint `path` names: 404 for none, 400 for a key that does not percent-decode.
fn endpoint(path: &str) -> Result<Endpoint, Response> {
    let not_found = || error(404, &format!("no such endpoint: {path}"));
    let rest = path.strip_prefix("/v1/").ok_or_else(not_found)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let key = |key: &str| {
        query::decode(key, false).map_err(|e| error(400, &format!("path segment {key:?}: {e}")))
    };
    match segments.as_slice() {
        ["tunnels"] => Ok(Endpoint::Tunnels),
        ["routes"] => Ok(Endpoint::Routes),
        ["tunnels", k] if !k.is_empty() => Ok(Endpoint::Tunnel(key(k)?)),
        ["tunnels", k, "routes"] if !k.is_empty() => Ok(Endpoint::TunnelRoutes(key(k)?)),
        ["tunnels", k, "connections"] if !k.is_empty() => Ok(Endpoint::TunnelConnections(key(k)?)),
        _ => Err(not_found()),
    }
}

fn handle(request: &Request, context: &Context) -> Response {
    if request.method == "GET" || request.method == "HEAD" {
        if let Some(asset) = dashboard::asset(&request.path) {
            return Response {
                status: 200,
                content_type: asset.content_type,
                body: asset.body.into(),
            };
        }
    }
    if !authorized(request, &context.token) {
        return error(
            401,
            "missing or wrong admin token (send Authorization: Bearer <token>)",
        );
    }
    let endpoint = match endpoint(&request.path) {
        Ok(endpoint) => endpoint,
        Err(response) => return response,
    };
    let method = request.method.as_str();
    match (endpoint, method) {
        (Endpoint::Tunnels, "GET") => list_tunnels(request, context),
        (Endpoint::Tunnel(key), "DELETE") => delete_tunnel(request, &key, context),
        (endpoint, "GET" | "POST" | "DELETE") if !request.query.is_empty() => {
            // Every other endpoint takes no query parameter; a typo must not pass silently.
            match no_parameters(&request.query) {
                Err(response) => response,
                Ok(()) => serve_endpoint(request, endpoint, context),
            }
        }
        (endpoint, _) => serve_endpoint(request, endpoint, context),
    }
}

/// The endpoints without query parameters, the query already checked.
fn serve_endpoint(request: &Request, endpoint: Endpoint, context: &Context) -> Response {
    let method = request.method.as_str();
    match (endpoint, method) {
        (Endpoint::Tunnels, "POST") => create_tunnel(request, context),
        (Endpoint::Tunnel(key), "GET") => match context.shared.lock().tunnel_info(&key) {
            Ok(info) => json(200, &info),
            Err(e) => op_error(&e),
        },
        (Endpoint::TunnelRoutes(key), "POST") => add_route(request, &key, context),
        (Endpoint::TunnelConnections(key), "DELETE") => match context.shared.lock().cleanup(&key) {
            Ok(cleaned) => json(200, &cleaned),
            Err(e) => op_error(&e),
        },
        (Endpoint::Routes, "GET") => match context.shared.lock().routes() {
            Ok(routes) => json(200, &routes),
            Err(e) => op_error(&e),
        },
        _ => error(
            405,
            &format!("method {method} not allowed on {}", request.path),
        ),
    }
}

/// 400 unless `query` is empty (after decoding: `?&` is empty too).
fn no_parameters(query: &str) -> Result<(), Response> {
    let pairs = query::query_pairs(query).map_err(|e| error(400, &e.0))?;
    match pairs.first() {
        Some((key, _)) => Err(error(400, &query::unknown_parameter(key).0)),
        None => Ok(()),
    }
}

/// `DELETE /v1/tunnels/{key}`, with `force` its only query parameter.
fn delete_tunnel(request: &Request, key: &str, context: &Context) -> Response {
    let force = match force_parameter(&request.query) {
        Ok(force) => force,
        Err(e) => return error(400, &e.0),
    };
    match context.shared.lock().delete_tunnel(key, force) {
        Ok(deleted) => json(200, &api::Deleted { deleted }),
        Err(e) => op_error(&e),
    }
}

/// `force`, `force=true` or `force=1` is true; `force=false`, `force=0` or no `force` is
/// false; anything else is refused.
fn force_parameter(query: &str) -> Result<bool, query::QueryError> {
    let mut force = false;
    for (key, value) in query::query_pairs(query)? {
        match key.as_str() {
            "force" => force = query::flag(&key, &value)?,
            _ => return Err(query::unknown_parameter(&key)),
        }
    }
    Ok(force)
}

fn create_tunnel(request: &Request, context: &Context) -> Response {
    let body: api::CreateTunnel = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return error(400, &format!("invalid JSON body: {e}")),
    };
    match context.shared.lock().create_tunnel(&body.name) {
        Ok(created) => json(201, &created),
        Err(e) => op_error(&e),
    }
}

fn list_tunnels(request: &Request, context: &Context) -> Response {
    let query = match query::parse_query(&request.query) {
        Ok(query) => query,
        Err(e) => return error(400, &e.0),
    };
    match context.shared.lock().list_tunnels(&query) {
        Ok(tunnels) => json(200, &tunnels),
        Err(e) => op_error(&e),
    }
}

fn add_route(request: &Request, tunnel: &str, context: &Context) -> Response {
    let body: api::AddRoute = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return error(400, &format!("invalid JSON body: {e}")),
    };
    match context.shared.lock().add_route(tunnel, &body.hostname) {
        Ok(outcome) => {
            let status = if outcome.created { 201 } else { 200 };
            let answer = api::RouteAdded {
                hostname: outcome.hostname,
                tunnel_id: outcome.tunnel_id,
            };
            json(status, &answer)
        }
        Err(e) => op_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Request {
        match parse_request(raw.as_bytes()) {
            Ok(Some(request)) => request,
            _ => panic!("request did not parse"),
        }
    }

    fn status_of(raw: &[u8]) -> Option<u16> {
        match parse_request(raw) {
            Ok(_) => None,
            Err(response) => Some(response.status),
        }
    }

    #[test]
    fn parses_requests_and_bounds_them() {
        let request = parsed(
            "POST /v1/tunnels?x=1 HTTP/1.1\r\nAuthorization: Bearer abc\r\n\
             Content-Length: 4\r\n\r\nbody",
        );
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/tunnels");
        assert_eq!(request.query, "x=1");
        assert_eq!(request.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(request.body, b"body");

        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbo"),
            Ok(None)
        ));
        assert!(matches!(parse_request(b"GET / HTTP/1.1\r\n"), Ok(None)));
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n"),
            Some(413)
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(411)
        );
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"),
            Some(400)
        );
    }

    #[test]
    fn bearer_token_check() {
        let mut request = parsed("GET / HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n");
        assert!(authorized(&request, "tok"));
        assert!(!authorized(&request, "tok2"));
        request.authorization = Some("bearer tok".into());
        assert!(authorized(&request, "tok"));
        request.authorization = Some("Basic tok".into());
        assert!(!authorized(&request, "tok"));
        request.authorization = None;
        assert!(!authorized(&request, "tok"));
    }

    fn key_of(path: &str) -> Result<Endpoint, (u16, String)> {
        endpoint(path).map_err(|response| (response.status, response.body.into_owned()))
    }

    #[test]
    fn endpoints_and_flags() {
        assert_eq!(key_of("/v1/tunnels"), Ok(Endpoint::Tunnels));
        assert_eq!(key_of("/v1/routes"), Ok(Endpoint::Routes));
        assert_eq!(key_of("/v1/tunnels/a"), Ok(Endpoint::Tunnel("a".into())));
        assert_eq!(
            key_of("/v1/tunnels/a/routes"),
            Ok(Endpoint::TunnelRoutes("a".into()))
        );
        assert_eq!(
            key_of("/v1/tunnels/a/connections"),
            Ok(Endpoint::TunnelConnections("a".into()))
        );
        // Path segments are percent-decoded, `+` staying a plus.
        assert_eq!(
            key_of("/v1/tunnels/app%31"),
            Ok(Endpoint::Tunnel("app1".into()))
        );
        assert_eq!(
            key_of("/v1/tunnels/a+b%20c/routes"),
            Ok(Endpoint::TunnelRoutes("a+b c".into()))
        );
        assert_eq!(
            key_of("/v1/tunnels/%E0"),
            Err((
                400,
                r#"{"error":"path segment \"%E0\": not UTF-8 once percent-decoded"}"#.into()
            ))
        );
        assert_eq!(
            key_of("/v1/tunnels/a%2/connections"),
            Err((
                400,
                r#"{"error":"path segment \"a%2\": malformed percent escape"}"#.into()
            ))
        );
        for missing in [
            "/v1/tunnels/",
            "/v2/tunnels",
            "/v1/tunnels/a/b",
            "/v1/tunnels//routes",
        ] {
            let body = format!(r#"{{"error":"no such endpoint: {missing}"}}"#);
            assert_eq!(key_of(missing), Err((404, body)));
        }

        assert_eq!(force_parameter("force=true"), Ok(true));
        assert_eq!(force_parameter("force=1"), Ok(true));
        assert_eq!(force_parameter("force"), Ok(true));
        assert_eq!(force_parameter("force=false"), Ok(false));
        assert_eq!(force_parameter(""), Ok(false));
        let refused = |query: &str| force_parameter(query).unwrap_err().0;
        assert_eq!(refused("a=b&force=1"), "unknown query parameter \"a\"");
        assert_eq!(
            refused("force=yes"),
            "force: expected true, false, 1 or 0, not \"yes\""
        );
        assert_eq!(
            refused("force&force"),
            "query parameter force is given twice"
        );
        assert!(no_parameters("&").is_ok());
        let body = |query: &str| no_parameters(query).map_err(|r| (r.status, r.body.into_owned()));
        assert_eq!(
            body("x=1"),
            Err((400, r#"{"error":"unknown query parameter \"x\""}"#.into()))
        );
        assert_eq!(
            body("%zz"),
            Err((
                400,
                r#"{"error":"query parameter name: malformed percent escape"}"#.into()
            ))
        );
    }

    #[test]
    fn wake_address_is_loopback_for_unspecified() {
        assert_eq!(
            wake_addr("0.0.0.0:7070".parse().unwrap()),
            "127.0.0.1:7070".parse().unwrap()
        );
        assert_eq!(
            wake_addr("[::]:7070".parse().unwrap()),
            "[::1]:7070".parse().unwrap()
        );
        assert_eq!(
            wake_addr("10.0.0.1:7070".parse().unwrap()),
            "10.0.0.1:7070".parse().unwrap()
        );
    }
}
