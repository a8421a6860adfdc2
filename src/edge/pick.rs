//! Which connection of a tunnel a new request goes to, on one edge worker.
//!
//! Each request goes to the least loaded replica (connector process) of the tunnel, counting
//! the open streams of all its connections on this worker, ties broken in turn. That keeps
//! the requests in flight even across replicas, so a replica killed without a chance to
//! unregister strands only its share of them, and a dead replica, whose streams never end,
//! is soon the most loaded and left alone.
//!
//! Inside the chosen replica the request goes to its first connection (in the order they
//! registered) that holds at most [`BATCH_SLACK`] streams more than its least loaded one and
//! heard from its peer in the last [`BATCH_FRESH`]. So the requests that reach a replica
//! together leave in one datagram where spreading them over its connections would cost a
//! datagram, its protection and its acknowledgement per connection. Measured side by side
//! on one worker with one replica of two connections (`adit bench small-get`, seven
//! alternating rounds): a median of 46.2k against 40.8k requests/s and 24.3 against 28.1 us
//! of edge and connector CPU per request. Spreading inside a replica would isolate nothing
//! from a failing process, whose connections all die with it; it would halve what a failing
//! path strands (one connection black-holed while its replica lives): in a tester's runs
//! with 30 closed-loop clients on one replica, all 30 waited for the idle timeout when the
//! batching connection's path died (15-30 in an earlier build's runs, as the second
//! connection sometimes held some), where spreading evenly would strand about 15. That is
//! the price of the batching.
//!
//! When none is fresh (the connector was busy for a moment, or traffic is light), the
//! request goes to the least loaded of the replica's connections within the slack that owe
//! no answer (nothing sent on them since the peer was last heard from), else to the one of
//! them heard from most recently. A connection whose peer died or whose path drops packets
//! looks like a live one until it fails to answer, and an idle one like any idle one; this
//! way an idle connection gets one request and then, owing the answer and silent for longer
//! than the busy one, no more until it answers. A fresh tester black-holed one connection
//! of a replica (an nft rule on its UDP port) under closed-loop load: with the least loaded
//! as the fallback, an idle dead connection drew requests until it held as many as the live
//! one, half of the replica's 30 clients, stuck until the QUIC idle timeout.
//!
//! A connection whose sent requests went unanswered for longer than a live peer takes to
//! acknowledge them ([`crate::quic::Connection::stalled`]: 50 ms plus four round trips) takes
//! no new request while another connection of the tunnel is not stalled, whatever its
//! replica and load: its peer died or its path black-holes packets, and the QUIC idle
//! timeout (5 s) closes it, and sends its requests again elsewhere, only later.
//!
//! An earlier version batched every request of a QUIC driver turn onto one connection,
//! whatever its replica, for the same gain. A fresh tester then killed one of two replicas
//! under closed-loop load: 19-32 of 30 clients stayed stuck for the 5 s idle timeout,
//! against 16-18 with plain least-loaded choice, as the requests in flight were no longer
//! even across replicas when the kill came.

use std::cell::Cell;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Streams a connection may hold beyond the least loaded connection of its replica and still
/// take the replica's next request.
pub const BATCH_SLACK: usize = 32;

/// How recently a connection must have heard from its peer to be preferred in its replica.
pub const BATCH_FRESH: Duration = Duration::from_millis(2);

/// What the picker needs to know of a connection.
pub trait Candidate {
    fn id(&self) -> Uuid;
    /// The connector process that made it.
    fn connector(&self) -> Uuid;
    /// Open to new streams: neither draining nor closed.
    fn usable(&self) -> bool;
    fn open_streams(&self) -> usize;
    /// When a datagram from the peer last arrived.
    fn last_heard(&self) -> Instant;
    /// Something sent on it has not been answered yet: nothing arrived from the peer since.
    fn awaiting_answer(&self) -> bool;
    /// Sent requests went unanswered for longer than a live peer takes to acknowledge them.
    fn stalled(&self, now: Instant) -> bool;
}

/// One worker's picking state; it allocates nothing.
#[derive(Debug, Default)]
pub struct Picker {
    /// Rotates ties between equally loaded replicas and connections.
    rotation: Cell<usize>,
}

impl Picker {
    /// The connection of `conns` (one tunnel's, on this worker) for a new request at `now`;
    /// `skip` excludes one that just failed.
    ///
    /// The work is quadratic in the tunnel's connections on this worker (a replica's load
    /// is summed for each), which stays small: a few per replica.
    pub fn pick<'c, C: Candidate>(
        &self,
        conns: &'c [C],
        skip: Option<Uuid>,
        now: Instant,
    ) -> Option<&'c C> {
        let open = |c: &&C| c.usable() && Some(c.id()) != skip;
        // Stalled connections only when nothing else is left.
        let answering = conns.iter().filter(open).any(|c| !c.stalled(now));
        let usable = |c: &&C| open(c) && !(answering && c.stalled(now));
        let replica_load = |connector: Uuid| -> usize {
            conns
                .iter()
                .filter(usable)
                .filter(|c| c.connector() == connector)
                .map(|c| c.open_streams())
                .sum()
        };
        let rotation = self.rotation.get();
        self.rotation.set(rotation.wrapping_add(1));
        // The connections starting at this pick's turn, so that ties rotate.
        let rotated = || (0..conns.len()).map(|i| &conns[(rotation + i) % conns.len()]);
        let least = rotated()
            .filter(usable)
            .min_by_key(|c| (replica_load(c.connector()), c.open_streams()))?;

        let replica = least.connector();
        let limit = least.open_streams() + BATCH_SLACK;
        let in_slack = |c: &&C| c.connector() == replica && c.open_streams() <= limit;
        let silence = |c: &C| now.saturating_duration_since(c.last_heard());
        let first = conns
            .iter()
            .filter(usable)
            .filter(in_slack)
            .find(|c| silence(c) <= BATCH_FRESH);
        if first.is_some() {
            return first;
        }
        // None fresh: the least loaded of those that owe no answer, else the one of those
        // that do that was heard from last.
        let fallback =
            rotated()
                .filter(usable)
                .filter(in_slack)
                .min_by_key(|c| match c.awaiting_answer() {
                    false => (false, Duration::ZERO, c.open_streams()),
                    true => (true, silence(c), 0),
                });
        Some(fallback.unwrap_or(least))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Conn {
        id: Uuid,
        connector: Uuid,
        usable: bool,
        open: Cell<usize>,
        heard: Cell<Instant>,
        stalled: Cell<bool>,
        awaiting: Cell<bool>,
    }

    impl Candidate for Conn {
        fn id(&self) -> Uuid {
            self.id
        }
        fn connector(&self) -> Uuid {
            self.connector
        }
        fn usable(&self) -> bool {
            self.usable
        }
        fn open_streams(&self) -> usize {
            self.open.get()
        }
        fn last_heard(&self) -> Instant {
            self.heard.get()
        }
        fn awaiting_answer(&self) -> bool {
            self.awaiting.get()
        }
        fn stalled(&self, _now: Instant) -> bool {
            self.stalled.get()
        }
    }

    /// The test clock: every connection heard from its peer at `START` unless a test says
    /// otherwise, and picks happen at `START`.
    static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

    /// Connections with these open stream counts, each entry's replica given by `replicas`.
    fn conns(open: &[usize], replicas: &[u128]) -> Vec<Conn> {
        open.iter()
            .zip(replicas)
            .enumerate()
            .map(|(i, (&open, &replica))| Conn {
                id: Uuid::from_u128(i as u128 + 1),
                connector: Uuid::from_u128(1000 + replica),
                usable: true,
                open: Cell::new(open),
                heard: Cell::new(*START),
                stalled: Cell::new(false),
                awaiting: Cell::new(false),
            })
            .collect()
    }

    /// Picks, counts the new stream on the chosen connection, and returns its index.
    fn pick(picker: &Picker, conns: &[Conn], skip: Option<usize>) -> Option<usize> {
        let skip = skip.map(|i| conns[i].id);
        let chosen = picker.pick(conns, skip, *START)?;
        chosen.open.set(chosen.open.get() + 1);
        conns.iter().position(|c| c.id == chosen.id)
    }

    /// `times` requests that all stay open.
    fn pick_times(picker: &Picker, conns: &[Conn], times: usize) {
        for _ in 0..times {
            pick(picker, conns, None).unwrap();
        }
    }

    #[test]
    fn one_replica_fills_its_first_connection_up_to_the_slack() {
        let picker = Picker::default();
        let conns = conns(&[0, 0], &[0, 0]);
        let chosen: Vec<usize> = (0..BATCH_SLACK + 3)
            .map(|_| pick(&picker, &conns, None).unwrap())
            .collect();
        // 33 on the first (32 more than the other), then the second takes one, and the
        // first is within the slack again.
        assert!(chosen[..=BATCH_SLACK].iter().all(|&i| i == 0), "{chosen:?}");
        assert_eq!(chosen[BATCH_SLACK + 1..], [1, 0]);
        assert_eq!((conns[0].open.get(), conns[1].open.get()), (34, 1));
    }

    #[test]
    fn replicas_share_the_requests_evenly() {
        let picker = Picker::default();
        // Replica 0 has connections 0 and 1, replica 1 has 2 and 3.
        let conns = conns(&[0, 0, 0, 0], &[0, 0, 1, 1]);
        pick_times(&picker, &conns, 20);
        let open: Vec<usize> = conns.iter().map(|c| c.open.get()).collect();
        assert_eq!(open, [10, 0, 10, 0]);
    }

    #[test]
    fn the_least_loaded_replica_comes_first() {
        let picker = Picker::default();
        let conns = conns(&[3, 3, 0, 5], &[0, 0, 1, 1]);
        // Replica 0 holds 6, replica 1 holds 5: replica 1, whose first connection is fresh
        // and within the slack of its least loaded one.
        assert_eq!(pick(&picker, &conns, None), Some(2));
    }

    #[test]
    fn a_connection_silent_for_longer_than_the_freshness_is_not_preferred() {
        let picker = Picker::default();
        let conns = conns(&[0, 0], &[0, 0]);
        conns[0].heard.set(*START - BATCH_FRESH);
        assert_eq!(pick(&picker, &conns, None), Some(0));
        conns[0]
            .heard
            .set(*START - BATCH_FRESH - Duration::from_micros(1));
        // Connection 1, fresh, is preferred while within the slack of connection 0.
        for _ in 0..3 {
            assert_eq!(pick(&picker, &conns, None), Some(1));
        }
        assert_eq!((conns[0].open.get(), conns[1].open.get()), (1, 3));
    }

    #[test]
    fn an_unusable_or_skipped_connection_is_left() {
        let picker = Picker::default();
        let mut conns = conns(&[0, 3], &[0, 0]);
        assert_eq!(pick(&picker, &conns, None), Some(0));
        // The retry of a request that failed on connection 0 avoids it.
        assert_eq!(pick(&picker, &conns, Some(0)), Some(1));
        conns[1].usable = false;
        assert_eq!(pick(&picker, &conns, None), Some(0));
        conns[0].usable = false;
        assert_eq!(pick(&picker, &conns, None), None);
    }

    #[test]
    fn a_killed_replica_strands_its_share_and_then_takes_nothing() {
        let picker = Picker::default();
        // Two replicas of two connections each, 30 closed-loop clients in flight.
        let conns = conns(&[0, 0, 0, 0], &[0, 0, 1, 1]);
        pick_times(&picker, &conns, 30);
        let stranded = conns[0].open.get() + conns[1].open.get();
        assert_eq!(stranded, 15);
        // Replica 0 is killed: its streams never end and it goes silent. Replica 1 answers
        // its requests one at a time, and each client sends its next one, 300 times over.
        conns[0].heard.set(*START - Duration::from_secs(1));
        conns[1].heard.set(*START - Duration::from_secs(1));
        for _ in 0..300 {
            let answered = conns[2..].iter().find(|c| c.open.get() > 0).unwrap();
            answered.open.set(answered.open.get() - 1);
            let chosen = pick(&picker, &conns, None).unwrap();
            assert!(chosen >= 2, "a request went to the killed replica");
        }
        assert_eq!(conns[0].open.get() + conns[1].open.get(), stranded);
    }

    #[test]
    fn a_stalled_connection_takes_requests_only_when_every_other_is_stalled_too() {
        let picker = Picker::default();
        // One replica of two connections; the first, in flight with 15 requests, goes
        // unanswered while the other, idle, has not been heard from for a second either.
        let one = conns(&[15, 0], &[0, 0]);
        one[0].heard.set(*START - Duration::from_secs(1));
        one[1].heard.set(*START - Duration::from_secs(1));
        one[0].stalled.set(true);
        pick_times(&picker, &one, 40);
        assert_eq!((one[0].open.get(), one[1].open.get()), (15, 40));
        // The same with the stalled connection idle and in another replica.
        let conns = conns(&[0, 5], &[0, 1]);
        conns[0].stalled.set(true);
        pick_times(&picker, &conns, 10);
        assert_eq!((conns[0].open.get(), conns[1].open.get()), (0, 15));
        // With every connection stalled, the least loaded takes the request as before.
        conns[1].stalled.set(true);
        assert_eq!(pick(&picker, &conns, None), Some(0));
        // A skipped connection stays skipped even when it alone is not stalled.
        conns[1].stalled.set(false);
        assert_eq!(pick(&picker, &conns, Some(1)), Some(0));
    }

    /// One replica of two connections, neither fresh: the busy one holds 15 requests, owes
    /// answers and was last heard from 3 ms ago; the idle one was last heard from at a
    /// keep-alive 500 ms ago. Returns them after the first pick, which the idle one takes.
    fn busy_one_late(picker: &Picker) -> Vec<Conn> {
        let conns = conns(&[15, 0], &[0, 0]);
        conns[0].heard.set(*START - Duration::from_millis(3));
        conns[0].awaiting.set(true);
        conns[1].heard.set(*START - Duration::from_millis(500));
        assert_eq!(pick(picker, &conns, None), Some(1));
        conns
    }

    #[test]
    fn a_dead_idle_connection_gets_one_request_when_the_busy_one_is_late() {
        let picker = Picker::default();
        // The idle connection died unnoticed.
        let conns = busy_one_late(&picker);
        // Sending it that request left it owing an answer, silent for longer than the busy
        // one, which takes the next requests.
        conns[1].awaiting.set(true);
        pick_times(&picker, &conns, 15);
        assert_eq!((conns[0].open.get(), conns[1].open.get()), (30, 1));
    }

    #[test]
    fn a_late_busy_connection_hands_requests_to_an_idle_one_once_it_answers() {
        let picker = Picker::default();
        // The busy connection died with its 15 requests; the idle one lives.
        let conns = busy_one_late(&picker);
        // Until its answer arrives the dead one, heard from more recently, takes requests.
        conns[1].awaiting.set(true);
        assert_eq!(pick(&picker, &conns, None), Some(0));
        // Once it answered it is fresh and takes the rest.
        conns[1].heard.set(*START);
        conns[1].awaiting.set(false);
        pick_times(&picker, &conns, 10);
        assert_eq!((conns[0].open.get(), conns[1].open.get()), (16, 11));
    }
}
