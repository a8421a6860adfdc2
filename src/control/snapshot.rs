//! The immutable view of routes and live connections that data-plane workers read.
//!
//! The control plane builds a new one on every change and hands each worker an `Arc` of it;
//! workers read theirs without locks.

use uuid::Uuid;

#[derive(Debug, Default)]
pub struct Snapshot {}

impl Snapshot {
    /// The tunnel that owns `host`: the request's Host, maybe with a port (stripped here),
    /// matched case-insensitively, an exact route first, then the longest `*.` wildcard.
    pub fn tunnel_for_host(&self, host: &str) -> Option<Uuid> {
        let _ = host;
        todo!()
    }

    /// Bit `i` is set when edge worker `i` owns at least one registered, not draining,
    /// connection of `tunnel`.
    pub fn workers_with_connections(&self, tunnel: Uuid) -> u64 {
        let _ = tunnel;
        todo!()
    }
}
