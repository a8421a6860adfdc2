//! Serving a tunnel stream for a `tcp://` (also `ssh://`, `rdp://`) ingress rule.
//!
//! The client end is `adit access tcp`, which opens a WebSocket through the edge; the edge
//! forwards the upgrade as a stream of kind WebSocket and relays raw bytes once the
//! connector answers 101. The connector is the WebSocket's server end: it checks the
//! handshake, dials the origin, answers 101 with `Sec-WebSocket-Accept`, and then bridges
//! WebSocket frames on the stream to plain bytes on the origin socket ([`crate::ws::bridge`]).
//! Origin connections are not pooled: each stream owns its connection for its whole life.

use bytes::{Bytes, BytesMut};
use monoio::io::Splitable;
use monoio::net::TcpStream;

use super::ingress::{Rule, Service};
use super::pool::DialError;
use super::serve::{send_error, Local};
use crate::quic::{RecvStream, SendStream};
use crate::runtime::gather::Gather;
use crate::tunnel::frame::{self, BodyLen, ErrorCode, RequestFrame, StreamKind};
use crate::ws::bridge::{self, WsRead, WsWrite};
use crate::ws::{handshake, Role};

/// Stream reset code when the origin connection or the stream broke off.
const RESET_BROKEN: u32 = 2;

/// Serves one stream of a TCP rule: the WebSocket handshake, then the relay until both
/// directions end. A request that is not a WebSocket upgrade gets a 400 page that tells
/// the user how to connect; an origin that cannot be reached gets a 502 page naming it.
///
/// `local` and `rule_index` are unused: a TCP stream needs no pooled connection and no
/// per-worker TLS settings. They keep this entry point in line with the HTTP proxy's.
/// Returns the status sent to the edge (0 when none was).
pub async fn serve(
    _local: &Local,
    _rule_index: usize,
    rule: &Rule,
    request: &RequestFrame<'_>,
    first: Bytes,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> u16 {
    let Service::Tcp { host, port } = &rule.service else {
        let message = format!("rule for {} is not a TCP service", rule.service);
        return send_error(send, ErrorCode::Internal, &message).await;
    };
    let key = match (
        request.line.kind,
        handshake::check_request(request.headers.iter()),
    ) {
        (StreamKind::WebSocket, Ok(key)) => key,
        (kind, checked) => {
            tracing::debug!(?kind, ?checked, "not a WebSocket upgrade for a TCP rule");
            recv.stop(0);
            let message = format!(
                "{} carries TCP: connect with adit access tcp",
                request.line.authority
            );
            return send_error(send, ErrorCode::BadRequest, &message).await;
        }
    };

    let origin = match dial(rule, host, *port).await {
        Ok(origin) => origin,
        Err(err) => {
            tracing::debug!("{err}");
            recv.stop(0);
            return send_error(send, ErrorCode::OriginUnreachable, &err.to_string()).await;
        }
    };

    let accept = handshake::accept_key(key);
    let mut head = BytesMut::with_capacity(64);
    let headers = [(&b"sec-websocket-accept"[..], accept.as_bytes())];
    if frame::encode_response(&mut head, 101, BodyLen::Unknown, headers).is_err() {
        send.reset(RESET_BROKEN);
        return 0;
    }
    if send.write(head.freeze()).await.is_err() {
        return 0;
    }

    let (origin_in, mut origin_out) = origin.into_split();
    let mut ws_in = Stream(recv);
    let mut ws_out = Stream(send);
    let outcome = bridge::run(
        Role::Server,
        first,
        &mut ws_in,
        &mut ws_out,
        origin_in,
        &mut origin_out,
    )
    .await;
    tracing::debug!(service = %rule.service, ?outcome, "tcp stream ended");
    101
}

async fn dial(rule: &Rule, host: &str, port: u16) -> Result<TcpStream, DialError> {
    let timeout = rule.origin.connect_timeout;
    match monoio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => {
            // Interactive protocols (SSH keystrokes) must not wait for Nagle.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => Err(DialError::Io {
            service: rule.service.to_string(),
            source,
        }),
        Err(_) => Err(DialError::Timeout {
            service: rule.service.to_string(),
            timeout,
        }),
    }
}

/// A half of the tunnel stream as a WebSocket carrier.
struct Stream<'a, T>(&'a mut T);

impl WsRead for Stream<'_, RecvStream> {
    /// Copies every chunk already received into `buf`: client frames are masked, so their
    /// payload must be rewritten anyway, and QUIC's chunks are shared with the packets they
    /// came in. Taking all of them at once lets one pass decode many frames.
    async fn read_into(&mut self, mut buf: BytesMut) -> (std::io::Result<usize>, BytesMut) {
        let mut gather = Gather::new();
        match self.0.read_gather(&mut gather).await {
            Ok(true) => {
                let len = gather.len();
                buf.reserve(len);
                gather.drain_into(&mut buf);
                (Ok(len), buf)
            }
            Ok(false) => (Ok(0), buf),
            Err(err) => (Err(std::io::Error::other(err)), buf),
        }
    }
}

impl WsWrite for Stream<'_, SendStream> {
    async fn write(&mut self, frame: Bytes) -> std::io::Result<()> {
        self.0.write(frame).await.map_err(std::io::Error::other)
    }

    async fn finish(&mut self) -> std::io::Result<()> {
        self.0.finish().map_err(std::io::Error::other)
    }

    fn abort(&mut self) {
        self.0.reset(RESET_BROKEN);
    }
}
