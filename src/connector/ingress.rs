//! Ingress rules: which origin service serves a request. Sans-IO: matching takes the host
//! and path as strings.

use std::time::Duration;

/// Where a rule sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Service {
    /// `http://host:port` or `https://host:port` (default ports 80 and 443).
    Http { tls: bool, host: String, port: u16 },
    /// `unix:/path` or `unix+tls:/path`: HTTP over a Unix socket.
    Unix { tls: bool, path: std::path::PathBuf },
    /// `http_status:NNN`: answer every request with this status and no origin.
    Status(u16),
    /// `hello_world`: the built-in hello-world origin.
    HelloWorld,
}

/// Per-origin settings (`originRequest`), after defaults and per-rule overrides are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSettings {
    /// `connectTimeout`, default 30 s.
    pub connect_timeout: Duration,
    /// `keepAliveConnections`: idle connections kept per origin and worker, default 100.
    pub keep_alive_connections: usize,
    /// `keepAliveTimeout`: how long an idle pooled connection is kept, default 90 s.
    pub keep_alive_timeout: Duration,
    /// `httpHostHeader`: the Host sent to the origin instead of the public hostname.
    pub http_host_header: Option<String>,
    /// `noTLSVerify`: skip verification of the origin's certificate.
    pub no_tls_verify: bool,
    /// `originServerName`: SNI and verification name for TLS origins.
    pub origin_server_name: Option<String>,
    /// `responseTimeout`: how long to wait for the origin's response head, default 100 s;
    /// past it the client gets 504.
    pub response_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// `None` matches every host.
    pub hostname: Option<String>,
    /// Unanchored regular expression on the path; `None` matches every path.
    pub path: Option<regex::Regex>,
    pub service: Service,
    pub origin: OriginSettings,
}

/// Validated rules; the last one is a catch-all.
#[derive(Debug, Clone)]
pub struct Ingress {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ingress rule {rule}: {message}")]
pub struct IngressError {
    /// 1-based rule number.
    pub rule: usize,
    pub message: String,
}

impl Ingress {
    /// A single catch-all rule for `service` (as `adit tunnel run --url` and `adit quick`).
    pub fn single(service: &str) -> Result<Ingress, IngressError> {
        let _ = service;
        todo!()
    }

    /// The index and rule serving `host` (port stripped here) and `path`.
    pub fn find(&self, host: &str, path: &str) -> (usize, &Rule) {
        let _ = (host, path);
        todo!()
    }
}
