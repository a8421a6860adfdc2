//! The access client (`adit access tcp`): carries raw TCP to a tunnel's `tcp://` service.
//!
//! Each carried connection is one WebSocket to the edge's public HTTP listener, with the
//! service's hostname as `Host`, so it passes wherever HTTP does. The edge forwards the
//! upgrade down the tunnel and the connector answers it and relays to the origin; WebSocket
//! framing runs end to end between this client and the connector.
//!
//! Two modes: [`serve`] listens on a local address and carries each accepted connection
//! over its own WebSocket (monoio, one thread, the relay in [`crate::ws::bridge`]);
//! [`carry_stdio`] carries standard input and output over one WebSocket with blocking IO on
//! two threads, which is what ssh's `ProxyCommand` needs. In both, the end of one side's
//! input is passed on as a half-close and the other direction goes on.

mod listener;
mod stdio;
pub mod upgrade;

use std::net::{SocketAddr, ToSocketAddrs};

pub use listener::serve;
pub use stdio::carry_stdio;

/// Where a carried connection goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The TCP service's public hostname, sent as `Host`.
    pub hostname: String,
    /// The edge's public HTTP listener.
    pub edge: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    #[error("--edge {0:?}: {1}")]
    EdgeUrl(String, String),
    #[error("cannot reach the edge at {addr}: {reason}")]
    Connect {
        addr: String,
        reason: std::io::Error,
    },
    #[error("the edge refused the connection: {status} {reason}{}", text_lines(.text))]
    Refused {
        status: u16,
        reason: String,
        /// The readable text of the edge's page.
        text: String,
    },
    #[error("the edge's answer is not a WebSocket upgrade: {0}")]
    Handshake(String),
    #[error("connection to the edge: {0}")]
    Io(std::io::Error),
    #[error("WebSocket protocol error: {0}")]
    Protocol(crate::ws::WsError),
    #[error("the WebSocket from the edge ended inside a frame")]
    Truncated,
    #[error("the service's connection broke off (WebSocket close {0})")]
    BrokeOff(u16),
    #[error("standard input: {0}")]
    Input(std::io::Error),
    #[error("standard output: {0}")]
    Output(std::io::Error),
}

// The messages above already say what their inner error says, so none is a `source` (a
// chain printer would repeat it) and the conversions are written out.
impl From<std::io::Error> for AccessError {
    fn from(err: std::io::Error) -> AccessError {
        AccessError::Io(err)
    }
}

fn text_lines(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("\n{text}")
    }
}

impl Target {
    /// `edge_url` is `http://HOST[:PORT]` (port 80 by default); without it the edge is
    /// reached at `hostname` on port 80. The name is resolved here, once.
    pub fn new(hostname: &str, edge_url: Option<&str>) -> Result<Target, AccessError> {
        let url = edge_url.map_or_else(|| format!("http://{hostname}"), str::to_owned);
        let bad = |why: &str| AccessError::EdgeUrl(url.clone(), why.to_owned());

        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("write it as http://HOST[:PORT]"));
        };
        if scheme.eq_ignore_ascii_case("https") {
            return Err(bad(
                "adit access speaks plain HTTP to the edge; use its http:// listener",
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(bad("write it as http://HOST[:PORT]"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(bad("write it as http://HOST[:PORT], without a path"));
        }

        // A bare IPv6 address in brackets, or a name or IPv4 address, with an optional port.
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let with_port = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let edge = with_port
            .to_socket_addrs()
            .map_err(|reason| AccessError::Connect {
                addr: with_port.clone(),
                reason,
            })?
            .next()
            .ok_or_else(|| bad("the name has no address"))?;
        Ok(Target {
            hostname: hostname.to_owned(),
            edge,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_urls() {
        let edge = |url: Option<&str>| {
            Target::new("127.0.0.1", url)
                .map(|t| t.edge.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(edge(None), Ok("127.0.0.1:80".to_owned()));
        assert_eq!(
            edge(Some("http://127.0.0.1:8080")),
            Ok("127.0.0.1:8080".to_owned())
        );
        assert_eq!(
            edge(Some("HTTP://127.0.0.1/")),
            Ok("127.0.0.1:80".to_owned())
        );
        assert_eq!(edge(Some("http://[::1]")), Ok("[::1]:80".to_owned()));
        assert_eq!(edge(Some("http://[::1]:81")), Ok("[::1]:81".to_owned()));
        assert_eq!(
            edge(Some("https://127.0.0.1")),
            Err(
                "--edge \"https://127.0.0.1\": adit access speaks plain HTTP to the edge; \
                 use its http:// listener"
                    .to_owned()
            )
        );
        assert_eq!(
            edge(Some("127.0.0.1:8080")),
            Err("--edge \"127.0.0.1:8080\": write it as http://HOST[:PORT]".to_owned())
        );
        assert_eq!(
            edge(Some("http://127.0.0.1:8080/x")),
            Err(
                "--edge \"http://127.0.0.1:8080/x\": write it as http://HOST[:PORT], \
                 without a path"
                    .to_owned()
            )
        );
    }
}
