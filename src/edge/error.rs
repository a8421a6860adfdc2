//! What can go wrong while proxying one request, which side it came from, and the one
//! place that turns it into the status and page a user sees.

use crate::http::HeadError;
use crate::tunnel::frame::ErrorCode;

/// A failed request. Each variant knows its side: the client, the tunnel, or the origin
/// (reported by the connector).
#[derive(Debug)]
pub enum ProxyError {
    /// The client sent something that is not an acceptable request.
    Client(HeadError),
    /// The request head did not arrive within the header timeout.
    HeaderTimeout,
    /// The request body stopped arriving for the idle timeout.
    BodyTimeout,
    /// The request body's framing was malformed (a bad chunk size, say).
    BadBody(String),
    /// HTTP/1.1 requires a Host; there was none.
    MissingHost,
    /// No tunnel is routed for this hostname.
    UnknownHost(String),
    /// The hostname's tunnel has no live connection anywhere.
    NoConnector(String),
    /// The tunnel connection failed before the response head arrived.
    Tunnel(String),
    /// The connector could not get a response from the origin.
    Origin { code: ErrorCode, message: String },
}

/// Status, title and detail of the page for an error.
pub fn page(err: &ProxyError) -> (u16, &'static str, String) {
    match err {
        ProxyError::Client(head) => (head.status(), head.title(), head.to_string()),
        ProxyError::HeaderTimeout => (
            408,
            "Request timeout",
            "The request head did not arrive in time.".into(),
        ),
        ProxyError::BodyTimeout => (
            408,
            "Request timeout",
            "The request body stopped arriving.".into(),
        ),
        ProxyError::BadBody(why) => (
            400,
            "Bad request",
            format!("The request body is malformed: {why}"),
        ),
        ProxyError::MissingHost => (
            400,
            "Bad request",
            "The request has no Host header, so adit cannot tell which tunnel it is for.".into(),
        ),
        ProxyError::UnknownHost(host) => {
            let name = host_without_port(host);
            (
                404,
                "No tunnel for this hostname",
                format!(
                    "No tunnel is routed for {host}. \
                     Route one with: adit tunnel route dns TUNNEL {name}"
                ),
            )
        }
        ProxyError::NoConnector(host) => (
            502,
            "Tunnel offline",
            format!(
                "The tunnel for {host} exists but has no connector running. \
                 Start it with: adit tunnel run"
            ),
        ),
        ProxyError::Tunnel(why) => (
            502,
            "Tunnel error",
            format!("The connection to the connector failed: {why}"),
        ),
        ProxyError::Origin { code, message } => match code {
            ErrorCode::OriginTimeout => (504, "Origin timed out", message.clone()),
            ErrorCode::BadRequest => (400, "Bad request", message.clone()),
            ErrorCode::OriginUnreachable => (502, "Origin unreachable", message.clone()),
            ErrorCode::OriginTls => (502, "Origin TLS failed", message.clone()),
            _ => (502, "Bad gateway", message.clone()),
        },
    }
}

/// `host` without a `:port` (IPv6 literals keep their brackets).
fn host_without_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && host[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &host[..i]
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_suggestions_leave_the_port_out() {
        assert_eq!(host_without_port("app.test:8080"), "app.test");
        assert_eq!(host_without_port("app.test"), "app.test");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }

    #[test]
    fn statuses() {
        let status = |e: ProxyError| page(&e).0;
        assert_eq!(status(ProxyError::Client(HeadError::TooLarge)), 431);
        assert_eq!(status(ProxyError::Client(HeadError::Malformed("x"))), 400);
        assert_eq!(status(ProxyError::MissingHost), 400);
        assert_eq!(status(ProxyError::HeaderTimeout), 408);
        assert_eq!(status(ProxyError::BadBody("x".into())), 400);
        assert_eq!(status(ProxyError::UnknownHost("a".into())), 404);
        assert_eq!(status(ProxyError::NoConnector("a".into())), 502);
        assert_eq!(status(ProxyError::Tunnel("x".into())), 502);
        let origin = |code| ProxyError::Origin {
            code,
            message: String::new(),
        };
        assert_eq!(status(origin(ErrorCode::OriginTimeout)), 504);
        assert_eq!(status(origin(ErrorCode::OriginUnreachable)), 502);
        assert_eq!(status(origin(ErrorCode::OriginTls)), 502);
    }
}
