//! The immutable view of routes and live connections that data-plane workers read.
//!
//! The control plane builds a new one on every change and hands each worker an `Arc` of it;
//! workers read theirs without locks. Building methods (`insert_*`, `set_workers`) exist so
//! the control plane and tests can fill one in; once shared behind an `Arc` it never changes.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

/// Longest hostname DNS allows; longer Host values cannot match any route.
const MAX_HOST_LEN: usize = 253;

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Exact hostnames, lowercase.
    exact: HashMap<String, Uuid>,
    /// Wildcard routes `*.example.com`, keyed by the suffix after `*.` (`example.com`).
    wildcard: HashMap<String, Uuid>,
    /// Every tunnel that exists (not deleted), with or without connections.
    tunnels: HashSet<Uuid>,
    /// Per tunnel, bit `i` set when worker `i` owns a registered, not draining connection.
    workers: HashMap<Uuid, u64>,
    /// Tunnels deleted since the edge started. Ids are never reused, so even an old
    /// snapshot never lists a tunnel here that still exists.
    deleted: HashSet<Uuid>,
}

impl Snapshot {
    /// The tunnel that owns `host`: the request's Host, maybe with a port (stripped here),
    /// matched case-insensitively, an exact route first, then the longest `*.` wildcard.
    pub fn tunnel_for_host(&self, host: &str) -> Option<Uuid> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() || host.len() > MAX_HOST_LEN {
            return None;
        }

        // Lowercase into a stack buffer only when needed, so lookups never allocate.
        let mut lower = [0u8; MAX_HOST_LEN];
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = &mut lower[..host.len()];
            lower.copy_from_slice(host.as_bytes());
            lower.make_ascii_lowercase();
            // ASCII lowercasing keeps UTF-8 valid, so this cannot fail on a `&str`'s bytes.
            std::str::from_utf8(lower).ok()?
        } else {
            host
        };

        if let Some(&tunnel) = self.exact.get(host) {
            return Some(tunnel);
        }

        // Suffixes from the longest to the shortest: the first hit is the longest wildcard.
        // A suffix needs a non-empty label in front of it, so `*.a.com` never matches `a.com`.
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            let suffix = &rest[dot + 1..];
            if dot > 0 {
                if let Some(&tunnel) = self.wildcard.get(suffix) {
                    return Some(tunnel);
                }
            }
            rest = suffix;
        }
        None
    }

    /// Bit `i` is set when edge worker `i` owns at least one registered, not draining,
    /// connection of `tunnel`.
    pub fn workers_with_connections(&self, tunnel: Uuid) -> u64 {
        self.workers.get(&tunnel).copied().unwrap_or(0)
    }

    /// Whether `tunnel` exists (it may have no connections).
    pub fn tunnel_exists(&self, tunnel: Uuid) -> bool {
        self.tunnels.contains(&tunnel)
    }

    /// Adds a route; `hostname` must already be validated and lowercase, `*.` allowed.
    pub fn insert_route(&mut self, hostname: &str, tunnel: Uuid) {
        match hostname.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(suffix.to_owned(), tunnel),
            None => self.exact.insert(hostname.to_owned(), tunnel),
        };
    }

    /// Whether `tunnel` was deleted: its connections must close.
    pub fn is_deleted(&self, tunnel: Uuid) -> bool {
        self.deleted.contains(&tunnel)
    }

    pub fn mark_deleted(&mut self, tunnel: Uuid) {
        self.deleted.insert(tunnel);
    }

    pub fn insert_tunnel(&mut self, tunnel: Uuid) {
        self.tunnels.insert(tunnel);
    }

    /// Sets the worker bitmask of `tunnel`; a zero mask removes the entry.
    pub fn set_workers(&mut self, tunnel: Uuid, mask: u64) {
        if mask == 0 {
            self.workers.remove(&tunnel);
        } else {
            self.workers.insert(tunnel, mask);
        }
    }
}

/// `host:port` → `host`, `[v6]:port` → `[v6]`; a bare IPv6 address (several colons) is
/// left alone.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        s.insert_route("example.com", id(1));
        s.insert_route("*.example.com", id(2));
        s.insert_route("*.deep.example.com", id(3));
        s.insert_route("exact.deep.example.com", id(4));
        s.insert_route("*.other.org", id(5));
        s
    }

    #[test]
    fn exact_route_wins() {
        let s = snapshot();
        assert_eq!(s.tunnel_for_host("example.com"), Some(id(1)));
        assert_eq!(s.tunnel_for_host("exact.deep.example.com"), Some(id(4)));
    }

    #[test]
    fn longest_wildcard_wins() {
        let s = snapshot();
        assert_eq!(s.tunnel_for_host("a.example.com"), Some(id(2)));
        assert_eq!(s.tunnel_for_host("a.b.example.com"), Some(id(2)));
        assert_eq!(s.tunnel_for_host("a.deep.example.com"), Some(id(3)));
        assert_eq!(s.tunnel_for_host("x.y.deep.example.com"), Some(id(3)));
        assert_eq!(s.tunnel_for_host("deep.example.com"), Some(id(2)));
    }

    #[test]
    fn wildcard_does_not_match_its_own_suffix() {
        let s = snapshot();
        assert_eq!(s.tunnel_for_host("other.org"), None);
        assert_eq!(s.tunnel_for_host(".other.org"), None);
        assert_eq!(s.tunnel_for_host("a.other.org"), Some(id(5)));
        assert_eq!(s.tunnel_for_host("org"), None);
        assert_eq!(s.tunnel_for_host("example.net"), None);
        assert_eq!(s.tunnel_for_host("notexample.com"), None);
    }

    #[test]
    fn port_and_case_and_trailing_dot() {
        let s = snapshot();
        assert_eq!(s.tunnel_for_host("example.com:8080"), Some(id(1)));
        assert_eq!(s.tunnel_for_host("EXAMPLE.Com"), Some(id(1)));
        assert_eq!(s.tunnel_for_host("A.Example.COM:443"), Some(id(2)));
        assert_eq!(s.tunnel_for_host("example.com."), Some(id(1)));
        assert_eq!(s.tunnel_for_host(""), None);
        assert_eq!(s.tunnel_for_host(":80"), None);
    }

    #[test]
    fn ipv6_hosts() {
        let mut s = snapshot();
        s.insert_route("[::1]", id(9));
        assert_eq!(s.tunnel_for_host("[::1]:8080"), Some(id(9)));
        assert_eq!(s.tunnel_for_host("[::1]"), Some(id(9)));
        assert_eq!(s.tunnel_for_host("::1"), None);
        assert_eq!(strip_port("[::1"), "[::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a.com:1"), "a.com");
    }

    #[test]
    fn overlong_host_is_unrouted() {
        let s = snapshot();
        let long = format!("{}.example.com", "a".repeat(250));
        assert_eq!(s.tunnel_for_host(&long), None);
        let upper = format!("{}.EXAMPLE.COM", "b".repeat(200));
        assert_eq!(s.tunnel_for_host(&upper), Some(id(2)));
    }

    #[test]
    fn worker_masks_and_tunnels() {
        let mut s = Snapshot::default();
        s.insert_tunnel(id(1));
        s.set_workers(id(1), 0b101);
        assert_eq!(s.workers_with_connections(id(1)), 0b101);
        assert_eq!(s.workers_with_connections(id(2)), 0);
        assert!(s.tunnel_exists(id(1)));
        assert!(!s.tunnel_exists(id(2)));
        s.set_workers(id(1), 0);
        assert_eq!(s.workers_with_connections(id(1)), 0);
    }
}
