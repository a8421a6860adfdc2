//! Graceful stop: close the public listeners, let the requests in flight finish, then go.
//!
//! On the first signal the main thread sends every worker [`super::worker::WorkerMsg::Stop`].
//! The worker sets its [`Stop`], which wakes its accept loops (they return and drop their
//! listeners, so new connections are refused by the kernel) and every client connection
//! waiting idle between requests (it closes). A connection in the middle of a request
//! finishes it; responses written from then on carry `Connection: close` and the connection
//! closes after them.
//!
//! Each worker counts its open client connections and those waiting idle in
//! [`ClientCounts`]; the difference is what is still being served. The main thread reads the
//! counts every [`TICK`] until they reach zero or the grace period ends: a connection costs
//! two plain stores into its own worker's counters, a request two more, and no lock.
//!
//! Tunnel connections keep being accepted and registered while draining; they are closed
//! with the others once the drain is over.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::worker::WorkerMsg;
use super::Edge;

/// How often the main thread looks at the counts while draining.
const TICK: Duration = Duration::from_millis(20);

/// A signal this soon after the first is the same one delivered twice (to the process and
/// to its group, as GNU `timeout` does), not a request to stop at once.
pub const DUPLICATE_SIGNAL: Duration = Duration::from_millis(250);

/// One worker's "the edge is stopping" flag, with the tasks to wake when it is set.
#[derive(Default)]
pub struct Stop {
    set: Cell<bool>,
    next_id: Cell<u64>,
    waiters: RefCell<FxHashMap<u64, Waker>>,
}

impl Stop {
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Sets the flag and wakes every task waiting in [`Stop::until`].
    pub fn trigger(&self) {
        self.set.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters.into_values() {
            waker.wake();
        }
    }

    /// Runs `work` until it ends (`Some`) or the flag is set (`None`, and `work` is dropped).
    pub async fn until<F: Future>(&self, work: F) -> Option<F::Output> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let _registered = Registered { stop: self, id };
        let mut work = pin!(work);
        std::future::poll_fn(|cx| {
            if self.set.get() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            self.waiters.borrow_mut().insert(id, cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Removes a waiter's waker when its wait ends either way.
struct Registered<'a> {
    stop: &'a Stop,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.stop.waiters.borrow_mut().remove(&self.id);
    }
}

/// One worker's client connections: open, and waiting idle for a request. Only that worker
/// writes them; the main thread reads them while draining.
#[derive(Debug, Default)]
pub struct ClientCounts {
    open: AtomicUsize,
    idle: AtomicUsize,
}

impl ClientCounts {
    /// Connections in the middle of a request (its head, its body or its response).
    pub fn busy(&self) -> usize {
        let idle = self.idle.load(Ordering::Relaxed);
        self.open.load(Ordering::Relaxed).saturating_sub(idle)
    }

    /// Counts one open connection for as long as the guard lives.
    pub fn open(&self) -> Counted<'_> {
        Counted::enter(&self.open)
    }

    /// Counts one connection waiting for a request for as long as the guard lives.
    pub fn idle(&self) -> Counted<'_> {
        Counted::enter(&self.idle)
    }
}

/// One unit of a [`ClientCounts`] counter. A load and a store, not a read-modify-write:
/// the counter has a single writer.
pub struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(count: &'a AtomicUsize) -> Counted<'a> {
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Counted(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let count = self.0.load(Ordering::Relaxed);
        self.0.store(count.saturating_sub(1), Ordering::Relaxed);
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every request finished.
    Done,
    /// The grace period ended with this many requests in flight.
    GraceOver { in_flight: usize },
    /// A second signal came first.
    Interrupted,
}

impl Edge {
    /// Requests in flight on every worker.
    pub fn requests_in_flight(&self) -> usize {
        self.clients.iter().map(|c| c.busy()).sum()
    }

    /// Stops accepting clients and waits up to `grace` for the requests in flight, logging
    /// the steps. A signal on `interrupt` at least [`DUPLICATE_SIGNAL`] after `signalled`
    /// ends the wait at once. The tunnel connections stay open until [`Edge::shutdown`].
    pub fn drain(
        &self,
        grace: Duration,
        signalled: Instant,
        interrupt: &crossbeam_channel::Receiver<i32>,
    ) -> DrainOutcome {
        let deadline = Instant::now() + grace;
        for inbox in &self.inboxes {
            let _ = inbox.unbounded_send(WorkerMsg::Stop);
        }
        tracing::info!(
            "edge shutting down: {} requests in flight, waiting up to {}",
            self.requests_in_flight(),
            humantime::format_duration(grace)
        );
        loop {
            let in_flight = self.requests_in_flight();
            if in_flight == 0 {
                tracing::info!("all requests done");
                return DrainOutcome::Done;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!("grace period over with {in_flight} requests in flight");
                return DrainOutcome::GraceOver { in_flight };
            }
            crossbeam_channel::select! {
                recv(interrupt) -> _ => {
                    if signalled.elapsed() >= DUPLICATE_SIGNAL {
                        return DrainOutcome::Interrupted;
                    }
                }
                default(TICK.min(deadline - now)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_open_minus_idle() {
        let counts = ClientCounts::default();
        let first = counts.open();
        let second = counts.open();
        let idle = counts.idle();
        assert_eq!(counts.busy(), 1);
        drop(idle);
        assert_eq!(counts.busy(), 2);
        drop(first);
        drop(second);
        assert_eq!(counts.busy(), 0);
    }

    #[test]
    fn stop_ends_waits_and_forgets_their_wakers() {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(async {
                let stop = std::rc::Rc::new(Stop::default());
                let done = stop.until(async { 7 }).await;
                assert_eq!(done, Some(7));
                assert_eq!(stop.waiters.borrow().len(), 0);

                let waiting = stop.clone();
                let task =
                    monoio::spawn(async move { waiting.until(std::future::pending::<()>()).await });
                monoio::time::sleep(Duration::from_millis(10)).await;
                assert_eq!(stop.waiters.borrow().len(), 1);
                stop.trigger();
                assert_eq!(task.await, None);
                assert_eq!(stop.waiters.borrow().len(), 0);
                assert_eq!(stop.until(async { 7 }).await, None);
            });
    }
}
