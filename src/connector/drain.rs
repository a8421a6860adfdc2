//! Graceful shutdown: unregister every connection, let the streams in flight finish, then
//! close.
//!
//! On the first signal the main thread asks every worker to drain. A worker stops its links
//! from reconnecting, sends the Unregister frame on each registered connection's control
//! stream (and finishes that stream), and reports how many connections it unregistered and
//! how many streams it is serving. The edge stops opening streams on an unregistered
//! connection, but one it opened just before reading the Unregister frame may still arrive,
//! so the worker keeps accepting and serving streams and waits until
//!
//! - no stream is in flight,
//! - everything it sent has been acknowledged (a close would otherwise drop the tail of the
//!   last response), and
//! - [`SETTLE`] has passed since it unregistered,
//!
//! or until the grace period ends. Then it reports what is left and the main thread closes
//! every connection. The counts are plain `Cell`s of each worker, read only here, by a timer
//! that ticks every [`TICK`] while draining: nothing is added to the path of a request.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::serve::Local;
use super::{Connector, WorkerCmd, CLOSE_SHUTDOWN};
use crate::quic::{Connection, SendStream};
use crate::tunnel::frame;

/// Least time between unregistering and closing, for the streams the edge opened before it
/// read the Unregister frame (one round trip on a healthy path; a second leaves room for a
/// loaded edge).
pub const SETTLE: Duration = Duration::from_secs(1);

/// How often a draining worker looks at its counts.
const TICK: Duration = Duration::from_millis(20);

/// How long the main thread waits for the workers' answers beyond the grace period.
const REPORT_MARGIN: Duration = Duration::from_secs(2);

/// A registered connection of this worker, with its control stream's send half until the
/// connection is unregistered.
pub struct LinkEntry {
    pub index: u8,
    pub conn: Connection,
    pub control: Option<SendStream>,
}

/// Adds a registered connection of this worker; it counts as registered (and ready, for
/// `/ready`) until it is unregistered or gone.
pub fn add_link(local: &Local, entry: LinkEntry) {
    if entry.control.is_some() {
        local.metrics.registered_connections.inc();
    }
    local.links.borrow_mut().push(entry);
}

/// Forgets connection `index` once it is gone, uncounting it unless the drain already did.
pub fn remove_link(local: &Local, index: u8) {
    local.links.borrow_mut().retain(|link| {
        if link.index != index {
            return true;
        }
        if link.control.is_some() {
            local.metrics.registered_connections.dec();
        }
        false
    });
}

/// Counts one stream as in flight for as long as it lives.
pub struct InFlight<'a>(&'a Cell<usize>);

impl<'a> InFlight<'a> {
    pub fn enter(count: &'a Cell<usize>) -> InFlight<'a> {
        count.set(count.get() + 1);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// What a worker tells the main thread while draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainReport {
    Unregistered {
        connections: usize,
        in_flight: usize,
    },
    /// The worker is done waiting; `in_flight` streams were still being served.
    Drained { in_flight: usize },
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

/// One worker's drain, up to `deadline`. Returns `true` when the main thread said stop (a
/// second signal) before the drain was over.
pub async fn drain(
    local: &Local,
    deadline: Instant,
    reports: &crossbeam_channel::Sender<DrainReport>,
    inbox: &mut futures_channel::mpsc::UnboundedReceiver<WorkerCmd>,
) -> bool {
    local.stopping.set(true);
    let connections = unregister_all(local).await;
    // With nothing registered the edge has no stream on its way here: no need to settle.
    let mut settled = Instant::now()
        + if connections > 0 {
            SETTLE
        } else {
            Duration::ZERO
        };
    let _ = reports.send(DrainReport::Unregistered {
        connections,
        in_flight: local.in_flight.get(),
    });

    loop {
        // A link that was registering when the drain began shows up here.
        if unregister_all(local).await > 0 {
            settled = Instant::now() + SETTLE;
        }
        if told_to_stop(inbox) {
            return true;
        }
        let now = Instant::now();
        if now >= settled && is_idle(local) {
            let _ = reports.send(DrainReport::Drained { in_flight: 0 });
            return false;
        }
        if now >= deadline {
            let in_flight = local.in_flight.get();
            let _ = reports.send(DrainReport::Drained { in_flight });
            return false;
        }
        monoio::time::sleep(TICK.min(deadline - now)).await;
    }
}

/// Whether a Stop came (or the connector is gone); looked at on each tick of a drain.
fn told_to_stop(inbox: &mut futures_channel::mpsc::UnboundedReceiver<WorkerCmd>) -> bool {
    use futures_channel::mpsc::TryRecvError;
    matches!(
        inbox.try_recv(),
        Ok(WorkerCmd::Stop) | Err(TryRecvError::Closed)
    )
}

/// Sends Unregister on every connection not yet told, and finishes its control stream.
/// Returns how many were told.
async fn unregister_all(local: &Local) -> usize {
    let controls: Vec<(u8, SendStream)> = local
        .links
        .borrow_mut()
        .iter_mut()
        .filter_map(|link| Some((link.index, link.control.take()?)))
        .collect();
    // An unregistered connection is not ready any more, whether or not the frame gets out.
    for _ in &controls {
        local.metrics.registered_connections.dec();
    }
    let mut told = 0;
    for (index, control) in controls {
        match unregister(control).await {
            Ok(()) => {
                tracing::info!(index, "connection unregistered");
                told += 1;
            }
            Err(err) => tracing::debug!(index, "cannot unregister: {err}"),
        }
    }
    told
}

/// Tells the edge on a connection's control stream to send nothing new there, and ends
/// the stream.
pub async fn unregister(mut control: SendStream) -> Result<(), crate::quic::StreamError> {
    let mut out = BytesMut::with_capacity(8);
    frame::encode_unregister(&mut out);
    control.write(out.freeze()).await?;
    let _ = control.finish();
    Ok(())
}

fn is_idle(local: &Local) -> bool {
    local.in_flight.get() == 0
        && local
            .links
            .borrow()
            .iter()
            .all(|link| link.conn.is_closed() || link.conn.unacked_streams() == 0)
}

impl Connector {
    /// Drains every worker (see the module documentation) for up to `grace`, logging the
    /// steps; a signal on `interrupt` ends the wait at once. The connections stay open
    /// until [`Connector::shutdown`].
    pub fn drain(
        &self,
        grace: Duration,
        interrupt: &crossbeam_channel::Receiver<i32>,
    ) -> DrainOutcome {
        let deadline = Instant::now() + grace;
        for command in &self.commands {
            let _ = command.unbounded_send(super::WorkerCmd::Drain { deadline });
        }
        let workers = self.commands.len();
        let report_deadline = deadline.max(Instant::now() + SETTLE) + REPORT_MARGIN;

        let (mut connections, mut in_flight, mut unregistered) = (0, 0, 0);
        let mut drained = 0;
        let mut left = 0;
        while drained < workers {
            let report = crossbeam_channel::select! {
                recv(self.drain_reports) -> report => report,
                recv(interrupt) -> _ => return DrainOutcome::Interrupted,
                default(report_deadline.saturating_duration_since(Instant::now())) => break,
            };
            match report {
                Ok(DrainReport::Unregistered {
                    connections: c,
                    in_flight: n,
                }) => {
                    (connections, in_flight) = (connections + c, in_flight + n);
                    unregistered += 1;
                    if unregistered == workers {
                        tracing::info!(
                            "unregistered {connections} connections; waiting up to {} for \
                             {in_flight} requests in flight",
                            humantime::format_duration(grace)
                        );
                    }
                }
                Ok(DrainReport::Drained { in_flight: n }) => {
                    drained += 1;
                    left += n;
                }
                Err(_) => break,
            }
        }
        // A worker that never answered (its thread is gone) counts as drained: nothing it
        // held can be waited for.
        if left == 0 {
            tracing::info!("all requests done");
            DrainOutcome::Done
        } else {
            tracing::warn!("grace period over with {left} requests in flight");
            DrainOutcome::GraceOver { in_flight: left }
        }
    }
}

impl Connector {
    /// Closes every connection at once (a second signal) and waits at most `bound` for the
    /// workers to send their CONNECTION_CLOSE frames, so the edge answers the requests in
    /// flight now instead of after its idle timeout. Workers still busy then are left to
    /// the process exit.
    pub fn abort(self, bound: Duration) {
        for command in &self.commands {
            let _ = command.unbounded_send(WorkerCmd::Stop);
        }
        let until = Instant::now() + bound;
        while Instant::now() < until && !self.threads.iter().all(|t| t.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::debug!(code = CLOSE_SHUTDOWN, "connections closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_each_live_guard() {
        let count = Cell::new(0);
        let first = InFlight::enter(&count);
        let second = InFlight::enter(&count);
        assert_eq!(count.get(), 2);
        drop(first);
        assert_eq!(count.get(), 1);
        drop(second);
        assert_eq!(count.get(), 0);
    }

    #[test]
    fn a_stop_or_a_gone_connector_ends_a_drain() {
        let (tx, mut rx) = futures_channel::mpsc::unbounded();
        assert!(!told_to_stop(&mut rx));
        let deadline = Instant::now();
        tx.unbounded_send(WorkerCmd::Drain { deadline }).unwrap();
        assert!(!told_to_stop(&mut rx));
        tx.unbounded_send(WorkerCmd::Stop).unwrap();
        assert!(told_to_stop(&mut rx));
        assert!(!told_to_stop(&mut rx));
        drop(tx);
        assert!(told_to_stop(&mut rx));
    }
}
