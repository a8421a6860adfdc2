//! The origin's response, read off the origin connection and written into the stream: interim
//! heads as they come, then the final head as a response frame, then the body unframed.

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::OwnedReadHalf;

use super::ingress::Rule;
use super::pool::OriginConn;
use crate::http::{self, BodyDecoder, BodyFraming, MAX_HEADERS};
use crate::metrics::Counter;
use crate::quic::{SendStream, StreamError};
use crate::runtime::io::{body_chunk, read_more};
use crate::runtime::join::{first_of, Either};
use crate::tunnel::buffers::Buffers;
use crate::tunnel::frame::{self, BodyLen, ErrorCode};

type ReadHalf = OwnedReadHalf<OriginConn>;

/// Stream reset code when the origin's response broke off.
const RESET_ORIGIN: u32 = 2;

pub enum Failure {
    /// The connection was closed before any response byte arrived.
    NoResponse,
    Origin(ErrorCode, String),
    /// The response broke off after its head went to the edge; the stream was reset, or
    /// finished short of its declared length.
    AfterHead,
    /// The edge stopped the stream before the head (its client hung up); the stream was
    /// reset and nothing more is owed to it.
    Abandoned,
}

/// What the origin's final response head says, with its frame already encoded.
pub struct Head {
    pub status: u16,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub frame: Bytes,
}

/// Reads heads until the final one, forwarding interim ones (100 Continue, 103 Early Hints)
/// to the edge as they arrive, all within the rule's response timeout. `buf` keeps what was
/// read past the final head.
///
/// Meanwhile the stream is watched: when the edge stops it (its client hung up) or its
/// connection ends, nobody will read the response, so the wait is given up at once and the
/// caller drops the origin connection, which tells the origin too.
pub async fn final_head(
    rd: &mut ReadHalf,
    buf: &mut BytesMut,
    send: &mut SendStream,
    rule: &Rule,
    is_head: bool,
    buffers: &Buffers,
) -> Result<Head, Failure> {
    let timeout = rule.origin.response_timeout;
    // The heads' loop is written inline: a future bound to a variable (or handed to an async
    // function that pins it) would be stored twice in the request's state.
    let answered = monoio::time::timeout(timeout, async {
        loop {
            let stopped = send.stopped();
            let head = match first_of(read_head(rd, buf, rule, is_head, buffers), stopped).await {
                Either::First(head) => head?,
                Either::Second(code) => {
                    abandon(send, code);
                    return Err(Failure::Abandoned);
                }
            };
            if !(100..200).contains(&head.status) || head.status == 101 {
                return Ok(head);
            }
            if send.write(head.frame).await.is_err() {
                return Err(Failure::AfterHead);
            }
        }
    })
    .await;
    match answered {
        Ok(head) => head,
        Err(_) => {
            let message = format!("origin {} did not answer within {timeout:?}", rule.service);
            Err(Failure::Origin(ErrorCode::OriginTimeout, message))
        }
    }
}

/// The edge stopped the stream (with `code`) or its connection ended: nobody will read the
/// response, so the stream is reset and the caller drops the origin connection.
fn abandon(send: &mut SendStream, code: Result<u64, StreamError>) {
    tracing::debug!("the edge abandoned the request ({code:?}); giving up the origin's answer");
    let code = code
        .ok()
        .and_then(|code| u32::try_from(code).ok())
        .unwrap_or(0);
    send.reset(code);
}

/// Streams the body that follows `head` into `send` and finishes the stream. Ok(true) when
/// the origin connection can serve another request.
pub async fn relay_body(
    rd: &mut ReadHalf,
    buf: &mut BytesMut,
    send: &mut SendStream,
    head: &Head,
    rule: &Rule,
    counted: &Counter,
) -> Result<bool, Failure> {
    let mut decoder = BodyDecoder::new(head.framing);
    loop {
        match body_chunk(rd, buf, &mut decoder).await {
            Ok(Some(chunk)) => {
                let len = chunk.len() as u64;
                if send.write(chunk).await.is_err() {
                    return Err(Failure::AfterHead);
                }
                counted.add(len);
            }
            Ok(None) => break,
            Err(err) => {
                let service = &rule.service;
                tracing::debug!("response body from origin {service} broke off: {err}");
                broke_off(send, head.framing);
                return Err(Failure::AfterHead);
            }
        }
    }
    if send.finish().is_err() {
        return Err(Failure::AfterHead);
    }
    Ok(head.keep_alive && head.framing != BodyFraming::UntilClose && buf.is_empty())
}

/// Ends the stream of a body the origin broke off. A reset makes the edge's QUIC stack
/// throw away what it received of the stream but has not passed on yet, so the client
/// would lose body bytes the origin did send. Under a declared length the edge tells a short
/// body from a whole one by itself: the stream is finished, and the edge forwards every
/// byte and then closes the client connection. A chunked or close-delimited body has no
/// length to check against, so only a reset can say that it is broken.
fn broke_off(send: &mut SendStream, framing: BodyFraming) {
    match framing {
        BodyFraming::Length(_) if send.finish().is_ok() => {}
        _ => send.reset(RESET_ORIGIN),
    }
}

/// Reads one response head and encodes its frame.
async fn read_head(
    rd: &mut ReadHalf,
    buf: &mut BytesMut,
    rule: &Rule,
    is_head: bool,
    buffers: &Buffers,
) -> Result<Head, Failure> {
    loop {
        if !buf.is_empty() {
            if let Some(head) = parse_head(buf, rule, is_head, buffers)? {
                return Ok(head);
            }
        }
        let (result, filled) = read_more(rd, std::mem::take(buf)).await;
        *buf = filled;
        match result {
            Ok(0) | Err(_) if buf.is_empty() => return Err(Failure::NoResponse),
            Ok(0) => {
                let service = &rule.service;
                return Err(protocol(format!("origin {service} closed mid-response")));
            }
            Ok(_) => {}
            Err(err) => return Err(protocol(format!("origin {}: {err}", rule.service))),
        }
    }
}

fn protocol(why: String) -> Failure {
    Failure::Origin(ErrorCode::OriginProtocol, why)
}

/// [`origin_head`], with what is wrong with a head put as the origin's protocol failure.
fn parse_head(
    buf: &mut BytesMut,
    rule: &Rule,
    is_head: bool,
    buffers: &Buffers,
) -> Result<Option<Head>, Failure> {
    origin_head(buf, is_head, buffers)
        .map_err(|why| protocol(format!("origin {}: {why}", rule.service)))
}

/// Parses the origin's response head at the start of `buf`, when it is all there, encodes
/// its response frame into the worker's frame block and takes the head off `buf`. `is_head`
/// says the request was a HEAD. `Err` says what is wrong with the head.
///
/// Not async on purpose: the parser's header array (4 KiB) lives on this call's stack, where
/// in an async function it would widen every future that awaits this one, and each request
/// would copy those bytes as its futures are built.
pub fn origin_head(
    buf: &mut BytesMut,
    is_head: bool,
    buffers: &Buffers,
) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = match http::parse_response(buf, &mut headers) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let method = if is_head { "HEAD" } else { "GET" };
    let framing = http::head::relayable_response_framing(method, head.status, head.headers)
        .map_err(|e| e.to_string())?;
    let body = match framing {
        BodyFraming::None | BodyFraming::Length(0) => BodyLen::Empty,
        BodyFraming::Length(n) => BodyLen::Known(n),
        BodyFraming::Chunked | BodyFraming::UntilClose => BodyLen::Unknown,
    };
    // The length travels in the frame. Only for HEAD and 304 does the field describe a body
    // that is not sent, and go through as it is; next to a Transfer-Encoding, on a 1xx or
    // 204, it is wrong and is dropped.
    let keep_length = framing == BodyFraming::None && (is_head || head.status == 304);
    let strip_length = !keep_length;
    let headers = head
        .headers
        .iter()
        .filter(|h| {
            let length = h.name.eq_ignore_ascii_case("content-length");
            !(strip_length && length || http::head::is_hop_by_hop(h.name, head.headers))
        })
        .map(|h| (h.name.as_bytes(), h.value));
    let frame = buffers
        .encode(256 + head.len, |frame| {
            frame::encode_response(frame, head.status, body, headers)
        })
        .map_err(|e| e.to_string())?;
    let keep_alive = http::head::keep_alive(head.version, head.headers);
    let status = head.status;
    let len = head.len;
    // Advancing keeps the buffer unshared, where splitting would share it.
    buf.advance(len);
    Ok(Some(Head {
        status,
        framing,
        keep_alive,
        frame,
    }))
}
