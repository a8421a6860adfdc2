//! The response half of a proxied request: read the connector's frames, write the head and
//! stream the body to the client in the framing the client can take.

use std::cell::Cell;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use monoio::io::{AsyncWriteRent, OwnedWriteHalf};

use super::error::ProxyError;
use crate::http::{self, body, Version};
use crate::metrics::edge::EdgeMetrics;
use crate::metrics::Counter;
use crate::quic::{RecvStream, StreamError};
use crate::runtime::gather::Gather;
use crate::runtime::io::write_all;
use crate::tunnel::frame::{self, BodyLen, ErrorCode, Frame, ResponseFrame};
use crate::tunnel::io::{read_frame, FrameReadError, STREAM_READ};

/// What the response side needs to know about its request.
pub struct Exchange<'a> {
    pub version: Version,
    pub keep_alive: bool,
    pub is_head: bool,
    /// The client asked for a WebSocket: a 101 switches the connection to raw bytes.
    pub upgrade: bool,
    /// Set once any response byte went to the client; an error page is impossible after.
    pub head_sent: &'a Cell<bool>,
    /// Set while the client may not send the body it announced (see
    /// `upload::BodyFlags::may_skip`): a final response then closes the connection.
    pub may_skip_body: &'a Cell<bool>,
    /// A client that accepts no bytes for this long is dropped: its stream would otherwise
    /// pin a stream window of the tunnel connection indefinitely.
    pub write_timeout: std::time::Duration,
    /// Set when the edge is stopping: the response then closes the connection.
    pub stop: &'a super::drain::Stop,
    /// The worker's metrics: the response's status and latencies, and its body bytes.
    pub metrics: &'a EdgeMetrics,
    /// When the request head was complete.
    pub started: Instant,
    /// When the stream was opened.
    pub opened: Instant,
}

pub enum Failure {
    /// Nothing was written: the client can still get an error page.
    BeforeHead(ProxyError),
    /// The tunnel connection ended before a single response byte arrived, so nothing was
    /// written either. The connector may or may not have acted on the request: the proxy
    /// may send it again elsewhere only when doing so twice is harmless.
    Lost(StreamError),
    /// The response broke off after its head; the connection must close.
    AfterHead,
}

pub enum Done {
    /// The whole response went out; true when the connection can carry another request.
    Complete(bool),
    /// The origin accepted the upgrade: raw bytes from here on, starting with these.
    Switched(Bytes),
}

/// Stream stop code when the client stopped accepting the response.
const RESET_CLIENT_STALLED: u32 = 4;

/// How the response body is framed for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Relays the response: interim heads, then the final head and its body.
pub async fn download<W: AsyncWriteRent>(
    wr: &mut OwnedWriteHalf<W>,
    recv: &mut RecvStream,
    exchange: &Exchange<'_>,
    head: &mut BytesMut,
) -> Result<Done, Failure> {
    let mut pending = first_chunk(recv).await?;
    loop {
        let (frame_bytes, rest) = read_frame(recv, pending).await.map_err(before_head)?;
        let response = match frame::decode(&frame_bytes) {
            Ok(Some((Frame::Response(response), _))) => response,
            Ok(Some((Frame::Error(error), _))) if !exchange.head_sent.get() => {
                return Err(Failure::BeforeHead(ProxyError::Origin {
                    code: error.code,
                    message: error.message.to_owned(),
                }))
            }
            Ok(Some(_)) if exchange.head_sent.get() => return Err(Failure::AfterHead),
            _ => {
                let err = ProxyError::Tunnel("the connector sent an unexpected frame".into());
                return Err(Failure::BeforeHead(err));
            }
        };
        let status = response.status;

        if status == 101 && exchange.upgrade {
            exchange
                .metrics
                .origin_latency
                .observe(exchange.opened.elapsed());
            let mut head = BytesMut::with_capacity(256);
            head.put_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
            head.put_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
            put_fields(&mut head, &response);
            head.put_slice(b"\r\n");
            exchange.head_sent.set(true);
            let written = write_all(wr, head.freeze()).await;
            exchange.metrics.response(101, exchange.started);
            written.map_err(|_| Failure::AfterHead)?;
            return Ok(Done::Switched(rest));
        }

        // Interim heads (100 Continue, 103 Early Hints) go to HTTP/1.1 clients as they come;
        // the final response follows on the same stream.
        if (100..200).contains(&status) {
            if exchange.version == Version::Http11 && status != 101 {
                if status == 100 {
                    exchange.may_skip_body.set(false);
                }
                let mut head = BytesMut::with_capacity(128);
                head.put_slice(b"HTTP/1.1 ");
                put_status(&mut head, status);
                put_fields(&mut head, &response);
                head.put_slice(b"\r\n");
                exchange.head_sent.set(true);
                write_all(wr, head.freeze())
                    .await
                    .map_err(|_| Failure::AfterHead)?;
            }
            pending = rest;
            continue;
        }

        return final_response(wr, recv, exchange, &response, rest, head).await;
    }
}

/// The first bytes of the response, read apart from the rest so that a connection lost
/// before any of them arrived can be told from one lost partway through the head.
async fn first_chunk(recv: &mut RecvStream) -> Result<Bytes, Failure> {
    match recv.read_chunk(STREAM_READ).await {
        Ok(chunk) => Ok(chunk.unwrap_or_default()),
        Err(err) if is_connection_loss(&err) => Err(Failure::Lost(err)),
        Err(err) => Err(before_head(err.into())),
    }
}

/// Whether a stream failed because its whole connection ended (the peer vanished, closed
/// it, or this side closed it), rather than because of something about this stream.
pub fn is_connection_loss(err: &StreamError) -> bool {
    matches!(err, StreamError::ConnectionLost(_))
}

/// Why no response head arrived. The connector resets a stream with `RESET_ORIGIN` when the
/// origin's response broke off; that is the origin's fault, not the tunnel's.
fn before_head(err: FrameReadError) -> Failure {
    const RESET_ORIGIN: u64 = 2;
    let err = match err {
        FrameReadError::Stream(StreamError::Reset(RESET_ORIGIN)) => ProxyError::Origin {
            code: ErrorCode::OriginProtocol,
            message: "the origin's response broke off before it was complete".into(),
        },
        other => ProxyError::Tunnel(other.to_string()),
    };
    Failure::BeforeHead(err)
}

async fn final_response<W: AsyncWriteRent>(
    wr: &mut OwnedWriteHalf<W>,
    recv: &mut RecvStream,
    exchange: &Exchange<'_>,
    response: &ResponseFrame<'_>,
    rest: Bytes,
    head: &mut BytesMut,
) -> Result<Done, Failure> {
    let status = response.status;
    exchange
        .metrics
        .origin_latency
        .observe(exchange.opened.elapsed());
    let keep_alive =
        exchange.keep_alive && !exchange.stop.is_set() && !exchange.may_skip_body.get();
    let (framing, keep_alive) = client_head(
        head,
        response,
        exchange.version,
        exchange.is_head,
        keep_alive,
    );
    exchange.head_sent.set(true);
    let counted = &exchange.metrics.bytes_to_client;
    let body = Body {
        framing,
        write_timeout: exchange.write_timeout,
        counted,
    };
    // The head is split off the connection's buffer, which takes its bytes back for the
    // next response once the write is done.
    let relayed = relay_body(wr, recv, head.split().freeze(), rest, body).await;
    // A response counts once its head was written (or failed to be), whatever became of
    // its body.
    exchange.metrics.response(status, exchange.started);
    relayed?;
    Ok(Done::Complete(keep_alive))
}

/// Writes the client's head for the final `response` into `head` (cleared first) and says
/// how its body goes to the client and whether the connection stays open after it.
/// `keep_alive` is whether the request allows that (and the edge is not stopping). Public so
/// that `benches/instructions.rs` counts the same code.
pub fn client_head(
    head: &mut BytesMut,
    response: &ResponseFrame<'_>,
    version: Version,
    is_head: bool,
    keep_alive: bool,
) -> (ClientFraming, bool) {
    let status = response.status;
    let no_body = is_head || status == 204 || status == 304;
    let framing = match response.body {
        _ if no_body => ClientFraming::None,
        BodyLen::Empty => ClientFraming::Length(0),
        BodyLen::Known(n) => ClientFraming::Length(n),
        BodyLen::Unknown if version == Version::Http11 => ClientFraming::Chunked,
        BodyLen::Unknown => ClientFraming::Close,
    };
    // A response may start before the request body has all arrived (an echo, an early 413);
    // if the body is still unfinished when the response ends, its rest is dropped, and the
    // connection closed if that is too long or slow (`upload.rs`).
    let keep_alive = keep_alive && framing != ClientFraming::Close;

    head.clear();
    head.reserve(512);
    head.put_slice(b"HTTP/1.1 ");
    put_status(head, status);
    put_fields(head, response);
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
    } else if version == Version::Http10 {
        // HTTP/1.0 closes by default: a client that asked to keep the connection is told it
        // was kept.
        head.put_slice(b"Connection: keep-alive\r\n");
    }
    head.put_slice(b"\r\n");
    (framing, keep_alive)
}

fn put_fields(head: &mut BytesMut, response: &ResponseFrame<'_>) {
    for (name, value) in response.headers.iter() {
        head.put_slice(name);
        head.put_slice(b": ");
        head.put_slice(value);
        head.put_slice(b"\r\n");
    }
}

/// How a response body goes to the client.
struct Body<'a> {
    framing: ClientFraming,
    write_timeout: std::time::Duration,
    counted: &'a Counter,
}

/// Writes the head and streams the body after it as it arrives, framed as decided. Every
/// chunk already received goes out in one gathered write, the head with the first of them
/// and the last-chunk marker with the last, so a small response is one write.
async fn relay_body<W: AsyncWriteRent>(
    wr: &mut OwnedWriteHalf<W>,
    recv: &mut RecvStream,
    head: Bytes,
    first: Bytes,
    body: Body<'_>,
) -> Result<(), Failure> {
    let Body {
        framing,
        write_timeout,
        counted,
    } = body;
    let mut sent: u64 = 0;
    let mut head = Some(head);
    let mut gather = Gather::new();
    gather.push(first);
    // Whatever else already arrived (often the whole body and its end) joins the head.
    if !gather.is_full() && recv.try_gather(&mut gather).is_err() {
        return Err(Failure::AfterHead);
    }
    let mut ended = false;
    while !ended {
        if gather.is_empty() && head.is_none() {
            match recv.read_gather(&mut gather).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => {
                    tracing::debug!("response body from tunnel failed: {err}");
                    return Err(Failure::AfterHead);
                }
            }
        }
        ended = recv.is_finished();
        let len = gather.len() as u64;
        sent += len;
        match framing {
            ClientFraming::Length(n) if sent > n => return Err(Failure::AfterHead),
            ClientFraming::None => gather.clear(),
            ClientFraming::Chunked => {
                gather.frame_chunked();
                if ended {
                    gather.push(Bytes::from_static(body::LAST_CHUNK));
                }
            }
            ClientFraming::Length(_) | ClientFraming::Close => {}
        }
        if let Some(head) = head.take() {
            gather.push_front(head);
        }
        if gather.is_empty() {
            continue;
        }
        match monoio::time::timeout(write_timeout, gather.write_all(wr)).await {
            Ok((Ok(()), back)) => {
                gather = back;
                if framing != ClientFraming::None {
                    counted.add(len);
                }
            }
            Ok((Err(_), _)) => return Err(Failure::AfterHead),
            Err(_) => {
                tracing::debug!("client accepted nothing for {write_timeout:?}; dropping it");
                recv.stop(RESET_CLIENT_STALLED);
                return Err(Failure::AfterHead);
            }
        }
    }
    match framing {
        ClientFraming::Length(n) if sent != n => Err(Failure::AfterHead),
        ClientFraming::Chunked if !ended => write_all(wr, body::LAST_CHUNK)
            .await
            .map_err(|_| Failure::AfterHead),
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

#[cfg(test)]
mod tests {
    use crate::quic::StreamError;
    use quinn_proto::{ConnectionError, VarInt};

    #[test]
    fn only_a_lost_connection_counts_as_lost() {
        let lost = |reason| super::is_connection_loss(&StreamError::ConnectionLost(reason));
        assert!(lost(ConnectionError::TimedOut));
        assert!(lost(ConnectionError::Reset));
        assert!(lost(ConnectionError::LocallyClosed));
        assert!(lost(ConnectionError::ApplicationClosed(
            quinn_proto::ApplicationClose {
                error_code: VarInt::from_u32(3),
                reason: bytes::Bytes::new(),
            }
        )));
        assert!(!super::is_connection_loss(&StreamError::Reset(2)));
        assert!(!super::is_connection_loss(&StreamError::Reset(0)));
        assert!(!super::is_connection_loss(&StreamError::Stopped(0)));
        assert!(!super::is_connection_loss(&StreamError::ClosedStream));
    }

    #[test]
    fn client_head_frames_the_body_and_keeps_the_connection() {
        use super::{client_head, ClientFraming};
        use crate::http::Version;
        use crate::tunnel::frame::{self, BodyLen, Frame};

        let head_for = |body, version, is_head| {
            let mut encoded = bytes::BytesMut::new();
            let fields = [(&b"Content-Type"[..], &b"text/plain"[..])];
            frame::encode_response(&mut encoded, 200, body, fields).unwrap();
            let Ok(Some((Frame::Response(response), _))) = frame::decode(&encoded) else {
                panic!("not a response frame");
            };
            let mut head = bytes::BytesMut::new();
            let decided = client_head(&mut head, &response, version, is_head, true);
            (decided, String::from_utf8(head.to_vec()).unwrap())
        };

        assert_eq!(
            head_for(BodyLen::Known(13), Version::Http11, false),
            (
                (ClientFraming::Length(13), true),
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n".into()
            )
        );
        assert_eq!(
            head_for(BodyLen::Unknown, Version::Http10, false),
            (
                (ClientFraming::Close, false),
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".into()
            )
        );
        assert_eq!(
            head_for(BodyLen::Known(13), Version::Http10, false),
            (
                (ClientFraming::Length(13), true),
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\
                 Connection: keep-alive\r\n\r\n"
                    .into()
            )
        );
        assert_eq!(
            head_for(BodyLen::Unknown, Version::Http11, true),
            (
                (ClientFraming::None, true),
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".into()
            )
        );
    }

    #[test]
    fn itoa_formats_decimal() {
        assert_eq!(super::itoa(0, &mut [0; 20]), b"0");
        assert_eq!(super::itoa(1_048_576, &mut [0; 20]), b"1048576");
        assert_eq!(super::itoa(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }
}
