//! Relaying one tunnel stream to an HTTP origin and back.
//!
//! The request head is rebuilt for the origin (Host, forwarding headers, framing), then the
//! request body and the response flow at the same time. A pooled connection that turns out
//! to be closed before any response byte arrived is replaced by a newly dialed one and the
//! request sent again, but only when nothing of a body had been consumed from the stream. A
//! WebSocket request the origin accepts (101) turns the stream into raw bytes both ways.
//! While the origin's head is awaited the stream is watched: when the edge stops it (its
//! client hung up), the origin connection is closed rather than pooled or waited on.

use std::cell::Cell;
use std::fmt::Write;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use monoio::io::{AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf};

use super::ingress::Rule;
use super::pool::{dial, DialError, OriginConn, OriginHalves};
use super::response::{final_head, relay_body, Failure};
use super::serve::{send_error, Local};
use crate::http::body;
use crate::metrics::connector::ConnectorMetrics;
use crate::metrics::Counter;
use crate::quic::{RecvStream, SendStream};
use crate::runtime::gather::Gather;
use crate::runtime::io::write_all;
use crate::runtime::join::until_second;
use crate::tunnel::buffers::Buffers;
use crate::tunnel::frame::{BodyLen, ErrorCode, RequestFrame, StreamKind};
use crate::tunnel::splice::splice;

type ReadHalf = OwnedReadHalf<OriginConn>;
type WriteHalf = OwnedWriteHalf<OriginConn>;

enum Exchange {
    /// The response went to the edge; the connection, when it can serve another request.
    Done(Option<OriginHalves>),
    /// Writing the request head failed: nothing reached the origin or left the stream, so
    /// another connection may try.
    NotSent,
    /// The connection was closed before any response byte arrived.
    NoResponse,
    Failed(ErrorCode, String),
}

/// What an exchange needs to know about its request.
struct Ask<'a> {
    head: Bytes,
    first: Bytes,
    body: BodyLen,
    is_head: bool,
    upgrade: bool,
    rule: &'a Rule,
    metrics: &'a ConnectorMetrics,
    buffers: &'a Buffers,
    /// When the stream's request arrived: origin latency counts from here.
    started: Instant,
    /// The status of the final head sent to the edge, once sent.
    status: Cell<u16>,
}

/// Proxies one request to the rule's origin and streams the response into `send`. Returns
/// the status sent to the edge (0 when none was).
pub async fn proxy(
    local: &Local,
    rule_index: usize,
    rule: &Rule,
    request: &RequestFrame<'_>,
    first: Bytes,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> u16 {
    let upgrade = request.line.kind == StreamKind::WebSocket;
    // One clock read serves the latency and the pool's age check.
    let started = Instant::now();
    let ask = Ask {
        head: request_head(&local.buffers, rule, request, upgrade),
        first,
        body: request.line.body,
        is_head: request.line.method == "HEAD",
        upgrade,
        rule,
        metrics: &local.metrics,
        buffers: &local.buffers,
        started,
        status: Cell::new(0),
    };
    let replayable = request.line.body == BodyLen::Empty && !upgrade;
    let mut retried = false;
    loop {
        // The second attempt dials: another pooled connection may have been closed by the
        // origin just as well (an origin that closes idle connections closes them all).
        let pooled = if retried {
            None
        } else {
            local.pool.take(rule_index, &rule.origin, started)
        };
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let tls = local.tls.get(rule_index).and_then(Option::as_ref);
                match dial(&rule.service, &rule.origin, tls).await {
                    Ok(conn) => OriginHalves::new(conn),
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
        match exchange(conn, &ask, send, recv).await {
            Exchange::Done(Some(conn)) => {
                local
                    .pool
                    .put(rule_index, &rule.origin, conn, Instant::now())
            }
            Exchange::Done(None) => {}
            Exchange::NotSent if reused && !retried => {
                tracing::debug!("pooled origin connection was closed; retrying on a new one");
                retried = true;
                continue;
            }
            Exchange::NoResponse if reused && replayable && !retried => {
                tracing::debug!("pooled origin connection was closed; retrying on a new one");
                retried = true;
                continue;
            }
            Exchange::NoResponse | Exchange::NotSent => {
                let message = format!(
                    "origin {} closed the connection without answering",
                    rule.service
                );
                return send_error(send, ErrorCode::OriginProtocol, &message).await;
            }
            Exchange::Failed(code, message) => return send_error(send, code, &message).await,
        }
        return ask.status.get();
    }
}

async fn exchange(
    conn: OriginHalves,
    ask: &Ask<'_>,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Exchange {
    let OriginHalves { mut rd, mut wr } = conn;
    if write_all(&mut wr, ask.head.clone()).await.is_err() {
        return Exchange::NotSent;
    }
    let mut buf = ask.buffers.take_read();
    let exchanged = if ask.upgrade {
        upgrade(&mut rd, &mut wr, &mut buf, ask, send, recv).await
    } else {
        relay(OriginHalves { rd, wr }, &mut buf, ask, send, recv).await
    };
    ask.buffers.give_read(buf);
    exchanged
}

/// An ordinary request: its body and the response flow at the same time.
async fn relay(
    conn: OriginHalves,
    buf: &mut BytesMut,
    ask: &Ask<'_>,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Exchange {
    let OriginHalves { mut rd, mut wr } = conn;
    let to_origin = &ask.metrics.bytes_to_origin;
    // Both built inline: a future bound to a variable first would be stored twice.
    let (uploaded, downloaded) = until_second(
        upload(&mut wr, ask.first.clone(), recv, ask.body, to_origin),
        async {
            let head = final_head(&mut rd, buf, send, ask.rule, ask.is_head, ask.buffers).await?;
            ask.metrics.origin_latency.observe(ask.started.elapsed());
            if head.status == 101 {
                let message = format!("origin {} switched protocols unasked", ask.rule.service);
                return Err(Failure::Origin(ErrorCode::OriginProtocol, message));
            }
            ask.status.set(head.status);
            if send.write(head.frame.clone()).await.is_err() {
                return Err(Failure::AfterHead);
            }
            let from_origin = &ask.metrics.bytes_from_origin;
            relay_body(&mut rd, buf, send, &head, ask.rule, from_origin).await
        },
    )
    .await;
    match downloaded {
        Ok(true) if uploaded == Some(true) => Exchange::Done(Some(OriginHalves { rd, wr })),
        Ok(_) => Exchange::Done(None),
        Err(failure) => failed(failure),
    }
}

/// A WebSocket request: nothing flows before the origin's answer; a 101 splices the origin
/// connection and the stream, anything else is an ordinary response.
async fn upgrade(
    rd: &mut ReadHalf,
    wr: &mut WriteHalf,
    buf: &mut BytesMut,
    ask: &Ask<'_>,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Exchange {
    let head = match final_head(rd, buf, send, ask.rule, ask.is_head, ask.buffers).await {
        Ok(head) => head,
        Err(failure) => return failed(failure),
    };
    ask.metrics.origin_latency.observe(ask.started.elapsed());
    ask.status.set(head.status);
    if send.write(head.frame.clone()).await.is_err() {
        return Exchange::Done(None);
    }
    if head.status == 101 {
        splice(rd, wr, buf, send, recv, ask.first.clone()).await;
        return Exchange::Done(None);
    }
    let _ = relay_body(
        rd,
        buf,
        send,
        &head,
        ask.rule,
        &ask.metrics.bytes_from_origin,
    )
    .await;
    Exchange::Done(None)
}

fn failed(failure: Failure) -> Exchange {
    match failure {
        Failure::NoResponse => Exchange::NoResponse,
        Failure::Origin(code, message) => Exchange::Failed(code, message),
        Failure::AfterHead | Failure::Abandoned => Exchange::Done(None),
    }
}

/// The request head as the origin gets it, encoded in the worker's frame block.
fn request_head(
    buffers: &Buffers,
    rule: &Rule,
    request: &RequestFrame<'_>,
    upgrade: bool,
) -> Bytes {
    let size = 512 + 64 * request.headers.len();
    let encoded = buffers.encode(size, |out| {
        put_request_head(out, rule, request, upgrade);
        Ok::<_, std::convert::Infallible>(())
    });
    match encoded {
        Ok(head) => head,
        Err(never) => match never {},
    }
}

fn put_request_head(out: &mut BytesMut, rule: &Rule, request: &RequestFrame<'_>, upgrade: bool) {
    let line = &request.line;
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
    if upgrade {
        out.put_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    }
    match line.body {
        BodyLen::Known(n) => {
            // Formatting straight into the buffer allocates nothing; it cannot fail.
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        BodyLen::Unknown => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyLen::Empty if matches!(line.method, "POST" | "PUT" | "PATCH") => {
            out.put_slice(b"Content-Length: 0\r\n")
        }
        BodyLen::Empty => {}
    }
    out.put_slice(b"\r\n");
}

/// Moves the request body from the stream to the origin. True when all of it went.
async fn upload(
    wr: &mut WriteHalf,
    first: Bytes,
    recv: &mut RecvStream,
    body: BodyLen,
    counted: &Counter,
) -> bool {
    let chunked = match body {
        BodyLen::Empty => return true,
        BodyLen::Known(_) => false,
        BodyLen::Unknown => true,
    };
    let mut sent: u64 = 0;
    let mut gather = Gather::new();
    gather.push(first);
    loop {
        if gather.is_empty() {
            match recv.read_gather(&mut gather).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => {
                    tracing::debug!("request body from the edge broke off: {err}");
                    let _ = wr.shutdown().await;
                    return false;
                }
            }
        }
        let len = gather.len() as u64;
        sent += len;
        if chunked {
            gather.frame_chunked();
        }
        let (written, back) = gather.write_all(wr).await;
        if written.is_err() {
            return false;
        }
        gather = back;
        counted.add(len);
    }
    match body {
        BodyLen::Known(n) => sent == n,
        _ => write_all(wr, body::LAST_CHUNK).await.is_ok(),
    }
}
