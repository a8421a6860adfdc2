//! Serving the streams the edge opens on one registered connection.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::drain::{InFlight, LinkEntry};
use super::ingress::{Ingress, Service};
use super::pool::Pool;
use super::tls::OriginTls;
use crate::metrics::connector::ConnectorMetrics;
use crate::quic::{Connection, QuicError, RecvStream, SendStream};
use crate::tunnel::buffers::Buffers;
use crate::tunnel::frame::{self, BodyLen, ErrorCode, Frame};
use crate::tunnel::io::read_frame;

/// Stream reset code for a stream whose request frame could not be read.
const RESET_BAD_REQUEST: u32 = 1;

/// What one connector worker shares between its connections and streams.
pub struct Local {
    pub ingress: Arc<Ingress>,
    pub pool: Pool,
    /// Set when the connector is shutting down: links stop instead of reconnecting.
    pub stopping: std::cell::Cell<bool>,
    /// This worker's TLS settings of each rule, by rule index (`None`: not a TLS origin).
    pub tls: Vec<Option<OriginTls>>,
    /// This worker's metrics; it is their only writer.
    pub metrics: Arc<ConnectorMetrics>,
    /// Streams being served, for the drain on shutdown.
    pub in_flight: std::cell::Cell<usize>,
    /// This worker's registered connections (see [`super::drain`]).
    pub links: std::cell::RefCell<Vec<LinkEntry>>,
    /// Buffers reused from one request to the next.
    pub buffers: Buffers,
}

/// Accepts and serves streams until the connection ends; returns why it ended.
pub async fn serve_connection(local: Rc<Local>, conn: Connection) -> QuicError {
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                monoio::spawn(handle_stream(local.clone(), send, recv, None));
            }
            Err(err) => return err,
        }
    }
}

/// [`serve_connection`] for a connection being retired: `serving` counts its streams in
/// flight, so the retirement knows when closing it loses nothing.
pub async fn serve_counted(local: Rc<Local>, conn: Connection, serving: Rc<Cell<usize>>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        monoio::spawn(handle_stream(
            local.clone(),
            send,
            recv,
            Some(serving.clone()),
        ));
    }
}

async fn handle_stream(
    local: Rc<Local>,
    mut send: SendStream,
    mut recv: RecvStream,
    serving: Option<Rc<Cell<usize>>>,
) {
    let _active = local.metrics.active_streams.track();
    let _in_flight = InFlight::enter(&local.in_flight);
    let _serving = serving.as_deref().map(InFlight::enter);
    let (frame_bytes, first) = match read_frame(&mut recv, Bytes::new()).await {
        Ok(read) => read,
        Err(err) => {
            tracing::debug!("cannot read request frame: {err}");
            send.reset(RESET_BAD_REQUEST);
            return;
        }
    };
    let request = match frame::decode(&frame_bytes) {
        Ok(Some((Frame::Request(request), _))) => request,
        _ => {
            let message = "the edge sent a stream that does not start with a request";
            let status = send_error(&mut send, ErrorCode::BadRequest, message).await;
            return local.metrics.requests.record(status);
        }
    };

    let (index, rule) = local
        .ingress
        .find(request.line.authority, request.line.path);
    tracing::debug!(
        method = request.line.method,
        host = request.line.authority,
        path = request.line.path,
        rule = index + 1,
        "request"
    );
    let status = match &rule.service {
        Service::Status(code) => {
            recv.stop(0);
            respond(&mut send, *code, "text/plain; charset=utf-8", Bytes::new()).await;
            *code
        }
        Service::HelloWorld => {
            recv.stop(0);
            let page = hello_page(request.line.authority, request.line.path);
            respond(&mut send, 200, "text/html; charset=utf-8", page).await;
            200
        }
        Service::Tcp { .. } => {
            super::tcp::serve(&local, index, rule, &request, first, &mut send, &mut recv).await
        }
        _ => super::origin::proxy(&local, index, rule, &request, first, &mut send, &mut recv).await,
    };
    local.metrics.requests.record(status);
}

/// Answers with a complete response produced here, without an origin.
async fn respond(send: &mut SendStream, status: u16, content_type: &str, body: Bytes) {
    let mut out = BytesMut::with_capacity(128 + body.len());
    let len = if body.is_empty() {
        BodyLen::Empty
    } else {
        BodyLen::Known(body.len() as u64)
    };
    let headers = [(&b"content-type"[..], content_type.as_bytes())];
    if frame::encode_response(&mut out, status, len, headers).is_err() {
        send.reset(RESET_BAD_REQUEST);
        return;
    }
    if send.write(out.freeze()).await.is_err() || send.write(body).await.is_err() {
        return;
    }
    let _ = send.finish();
}

/// Tells the edge the origin could not answer; the edge shows the page. Returns the status
/// that page has, for the metrics.
pub async fn send_error(send: &mut SendStream, code: ErrorCode, message: &str) -> u16 {
    let mut out = BytesMut::with_capacity(64 + message.len());
    frame::encode_error(&mut out, code, message);
    if send.write(out.freeze()).await.is_ok() {
        let _ = send.finish();
    }
    let shown = crate::edge::error::ProxyError::Origin {
        code,
        message: String::new(),
    };
    crate::edge::error::page(&shown).0
}

fn hello_page(host: &str, path: &str) -> Bytes {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>adit tunnel</title></head>\
         <body><h1>Hello from adit</h1><p>This page came through an adit tunnel: {} {} was \
         answered by the connector's built-in hello-world origin.</p></body></html>\n",
        escape(host),
        escape(path),
    )
    .into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hello_page_escapes() {
        let page = super::hello_page("a<b", "/\"x\"");
        let text = std::str::from_utf8(&page).unwrap();
        assert!(text.contains("a&lt;b /&quot;x&quot; was answered"));
    }
}
