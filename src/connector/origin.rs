//! Relaying one tunnel stream to an HTTP origin and back.
//!
//! The request head is rebuilt for the origin (Host, forwarding headers, framing), then the
//! request body and the response flow at the same time. A pooled connection that turns out
//! to be closed before any response byte arrived is replaced by a fresh one and the request
//! sent again, but only when nothing of a body had been consumed from the stream.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use monoio::io::{AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};

use super::ingress::Rule;
use super::pool::{dial, DialError, OriginConn};
use super::serve::{send_error, Local};
use crate::http::{self, body, BodyDecoder, BodyFraming, MAX_HEADERS};
use crate::quic::{RecvStream, SendStream};
use crate::runtime::io::{
    body_chunk, read_more, until_second, write_all, write_bytes, write_chunk,
};
use crate::tunnel::frame::{self, BodyLen, ErrorCode, RequestFrame};
use crate::tunnel::io::STREAM_READ;

type ReadHalf = OwnedReadHalf<OriginConn>;
type WriteHalf = OwnedWriteHalf<OriginConn>;

/// Stream reset code when the origin's response broke off.
const RESET_ORIGIN: u32 = 2;

enum Exchange {
    /// The response went to the edge; the connection, when it can serve another request.
    Done(Option<OriginConn>),
    /// The connection was closed before any response byte arrived.
    NoResponse,
    Failed(ErrorCode, String),
}

/// Proxies one request to the rule's origin and streams the response into `send`.
pub async fn proxy(
    local: &Local,
    rule_index: usize,
    rule: &Rule,
    request: &RequestFrame<'_>,
    first: Bytes,
    send: &mut SendStream,
    recv: &mut RecvStream,
) {
    let head = request_head(rule, request);
    let replayable = request.line.body == BodyLen::Empty;
    let is_head = request.line.method == "HEAD";
    let mut retried = false;
    loop {
        let pooled = local.pool.take(rule_index, &rule.origin, Instant::now());
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let tls = local.tls.get(rule_index).and_then(Option::as_ref);
                match dial(&rule.service, &rule.origin, tls).await {
                    Ok(conn) => conn,
                    Err(err) => {
                        tracing::debug!("{err}");
                        let code = match err {
                            DialError::Tls { .. } => ErrorCode::OriginTls,
                            DialError::Io { .. } | DialError::Timeout { .. } => {
                                ErrorCode::OriginUnreachable
                            }
                        };
                        return send_error(send, code, &err.to_string()).await;
                    }
                }
            }
        };
        let body = request.line.body;
        match exchange(
            conn,
            head.clone(),
            first.clone(),
            body,
            send,
            recv,
            rule,
            is_head,
        )
        .await
        {
            Exchange::Done(Some(conn)) => {
                local
                    .pool
                    .put(rule_index, &rule.origin, conn, Instant::now())
            }
            Exchange::Done(None) => {}
            Exchange::NoResponse if reused && replayable && !retried => {
                tracing::debug!("pooled origin connection was closed; retrying on a new one");
                retried = true;
                continue;
            }
            Exchange::NoResponse => {
                let message = format!(
                    "origin {} closed the connection without answering",
                    rule.service
                );
                send_error(send, ErrorCode::OriginProtocol, &message).await;
            }
            Exchange::Failed(code, message) => send_error(send, code, &message).await,
        }
        return;
    }
}

#[allow(clippy::too_many_arguments)]
async fn exchange(
    conn: OriginConn,
    head: Bytes,
    first: Bytes,
    body: BodyLen,
    send: &mut SendStream,
    recv: &mut RecvStream,
    rule: &Rule,
    is_head: bool,
) -> Exchange {
    let (mut rd, mut wr) = conn.into_split();
    if write_all(&mut wr, head).await.is_err() {
        return Exchange::NoResponse;
    }
    let upload = upload(&mut wr, first, recv, body);
    let download = download(&mut rd, send, rule, is_head);
    let (uploaded, downloaded) = until_second(upload, download).await;
    match downloaded {
        Ok(true) if uploaded == Some(true) => Exchange::Done(rd.reunite(wr).ok()),
        Ok(_) => Exchange::Done(None),
        Err(Failure::NoResponse) => Exchange::NoResponse,
        Err(Failure::Origin(code, message)) => Exchange::Failed(code, message),
        Err(Failure::AfterHead) => Exchange::Done(None),
    }
}

/// The request head as the origin gets it.
fn request_head(rule: &Rule, request: &RequestFrame<'_>) -> Bytes {
    let line = &request.line;
    let mut out = BytesMut::with_capacity(512 + 64 * request.headers.len());
    out.put_slice(line.method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(line.path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nHost: ");
    match &rule.origin.http_host_header {
        Some(host) => {
            out.put_slice(host.as_bytes());
            out.put_slice(b"\r\nX-Forwarded-Host: ");
            out.put_slice(line.authority.as_bytes());
        }
        None => out.put_slice(line.authority.as_bytes()),
    }
    out.put_slice(b"\r\n");

    let mut forwarded_for = None;
    let mut proto: &[u8] = b"http";
    for (name, value) in request.headers.iter() {
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            forwarded_for = Some(value);
            continue;
        }
        // The edge sets X-Forwarded-Proto itself (a client's own is dropped there).
        if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            proto = value;
            continue;
        }
        if name.eq_ignore_ascii_case(b"adit-connecting-ip")
            || name.eq_ignore_ascii_case(b"x-forwarded-host")
                && rule.origin.http_host_header.is_some()
        {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"X-Forwarded-For: ");
    if let Some(prior) = forwarded_for {
        out.put_slice(prior);
        out.put_slice(b", ");
    }
    out.put_slice(line.client_addr.as_bytes());
    out.put_slice(b"\r\nX-Forwarded-Proto: ");
    out.put_slice(proto);
    out.put_slice(b"\r\nAdit-Connecting-IP: ");
    out.put_slice(line.client_addr.as_bytes());
    out.put_slice(b"\r\n");
    match line.body {
        BodyLen::Known(n) => out.put_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        BodyLen::Unknown => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyLen::Empty if matches!(line.method, "POST" | "PUT" | "PATCH") => {
            out.put_slice(b"Content-Length: 0\r\n")
        }
        BodyLen::Empty => {}
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// Moves the request body from the stream to the origin. True when all of it went.
async fn upload(wr: &mut WriteHalf, first: Bytes, recv: &mut RecvStream, body: BodyLen) -> bool {
    let chunked = match body {
        BodyLen::Empty => return true,
        BodyLen::Known(_) => false,
        BodyLen::Unknown => true,
    };
    let mut sent: u64 = 0;
    let mut next = Some(first);
    loop {
        let chunk = match next.take() {
            Some(chunk) => chunk,
            None => match recv.read_chunk(STREAM_READ).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!("request body from the edge broke off: {err}");
                    let _ = wr.shutdown().await;
                    return false;
                }
            },
        };
        if chunk.is_empty() {
            continue;
        }
        sent += chunk.len() as u64;
        let written = if chunked {
            write_chunk(wr, chunk).await
        } else {
            write_bytes(wr, chunk).await
        };
        if written.is_err() {
            return false;
        }
    }
    match body {
        BodyLen::Known(n) => sent == n,
        _ => write_all(wr, body::LAST_CHUNK).await.is_ok(),
    }
}

enum Failure {
    NoResponse,
    Origin(ErrorCode, String),
    /// The response broke off after its head went to the edge; the stream was reset.
    AfterHead,
}

/// What the origin's response head says, with its frame already encoded.
struct Head {
    framing: BodyFraming,
    keep_alive: bool,
    frame: Bytes,
}

/// Reads the origin's response and streams it into `send`. Ok(true) when the origin
/// connection can serve another request.
async fn download(
    rd: &mut ReadHalf,
    send: &mut SendStream,
    rule: &Rule,
    is_head: bool,
) -> Result<bool, Failure> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let timeout = rule.origin.response_timeout;
    let head = match monoio::time::timeout(timeout, read_head(rd, &mut buf, rule, is_head)).await {
        Ok(head) => head?,
        Err(_) => {
            let message = format!("origin {} did not answer within {timeout:?}", rule.service);
            return Err(Failure::Origin(ErrorCode::OriginTimeout, message));
        }
    };
    if send.write(head.frame).await.is_err() {
        return Err(Failure::AfterHead);
    }

    let mut decoder = BodyDecoder::new(head.framing);
    loop {
        match body_chunk(rd, &mut buf, &mut decoder).await {
            Ok(Some(chunk)) => {
                if send.write(chunk).await.is_err() {
                    return Err(Failure::AfterHead);
                }
            }
            Ok(None) => break,
            Err(err) => {
                tracing::debug!(
                    "response body from origin {} broke off: {err}",
                    rule.service
                );
                send.reset(RESET_ORIGIN);
                return Err(Failure::AfterHead);
            }
        }
    }
    if send.finish().is_err() {
        return Err(Failure::AfterHead);
    }
    Ok(head.keep_alive && head.framing != BodyFraming::UntilClose && buf.is_empty())
}

/// Reads response heads until a final one (interim 1xx heads other than 101 are skipped)
/// and encodes its frame.
async fn read_head(
    rd: &mut ReadHalf,
    buf: &mut BytesMut,
    rule: &Rule,
    is_head: bool,
) -> Result<Head, Failure> {
    let protocol = |why: String| Failure::Origin(ErrorCode::OriginProtocol, why);
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match http::parse_response(buf, &mut headers) {
                Ok(Some(head)) if head.status / 100 == 1 && head.status != 101 => {
                    let len = head.len;
                    let _ = buf.split_to(len);
                    continue;
                }
                Ok(Some(head)) => {
                    let method = if is_head { "HEAD" } else { "GET" };
                    let framing = http::response_framing(method, head.status, head.headers)
                        .map_err(|err| protocol(format!("origin {}: {err}", rule.service)))?;
                    let body = match framing {
                        BodyFraming::None | BodyFraming::Length(0) => BodyLen::Empty,
                        BodyFraming::Length(n) => BodyLen::Known(n),
                        BodyFraming::Chunked | BodyFraming::UntilClose => BodyLen::Unknown,
                    };
                    let strip_length = matches!(framing, BodyFraming::Length(_));
                    let headers = head
                        .headers
                        .iter()
                        .filter(|h| {
                            let length = h.name.eq_ignore_ascii_case("content-length");
                            !(strip_length && length
                                || http::head::is_hop_by_hop(h.name, head.headers))
                        })
                        .map(|h| (h.name.as_bytes(), h.value));
                    let mut frame = BytesMut::with_capacity(256 + head.len);
                    frame::encode_response(&mut frame, head.status, body, headers)
                        .map_err(|err| protocol(format!("origin {}: {err}", rule.service)))?;
                    let keep_alive = http::head::keep_alive(head.version, head.headers);
                    let len = head.len;
                    let _ = buf.split_to(len);
                    return Ok(Head {
                        framing,
                        keep_alive,
                        frame: frame.freeze(),
                    });
                }
                Ok(None) => {}
                Err(err) => return Err(protocol(format!("origin {}: {err}", rule.service))),
            }
        }
        let (result, filled) = read_more(rd, std::mem::take(buf)).await;
        *buf = filled;
        match result {
            Ok(0) if buf.is_empty() => return Err(Failure::NoResponse),
            Ok(0) => {
                return Err(protocol(format!(
                    "origin {} closed mid-response",
                    rule.service
                )))
            }
            Ok(_) => {}
            Err(_) if buf.is_empty() => return Err(Failure::NoResponse),
            Err(err) => return Err(protocol(format!("origin {}: {err}", rule.service))),
        }
    }
}
