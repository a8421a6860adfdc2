//! A request's body on its way up the tunnel, and the watch on its client meanwhile.
//!
//! [`upload_body`] moves the body into the stream. [`race`] runs it alongside the download
//! of the response and, once the request is all sent, watches the client until the response
//! head goes out: its readiness wait (`idle.rs`) first, then, when that fired on bytes past
//! the request, a look every [`HANG_UP_CHECK`] for a close or reset behind them
//! ([`poll_hang_up`]). [`until_hang_up`] does only the periodic look, for upgrade requests,
//! whose early bytes belong to the new protocol.
//!
//! A response may end before its request body has all arrived (an early 413 or 401). The
//! rest of the body is then read and dropped, up to [`DISCARD_LIMIT`] bytes within
//! [`DISCARD_TIME`], so that the connection can carry the client's next request, as nginx
//! does with a body it does not need; past either limit the connection is closed.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;

use super::idle::{self, Watch};
use super::proxy::ClientStream;
use super::response::{Done, Failure};
use crate::http::{BodyDecoder, BodyFraming};
use crate::metrics::Counter;
use crate::quic::SendStream;
use crate::runtime::io::body_chunk;

type ReadHalf<S> = monoio::io::OwnedReadHalf<S>;

/// How often a client that sent bytes past its request is checked for a close or reset
/// while its response head is awaited (the rare case readiness cannot announce it).
pub(super) const HANG_UP_CHECK: Duration = Duration::from_millis(250);

/// How many bytes of a request body are read and dropped after its response ended, to keep
/// the connection; a longer rest closes it.
pub(super) const DISCARD_LIMIT: u64 = 1024 * 1024;

/// How long the rest of a request body may take to arrive after its response ended, to
/// keep the connection.
pub(super) const DISCARD_TIME: Duration = Duration::from_secs(5);

/// What the upload of a request body and the download of its response tell each other.
pub(super) struct BodyFlags {
    /// Set once the response ended before the upload: the rest of the body is dropped.
    pub discard: Cell<bool>,
    /// Set while a client that asked for `100 Continue` may not send its body at all: no 100
    /// went to it and no body byte came from it. Its final response then closes the
    /// connection (RFC 9110 10.1.1), as what it sends next may be the body or, after a 417,
    /// the request again.
    pub may_skip: Cell<bool>,
}

/// What [`race`] watches of the client besides the upload.
pub(super) struct Watched<'a, 'p, S, F> {
    pub watch: &'a mut Watch<'p, S, F>,
    pub client: &'a idle::Shared<S>,
    /// Set once a response byte went out: from then on a write finds a gone client.
    pub head_sent: &'a Cell<bool>,
    /// Set once the response ended before the upload: the upload drops the rest of the body
    /// (see [`upload_body`]).
    pub discard: &'a Cell<bool>,
}

/// Runs the upload and the download together until the download ends. A malformed request
/// body found before any response byte went out ends it early, so the client gets a 400
/// instead of whatever the origin makes of a cut-off body; so does a client whose socket
/// fails (a reset) while it sends the body, which counts as gone (499), not as an error of
/// the origin.
///
/// When the response ends first on a connection that is to stay open, the upload goes on
/// dropping the rest of the body, for at most [`DISCARD_TIME`]: `Some(Upload::Done)` once it
/// all arrived, else `None` (the connection then closes).
///
/// The upload ends with whether the client's bytes were all used. If so, the client's
/// readiness wait is armed and polled alongside until the response head goes out; when it
/// fires and the client has gone (`Err(Upload::ClientGone)`), the race ends. When it fires
/// because the client sent more, it is left for the next request's idle wait and no longer
/// polled here, so the request still costs one readiness poll; a close or reset behind those
/// bytes is then looked for every [`HANG_UP_CHECK`] until the head goes out.
///
/// A plain struct rather than an async function: one of those keeps each future it is given
/// twice in its state (as the argument and where it is pinned), and this one is most of a
/// request's state.
pub(super) fn race<'a, 'p, U, D, S, F>(
    upload: U,
    download: D,
    watched: Watched<'a, 'p, S, F>,
) -> Race<'a, 'p, U, D, S, F> {
    Race {
        upload,
        download,
        check: None,
        uploaded: None,
        watching: false,
        discarding: false,
        watched,
    }
}

/// How a [`race`] ended: how the upload ended, if it did, and how the download did; `Err`
/// when the upload's end (a bad body, a stall, a client gone) ended it before the response.
pub(super) type Raced = Result<(Option<Upload>, Result<Done, Failure>), Upload>;

/// See [`race`].
pub(super) struct Race<'a, 'p, U, D, S, F> {
    upload: U,
    download: D,
    /// The periodic hang-up check, armed once the readiness wait fired on more bytes; while
    /// the rest of the body is dropped, the time that may take.
    check: Option<monoio::time::Sleep>,
    /// How the upload ended, once it did (it is not polled again).
    uploaded: Option<Upload>,
    /// Whether the readiness wait is armed and polled here.
    watching: bool,
    /// Whether the response ended first and the rest of the body is being dropped.
    discarding: bool,
    watched: Watched<'a, 'p, S, F>,
}

impl<U, D, S, F> Future for Race<'_, '_, U, D, S, F>
where
    U: Future<Output = (Upload, bool)>,
    D: Future<Output = Result<Done, Failure>>,
    S: ClientStream,
    F: Future<Output = std::io::Result<()>>,
{
    type Output = Raced;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `upload`, `download` and `check` are pinned in place: they are never
        // moved out of the pinned struct, only polled, set or dropped where they are. The
        // other fields are not structurally pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above; these three are pinned where they lie in the pinned struct.
        let (mut upload, mut download, mut check) = unsafe {
            (
                Pin::new_unchecked(&mut this.upload),
                Pin::new_unchecked(&mut this.download),
                Pin::new_unchecked(&mut this.check),
            )
        };
        let Watched {
            watch,
            client,
            head_sent,
            discard,
        } = &mut this.watched;
        if this.discarding {
            return poll_discard(upload, check, cx);
        }
        if this.uploaded.is_none() {
            if let Poll::Ready((up, quiet)) = upload.as_mut().poll(cx) {
                let fatal = matches!(
                    up,
                    Upload::BadBody(_) | Upload::Stalled | Upload::ClientGone
                );
                if fatal && !head_sent.get() {
                    return Poll::Ready(Err(up));
                }
                this.watching =
                    up == Upload::Done && quiet && !head_sent.get() && watch.arm(client);
                this.uploaded = Some(up);
            }
        }
        if let Poll::Ready(downloaded) = download.as_mut().poll(cx) {
            if this.uploaded.is_some() || !matches!(downloaded, Ok(Done::Complete(true))) {
                return Poll::Ready(Ok((this.uploaded.take(), downloaded)));
            }
            // The response ended first and the connection is to stay open: the rest of the
            // body is dropped, if it comes in time.
            this.discarding = true;
            discard.set(true);
            check.set(Some(monoio::time::sleep(DISCARD_TIME)));
            return poll_discard(upload, check, cx);
        }
        if this.watching && !head_sent.get() && watch.poll_fired(cx).is_ready() {
            this.watching = false;
            if watch.gone(client) {
                return Poll::Ready(Err(Upload::ClientGone));
            }
            check.set(Some(monoio::time::sleep(HANG_UP_CHECK)));
        }
        if poll_hang_up(check.as_mut(), cx, client, head_sent).is_ready() {
            return Poll::Ready(Err(Upload::ClientGone));
        }
        Poll::Pending
    }
}

/// The end of a race whose response ended first: `Some(Upload::Done)` once the rest of the
/// body was read and dropped, `None` when that failed or outlasted `deadline`.
fn poll_discard<U: Future<Output = (Upload, bool)>>(
    upload: Pin<&mut U>,
    deadline: Pin<&mut Option<monoio::time::Sleep>>,
    cx: &mut Context<'_>,
) -> Poll<Raced> {
    let ended = match upload.poll(cx) {
        Poll::Ready((Upload::Done, _)) => Some(Upload::Done),
        Poll::Ready(_) => None,
        Poll::Pending => match deadline.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Pending) => return Poll::Pending,
            _ => None,
        },
    };
    Poll::Ready(Ok((ended, Ok(Done::Complete(true)))))
}

/// Runs `download` to its end, looking every [`HANG_UP_CHECK`] until the response head went
/// out whether the client closed or reset its connection; `None` when it did.
pub(super) async fn until_hang_up<D: Future, S: ClientStream>(
    download: D,
    client: &idle::Shared<S>,
    head_sent: &Cell<bool>,
) -> Option<D::Output> {
    let mut download = std::pin::pin!(download);
    let mut check = std::pin::pin!(Some(monoio::time::sleep(HANG_UP_CHECK)));
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(downloaded) = download.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(downloaded));
        }
        poll_hang_up(check.as_mut(), cx, client, head_sent).map(|()| None)
    })
    .await
}

/// Polls the periodic hang-up check in `check` (armed when `Some`): ready once the client
/// closed or reset its connection. Reads nothing. Disarms itself once the head went out.
fn poll_hang_up<S: ClientStream>(
    mut check: std::pin::Pin<&mut Option<monoio::time::Sleep>>,
    cx: &mut std::task::Context<'_>,
    client: &idle::Shared<S>,
    head_sent: &Cell<bool>,
) -> std::task::Poll<()> {
    while let Some(sleep) = check.as_mut().as_pin_mut() {
        if head_sent.get() {
            check.set(None);
        } else if sleep.poll(cx).is_ready() {
            // SAFETY: as in `idle::readiness`; the check only polls the descriptor.
            if idle::hung_up(unsafe { &*client.get() }.socket()) {
                return std::task::Poll::Ready(());
            }
            check.set(Some(monoio::time::sleep(HANG_UP_CHECK)));
        } else {
            break;
        }
    }
    std::task::Poll::Pending
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Upload {
    Done,
    /// The tunnel side failed or the origin stopped reading, or (with the stream no longer
    /// taking the body) more than [`DISCARD_LIMIT`] bytes of it were left.
    Failed,
    /// The client's body framing was malformed.
    BadBody(String),
    /// The client sent no body bytes for the idle timeout.
    Stalled,
    /// The client hung up before the response head arrived (see [`race`]).
    ClientGone,
}

/// Stream reset code for a request body the client framed badly.
const RESET_BAD_BODY: u32 = 1;

/// Moves the client's request body into the stream. Once the stream no longer takes it (the
/// connector stopped it, having no use for the rest) or `flags.discard` is set (the
/// response ended), the rest is read and dropped, up to [`DISCARD_LIMIT`] bytes, so that the
/// client's next request can follow on the connection: `Done` then means the body was all
/// read.
pub(super) async fn upload_body<S: ClientStream>(
    rd: &mut ReadHalf<S>,
    buf: &mut BytesMut,
    framing: BodyFraming,
    send: &mut SendStream,
    idle: Duration,
    counted: &Counter,
    flags: &BodyFlags,
) -> Upload {
    let mut decoder = BodyDecoder::new(framing);
    // Bytes dropped so far, once the stream stopped taking them or the response ended.
    let mut dropped: Option<u64> = None;
    loop {
        let next = monoio::time::timeout(idle, body_chunk(rd, buf, &mut decoder)).await;
        let Ok(next) = next else {
            tracing::debug!("request body stalled for {idle:?}");
            send.reset(RESET_BAD_BODY);
            return Upload::Stalled;
        };
        match next {
            Ok(Some(chunk)) => {
                let len = chunk.len() as u64;
                flags.may_skip.set(false);
                if dropped.is_none() && !flags.discard.get() && send.write(chunk).await.is_ok() {
                    counted.add(len);
                    continue;
                }
                let total = dropped.get_or_insert(0);
                *total += len;
                if *total > DISCARD_LIMIT {
                    tracing::debug!("request body longer than its response needed");
                    return Upload::Failed;
                }
            }
            Ok(None) if dropped.is_some() || flags.discard.get() => return Upload::Done,
            Ok(None) if send.finish().is_ok() => return Upload::Done,
            Ok(None) => return Upload::Failed,
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                tracing::debug!("request body from client failed: {err}");
                send.reset(RESET_BAD_BODY);
                return Upload::BadBody(err.to_string());
            }
            Err(err) => {
                // A reset or a failed socket: the client is gone, not the origin at fault.
                tracing::debug!("client gone while sending its request body: {err}");
                return Upload::ClientGone;
            }
        }
    }
}
