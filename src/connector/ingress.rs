//! Ingress rules: which origin service serves a request. Sans-IO: matching takes the host
//! and path as strings.
//!
//! [`super::config`] reads the rules from YAML; the checks on single values (service,
//! hostname, path, Host header) and on the order of the rules live here so that
//! [`Ingress::single`] and the config agree on what is valid.
//!
//! A rule's `path` regex is matched against the request path made normal first (see
//! [`normalize_path`]), so that `//admin`, `/./admin`, `/x/../admin` and `/%61dmin`, which
//! origins serve as `/admin`, cannot slip past a rule written for `^/admin`. Normalizing is
//! for matching only: the origin still receives the path exactly as the client sent it.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Where a rule sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Service {
    /// `http://host:port` or `https://host:port` (default ports 80 and 443). `host` is a DNS
    /// name or IPv4 address as written, or an IPv6 address without its brackets, so that
    /// `(host.as_str(), port)` resolves directly.
    Http { tls: bool, host: String, port: u16 },
    /// `unix:/path` or `unix+tls:/path`: HTTP over a Unix socket.
    Unix { tls: bool, path: std::path::PathBuf },
    /// `http_status:NNN`: answer every request with this status and no origin.
    Status(u16),
    /// `hello_world`: the built-in hello-world origin.
    HelloWorld,
    /// `tcp://host:port`, `ssh://host[:port]` (default port 22) or `rdp://host[:port]`
    /// (default 3389): raw bytes relayed to a TCP origin, carried from the client over a
    /// WebSocket (`adit access tcp`). `host` is as in [`Service::Http`].
    Tcp { host: String, port: u16 },
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
    /// `originServerName`: SNI and verification name for TLS origins; by default the service
    /// host, or `localhost` for `unix+tls:`.
    pub origin_server_name: Option<String>,
    /// `responseTimeout`: how long to wait for the origin's response head, default 100 s;
    /// past it the client gets 504.
    pub response_timeout: Duration,
    /// `caPool`: PEM file of CAs that TLS origins are verified against, in addition to the
    /// Mozilla roots built into adit (no system store is read). A relative path in a config
    /// file is resolved against its directory.
    pub ca_pool: Option<PathBuf>,
}

impl Default for OriginSettings {
    fn default() -> Self {
        OriginSettings {
            connect_timeout: Duration::from_secs(30),
            keep_alive_connections: 100,
            keep_alive_timeout: Duration::from_secs(90),
            http_host_header: None,
            no_tls_verify: false,
            origin_server_name: None,
            response_timeout: Duration::from_secs(100),
            ca_pool: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// `None` matches every host.
    pub hostname: Option<String>,
    /// Unanchored regular expression on the path; `None` matches every path. It is matched
    /// against the path without its query and made normal by [`normalize_path`], while the
    /// origin receives the path as the client sent it.
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
        let service =
            parse_service(service).map_err(|message| IngressError { rule: 1, message })?;
        Ok(Ingress {
            rules: vec![Rule {
                hostname: None,
                path: None,
                service,
                origin: OriginSettings::default(),
            }],
        })
    }

    /// The index and rule serving `host` (port stripped here) and `path`.
    ///
    /// The query, if `path` has one, is not part of the match, and the rest is matched as
    /// [`normalize_path`] makes it. Panics if `rules` is empty, which a validated `Ingress`
    /// never is.
    pub fn find(&self, host: &str, path: &str) -> (usize, &Rule) {
        let host = host_without_port(host);
        let path = path.split_once('?').map_or(path, |(path, _query)| path);
        let path = normalize_path(path);
        let path = path.as_ref();

        // A validated list ends with a catch-all, so the fallback only serves hand-built lists.
        let last = self.rules.len().saturating_sub(1);
        let index = self
            .rules
            .iter()
            .position(|rule| rule.matches(host, path))
            .unwrap_or(last);
        (index, &self.rules[index])
    }
}

impl Rule {
    /// Whether the rule matches every request: no hostname (or `*`) and no path.
    pub fn is_catch_all(&self) -> bool {
        self.hostname.is_none() && self.path.is_none()
    }

    /// `host` is without its port, `path` without its query.
    fn matches(&self, host: &str, path: &str) -> bool {
        let host_ok = self
            .hostname
            .as_deref()
            .is_none_or(|pattern| host_matches(pattern, host));
        host_ok && self.path.as_ref().is_none_or(|regex| regex.is_match(path))
    }
}

/// `pattern` is lowercase (validated); `host` may be in any case. `*.example.com` matches
/// subdomains at any depth but not `example.com` itself.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            host.len() > suffix.len()
                && host
                    .as_bytes()
                    .get(host.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// Strips `:port` (also after `[v6]`) and the trailing dot of a fully qualified name.
fn host_without_port(host: &str) -> &str {
    let host = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            // More than one colon is a bare IPv6 address, which has no port to strip.
            Some((name, _port)) if !name.contains(':') => name,
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// A request path (without its query) in the form origins commonly resolve it to, for
/// matching rules:
///
/// - `%XX` of an unreserved character (letter, digit, `-`, `.`, `_`, `~`) is decoded, and
///   the hex digits of every other `%XX` are uppercased (RFC 3986 §6.2.2.1, §6.2.2.2); `%2F`
///   stays encoded, as it is not a `/`.
/// - Runs of `/` are collapsed into one, then `.` and `..` segments are resolved (RFC 3986
///   §5.2.4); `..` never climbs above the root. Collapsing first is what file systems and
///   common servers do, so `/x//../admin` is `/admin`.
///
/// A path that is already normal is returned borrowed, without allocating.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if is_normal_path(path) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(remove_dot_segments(&normalize_escapes(path)))
}

/// Whether [`normalize_path`] would return `path` unchanged.
fn is_normal_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let escapes_normal = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'%')
        .all(|(at, _)| match bytes.get(at + 1..at + 3) {
            Some(&[high, low]) => match (hex_digit(high), hex_digit(low)) {
                (Some(high_value), Some(low_value)) => {
                    !is_unreserved(high_value << 4 | low_value)
                        && !high.is_ascii_lowercase()
                        && !low.is_ascii_lowercase()
                }
                _ => true,
            },
            _ => true,
        });
    escapes_normal && !path.contains("//") && !path.split('/').any(|s| s == "." || s == "..")
}

/// Decodes `%XX` of unreserved characters and uppercases the other escapes; a `%` not
/// followed by two hex digits is left as it is.
fn normalize_escapes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some((before, after)) = rest.split_once('%') {
        out.push_str(before);
        let decoded = match after.as_bytes() {
            [high, low, ..] => hex_digit(*high).zip(hex_digit(*low)),
            _ => None,
        };
        match decoded {
            Some((high, low)) => {
                let byte = high << 4 | low;
                if is_unreserved(byte) {
                    out.push(char::from(byte));
                } else {
                    out.push('%');
                    out.push(char::from(HEX_UPPER[usize::from(high)]));
                    out.push(char::from(HEX_UPPER[usize::from(low)]));
                }
                // Both digits are ASCII, so byte 2 starts a character.
                rest = after.get(2..).unwrap_or("");
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

const HEX_UPPER: [u8; 16] = *b"0123456789ABCDEF";

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Collapses runs of `/` and resolves `.` and `..` segments. A path ending in `/`, `.` or
/// `..` keeps a trailing `/`, as in RFC 3986 (`/a/.` is `/a/`).
fn remove_dot_segments(path: &str) -> String {
    // Built as "/seg/seg"; a relative path gets its leading '/' removed at the end.
    let mut out = String::with_capacity(path.len() + 1);
    let mut trailing_slash = false;
    for segment in path.split('/') {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
            }
            name => {
                out.push('/');
                out.push_str(name);
            }
        }
    }

    if path.starts_with('/') {
        if out.is_empty() || trailing_slash {
            out.push('/');
        }
        out
    } else {
        if !out.is_empty() && trailing_slash {
            out.push('/');
        }
        out.split_off(out.len().min(1))
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::Http { tls, host, port } => {
                let (scheme, default_port) = if *tls { ("https", 443) } else { ("http", 80) };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]")?;
                } else {
                    write!(f, "{scheme}://{host}")?;
                }
                if *port != default_port {
                    write!(f, ":{port}")?;
                }
                Ok(())
            }
            Service::Unix { tls, path } => {
                let scheme = if *tls { "unix+tls" } else { "unix" };
                write!(f, "{scheme}:{}", path.display())
            }
            Service::Status(code) => write!(f, "http_status:{code}"),
            Service::HelloWorld => f.write_str("hello_world"),
            // Whatever scheme the rule was written with, what it carries is plain TCP.
            Service::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Service::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

/// The longest socket path `sockaddr_un` holds, leaving room for the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

/// Parses a `service` value; the error is a full sentence naming the service.
pub(super) fn parse_service(text: &str) -> Result<Service, String> {
    if text == "hello_world" {
        return Ok(Service::HelloWorld);
    }
    if let Some(code) = text.strip_prefix("http_status:") {
        // A 1xx is an interim answer: the client would wait on for a final one.
        return parse_digits(code)
            .filter(|code| (200..=599).contains(code))
            .map(Service::Status)
            .ok_or_else(|| {
                format!(
                    "service {text:?}: the status must be a number from 200 to 599 \
                     (a final answer)"
                )
            });
    }
    if let Some(path) = text.strip_prefix("unix+tls:") {
        return parse_unix(text, path, true);
    }
    if let Some(path) = text.strip_prefix("unix:") {
        return parse_unix(text, path, false);
    }
    if let Some((scheme, rest)) = text.split_once("://") {
        match scheme.to_ascii_lowercase().as_str() {
            "http" => return parse_http(text, rest, false),
            "https" => return parse_http(text, rest, true),
            "tcp" => return parse_tcp(text, rest, None),
            "ssh" => return parse_tcp(text, rest, Some(22)),
            "rdp" => return parse_tcp(text, rest, Some(3389)),
            "smb" => {
                return Err(format!("service {text:?} is not supported yet"));
            }
            _ => {}
        }
    }
    if text == "bastion" || text == "socks-proxy" {
        return Err(format!("service {text:?} is not supported yet"));
    }
    Err(format!(
        "service {text:?} is not a known service \
         (use http://, https://, unix:, unix+tls:, tcp://, ssh://, rdp://, http_status:NNN \
         or hello_world)"
    ))
}

fn parse_unix(text: &str, path: &str, tls: bool) -> Result<Service, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "service {text:?}: the socket path must be absolute, as in unix:/run/app.sock"
        ));
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(format!(
            "service {text:?}: the socket path is longer than {MAX_UNIX_PATH} bytes"
        ));
    }
    Ok(Service::Unix {
        tls,
        path: PathBuf::from(path),
    })
}

/// `rest` is what follows `scheme://`.
fn parse_http(text: &str, rest: &str, tls: bool) -> Result<Service, String> {
    let (host, port) = parse_authority(text, rest)?;
    let port = port.unwrap_or(if tls { 443 } else { 80 });
    Ok(Service::Http {
        tls,
        host: host.to_owned(),
        port,
    })
}

/// `rest` is what follows `scheme://`; `default_port` is the scheme's, `None` for `tcp://`,
/// which has no usual port and so must name one.
fn parse_tcp(text: &str, rest: &str, default_port: Option<u16>) -> Result<Service, String> {
    let (host, port) = parse_authority(text, rest)?;
    let port = port.or(default_port).ok_or_else(|| {
        format!("service {text:?}: a tcp:// service needs a port, as in tcp://localhost:5432")
    })?;
    Ok(Service::Tcp {
        host: host.to_owned(),
        port,
    })
}

/// The host and port of a service URL, `rest` being what follows `scheme://`; a path
/// other than `/`, a query, a fragment or user info is refused.
fn parse_authority<'t>(text: &str, rest: &'t str) -> Result<(&'t str, Option<u16>), String> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);

    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    if !matches!(&tail[..path_end], "" | "/") {
        return Err(format!("service {text:?}: service URL may not have a path"));
    }
    if path_end < tail.len() {
        return Err(format!(
            "service {text:?}: service URL may not have a query or fragment"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "service {text:?}: service URL may not have user info"
        ));
    }

    split_host_port(authority).map_err(|reason| format!("service {text:?}: {reason}"))
}

/// Checks an `httpHostHeader` value: `host` or `host:port`, with IPv6 in brackets.
pub(super) fn check_host_header(text: &str) -> Result<(), String> {
    split_host_port(text)
        .map(|_| ())
        .map_err(|reason| format!("{text:?} is not a valid host[:port]: {reason}"))
}

/// Splits `host[:port]` or `[v6][:port]`; the host comes back without brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    if authority.is_empty() {
        return Err("the host is missing".to_owned());
    }

    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or("the IPv6 address is missing its closing ']'")?;
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{inner:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or("unexpected text after ']'")?),
        };
        (inner, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("an IPv6 address must be written in brackets, as in [::1]".to_owned());
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        check_origin_host(host)?;
        (host, port)
    };

    let port = match port {
        Some(text) => match parse_digits(text).filter(|port| *port != 0) {
            Some(port) => Some(port),
            None => return Err(format!("{text:?} is not a port number (1 to 65535)")),
        },
        None => None,
    };
    Ok((host, port))
}

/// An origin host name is looser than a rule hostname: container and service names often
/// hold underscores, and case does not matter.
fn check_origin_host(host: &str) -> Result<(), String> {
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    if host.is_empty() {
        return Err("the host is missing".to_owned());
    }
    if host.len() > 253 || !host.bytes().all(name_byte) {
        return Err(format!("{host:?} is not a valid host name or IP address"));
    }
    // All digits and dots is meant as an IPv4 address, and a typo there must not become a
    // DNS lookup.
    let looks_ipv4 = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if looks_ipv4 && host.parse::<Ipv4Addr>().is_err() {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    Ok(())
}

/// A non-empty run of ASCII digits as a `u16` (no sign, no spaces).
fn parse_digits(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Validates a rule's `hostname` and returns it lowercased; `*` means every host (`None`).
pub(super) fn parse_hostname(text: &str) -> Result<Option<String>, String> {
    if text == "*" {
        return Ok(None);
    }
    if text.is_empty() {
        return Err("hostname may not be empty (leave it out to match every host)".to_owned());
    }
    if text.contains("://") {
        return Err(format!(
            "hostname {text:?} may not have a scheme; write only the name"
        ));
    }
    if text.contains(':') {
        return Err(format!("hostname {text:?} may not have a port"));
    }
    if text.contains('/') {
        return Err(format!(
            "hostname {text:?} may not have a path; use the rule's path"
        ));
    }

    let lower = text.to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if name.contains('*') {
        return Err(format!(
            "hostname {text:?}: a wildcard is allowed only as a leading \"*.\""
        ));
    }
    if lower.len() > 253 {
        return Err(format!("hostname {text:?} is longer than 253 characters"));
    }
    for label in name.split('.') {
        check_label(text, label)?;
    }
    Ok(Some(lower))
}

fn check_label(text: &str, label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(format!("hostname {text:?} has an empty label"));
    }
    if label.len() > 63 {
        return Err(format!(
            "hostname {text:?} has a label longer than 63 characters"
        ));
    }
    let label_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if !label.bytes().all(label_byte) {
        return Err(format!(
            "hostname {text:?} may hold only letters, digits, '-' and '.' \
             (write international names in punycode, xn--...)"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "hostname {text:?} has a label that starts or ends with '-'"
        ));
    }
    Ok(())
}

/// Compiles a rule's `path`.
pub(super) fn parse_path(text: &str) -> Result<regex::Regex, String> {
    if text.is_empty() {
        return Err("path may not be empty (leave it out to match every path)".to_owned());
    }
    regex::Regex::new(text)
        .map_err(|err| format!("path {text:?} is not a valid regular expression: {err}"))
}

/// Checks that only the last rule matches every request and that it does. The caller
/// refuses an empty list first.
pub(super) fn check_rule_order(rules: &[Rule]) -> Result<(), IngressError> {
    let Some((last, before)) = rules.split_last() else {
        return Ok(());
    };
    if let Some(index) = before.iter().position(Rule::is_catch_all) {
        return Err(IngressError {
            rule: index + 1,
            message: "it matches every request, so the rules after it are never used".to_owned(),
        });
    }
    if !last.is_catch_all() {
        return Err(IngressError {
            rule: rules.len(),
            message: "the last rule must match every request (no hostname or path)".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
