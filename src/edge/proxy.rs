//! The public HTTP side of the edge: one client connection, one tunnel stream per request.
//!
//! For each request the head is parsed where it was read, the route is looked up in this
//! worker's snapshot, and the request frame is encoded straight from the parsed head. The
//! request body (decoded from the client's framing) and the response body (re-framed for
//! the client) then flow at the same time, so an origin that answers while it still reads
//! (an echo, an early 413) never deadlocks against flow control.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Split, Splitable};
use monoio::net::TcpStream;
use uuid::Uuid;

use super::error::{page, ProxyError};
use super::worker::{TunnelConn, Worker, WorkerMsg};
use crate::http::{self, body, BodyDecoder, BodyFraming, HeadError, RequestHead, Version};
use crate::quic::{RecvStream, SendStream};
use crate::runtime::io::{
    body_chunk, read_more, until_second, write_all, write_bytes, write_chunk,
};
use crate::tunnel::frame::{self, BodyLen, Frame, RequestLine, StreamKind};
use crate::tunnel::io::{read_frame, STREAM_READ};

/// How long a client connection may sit without sending a complete request head.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many tunnel connections a request tries before giving up on opening a stream.
const OPEN_ATTEMPTS: usize = 3;

type ReadHalf<S> = OwnedReadHalf<S>;
type WriteHalf<S> = OwnedWriteHalf<S>;

/// A public client connection the proxy can serve: plain TCP, or TLS over it.
pub trait ClientStream: AsyncReadRent + AsyncWriteRent + Split + Sized + 'static {
    /// `http` or `https`: what the client spoke, for `X-Forwarded-Proto`.
    const SCHEME: &'static str;

    /// The connection in a form another worker can adopt, or `self` back when it cannot move.
    fn into_handoff(self) -> Result<HandoffStream, Self>;
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
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = buf;
    let client_addr = peer.ip().to_string();
    let mut frame = BytesMut::with_capacity(4 * 1024);

    // A handed-off connection is not handed on again until it has been served here once,
    // so a stale snapshot cannot bounce it between workers.
    let mut may_handoff = buf.is_empty();

    loop {
        let prepared = match monoio::time::timeout(
            CLIENT_IDLE_TIMEOUT,
            next_request(
                &worker,
                &mut rd,
                &mut buf,
                &client_addr,
                &mut frame,
                may_handoff,
            ),
        )
        .await
        {
            Ok(Some(prepared)) => prepared,
            Ok(None) | Err(_) => return,
        };
        let request = match prepared {
            Prepared::Ready(request) => request,
            Prepared::Refused(err) => return write_error(&mut wr, &err).await,
            Prepared::Handoff(target) => return handoff(&worker, target, rd, wr, peer, buf),
        };
        let _ = buf.split_to(request.head_len);

        match proxy_one(
            &worker,
            &request,
            &mut rd,
            &mut wr,
            &mut buf,
            frame.split().freeze(),
        )
        .await
        {
            Outcome::KeepAlive => may_handoff = true,
            Outcome::Close => {
                let _ = wr.shutdown().await;
                return;
            }
            Outcome::Failed(err) => return write_error(&mut wr, &err).await,
        }
    }
}

/// Reads until a whole request head is buffered and prepares it. `None` when the client
/// closed or the socket failed between requests.
async fn next_request<S: ClientStream>(
    worker: &Worker,
    rd: &mut ReadHalf<S>,
    buf: &mut BytesMut,
    client_addr: &str,
    frame: &mut BytesMut,
    may_handoff: bool,
) -> Option<Prepared> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
            match http::parse_request(buf, &mut headers) {
                Ok(Some(head)) => {
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
                Err(err) => return Some(Prepared::Refused(ProxyError::Client(err))),
            }
        }
        let (result, filled) = read_more(rd, std::mem::take(buf)).await;
        *buf = filled;
        match result {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
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
    let framing = match http::request_framing(head.headers) {
        Ok(framing) => framing,
        Err(err) => return Prepared::Refused(ProxyError::Client(err)),
    };
    let (authority, path) = split_target(head);
    let Some(host) = authority else {
        return Prepared::Refused(ProxyError::MissingHost);
    };

    let snapshot = worker.snapshot_ref();
    let Some(tunnel) = snapshot.tunnel_for_host(host) else {
        return Prepared::Refused(ProxyError::UnknownHost(host.to_owned()));
    };
    let Some(conn) = worker.pick(tunnel, None) else {
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
    let line = RequestLine {
        kind: StreamKind::Http,
        body,
        client_addr,
        method: head.method,
        authority: host,
        path,
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
    })
}

/// The authority and origin-form path of a request: from an absolute-form target when the
/// client sent one, else from `Host`.
fn split_target<'b>(head: &RequestHead<'b, '_>) -> (Option<&'b str>, &'b str) {
    let target = head.target;
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => rest.split_at(i),
                None => (rest, "/"),
            };
            return (Some(authority), path);
        }
    }
    let host = head
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
        .filter(|h| !h.is_empty());
    (host, target)
}

enum Outcome {
    KeepAlive,
    Close,
    /// Nothing of a response was written: the client gets an error page.
    Failed(ProxyError),
}

async fn proxy_one<S: ClientStream>(
    worker: &Worker,
    request: &Request,
    rd: &mut ReadHalf<S>,
    wr: &mut WriteHalf<S>,
    buf: &mut BytesMut,
    frame: Bytes,
) -> Outcome {
    let (mut send, mut recv) = match open_stream(worker, request).await {
        Ok(stream) => stream,
        Err(err) => return Outcome::Failed(err),
    };
    if let Err(err) = send.write(frame).await {
        return Outcome::Failed(ProxyError::Tunnel(err.to_string()));
    }
    let has_body = matches!(request.framing, BodyFraming::Chunked)
        || matches!(request.framing, BodyFraming::Length(n) if n > 0);
    if !has_body {
        let _ = send.finish();
    }

    let upload = async {
        if !has_body {
            return true;
        }
        upload_body(rd, buf, request.framing, &mut send).await
    };
    let download = download(wr, &mut recv, request);
    let (uploaded, downloaded) = until_second(upload, download).await;

    match downloaded {
        Err(Download::BeforeHead(err)) => Outcome::Failed(err),
        Err(Download::AfterHead) => Outcome::Close,
        Ok(reusable) if reusable && uploaded == Some(true) && request.keep_alive => {
            Outcome::KeepAlive
        }
        Ok(_) => Outcome::Close,
    }
}

/// Opens a stream on the request's connection, falling back to another of the tunnel's
/// connections when opening fails (nothing of the request was sent yet, so it is safe).
async fn open_stream(
    worker: &Worker,
    request: &Request,
) -> Result<(SendStream, RecvStream), ProxyError> {
    let mut conn = request.conn.clone();
    let mut attempt = 1;
    loop {
        match conn.conn.open_bi().await {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                tracing::debug!(connection = %conn.id, "cannot open stream: {err}");
                match worker.pick(request.tunnel, Some(conn.id)) {
                    Some(other) if attempt < OPEN_ATTEMPTS => conn = other,
                    _ => return Err(ProxyError::Tunnel(err.to_string())),
                }
                attempt += 1;
            }
        }
    }
}

/// Moves the client's request body into the stream. True when all of it went.
async fn upload_body<S: ClientStream>(
    rd: &mut ReadHalf<S>,
    buf: &mut BytesMut,
    framing: BodyFraming,
    send: &mut SendStream,
) -> bool {
    let mut decoder = BodyDecoder::new(framing);
    loop {
        match body_chunk(rd, buf, &mut decoder).await {
            Ok(Some(chunk)) => {
                if send.write(chunk).await.is_err() {
                    return false;
                }
            }
            Ok(None) => return send.finish().is_ok(),
            Err(err) => {
                tracing::debug!("request body from client failed: {err}");
                send.reset(1);
                return false;
            }
        }
    }
}

enum Download {
    BeforeHead(ProxyError),
    AfterHead,
}

/// How the response body is framed for the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientFraming {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Relays the response: reads its frame, writes the head, streams the body. Ok(true) when
/// the connection can carry another request.
async fn download<S: ClientStream>(
    wr: &mut WriteHalf<S>,
    recv: &mut RecvStream,
    request: &Request,
) -> Result<bool, Download> {
    let (frame_bytes, rest) = read_frame(recv)
        .await
        .map_err(|err| Download::BeforeHead(ProxyError::Tunnel(err.to_string())))?;
    let response = match frame::decode(&frame_bytes) {
        Ok(Some((Frame::Response(response), _))) => response,
        Ok(Some((Frame::Error(error), _))) => {
            return Err(Download::BeforeHead(ProxyError::Origin {
                code: error.code,
                message: error.message.to_owned(),
            }))
        }
        _ => {
            let err = ProxyError::Tunnel("the connector sent an unexpected frame".into());
            return Err(Download::BeforeHead(err));
        }
    };

    let status = response.status;
    let no_body = request.is_head || status / 100 == 1 || status == 204 || status == 304;
    let framing = match response.body {
        _ if no_body => ClientFraming::None,
        BodyLen::Empty => ClientFraming::Length(0),
        BodyLen::Known(n) => ClientFraming::Length(n),
        BodyLen::Unknown if request.version == Version::Http11 => ClientFraming::Chunked,
        BodyLen::Unknown => ClientFraming::Close,
    };
    let keep_alive = request.keep_alive && framing != ClientFraming::Close;

    let mut head = BytesMut::with_capacity(512);
    head.put_slice(b"HTTP/1.1 ");
    put_status(&mut head, status);
    for (name, value) in response.headers.iter() {
        head.put_slice(name);
        head.put_slice(b": ");
        head.put_slice(value);
        head.put_slice(b"\r\n");
    }
    match framing {
        ClientFraming::Length(n) => {
            head.put_slice(b"Content-Length: ");
            head.put_slice(itoa(n, &mut [0; 20]));
            head.put_slice(b"\r\n");
        }
        ClientFraming::Chunked => head.put_slice(b"Transfer-Encoding: chunked\r\n"),
        ClientFraming::None | ClientFraming::Close => {}
    }
    if !keep_alive {
        head.put_slice(b"Connection: close\r\n");
    }
    head.put_slice(b"\r\n");
    drop(frame_bytes);
    write_all(wr, head.freeze())
        .await
        .map_err(|_| Download::AfterHead)?;

    relay_body(wr, recv, rest, framing).await?;
    Ok(keep_alive)
}

/// Streams response body bytes to the client as they arrive, framed as decided.
async fn relay_body<S: ClientStream>(
    wr: &mut WriteHalf<S>,
    recv: &mut RecvStream,
    first: Bytes,
    framing: ClientFraming,
) -> Result<(), Download> {
    let mut sent: u64 = 0;
    let mut next = Some(first);
    loop {
        let chunk = match next.take() {
            Some(chunk) => chunk,
            None => match recv.read_chunk(STREAM_READ).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!("response body from tunnel failed: {err}");
                    return Err(Download::AfterHead);
                }
            },
        };
        if chunk.is_empty() {
            continue;
        }
        sent += chunk.len() as u64;
        let written = match framing {
            ClientFraming::None => Ok(()),
            ClientFraming::Length(n) if sent > n => return Err(Download::AfterHead),
            ClientFraming::Length(_) | ClientFraming::Close => write_bytes(wr, chunk).await,
            ClientFraming::Chunked => write_chunk(wr, chunk).await,
        };
        written.map_err(|_| Download::AfterHead)?;
    }
    match framing {
        ClientFraming::Length(n) if sent != n => Err(Download::AfterHead),
        ClientFraming::Chunked => write_all(wr, body::LAST_CHUNK)
            .await
            .map_err(|_| Download::AfterHead),
        _ => Ok(()),
    }
}

fn put_status(out: &mut BytesMut, status: u16) {
    out.put_slice(itoa(u64::from(status), &mut [0; 20]));
    out.put_u8(b' ');
    out.put_slice(http::head::reason(status).as_bytes());
    out.put_slice(b"\r\n");
}

/// Formats `n` in decimal into `scratch` without allocating.
fn itoa(mut n: u64, scratch: &mut [u8; 20]) -> &[u8] {
    let mut at = scratch.len();
    loop {
        at -= 1;
        scratch[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &scratch[at..];
        }
    }
}

async fn write_error<S: ClientStream>(wr: &mut WriteHalf<S>, err: &ProxyError) {
    let (status, title, detail) = page(err);
    tracing::debug!(status, "{detail}");
    let mut out = BytesMut::with_capacity(1024);
    http::pages::error_response(&mut out, status, title, &detail, true);
    let _ = write_all(wr, out.freeze()).await;
    let _ = wr.shutdown().await;
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
