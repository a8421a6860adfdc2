//! Raw TCP load against an echo server: round trips of small messages, or bulk blocks in
//! one direction (see [`TcpMode`] for what each mode counts). A connection that fails is
//! reopened and the request it was on is tried again.
//!
//! There is no per-request timeout here: a target that stops echoing stalls its connections
//! until the run's duration ends; a `-n` run without a duration stops once no request has
//! completed for [`STALL_LIMIT`].
//! In download mode, blocks written but not yet read back when a connection fails are lost,
//! so `-n` is exact only while no connection fails.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncWriteRent, Splitable};
use monoio::net::TcpStream;

use super::worker::{drive, Plan, Worker, RECONNECT_PAUSE};
use super::{LoadError, Progress, Report, TcpLoad, TcpMode};
use crate::runtime::io::{read_more, write_all, READ_CHUNK};

/// Size of each block of the bulk modes.
pub const BLOCK: usize = 64 * 1024;

/// Largest round-trip message accepted.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// How long a connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a `-n` run without a duration goes on with no completed request: a connect that
/// takes up to its timeout, then as long again for a round trip or a block.
const STALL_LIMIT: Duration = CONNECT_TIMEOUT.saturating_mul(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Read,
    Write,
}

pub(super) fn run(
    load: &TcpLoad,
    progress: Option<&(dyn Fn(&Progress) + Sync)>,
) -> Result<Report, LoadError> {
    let size = match load.mode {
        TcpMode::RoundTrip { size } if size == 0 || size > MAX_MESSAGE => {
            return Err(LoadError::Invalid(
                "the message size must be 1 byte to 16 MiB",
            ));
        }
        TcpMode::RoundTrip { size } => size,
        TcpMode::Upload | TcpMode::Download => BLOCK,
    };
    let message = Bytes::from(
        (0..size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let plan = Plan {
        connections: load.connections,
        workers: load.workers,
        duration: load.duration,
        requests: load.requests,
        stall: STALL_LIMIT,
    };
    let (target, mode) = (load.target, load.mode);
    drive(&plan, progress, move |worker, _| {
        connection(worker, target, mode, message.clone())
    })
}

/// Runs the mode on one connection, reopening it after failures, until the budget is spent
/// or the run ends.
async fn connection(worker: Rc<Worker>, target: SocketAddr, mode: TcpMode, message: Bytes) {
    // Whether this connection holds a ticket for a request not yet completed.
    let mut holding = false;
    loop {
        let (until, _) = worker.wait_until(Instant::now(), CONNECT_TIMEOUT);
        let stream = match monoio::time::timeout_at(until, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            _ if worker.expired(Instant::now()) => return,
            failed => {
                if let Ok(Err(err)) = failed {
                    tracing::debug!("load connect to {target}: {err}");
                }
                worker.stats.borrow_mut().errors.connect += 1;
                if !worker.sleep_until(Instant::now() + RECONNECT_PAUSE).await {
                    return;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);

        let work = async {
            match mode {
                TcpMode::RoundTrip { .. } => {
                    round_trips(&worker, stream, &message, &mut holding).await
                }
                TcpMode::Upload => upload(&worker, stream, &message, &mut holding).await,
                TcpMode::Download => download(&worker, stream, &message).await,
            }
        };
        let Some(result) = worker.until_over(work).await else {
            return;
        };
        match result {
            Ok(()) => return,
            Err(failure) => {
                let mut stats = worker.stats.borrow_mut();
                match failure {
                    Failure::Read => stats.errors.read += 1,
                    Failure::Write => stats.errors.write += 1,
                }
            }
        }
    }
}

/// Takes a ticket unless one is already held; false when the budget is spent.
fn ticket(worker: &Worker, holding: &mut bool) -> bool {
    if !*holding {
        *holding = worker.tickets.take();
    }
    *holding
}

fn record(worker: &Worker, since: Instant) {
    let now = Instant::now();
    let micros = u64::try_from((now - since).as_micros()).unwrap_or(u64::MAX);
    let mut stats = worker.stats.borrow_mut();
    stats.latency.saturating_record(micros);
    stats.requests += 1;
    worker.completed(now);
}

async fn round_trips(
    worker: &Worker,
    mut stream: TcpStream,
    message: &Bytes,
    holding: &mut bool,
) -> Result<(), Failure> {
    let mut buf = BytesMut::with_capacity(message.len().clamp(4096, READ_CHUNK));
    while ticket(worker, holding) {
        let sent = Instant::now();
        write_all(&mut stream, message.clone())
            .await
            .map_err(|_| Failure::Write)?;
        worker.stats.borrow_mut().bytes_written += message.len() as u64;

        let mut got = 0;
        while got < message.len() {
            buf.clear();
            let (result, filled) = read_more(&mut stream, buf).await;
            buf = filled;
            match result {
                Ok(0) | Err(_) => return Err(Failure::Read),
                Ok(n) => got += n,
            }
            worker.stats.borrow_mut().bytes_read += buf.len() as u64;
        }
        // An echo never sends more than it was sent; anything else is not an echo server.
        if got != message.len() {
            return Err(Failure::Read);
        }
        record(worker, sent);
        *holding = false;
    }
    Ok(())
}

async fn upload(
    worker: &Worker,
    stream: TcpStream,
    block: &Bytes,
    holding: &mut bool,
) -> Result<(), Failure> {
    let (mut reader, mut writer) = stream.into_split();
    let write = async {
        while ticket(worker, holding) {
            let sent = Instant::now();
            write_all(&mut writer, block.clone())
                .await
                .map_err(|_| Failure::Write)?;
            worker.stats.borrow_mut().bytes_written += block.len() as u64;
            record(worker, sent);
            *holding = false;
        }
        writer.shutdown().await.map_err(|_| Failure::Write)
    };
    // What an echo server sends back is read and dropped, so it never stops reading.
    let drain = async {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            buf.clear();
            let (result, filled) = read_more(&mut reader, buf).await;
            buf = filled;
            match result {
                Ok(0) => return Ok(()),
                Ok(n) => worker.stats.borrow_mut().bytes_read += n as u64,
                Err(_) => return Err(Failure::Read),
            }
        }
    };
    both(write, drain).await
}

async fn download(worker: &Worker, stream: TcpStream, block: &Bytes) -> Result<(), Failure> {
    let (mut reader, mut writer) = stream.into_split();
    let feed = async {
        while worker.tickets.take() {
            write_all(&mut writer, block.clone())
                .await
                .map_err(|_| Failure::Write)?;
            worker.stats.borrow_mut().bytes_written += block.len() as u64;
        }
        writer.shutdown().await.map_err(|_| Failure::Write)
    };
    let receive = async {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut last = Instant::now();
        let mut partial = 0;
        loop {
            buf.clear();
            let (result, filled) = read_more(&mut reader, buf).await;
            buf = filled;
            let n = match result {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(_) => return Err(Failure::Read),
            };
            worker.stats.borrow_mut().bytes_read += n as u64;
            partial += n;
            while partial >= BLOCK {
                partial -= BLOCK;
                record(worker, last);
                last = Instant::now();
            }
        }
    };
    both(feed, receive).await
}

/// Runs both futures to completion, or stops at the first error of either.
async fn both<A, B>(a: A, b: B) -> Result<(), Failure>
where
    A: Future<Output = Result<(), Failure>>,
    B: Future<Output = Result<(), Failure>>,
{
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut a_done, mut b_done) = (false, false);
    std::future::poll_fn(|cx| {
        if !a_done {
            if let Poll::Ready(result) = a.as_mut().poll(cx) {
                result?;
                a_done = true;
            }
        }
        if !b_done {
            if let Poll::Ready(result) = b.as_mut().poll(cx) {
                result?;
                b_done = true;
            }
        }
        match a_done && b_done {
            true => Poll::Ready(Ok(())),
            false => Poll::Pending,
        }
    })
    .await
}
