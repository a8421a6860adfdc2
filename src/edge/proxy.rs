//! The public HTTP side of the edge: one client connection, one tunnel stream per request.
//!
//! For each request the head is parsed where it was read, the route is looked up in this
//! worker's snapshot, and the request frame is encoded straight from the parsed head. The
//! request body (decoded from the client's framing) and the response body (re-framed for
//! the client, in [`super::response`]) then flow at the same time, so an origin that answers
//! while it still reads (an echo, an early 413) never deadlocks against flow control. A
//! WebSocket upgrade that the origin accepts turns the connection into raw bytes both ways.
//!
//! A tunnel connection that dies under its requests (a connector killed without closing)
//! fails them once the QUIC idle timeout notices. A request harmless to repeat (an
//! idempotent method, no body, no upgrade) that had not received a response byte yet is
//! then sent again on another connection of the tunnel on this worker; any other gets a 502.
//!
//! Limits: a client has [`ClientLimits::idle_timeout`] to start a request and, once its
//! first byte arrived, [`ClientLimits::header_timeout`] to complete the head (else 408).
//!
//! A client that hangs up (FIN, RST, socket error) after its request went out whole and
//! before the response head arrived is noticed by the readiness wait the connection arms for
//! its next request (`edge/idle.rs`), polled alongside the download: the stream is stopped
//! and reset, so the connector gives up the origin request, and the request counts as a 499
//! as nginx logs it. Bytes that arrive instead (a pipelined request, or over TLS any record)
//! are left for the next request; the socket's readiness then says nothing more, so until
//! the head arrives the proxy looks every 250 ms (`upload.rs`) whether the client closed or
//! reset the connection behind them. Over TLS only a close or reset of the socket is noticed
//! (see `idle::hung_up`): a close_notify alone looks like a pipelined request. An
//! upgrade request awaiting its 101 gets only the periodic check, since any early bytes
//! belong to the new protocol.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use std::cell::Cell;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Split, Splitable};
use monoio::net::TcpStream;
use uuid::Uuid;

use super::close::{close, write_error};
use super::error::ProxyError;
use super::idle::{self, Watch};
use super::response::{self, Done, Exchange, Failure};
use super::upload::{race, until_hang_up, upload_body, BodyFlags, Upload, Watched};
use super::worker::{TunnelConn, Worker, WorkerMsg};
use crate::http::{self, BodyFraming, HeadError, RequestHead, Version};
use crate::quic::{RecvStream, SendStream, StreamError};
use crate::runtime::io::recv_ready;
use crate::runtime::recycle;
use crate::tunnel::frame::{self, BodyLen, RequestLine, StreamKind};
use crate::tunnel::splice::splice;

/// Timeouts for public client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// How long a connection may wait for the first byte of a request.
    pub idle_timeout: Duration,
    /// How long a request head may take to arrive once its first byte has.
    pub header_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// How many tunnel connections a request tries before giving up on opening a stream.
const OPEN_ATTEMPTS: usize = 3;

/// How long opening a stream may wait for the connector's stream limit.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

type ReadHalf<S> = OwnedReadHalf<S>;
type WriteHalf<S> = OwnedWriteHalf<S>;

/// A public client connection the proxy can serve: plain TCP, or TLS over it.
pub trait ClientStream: AsyncReadRent + AsyncWriteRent + Split + Sized + 'static {
    /// `http` or `https`: what the client spoke, for `X-Forwarded-Proto`.
    const SCHEME: &'static str;

    /// The connection in a form another worker can adopt, or `self` back when it cannot move.
    fn into_handoff(self) -> Result<HandoffStream, Self>;

    /// The socket under the connection, whose readiness says that the client sent something
    /// or hung up (`edge/idle.rs`).
    fn socket(&self) -> &TcpStream;

    /// Whether every byte received was taken out of the connection, so that only the
    /// socket's readiness can announce more. TLS may hold decrypted bytes.
    fn drained(&self) -> bool {
        true
    }

    /// Once the socket turned readable before a request: reads what it holds into `buf`
    /// without the ring ([`recv_ready`]), or `None` when that cannot be done here
    /// (TLS bytes go through the session) and a normal read must follow.
    fn read_ready(&self, _buf: &mut BytesMut) -> Option<std::io::Result<usize>> {
        None
    }
}

/// A client connection on its way to another worker.
pub enum HandoffStream {
    Plain(std::net::TcpStream),
    /// A TLS connection with its session state ([`super::tls::TlsHandoff`]).
    Tls(Box<super::tls::TlsHandoff>),
}

impl ClientStream for TcpStream {
    const SCHEME: &'static str = "http";

    fn into_handoff(self) -> Result<HandoffStream, Self> {
        let fd = self.into_raw_fd();
        // SAFETY: `into_raw_fd` released the descriptor from the monoio stream, so this is its
        // only owner.
        let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        Ok(HandoffStream::Plain(stream))
    }

    fn socket(&self) -> &TcpStream {
        self
    }

    fn read_ready(&self, buf: &mut BytesMut) -> Option<std::io::Result<usize>> {
        recv_ready(self, buf)
    }
}

/// What the proxy keeps of a request once its head is encoded.
struct Request {
    tunnel: Uuid,
    conn: Rc<TunnelConn>,
    head_len: usize,
    framing: BodyFraming,
    version: Version,
    keep_alive: bool,
    is_head: bool,
    upgrade: bool,
    /// The request has a body and asked for `100 Continue` before sending it.
    expects_continue: bool,
    /// Sending the request twice is harmless ([`may_resend`]).
    resendable: bool,
    /// When the head was complete: request latency counts from here.
    started: Instant,
}

/// The buffers a client connection keeps from one request to the next.
struct ClientBufs {
    /// Bytes read from the client and not yet used.
    read: BytesMut,
    /// The response head being written; written whole and handed back by the socket, so it
    /// keeps its allocation.
    head: BytesMut,
}

enum Prepared {
    Ready(Request),
    /// Another worker owns a connection of the tunnel: move the client there.
    Handoff(usize),
    Refused(ProxyError),
}

/// Serves one public client connection until it closes, fails or idles out.
pub async fn serve_client<S: ClientStream>(
    worker: Rc<Worker>,
    stream: S,
    peer: SocketAddr,
    buf: BytesMut,
) {
    let _open = worker.clients.open();
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = buf;
    let client_addr = peer.ip().to_string();
    // Taken from the worker's spares when a request arrives, given back while idle.
    let mut frame = BytesMut::new();
    let mut head = BytesMut::with_capacity(512);

    // A handed-off connection is not handed on again until it has been served here once,
    // so a stale snapshot cannot bounce it between workers.
    let mut may_handoff = buf.is_empty();
    // The readiness wait of the client, kept from one request to the next (`edge/idle.rs`).
    let wait = std::pin::pin!(None);
    let mut watch = Watch::new(wait, idle::readiness::<S>);

    loop {
        let next = next_request(
            &worker,
            &mut rd,
            &mut buf,
            &client_addr,
            &mut frame,
            may_handoff,
            &mut watch,
        );
        let request = match next.await {
            Some(Prepared::Ready(request)) => request,
            Some(Prepared::Refused(err)) => {
                let client = (&mut rd, &mut wr, buf);
                return write_error(&worker, client, &err, Instant::now()).await;
            }
            Some(Prepared::Handoff(target)) => {
                watch.disarm();
                return handoff(&worker, target, rd, wr, peer, buf);
            }
            None => return,
        };
        buf.advance(request.head_len);

        let frame = frame.split().freeze();
        let mut bufs = ClientBufs {
            read: std::mem::take(&mut buf),
            head: std::mem::take(&mut head),
        };
        // Boxed: a request's state is most of the connection's future, and an idle
        // connection should not carry its room. The box's memory is recycled, so this
        // allocates nothing in the steady state.
        let exchange = recycle::boxed(proxy_one(
            &worker, &request, &mut rd, &mut wr, &mut bufs, frame, &mut watch,
        ));
        let outcome = exchange.await;
        (buf, head) = (bufs.read, bufs.head);
        match outcome {
            // The edge is stopping: the response said `Connection: close`.
            Outcome::KeepAlive if worker.stop.is_set() => {
                return close(&mut rd, &mut wr, buf).await
            }
            Outcome::KeepAlive => may_handoff = true,
            Outcome::Close => return close(&mut rd, &mut wr, buf).await,
            Outcome::Failed(err) => {
                let client = (&mut rd, &mut wr, buf);
                return write_error(&worker, client, &err, request.started).await;
            }
            // Counted as nginx logs it; dropping the halves closes the socket.
            Outcome::ClientGone => {
                tracing::debug!(%peer, "client closed the connection before the response");
                worker
                    .metrics
                    .response(CLIENT_CLOSED_REQUEST, request.started);
                return;
            }
        }
    }
}

/// Reads until a whole request head is buffered and prepares it. `None` when the client
/// closed, the socket failed, the connection idled out between requests, or the edge is
/// stopping and no request had begun.
async fn next_request<S: ClientStream>(
    worker: &Worker,
    rd: &mut ReadHalf<S>,
    buf: &mut BytesMut,
    client_addr: &str,
    frame: &mut BytesMut,
    may_handoff: bool,
    watch: &mut Watch<'_, S, impl Future<Output = std::io::Result<()>>>,
) -> Option<Prepared> {
    let limits = worker.limits;
    let mut started = (!buf.is_empty()).then(Instant::now);
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
            match http::parse_request(buf, &mut headers) {
                Ok(Some(head)) => {
                    if frame.capacity() == 0 {
                        *frame = worker.frame_buffers.take();
                    }
                    let scheme = S::SCHEME;
                    return Some(prepare(
                        worker,
                        scheme,
                        &head,
                        client_addr,
                        frame,
                        may_handoff,
                    ));
                }
                Ok(None) => {}
                Err(HeadError::HigherMinorVersion { minor }) => {
                    http::head::serve_as_http11(buf, minor);
                    continue;
                }
                Err(err) => return Some(Prepared::Refused(ProxyError::Client(err))),
            }
        }
        let limit = match started {
            None => limits.idle_timeout,
            Some(at) => limits.header_timeout.saturating_sub(at.elapsed()),
        };
        let idle = started.is_none() && buf.is_empty();
        if idle {
            worker.frame_buffers.put(std::mem::take(frame));
        }
        let spares = &worker.read_buffers;
        let read = idle::read_request(spares, rd, std::mem::take(buf), idle, watch);
        let read = monoio::time::timeout(limit, read);
        let read = if started.is_none() {
            // Waiting between requests: a stopping edge closes the connection at once.
            let _idle = worker.clients.idle();
            worker.stop.until(read).await?
        } else {
            read.await
        };
        let Ok((result, filled)) = read else {
            // A request that started but did not finish in time is told so; an idle
            // connection is just closed.
            return started.map(|_| Prepared::Refused(ProxyError::HeaderTimeout));
        };
        *buf = filled;
        match result {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                started.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Routes a parsed head and encodes its request frame into `frame`.
fn prepare(
    worker: &Worker,
    scheme: &str,
    head: &RequestHead<'_, '_>,
    client_addr: &str,
    frame: &mut BytesMut,
    may_handoff: bool,
) -> Prepared {
    let framing = match http::head::request_framing_for(head.version, head.headers) {
        Ok(framing) => framing,
        Err(err) => return Prepared::Refused(ProxyError::Client(err)),
    };
    let (host, path) = match split_target(head) {
        Ok((Some(host), path)) => (host, path),
        Ok((None, _)) => return Prepared::Refused(ProxyError::MissingHost),
        Err(err) => return Prepared::Refused(ProxyError::Client(err)),
    };

    let snapshot = worker.snapshot_ref();
    let Some(tunnel) = snapshot.tunnel_for_host(host) else {
        return Prepared::Refused(ProxyError::UnknownHost(host.to_owned()));
    };
    // Read once: the picker compares it with when connections last heard from their peers.
    let started = Instant::now();
    let Some(conn) = worker.pick(tunnel, None, started) else {
        let others = snapshot.workers_with_connections(tunnel) & !(1u64 << worker.index);
        if may_handoff && others != 0 {
            return Prepared::Handoff(others.trailing_zeros() as usize);
        }
        return Prepared::Refused(ProxyError::NoConnector(host.to_owned()));
    };

    let body = match framing {
        BodyFraming::Length(0) | BodyFraming::None | BodyFraming::UntilClose => BodyLen::Empty,
        BodyFraming::Length(n) => BodyLen::Known(n),
        BodyFraming::Chunked => BodyLen::Unknown,
    };
    // Only a request without a body can switch protocols: its bytes after the head belong
    // to the new protocol.
    let upgrade = body == BodyLen::Empty && http::head::is_websocket_upgrade(head.headers);
    let line = RequestLine {
        kind: if upgrade {
            StreamKind::WebSocket
        } else {
            StreamKind::Http
        },
        body,
        client_addr,
        method: head.method,
        authority: host,
        path: &path,
    };
    let headers = head
        .headers
        .iter()
        .filter(|h| {
            !h.name.eq_ignore_ascii_case("host")
                && !h.name.eq_ignore_ascii_case("content-length")
                && !h.name.eq_ignore_ascii_case("x-forwarded-proto")
                && !http::head::is_hop_by_hop(h.name, head.headers)
        })
        .map(|h| (h.name.as_bytes(), h.value))
        .chain([(&b"x-forwarded-proto"[..], scheme.as_bytes())]);
    if frame::encode_request(frame, &line, headers).is_err() {
        return Prepared::Refused(ProxyError::Client(HeadError::TooLarge));
    }

    Prepared::Ready(Request {
        tunnel,
        conn,
        head_len: head.len,
        framing,
        version: head.version,
        keep_alive: http::head::keep_alive(head.version, head.headers),
        is_head: head.method == "HEAD",
        upgrade,
        expects_continue: body != BodyLen::Empty && expects_continue(head.version, head.headers),
        resendable: may_resend(head.method, body, upgrade),
        started,
    })
}

/// Whether an HTTP/1.1 request asks for `100 Continue` before it sends its body (RFC 9110
/// 10.1.1; HTTP/1.0 clients do not wait for it).
fn expects_continue(version: Version, headers: &[httparse::Header<'_>]) -> bool {
    version == Version::Http11
        && headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue")
        })
}

/// The authority and origin-form path of a request: from an absolute-form target when the
/// client sent one, else from its one `Host` field. Anything that could make the edge and
/// the origin disagree about host or path is refused: several Host fields, an authority
/// with user info or stray characters, a target that is not origin-form (`*` only with
/// OPTIONS), a fragment, CONNECT.
fn split_target<'b>(
    head: &RequestHead<'b, '_>,
) -> Result<(Option<&'b str>, Cow<'b, str>), HeadError> {
    let target = head.target;
    let host = http::head::single_host(head.headers)?;
    if head.method == "CONNECT" {
        return Err(HeadError::Malformed("CONNECT is not supported"));
    }
    // No target form has a fragment (RFC 9112 3.2). Passed on, `/private#.png` would match
    // an ingress rule for `\.png$` while the origin may serve `/private`.
    if target.contains('#') {
        return Err(HeadError::Malformed("a fragment (#) in the request target"));
    }
    for scheme in ["http://", "https://"] {
        if target.len() >= scheme.len()
            && target.as_bytes()[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        {
            let rest = &target[scheme.len()..];
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => rest.split_at(i),
                None => (rest, "/"),
            };
            http::head::validate_authority(authority)?;
            // An empty path is "/", before the query if there is one (RFC 9112 3.2.2): the
            // one case that needs a new string, and a rare one.
            let path = match path.starts_with('?') {
                true => Cow::Owned(format!("/{path}")),
                false => Cow::Borrowed(path),
            };
            return Ok((Some(authority), path));
        }
    }
    let origin_form = http::head::is_origin_form(target)
        || (http::head::is_asterisk_form(target) && head.method == "OPTIONS");
    if !origin_form {
        return Err(HeadError::Malformed("request target is not origin-form"));
    }
    match host.filter(|h| !h.is_empty()) {
        Some(host) => {
            http::head::validate_authority(host)?;
            Ok((Some(host), Cow::Borrowed(target)))
        }
        None => Ok((None, Cow::Borrowed(target))),
    }
}

enum Outcome {
    KeepAlive,
    Close,
    /// Nothing of a response was written: the client gets an error page.
    Failed(ProxyError),
    /// The client hung up before the response head arrived; the stream was abandoned.
    ClientGone,
}

/// The status recorded for a request whose client hung up before its response head, as
/// nginx logs it ("client closed request"). It is never sent.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Stream reset and stop code when the client hung up before the response head.
const RESET_CLIENT_GONE: u32 = 5;

/// Sends one request down the tunnel and relays its answer. A request that is harmless to
/// repeat goes out again on another connection of the tunnel when its connection is lost
/// before any response byte arrived (a replica killed or cut off); any other request then
/// gets a 502, as a proxy that never retries non-idempotent requests would answer.
async fn proxy_one<S: ClientStream>(
    worker: &Worker,
    request: &Request,
    rd: &mut ReadHalf<S>,
    wr: &mut WriteHalf<S>,
    bufs: &mut ClientBufs,
    mut frame: Bytes,
    watch: &mut Watch<'_, S, impl Future<Output = std::io::Result<()>>>,
) -> Outcome {
    let mut conn = request.conn.clone();
    let mut sends = 1;
    loop {
        let (used, send, recv) = match open_stream(worker, request.tunnel, conn).await {
            Ok(opened) => opened,
            Err(err) => return Outcome::Failed(err),
        };
        // A resendable request keeps its frame for another attempt: cloning `Bytes` only
        // counts a reference.
        let this_time = if request.resendable {
            frame.clone()
        } else {
            std::mem::take(&mut frame)
        };
        let stream = (this_time, send, recv);
        let lost = match relay(worker, request, rd, wr, bufs, stream, watch).await {
            Ok(outcome) => return outcome,
            Err(lost) => lost,
        };

        let next = resend_after_loss(request.resendable, sends)
            .then(|| worker.pick(request.tunnel, Some(used.id), Instant::now()))
            .flatten();
        let Some(next) = next else {
            return Outcome::Failed(ProxyError::Tunnel(lost.to_string()));
        };
        tracing::debug!(
            from = %used.id,
            to = %next.id,
            "no response before the tunnel connection ended ({lost}); sending the request again"
        );
        conn = next;
        sends += 1;
    }
}

/// How many tunnel connections, in all, a resendable request is sent on while the ones it
/// went to are lost before answering.
const SEND_ATTEMPTS: usize = 3;

/// Whether a request is harmless to send twice: an idempotent method (RFC 9110, 9.2.2) and
/// nothing after the head. A body may be partly sent and cannot be read from the client
/// again; an upgrade hands the connection over to another protocol.
fn may_resend(method: &str, body: BodyLen, upgrade: bool) -> bool {
    let idempotent = matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    idempotent && body == BodyLen::Empty && !upgrade
}

/// Whether a request whose connection was lost before any response byte arrived, after
/// `sends` attempts, goes out once more.
fn resend_after_loss(resendable: bool, sends: usize) -> bool {
    resendable && sends < SEND_ATTEMPTS
}

/// Sends the request frame (and body) on an opened stream and relays the response. `Err`
/// when the stream's connection was lost before any response byte arrived, and so before
/// anything was written to the client.
///
/// Once the request is all sent, the client's readiness is watched until the response head
/// arrives: a client that hung up meanwhile abandons the stream, so the connector gives up
/// the origin request instead of waiting for an answer nobody reads.
async fn relay<S: ClientStream>(
    worker: &Worker,
    request: &Request,
    rd: &mut ReadHalf<S>,
    wr: &mut WriteHalf<S>,
    bufs: &mut ClientBufs,
    (frame, mut send, mut recv): (Bytes, SendStream, RecvStream),
    watch: &mut Watch<'_, S, impl Future<Output = std::io::Result<()>>>,
) -> Result<Outcome, StreamError> {
    let ClientBufs { read: buf, head } = bufs;
    let opened = Instant::now();
    let _active = worker.metrics.active_streams.track();
    match send.write(frame).await {
        Ok(()) => {}
        Err(err) if response::is_connection_loss(&err) => return Err(err),
        Err(err) => return Ok(Outcome::Failed(ProxyError::Tunnel(err.to_string()))),
    }
    let head_sent = Cell::new(false);
    let flags = BodyFlags {
        discard: Cell::new(false),
        may_skip: Cell::new(request.expects_continue),
    };
    let has_body = matches!(request.framing, BodyFraming::Chunked)
        || matches!(request.framing, BodyFraming::Length(n) if n > 0);
    let exchange = Exchange {
        version: request.version,
        keep_alive: request.keep_alive,
        is_head: request.is_head,
        upgrade: request.upgrade,
        head_sent: &head_sent,
        may_skip_body: &flags.may_skip,
        write_timeout: worker.limits.idle_timeout,
        stop: &worker.stop,
        metrics: &worker.metrics,
        started: request.started,
        opened,
    };

    if request.upgrade {
        // Nothing is sent before the origin answers; after a 101 the stream carries the
        // new protocol's bytes, with no timeout. Until then the client is looked at every
        // HANG_UP_CHECK (its readiness would fire on any early bytes, which are the new
        // protocol's and must stay unread).
        let client = rd.0.clone();
        let watched = until_hang_up(
            response::download(wr, &mut recv, &exchange, head),
            &client,
            &head_sent,
        )
        .await;
        drop(client);
        let Some(downloaded) = watched else {
            return Ok(abandon(&mut send, &mut recv));
        };
        return match downloaded {
            Ok(Done::Switched(first)) => {
                splice(rd, wr, buf, &mut send, &mut recv, first).await;
                Ok(Outcome::Close)
            }
            Ok(Done::Complete(reusable)) => {
                let _ = send.finish();
                Ok(keep_or_close(reusable && request.keep_alive))
            }
            Err(Failure::Lost(err)) => Err(err),
            Err(Failure::BeforeHead(err)) => Ok(Outcome::Failed(err)),
            Err(Failure::AfterHead) => Ok(Outcome::Close),
        };
    }

    if !has_body {
        let _ = send.finish();
    }
    let idle = worker.limits.idle_timeout;
    let client = rd.0.clone();
    let watched = Watched {
        watch,
        client: &client,
        head_sent: &head_sent,
        discard: &flags.discard,
    };
    // The futures are built inline: one bound to a variable first would be stored twice.
    let raced = race(
        async {
            let uploaded = if has_body {
                let counted = &worker.metrics.bytes_from_client;
                let framing = request.framing;
                upload_body(rd, buf, framing, &mut send, idle, counted, &flags).await
            } else {
                Upload::Done
            };
            // Bytes past the request (a pipelined one) are the client's next request: it
            // has not gone, and its readiness announces nothing.
            (uploaded, buf.is_empty())
        },
        response::download(wr, &mut recv, &exchange, head),
        watched,
    )
    .await;
    drop(client);
    Ok(match raced {
        Err(Upload::BadBody(why)) => Outcome::Failed(ProxyError::BadBody(why)),
        Err(Upload::Stalled) => Outcome::Failed(ProxyError::BodyTimeout),
        Err(Upload::ClientGone) => abandon(&mut send, &mut recv),
        Err(_) => Outcome::Close,
        Ok((_, Err(Failure::Lost(err)))) => return Err(err),
        Ok((_, Err(Failure::BeforeHead(err)))) => Outcome::Failed(err),
        Ok((_, Err(Failure::AfterHead))) => Outcome::Close,
        Ok((uploaded, Ok(Done::Complete(reusable)))) => {
            keep_or_close(reusable && uploaded == Some(Upload::Done) && request.keep_alive)
        }
        Ok((_, Ok(Done::Switched(_)))) => Outcome::Close,
    })
}

/// Gives up a stream whose client hung up: the connector sees it stopped and reset and
/// drops the origin request.
fn abandon(send: &mut SendStream, recv: &mut RecvStream) -> Outcome {
    recv.stop(RESET_CLIENT_GONE);
    send.reset(RESET_CLIENT_GONE);
    Outcome::ClientGone
}

fn keep_or_close(keep: bool) -> Outcome {
    if keep {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    }
}

/// Opens a stream on `conn`, falling back to another of the tunnel's connections when
/// opening fails (nothing of the request was sent yet, so it is safe). Returns the
/// connection the stream is on.
async fn open_stream(
    worker: &Worker,
    tunnel: Uuid,
    first: Rc<TunnelConn>,
) -> Result<(Rc<TunnelConn>, SendStream, RecvStream), ProxyError> {
    let mut conn = first;
    let mut attempt = 1;
    loop {
        // Nearly always a stream is free at once, and that needs no timer.
        if let Some((send, recv)) = conn.conn.try_open_bi() {
            return Ok((conn, send, recv));
        }
        // Opening waits while the connector's stream limit is reached; past the bound, try
        // another connection rather than queueing forever.
        let opened = monoio::time::timeout(OPEN_TIMEOUT, conn.conn.open_bi()).await;
        let err = match opened {
            Ok(Ok((send, recv))) => return Ok((conn, send, recv)),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no stream became free within {OPEN_TIMEOUT:?}"),
        };
        tracing::debug!(connection = %conn.id, "cannot open stream: {err}");
        match worker.pick(tunnel, Some(conn.id), Instant::now()) {
            Some(other) if attempt < OPEN_ATTEMPTS => conn = other,
            _ => return Err(ProxyError::Tunnel(err)),
        }
        attempt += 1;
    }
}

/// Moves the client connection, with what was read of it, to the worker `target`.
fn handoff<S: ClientStream>(
    worker: &Worker,
    target: usize,
    rd: ReadHalf<S>,
    wr: WriteHalf<S>,
    peer: SocketAddr,
    buffered: BytesMut,
) {
    let Ok(stream) = rd.reunite(wr) else {
        return;
    };
    let Ok(stream) = stream.into_handoff() else {
        return;
    };
    tracing::debug!(%peer, from = worker.index, to = target, "handing the client connection over");
    let msg = WorkerMsg::Handoff {
        stream,
        peer,
        buffered,
    };
    if worker.inboxes[target].unbounded_send(msg).is_err() {
        tracing::debug!(%peer, target, "handoff target is gone");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_requests_without_a_body_are_resent() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(may_resend(method, BodyLen::Empty, false), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "get", "PROPFIND"] {
            assert!(!may_resend(method, BodyLen::Empty, false), "{method}");
        }
        assert!(!may_resend("PUT", BodyLen::Known(5), false));
        assert!(!may_resend("POST", BodyLen::Known(5), false));
        assert!(!may_resend("DELETE", BodyLen::Unknown, false));
        assert!(!may_resend("GET", BodyLen::Unknown, false));
        assert!(!may_resend("GET", BodyLen::Empty, true));
    }

    #[test]
    fn resending_is_bounded() {
        assert!(resend_after_loss(true, 1));
        assert!(resend_after_loss(true, 2));
        assert!(!resend_after_loss(true, 3));
        assert!(!resend_after_loss(false, 1));
    }
}
