//! Serving the streams the edge opens on one registered connection.
//!
//! A stream is served by one of the worker's server tasks. A task that is done with its
//! stream parks and waits for the next one instead of ending, so a steady flow of requests
//! spawns no task (spawning allocates the task). When every task is busy, a new one is
//! spawned: the concurrency is bounded only by the edge's stream limit. At most
//! [`PARKED_TASKS_MAX`] tasks stay parked; the others end with their stream.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

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

/// Most server tasks one worker keeps parked for the streams to come. Each holds the memory
/// of a stream's whole state machine while it waits, so the number stays bounded; a burst
/// beyond it spawns tasks that end with their stream.
const PARKED_TASKS_MAX: usize = 128;

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
    /// Server tasks waiting for a stream.
    pub tasks: StreamTasks,
}

/// A stream the edge opened, on its way to a server task.
pub struct Accepted {
    send: SendStream,
    recv: RecvStream,
    /// The count of streams in flight of a connection being retired.
    serving: Option<Rc<Cell<usize>>>,
}

/// The parked server tasks of one worker, each waiting for a `T` at its own slot.
pub struct StreamTasks<T = Accepted> {
    parked: RefCell<Vec<Rc<Slot<T>>>>,
    /// Set when the worker stops: parked tasks end, none parks any more.
    closed: Cell<bool>,
}

/// Where a parked task waits for its next stream.
pub struct Slot<T> {
    next: Cell<Option<T>>,
    waker: Cell<Option<Waker>>,
}

impl<T> Default for StreamTasks<T> {
    fn default() -> Self {
        StreamTasks {
            parked: RefCell::default(),
            closed: Cell::new(false),
        }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            next: Cell::new(None),
            waker: Cell::new(None),
        }
    }
}

impl<T> StreamTasks<T> {
    /// Ends the parked tasks (they hold the worker's state) and keeps any from parking again.
    pub fn close(&self) {
        self.closed.set(true);
        let parked = std::mem::take(&mut *self.parked.borrow_mut());
        for slot in parked {
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    /// Gives `item` to the task parked last; hands it back when none is parked.
    fn hand(&self, item: T) -> Result<(), T> {
        let Some(slot) = self.parked.borrow_mut().pop() else {
            return Err(item);
        };
        slot.next.set(Some(item));
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// Parks the task waiting at `slot` until an item is handed to it. `None` when enough
    /// tasks are parked already or the worker stops: the task then ends.
    async fn next(&self, slot: &Rc<Slot<T>>) -> Option<T> {
        {
            let mut parked = self.parked.borrow_mut();
            if self.closed.get() || parked.len() >= PARKED_TASKS_MAX {
                return None;
            }
            parked.push(slot.clone());
        }
        std::future::poll_fn(|cx| self.poll_next(slot, cx)).await
    }

    fn poll_next(&self, slot: &Slot<T>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = slot.next.take() {
            return Poll::Ready(Some(item));
        }
        if self.closed.get() {
            return Poll::Ready(None);
        }
        let waker = match slot.waker.take() {
            Some(waker) if waker.will_wake(cx.waker()) => waker,
            _ => cx.waker().clone(),
        };
        slot.waker.set(Some(waker));
        Poll::Pending
    }
}

/// Gives `accepted` to a parked server task, or to a new one when none is parked.
fn dispatch(local: &Rc<Local>, accepted: Accepted) {
    if let Err(accepted) = local.tasks.hand(accepted) {
        monoio::spawn(server_task(local.clone(), accepted));
    }
}

/// Serves `accepted`, then the streams handed to it while parked, until it is not parked
/// again.
async fn server_task(local: Rc<Local>, mut accepted: Accepted) {
    let slot = Rc::new(Slot::default());
    loop {
        handle_stream(&local, accepted).await;
        match local.tasks.next(&slot).await {
            Some(next) => accepted = next,
            None => return,
        }
    }
}

/// Accepts and serves streams until the connection ends; returns why it ended.
pub async fn serve_connection(local: Rc<Local>, conn: Connection) -> QuicError {
    serve_streams(&local, &conn, None).await
}

/// [`serve_connection`] for a connection being retired: `serving` counts its streams in
/// flight, so the retirement knows when closing it loses nothing.
pub async fn serve_counted(local: Rc<Local>, conn: Connection, serving: Rc<Cell<usize>>) {
    serve_streams(&local, &conn, Some(serving)).await;
}

async fn serve_streams(
    local: &Rc<Local>,
    conn: &Connection,
    serving: Option<Rc<Cell<usize>>>,
) -> QuicError {
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let serving = serving.clone();
                dispatch(
                    local,
                    Accepted {
                        send,
                        recv,
                        serving,
                    },
                );
            }
            Err(err) => return err,
        }
    }
}

async fn handle_stream(local: &Local, accepted: Accepted) {
    let Accepted {
        mut send,
        mut recv,
        serving,
    } = accepted;
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
            super::tcp::serve(local, index, rule, &request, first, &mut send, &mut recv).await
        }
        _ => super::origin::proxy(local, index, rule, &request, first, &mut send, &mut recv).await,
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
    use super::*;

    fn run<F: std::future::Future<Output = ()>>(test: F) {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        runtime.block_on(test);
    }

    /// A task that takes items until it is not parked again, recording each.
    async fn taker(tasks: Rc<StreamTasks<u32>>, took: Rc<RefCell<Vec<u32>>>) {
        let slot = Rc::new(Slot::default());
        while let Some(item) = tasks.next(&slot).await {
            took.borrow_mut().push(item);
        }
        took.borrow_mut().push(0);
    }

    #[test]
    fn a_parked_task_takes_the_next_items_until_closed() {
        run(async {
            let tasks = Rc::new(StreamTasks::<u32>::default());
            let took = Rc::new(RefCell::new(Vec::new()));
            assert_eq!(tasks.hand(1), Err(1));

            monoio::spawn(taker(tasks.clone(), took.clone()));
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(tasks.parked.borrow().len(), 1);
            assert_eq!(tasks.hand(7), Ok(()));
            assert_eq!(tasks.hand(8), Err(8));
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(tasks.hand(9), Ok(()));
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(*took.borrow(), [7, 9]);

            tasks.close();
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(*took.borrow(), [7, 9, 0]);
            assert_eq!(tasks.hand(10), Err(10));
        });
    }

    #[test]
    fn no_more_than_the_cap_stay_parked() {
        run(async {
            let tasks = Rc::new(StreamTasks::<u32>::default());
            let took = Rc::new(RefCell::new(Vec::new()));
            for _ in 0..PARKED_TASKS_MAX + 3 {
                monoio::spawn(taker(tasks.clone(), took.clone()));
            }
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(tasks.parked.borrow().len(), PARKED_TASKS_MAX);
            assert_eq!(*took.borrow(), [0, 0, 0]);
        });
    }

    #[test]
    fn hello_page_escapes() {
        let page = super::hello_page("a<b", "/\"x\"");
        let text = std::str::from_utf8(&page).unwrap();
        assert!(text.contains("a&lt;b /&quot;x&quot; was answered"));
    }
}
