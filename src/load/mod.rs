//! The load generator (`adit load`): HTTP/1.1 and raw TCP load against one target, closed or
//! open loop, with HdrHistogram latencies.
//!
//! Thread-per-core like the data plane: each worker thread runs one monoio runtime and owns
//! its share of the connections, its counters and its latency histogram, so nothing is shared
//! per request. The workers' reports are merged once at the end. Three things cross workers:
//! the request budget of `-n` (claimed in small batches, see [`worker::Tickets`]), the time of
//! the latest completion when a `-n` run has no duration (see [`worker::Stall`]) and, when a
//! progress line is wanted, a once-a-second copy of each worker's counts.
//!
//! Closed loop (the default): each connection sends its next request as soon as the previous
//! response ended, and latency runs from send to response end. Open loop (`rate`): each
//! connection follows a fixed schedule of intended send times, and latency runs from the
//! intended time, so a server that stalls is charged for every request the stall delayed
//! (coordinated omission corrected, as wrk2 does).
//!
//! - [`http`]: the request bytes, built once, and the connection loop that reads each
//!   response completely (length, chunked or close-delimited).
//! - [`tcp`]: round trips of small messages and bulk transfer against an echo server.
//! - [`schedule`]: the open-loop send times (pure).
//! - [`pacer`]: waking at those times with a high-resolution timer rather than the runtime's
//!   millisecond wheel.
//! - [`report`]: the merged result, its summary, JSON and `.hgrm` text.

mod http;
mod pacer;
pub mod report;
pub mod schedule;
mod tcp;
mod worker;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

pub use report::{Errors, Report};

/// An HTTP/1.1 load: one request, repeated over keep-alive connections.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    pub target: SocketAddr,
    /// Value of the Host header (a `Host` in `headers` replaces it).
    pub host: String,
    /// Request target in origin form, e.g. `/bytes/1024`.
    pub path: String,
    pub method: String,
    /// Extra header fields, sent in order after Host.
    pub headers: Vec<(String, String)>,
    /// Request body, sent with a Content-Length.
    pub body: Option<Bytes>,
    pub connections: usize,
    pub workers: usize,
    /// Stop after this long; with neither this nor `requests`, the run lasts 10 seconds.
    pub duration: Option<Duration>,
    /// Stop after exactly this many completed requests (all workers together). Without a
    /// duration, the run also stops once no request has completed for twice `timeout` (plus
    /// one request interval of `rate`), and the report's `stalled` says so.
    pub requests: Option<u64>,
    /// Open loop at this many requests per second in total; closed loop when `None`.
    pub rate: Option<f64>,
    /// A request with no complete response after this long counts as a timeout and its
    /// connection is reopened.
    pub timeout: Duration,
}

/// What a TCP load does on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpMode {
    /// Writes a message of `size` bytes and waits for all of it to come back before the next:
    /// one request is one round trip, its latency the time from write to the last byte back.
    RoundTrip { size: usize },
    /// Writes 64 KiB blocks back to back (draining and discarding whatever comes back, so an
    /// echo server does not stall): one request is one block written, its latency the time
    /// the write took. Measures how fast the target takes bytes in.
    Upload,
    /// Measures bytes coming back: against an echo server it writes blocks back to back and
    /// reads them back, one request per 64 KiB block read, its latency the time since the
    /// previous block arrived.
    Download,
}

/// A raw TCP load against an echo server.
#[derive(Debug, Clone)]
pub struct TcpLoad {
    pub target: SocketAddr,
    pub mode: TcpMode,
    pub connections: usize,
    pub workers: usize,
    /// Stop after this long; with neither this nor `requests`, the run lasts 10 seconds.
    pub duration: Option<Duration>,
    /// Stop after this many completed requests (round trips or blocks). Without a duration,
    /// the run also stops once no request has completed for 20 seconds, and the report's
    /// `stalled` says so.
    pub requests: Option<u64>,
}

/// A run in progress, as the progress callback sees it about once a second.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Requests completed so far.
    pub requests: u64,
    /// Time since the run started.
    pub elapsed: Duration,
    /// 99th percentile latency of the requests so far.
    pub p99: Duration,
    /// Time until the duration ends, when one was set.
    pub left: Option<Duration>,
    /// Failed connects, timeouts, reads and writes so far.
    pub errors: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("invalid load: {0}")]
    Invalid(&'static str),
    #[error("cannot start worker: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("a load worker panicked")]
    WorkerPanicked,
}

/// The run length when neither a duration nor a request count is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// The longest duration or timeout a run accepts (a year): beyond it, the run's instants
/// would not fit the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Runs an HTTP load to its end and returns the merged report. `progress`, when given, is
/// called from the calling thread about once a second.
pub fn run_http(
    load: &HttpLoad,
    progress: Option<&(dyn Fn(&Progress) + Sync)>,
) -> Result<Report, LoadError> {
    http::run(load, progress)
}

/// Runs a TCP load to its end and returns the merged report.
pub fn run_tcp(load: &TcpLoad) -> Result<Report, LoadError> {
    tcp::run(load, None)
}

/// [`run_tcp`] with a progress callback, as [`run_http`] takes.
pub fn run_tcp_with_progress(
    load: &TcpLoad,
    progress: Option<&(dyn Fn(&Progress) + Sync)>,
) -> Result<Report, LoadError> {
    tcp::run(load, progress)
}
