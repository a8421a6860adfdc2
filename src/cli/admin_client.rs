//! A minimal blocking HTTP/1.1 client for the edge's admin API: one request per
//! connection (`Connection: close`), timeouts on connect, read and write, and a bound on
//! the response size. Only `http://host[:port]` URLs; the admin API speaks nothing else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
const MAX_HEADERS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("admin URL {0:?} is not of the form http://host:port")]
    Url(String),
    // The io errors are part of the message, not a `source`, so that `{:#}` in `main`
    // does not print them twice.
    #[error("cannot reach the admin API at {authority}: {error}")]
    Connect {
        authority: String,
        error: std::io::Error,
    },
    #[error("admin API at {authority}: {error}")]
    Io {
        authority: String,
        error: std::io::Error,
    },
    #[error("admin API at {authority} sent an invalid response: {reason}")]
    Response { authority: String, reason: String },
}

pub struct AdminClient {
    /// `host:port`, as sent in the Host header.
    authority: String,
    token: String,
}

/// A response's status and body.
pub struct ApiResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl AdminClient {
    pub fn new(url: &str, token: String) -> Result<Self, ClientError> {
        Ok(AdminClient {
            authority: authority(url)?,
            token,
        })
    }

    /// Sends one request; `body` is JSON.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse, ClientError> {
        let mut stream = self.connect()?;
        let io = |error| ClientError::Io {
            authority: self.authority.clone(),
            error,
        };

        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Accept: application/json\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.authority,
            self.token,
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(io)?;

        let mut raw = Vec::new();
        let limit = u64::try_from(MAX_RESPONSE + 1).unwrap_or(u64::MAX);
        (&mut stream)
            .take(limit)
            .read_to_end(&mut raw)
            .map_err(io)?;
        if raw.len() > MAX_RESPONSE {
            return Err(self.invalid("larger than 4 MiB".into()));
        }
        parse_response(&raw).map_err(|reason| self.invalid(reason))
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let connect_err = |error| ClientError::Connect {
            authority: self.authority.clone(),
            error,
        };
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .map_err(connect_err)?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, TIMEOUT) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(TIMEOUT))
                        .map_err(connect_err)?;
                    stream
                        .set_write_timeout(Some(TIMEOUT))
                        .map_err(connect_err)?;
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(connect_err(last))
    }

    fn invalid(&self, reason: String) -> ClientError {
        ClientError::Response {
            authority: self.authority.clone(),
            reason,
        }
    }
}

/// `http://host[:port][/]` → `host:port` (port 80 when absent).
fn authority(url: &str) -> Result<String, ClientError> {
    let bad = || ClientError::Url(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(bad());
    }
    let has_port = match rest.rsplit_once(':') {
        // `[::1]` has colons but no port; `[::1]:7070` has one after the bracket.
        Some((host, port)) => {
            (!host.starts_with('[') || host.ends_with(']')) && port.parse::<u16>().is_ok()
        }
        None => false,
    };
    if has_port {
        Ok(rest.to_owned())
    } else if rest.contains(':') && !rest.starts_with('[') {
        Err(bad())
    } else {
        Ok(format!("{rest}:80"))
    }
}

fn parse_response(raw: &[u8]) -> Result<ApiResponse, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err("truncated head".into()),
        Err(e) => return Err(e.to_string()),
    };
    let status = response.code.ok_or("no status")?;
    let body = raw.get(head_len..).unwrap_or_default();

    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"));
    let body = match length {
        Some(header) => {
            let length: usize = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("invalid Content-Length")?;
            body.get(..length).ok_or("truncated body")?
        }
        None => body,
    };
    Ok(ApiResponse {
        status,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        let ok = |url: &str| authority(url).unwrap();
        assert_eq!(ok("http://127.0.0.1:7070"), "127.0.0.1:7070");
        assert_eq!(ok("http://127.0.0.1:7070/"), "127.0.0.1:7070");
        assert_eq!(ok("http://localhost"), "localhost:80");
        assert_eq!(ok("http://[::1]:7070"), "[::1]:7070");
        assert_eq!(ok("http://[::1]"), "[::1]:80");
        for bad in [
            "https://127.0.0.1:7070",
            "127.0.0.1:7070",
            "http://",
            "http://h:7070/v1",
            "http://h:port",
            "http://u@h:1",
        ] {
            assert_eq!(
                authority(bad).unwrap_err().to_string(),
                format!("admin URL {bad:?} is not of the form http://host:port")
            );
        }
    }

    #[test]
    fn responses() {
        let response =
            parse_response(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.body, b"{}");
        let response = parse_response(b"HTTP/1.1 200 OK\r\n\r\n[1]").unwrap();
        assert_eq!(response.body, b"[1]");
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").err(),
            Some("truncated body".into())
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n").err(),
            Some("truncated head".into())
        );
    }
}
