//! The part every load shares: worker threads with one runtime each, the connections spread
//! over them, the `-n` budget, the progress copies, and the merge at the end.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pacer::Pacer;
use super::report::{latency_histogram, Report};
use super::{LoadError, Progress, DEFAULT_DURATION, MAX_DURATION};
use crate::runtime;

/// How often workers copy their counts for the progress line, and how often it is shown.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// How often the calling thread looks whether the workers are done.
const JOIN_POLL: Duration = Duration::from_millis(20);

/// Pause after a failed connect before the next attempt, so a refusing target is not
/// hammered in a tight loop.
pub(super) const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// The shape of a run, whatever the protocol.
pub(super) struct Plan {
    pub connections: usize,
    pub workers: usize,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// How long a run with a request count and no duration may go without a completed
    /// request before it stops (see [`Stall`]).
    pub stall: Duration,
}

impl Plan {
    fn validate(&self) -> Result<(), LoadError> {
        if self.connections == 0 {
            return Err(LoadError::Invalid("at least one connection is needed"));
        }
        if self.workers == 0 {
            return Err(LoadError::Invalid("at least one worker is needed"));
        }
        if self.requests == Some(0) {
            return Err(LoadError::Invalid("the request count must be above 0"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(LoadError::Invalid("the duration must be above 0"));
        }
        if self.duration.is_some_and(|d| d > MAX_DURATION) {
            return Err(LoadError::Invalid("the duration must be at most a year"));
        }
        Ok(())
    }

    /// The run's duration: the one given, none when only a request count is, else the default.
    fn duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_DURATION),
        }
    }
}

/// The `-n` budget. Each request takes a ticket before it is sent and keeps it until a
/// response completes (a failed attempt is retried with the same ticket), so exactly the
/// budget completes. Workers claim tickets from the shared count in batches, a smaller batch
/// the less is left, so the atomic is touched once per batch, not per request.
pub(super) struct Tickets {
    shared: Option<Arc<AtomicU64>>,
    local: Cell<u64>,
    /// The shared remainder is divided by this to size a batch.
    divisor: u64,
}

/// Most tickets one claim takes.
const MAX_BATCH: u64 = 64;

impl Tickets {
    fn new(shared: Option<Arc<AtomicU64>>, workers: usize) -> Tickets {
        Tickets {
            shared,
            local: Cell::new(0),
            divisor: 8 * workers as u64,
        }
    }

    /// Takes one ticket; false once the budget is spent (always true without a budget).
    pub fn take(&self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let local = self.local.get();
        if local > 0 {
            self.local.set(local - 1);
            return true;
        }
        let mut left = shared.load(Ordering::Relaxed);
        loop {
            if left == 0 {
                return false;
            }
            let batch = (left / self.divisor).clamp(1, MAX_BATCH);
            match shared.compare_exchange_weak(
                left,
                left - batch,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.local.set(batch - 1);
                    return true;
                }
                Err(now) => left = now,
            }
        }
    }
}

/// The end of a run that has a request count but no duration: failed attempts do not spend
/// the budget, so against a target that never answers such a run would retry forever.
/// Instead it stops once no request has completed, on any worker, for `limit`.
///
/// Workers publish the time of their latest completion at most every `limit / 4`, not per
/// request, so the published time lags by up to that much; the run stops only once the
/// published time is `limit + limit / 4` old, so at least `limit` really passed without a
/// completion. Once one worker sees that, `stopped` ends the others too.
pub(super) struct Stall {
    limit: Duration,
    /// Microseconds from the run's start to the latest completion published.
    last: AtomicU64,
    stopped: AtomicBool,
}

impl Stall {
    fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            last: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Whether the run has gone too long without a completion, as of `now`.
    fn over(&self, start: Instant, now: Instant) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return true;
        }
        let since = Duration::from_micros(self.last.load(Ordering::Relaxed));
        let wait = self.limit.saturating_add(self.limit / 4);
        // A limit too large to add to an instant (a timeout of centuries) never passes.
        match start.checked_add(since.saturating_add(wait)) {
            Some(end) if now >= end => {}
            _ => return false,
        }
        if !self.stopped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no request completed in {}; stopping",
                humantime::format_duration(self.limit)
            );
        }
        true
    }

    /// How long to wait at most before looking again whether the run stalled.
    fn check_every(&self) -> Duration {
        (self.limit / 4).max(Duration::from_millis(1))
    }
}

/// What one worker's connections share: counters, histogram, budget and the run's end.
pub(super) struct Worker {
    pub stats: RefCell<Report>,
    pub tickets: Tickets,
    /// When the run started (the same instant on every worker).
    pub start: Instant,
    /// When the run ends, if it has a duration.
    pub deadline: Option<Instant>,
    /// Without a duration, what ends a run whose target stopped completing requests.
    stall: Option<Arc<Stall>>,
    /// When this worker last published a completion to `stall`.
    published: Cell<Instant>,
}

impl Worker {
    /// Whether the run is over: its duration ended, or it went too long without a completed
    /// request.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|end| now >= end)
            || self
                .stall
                .as_ref()
                .is_some_and(|stall| stall.over(self.start, now))
    }

    /// Notes a request completed at `now` (publishing it for the stall check at most every
    /// `limit / 4`).
    pub fn completed(&self, now: Instant) {
        let Some(stall) = &self.stall else {
            return;
        };
        if now.saturating_duration_since(self.published.get()) < stall.check_every() {
            return;
        }
        self.published.set(now);
        let micros = u64::try_from((now - self.start).as_micros()).unwrap_or(u64::MAX);
        stall.last.fetch_max(micros, Ordering::Relaxed);
    }

    /// Runs `work` to its end unless the run ends first (its duration, or a stall); `None`
    /// when the run ended first.
    pub async fn until_over<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut work = std::pin::pin!(work);
        loop {
            let next = self
                .stall
                .as_ref()
                .and_then(|s| Instant::now().checked_add(s.check_every()));
            let check = match (self.deadline, next) {
                (None, None) => return Some(work.await),
                (Some(end), Some(next)) => end.min(next),
                (Some(at), None) | (None, Some(at)) => at,
            };
            let check = monoio::time::Instant::from_std(check);
            match monoio::time::timeout_at(check, work.as_mut()).await {
                Ok(out) => return Some(out),
                Err(_) if self.expired(Instant::now()) => return None,
                Err(_) => {}
            }
        }
    }

    /// When to give up waiting on something started at `from`: after `timeout`, or at the
    /// run's end if that comes first. The flag says the run's end is the one that applies.
    pub fn wait_until(&self, from: Instant, timeout: Duration) -> (monoio::time::Instant, bool) {
        let limit = from + timeout;
        match self.deadline {
            Some(end) if end <= limit => (monoio::time::Instant::from_std(end), true),
            _ => (monoio::time::Instant::from_std(limit), false),
        }
    }

    /// Sleeps until `until`, or until the run ends; false when the run ended first.
    pub async fn sleep_until(&self, until: Instant) -> bool {
        let end = self.deadline.map_or(until, |end| end.min(until));
        monoio::time::sleep_until(monoio::time::Instant::from_std(end)).await;
        !self.expired(Instant::now())
    }

    /// Sleeps until an open-loop send time, on `pacer`'s high-resolution timer when there is
    /// one; false when the run ended first.
    pub async fn pace(&self, pacer: Option<&mut Pacer>, until: Instant) -> bool {
        match pacer {
            Some(pacer) if !self.expired(until) => {
                if pacer.sleep_until(until).await.is_err() {
                    return self.sleep_until(until).await;
                }
                !self.expired(Instant::now())
            }
            _ => self.sleep_until(until).await,
        }
    }
}

/// One worker's counts as the progress line last saw them.
struct Snapshot {
    report: Report,
}

/// Runs `connection(worker, index)` for every connection index, spread over the plan's
/// workers (connection `i` on worker `i % workers`), and merges their reports.
pub(super) fn drive<F, Fut>(
    plan: &Plan,
    progress: Option<&(dyn Fn(&Progress) + Sync)>,
    connection: F,
) -> Result<Report, LoadError>
where
    F: Fn(Rc<Worker>, usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    plan.validate()?;
    let workers = plan.workers.min(plan.connections);
    let shared = plan.requests.map(|n| Arc::new(AtomicU64::new(n)));
    let start = Instant::now();
    let duration = plan.duration();
    let deadline = duration.map(|d| start + d);
    let stall = duration.is_none().then(|| Arc::new(Stall::new(plan.stall)));
    let snapshots: Vec<Arc<Mutex<Snapshot>>> = (0..workers)
        .map(|_| {
            Arc::new(Mutex::new(Snapshot {
                report: Report::empty(),
            }))
        })
        .collect();

    let mut threads = Vec::with_capacity(workers);
    for (index, snapshot) in snapshots.iter().enumerate() {
        let connections: Vec<usize> = (index..plan.connections).step_by(workers).collect();
        let tickets = Tickets::new(shared.clone(), workers);
        let snapshot = progress.is_some().then(|| snapshot.clone());
        let connection = connection.clone();
        let stall = stall.clone();
        let thread = std::thread::Builder::new()
            .name(format!("load-{index}"))
            .spawn(move || {
                let worker = Rc::new(Worker {
                    stats: RefCell::new(Report::empty()),
                    tickets,
                    start,
                    deadline,
                    stall,
                    published: Cell::new(start),
                });
                runtime::block_on(run_worker(worker, connections, snapshot, connection))
            })
            .map_err(LoadError::Spawn)?;
        threads.push(thread);
    }

    if let Some(progress) = progress {
        watch(&threads, &snapshots, start, duration, progress);
    }
    let mut report = Report::empty();
    for thread in threads {
        match thread.join() {
            Ok(Ok(worker)) => report.merge(&worker),
            Ok(Err(err)) => return Err(LoadError::Spawn(err)),
            Err(_) => return Err(LoadError::WorkerPanicked),
        }
    }
    report.elapsed = start.elapsed();
    report.stalled = stall
        .filter(|stall| stall.stopped.load(Ordering::Relaxed))
        .map(|stall| stall.limit);
    Ok(report)
}

async fn run_worker<F, Fut>(
    worker: Rc<Worker>,
    connections: Vec<usize>,
    snapshot: Option<Arc<Mutex<Snapshot>>>,
    connection: F,
) -> Report
where
    F: Fn(Rc<Worker>, usize) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|index| monoio::spawn(connection(worker.clone(), index)))
        .collect();
    // The copier is dropped with the runtime once the connections are done.
    if let Some(snapshot) = snapshot {
        let worker = worker.clone();
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(PROGRESS_INTERVAL).await;
                let stats = worker.stats.borrow();
                if let Ok(mut copy) = snapshot.lock() {
                    copy.report.requests = stats.requests;
                    copy.report.errors.clone_from(&stats.errors);
                    let _ = copy.report.latency.set_to(&stats.latency);
                }
            }
        });
    }
    for task in tasks {
        task.await;
    }
    worker.stats.replace(Report::empty())
}

/// Calls `progress` about once a second until every worker thread has finished.
fn watch(
    threads: &[std::thread::JoinHandle<std::io::Result<Report>>],
    snapshots: &[Arc<Mutex<Snapshot>>],
    start: Instant,
    duration: Option<Duration>,
    progress: &(dyn Fn(&Progress) + Sync),
) {
    let mut merged = latency_histogram();
    let mut next = start + PROGRESS_INTERVAL + JOIN_POLL;
    while !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(JOIN_POLL);
        let now = Instant::now();
        if now < next {
            continue;
        }
        next = now + PROGRESS_INTERVAL;
        merged.reset();
        let mut requests = 0;
        let mut errors = 0;
        for snapshot in snapshots {
            if let Ok(copy) = snapshot.lock() {
                requests += copy.report.requests;
                errors += copy.report.errors.transport();
                let _ = merged.add(&copy.report.latency);
            }
        }
        let elapsed = now - start;
        progress(&Progress {
            requests,
            elapsed,
            p99: Duration::from_micros(merged.value_at_percentile(99.0)),
            left: duration.map(|d| d.saturating_sub(elapsed)),
            errors,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_hand_out_exactly_the_budget_across_workers() {
        let shared = Arc::new(AtomicU64::new(1000));
        let a = Tickets::new(Some(shared.clone()), 2);
        let b = Tickets::new(Some(shared.clone()), 2);
        let mut taken = 0;
        loop {
            let got_a = a.take();
            let got_b = b.take();
            taken += u64::from(got_a) + u64::from(got_b);
            if !got_a && !got_b {
                break;
            }
        }
        assert_eq!(taken, 1000);
        assert_eq!(shared.load(Ordering::Relaxed), 0);
        assert!(!a.take());
    }

    #[test]
    fn first_claim_takes_a_sixteenth_per_worker_pair() {
        let shared = Arc::new(AtomicU64::new(1000));
        let tickets = Tickets::new(Some(shared.clone()), 2);
        assert!(tickets.take());
        // 1000 / (8 * 2) = 62 claimed, one used.
        assert_eq!(shared.load(Ordering::Relaxed), 938);
        assert_eq!(tickets.local.get(), 61);
    }

    #[test]
    fn no_budget_never_runs_out() {
        let tickets = Tickets::new(None, 1);
        assert!((0..10_000).all(|_| tickets.take()));
    }

    #[test]
    fn plan_defaults_and_refusals() {
        let plan = |duration, requests| Plan {
            connections: 1,
            workers: 1,
            duration,
            requests,
            stall: Duration::from_secs(1),
        };
        assert_eq!(plan(None, None).duration(), Some(DEFAULT_DURATION));
        assert_eq!(plan(None, Some(5)).duration(), None);
        let two = Some(Duration::from_secs(2));
        assert_eq!(plan(two, Some(5)).duration(), two);
        assert!(matches!(
            plan(None, Some(0)).validate(),
            Err(LoadError::Invalid("the request count must be above 0"))
        ));
        assert!(matches!(
            plan(Some(Duration::ZERO), None).validate(),
            Err(LoadError::Invalid("the duration must be above 0"))
        ));
        assert!(plan(Some(MAX_DURATION), None).validate().is_ok());
        assert!(matches!(
            plan(Some(MAX_DURATION + Duration::from_secs(1)), None).validate(),
            Err(LoadError::Invalid("the duration must be at most a year"))
        ));
    }

    /// A plan of `requests` over two workers whose connections never complete one.
    fn stalled_run(connection_waits: bool) -> Report {
        let plan = Plan {
            connections: 4,
            workers: 2,
            duration: None,
            requests: Some(10),
            stall: Duration::from_millis(80),
        };
        drive(&plan, None, move |worker: Rc<Worker>, _| async move {
            if connection_waits {
                // Stuck on something that never ends, as a silent echo target leaves it.
                let never = std::future::pending::<()>();
                assert_eq!(worker.until_over(never).await, None);
                return;
            }
            // Failing and retrying, as against a refusing target.
            while worker.sleep_until(Instant::now() + RECONNECT_PAUSE).await {
                worker.stats.borrow_mut().errors.connect += 1;
            }
        })
        .unwrap()
    }

    #[test]
    fn a_request_count_run_stops_when_nothing_completes() {
        for waits in [false, true] {
            let report = stalled_run(waits);
            assert_eq!(report.requests, 0);
            assert_eq!(report.stalled, Some(Duration::from_millis(80)));
            assert_eq!(report.errors.connect > 0, !waits);
            // At least the limit passed, and the stop came soon after (generous bound).
            assert!(report.elapsed >= Duration::from_millis(80), "{report:?}");
            assert!(report.elapsed < Duration::from_secs(5), "{report:?}");
        }
    }

    #[test]
    fn completions_keep_a_request_count_run_going() {
        let plan = Plan {
            connections: 2,
            workers: 2,
            duration: None,
            requests: Some(120),
            stall: Duration::from_millis(200),
        };
        // Each request takes 10 ms, so the run lasts 600 ms, three times the stall limit.
        let report = drive(&plan, None, |worker: Rc<Worker>, _| async move {
            while worker.tickets.take() {
                monoio::time::sleep(Duration::from_millis(10)).await;
                worker.stats.borrow_mut().requests += 1;
                worker.completed(Instant::now());
            }
        })
        .unwrap();
        assert_eq!(report.requests, 120);
        assert_eq!(report.stalled, None);
    }
}
