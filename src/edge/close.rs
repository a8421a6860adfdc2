//! The end of a public client connection: an error page, and a close that does not reset
//! the connection under the client's last response.
//!
//! Closing a socket with bytes in it that were never read makes the kernel answer with a
//! reset, and a reset makes the client's system throw away what it had not read yet, which
//! may be the end of the last response. So after its close goes out, the edge reads and
//! drops what the client still sends until the client closes too: for [`LINGER`] once the
//! client has acknowledged every byte written to it or has stopped taking any in, and for at
//! most [`LINGER_MAX`] in all.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::{AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf};

use super::error::{page, ProxyError};
use super::idle;
use super::proxy::ClientStream;
use super::worker::Worker;
use crate::http;
use crate::runtime::io::{read_more, write_all};

type ReadHalf<S> = OwnedReadHalf<S>;
type WriteHalf<S> = OwnedWriteHalf<S>;

/// How long an error page and the closing of a connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a closed connection goes on reading what its client still sends once the client
/// has all of the last response; also how long a client may take in nothing of it before
/// the edge stops waiting.
const LINGER: Duration = Duration::from_secs(2);

/// How long a closed connection reads what its client sends at most, while the client is
/// still taking in the last response.
const LINGER_MAX: Duration = Duration::from_secs(30);

/// Answers with the error's page and closes; `started` is when the request's head was
/// complete (or when reading it was given up).
pub(super) async fn write_error<S: ClientStream>(
    worker: &Worker,
    (rd, wr, buf): (&mut ReadHalf<S>, &mut WriteHalf<S>, BytesMut),
    err: &ProxyError,
    started: Instant,
) {
    let (status, title, detail) = page(err);
    tracing::debug!(status, "{detail}");
    let mut out = BytesMut::with_capacity(1024);
    http::pages::error_response(&mut out, status, title, &detail, true);
    let written = monoio::time::timeout(CLOSE_TIMEOUT, write_all(wr, out.freeze())).await;
    worker.metrics.response(status, started);
    if matches!(written, Ok(Ok(()))) {
        close(rd, wr, buf).await;
    }
}

/// Ends a client connection. A TLS close sends close_notify, which a client that stopped
/// reading never makes room for, so the attempt is bounded and the socket simply dropped
/// after it. Then what the client still sends is read into `buf` and dropped (see the module
/// documentation): an early 413 under a body still on its way, or the error page for a head
/// too large, reaches the client whole.
pub(super) async fn close<S: ClientStream>(
    rd: &mut ReadHalf<S>,
    wr: &mut WriteHalf<S>,
    buf: BytesMut,
) {
    if !matches!(
        monoio::time::timeout(CLOSE_TIMEOUT, wr.shutdown()).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let client = rd.0.clone();
    let drain = async {
        let mut buf = buf;
        loop {
            buf.clear();
            let (read, back) = read_more(rd, buf).await;
            buf = back;
            if !matches!(read, Ok(n) if n > 0) {
                return;
            }
        }
    };
    let mut drain = std::pin::pin!(drain);
    let until = Instant::now() + LINGER_MAX;
    let mut owed = usize::MAX;
    while monoio::time::timeout(LINGER, drain.as_mut()).await.is_err() {
        // SAFETY: as in `idle::readiness`; the look only asks the descriptor its queue.
        let socket = unsafe { &*client.get() }.socket();
        let left = idle::unacknowledged(socket);
        // Done once the client has it all, has taken nothing in for a while (it stopped
        // reading: waiting longer helps nobody), or the time is up.
        if left == 0 || left >= owed || Instant::now() >= until {
            return;
        }
        owed = left;
    }
}
