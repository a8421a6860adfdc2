//! Spreading a connector's connections over the edge's workers.
//!
//! The edge runs several data-plane workers on one UDP port (`SO_REUSEPORT`); the kernel
//! hashes each connection's addresses to one of them. Every link therefore dials from a UDP
//! socket of its own ([`LinkEndpoints`]), and a connection that registers on an edge worker
//! already holding another of this connector's connections, while some edge worker holds
//! none, is closed before it serves anything and dialed again from a new source port
//! ([`should_rebalance`]). [`Placement`], shared by the connector's worker threads, counts
//! the registered connections per edge worker.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::quic::Endpoint;

/// Edge workers the placement table tracks; the edge runs at most this many
/// (`edge::MAX_WORKERS`).
pub const PLACEMENT_SLOTS: usize = 64;

/// Redials in a row after which a link keeps whatever edge worker it got: the hash may keep
/// landing on the same one, and a connection that serves beats one more handshake.
pub const MAX_REDIALS: u32 = 4;

/// QUIC application close code of a connection closed to be dialed again elsewhere.
pub const CLOSE_REBALANCE: u32 = 5;

/// How many of this connector's registered connections each edge worker holds.
pub struct Placement {
    counts: [AtomicU8; PLACEMENT_SLOTS],
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            counts: std::array::from_fn(|_| AtomicU8::new(0)),
        }
    }
}

impl Placement {
    /// Counts a connection on edge worker `worker` until the returned value is dropped. An
    /// index past the table (an edge this build does not know) is not counted.
    pub fn enter(&self, worker: u16) -> Placed<'_> {
        let mut others: [u8; PLACEMENT_SLOTS] =
            std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed));
        let slot = self.counts.get(usize::from(worker));
        if let Some(slot) = slot {
            // The value before this connection: two links registering at once on one edge
            // worker see different values, so one of them moves.
            others[usize::from(worker)] = slot.fetch_add(1, Ordering::Relaxed);
        }
        Placed { slot, others }
    }
}

/// One registered connection counted on its edge worker.
pub struct Placed<'a> {
    slot: Option<&'a AtomicU8>,
    /// What the table held, this connection left out, when it was counted.
    pub others: [u8; PLACEMENT_SLOTS],
}

impl Drop for Placed<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Whether a connection that just registered on edge worker `worker` of `edge_workers`
/// should be closed and dialed again from a new source port: this connector keeps two or
/// more connections, `worker` already holds another of them, some edge worker holds none,
/// and the link has redialed fewer than [`MAX_REDIALS`] times in a row. `others[i]` counts
/// the connector's other registered connections on edge worker `i`.
pub fn should_rebalance(
    others: &[u8],
    worker: u16,
    edge_workers: u16,
    ha_connections: u8,
    redials: u32,
) -> bool {
    if ha_connections < 2 || redials >= MAX_REDIALS {
        return false;
    }
    let span = usize::from(edge_workers).min(others.len());
    let crowded = others.get(usize::from(worker)).is_some_and(|&n| n > 0);
    crowded && others[..span].contains(&0)
}

/// The QUIC endpoints of one connector worker's links, one each, so every link has a
/// source port of its own.
pub struct LinkEndpoints {
    local_ip: IpAddr,
    by_link: RefCell<Vec<(u8, Endpoint)>>,
}

impl LinkEndpoints {
    pub fn new(local_ip: IpAddr) -> LinkEndpoints {
        LinkEndpoints {
            local_ip,
            by_link: RefCell::default(),
        }
    }

    /// Starts link `index`'s endpoint on `socket`.
    pub fn add(&self, index: u8, socket: std::net::UdpSocket) -> std::io::Result<()> {
        let endpoint = Endpoint::new(socket, None)?;
        self.by_link.borrow_mut().push((index, endpoint));
        Ok(())
    }

    pub fn get(&self, index: u8) -> Option<Endpoint> {
        let by_link = self.by_link.borrow();
        let (_, endpoint) = by_link.iter().find(|(i, _)| *i == index)?;
        Some(endpoint.clone())
    }

    /// Moves link `index` to a new socket and hands back its old endpoint, which the caller
    /// closes once the connection on it is retired. An error leaves the link where it was.
    pub fn renew(&self, index: u8) -> std::io::Result<Option<Endpoint>> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(self.local_ip, 0))?;
        let endpoint = Endpoint::new(socket, None)?;
        let mut by_link = self.by_link.borrow_mut();
        Ok(match by_link.iter_mut().find(|(i, _)| *i == index) {
            Some((_, slot)) => Some(std::mem::replace(slot, endpoint)),
            None => {
                by_link.push((index, endpoint));
                None
            }
        })
    }

    /// Closes every link's endpoint and waits until each has sent its close frames.
    pub async fn close_all(&self, code: u32, reason: &[u8]) {
        let endpoints: Vec<Endpoint> = self
            .by_link
            .borrow()
            .iter()
            .map(|(_, endpoint)| endpoint.clone())
            .collect();
        for endpoint in &endpoints {
            endpoint.close(code, reason);
        }
        for endpoint in &endpoints {
            endpoint.stopped().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_off_a_crowded_worker_while_one_is_empty() {
        assert!(should_rebalance(&[1, 0], 0, 2, 4, 0));
        assert!(should_rebalance(&[0, 2], 1, 2, 4, 3));
        assert!(should_rebalance(&[1, 1, 0, 0], 1, 4, 2, 0));
    }

    #[test]
    fn stays_when_its_worker_holds_nothing_else() {
        assert!(!should_rebalance(&[0, 0], 0, 2, 4, 0));
        assert!(!should_rebalance(&[0, 3], 0, 2, 4, 0));
    }

    #[test]
    fn stays_when_every_worker_is_covered() {
        assert!(!should_rebalance(&[1, 1], 0, 2, 4, 0));
        assert!(!should_rebalance(&[2, 1, 0, 0], 0, 2, 4, 0));
        assert!(!should_rebalance(&[5], 0, 1, 4, 0));
    }

    #[test]
    fn stays_with_one_connection_or_after_enough_redials() {
        assert!(!should_rebalance(&[1, 0], 0, 2, 1, 0));
        assert!(!should_rebalance(&[1, 0], 0, 2, 4, MAX_REDIALS));
        assert!(!should_rebalance(&[1, 0], 0, 2, 4, u32::MAX));
    }

    #[test]
    fn out_of_range_values_from_the_edge_keep_the_connection() {
        assert!(!should_rebalance(&[1, 0], 7, 2, 4, 0));
        assert!(!should_rebalance(&[1, 0], 0, 0, 4, 0));
        assert!(should_rebalance(&[1, 0], 0, u16::MAX, 4, 0));
    }

    #[test]
    fn placement_counts_live_connections() {
        let placement = Placement::default();
        let first = placement.enter(1);
        assert_eq!(&first.others[..3], &[0, 0, 0]);
        let second = placement.enter(1);
        assert_eq!(&second.others[..3], &[0, 1, 0]);
        drop(first);
        let third = placement.enter(0);
        assert_eq!(&third.others[..3], &[0, 1, 0]);
        let outside = placement.enter(u16::MAX);
        assert_eq!(&outside.others[..3], &[1, 1, 0]);
        drop((second, third, outside));
        assert_eq!(&placement.enter(2).others[..3], &[0, 0, 0]);
    }
}
