//! The readiness wait of a plain origin connection, kept from the moment the connection goes
//! idle in the pool until its next response begins.
//!
//! A pooled connection must not be reused once the origin closed it or sent bytes nobody
//! asked for (those would be read as the next response). Instead of a `MSG_PEEK` call each
//! time a connection is taken (a system call per request), the pool arms a readiness poll
//! when the connection goes idle: it rides along in the ring's next submission, and when
//! the connection is taken, a poll that completed meanwhile means the connection is spent.
//! A poll still pending goes on as the wait for the response's first bytes, which the reader
//! then takes with one direct call. A request thus costs one readiness poll either way.

use std::cell::UnsafeCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::pool::{OriginConn, Socket};

/// The origin connection both halves share.
pub type Shared = Rc<UnsafeCell<OriginConn>>;

/// A connection's readiness wait, boxed once per connection.
pub type Ready = Pin<Box<dyn Wait>>;

/// A readiness wait that can be armed again without a new allocation: the slot is boxed
/// once per connection, and its future type (that of [`readiness`]) has no name.
pub trait Wait {
    /// Starts a new wait on `conn` unless one is armed.
    fn arm(self: Pin<&mut Self>, conn: &Shared);

    /// Polls the armed wait: `None` when none is armed. The wait is dropped once it
    /// completes (it holds a reference of the connection).
    fn poll_wait(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<()>>>;
}

/// A [`Wait`] built by `arm`.
struct Slot<F> {
    arm: fn(Shared) -> F,
    wait: Option<F>,
}

impl<F> Slot<F> {
    fn wait(self: Pin<&mut Self>) -> Pin<&mut Option<F>> {
        // SAFETY: `wait` is never moved out of a pinned slot: it is only set, polled in
        // place and dropped in place, and `Slot` has no `Drop` of its own that moves it.
        unsafe { self.map_unchecked_mut(|slot| &mut slot.wait) }
    }
}

impl<F: Future<Output = io::Result<()>>> Wait for Slot<F> {
    fn arm(mut self: Pin<&mut Self>, conn: &Shared) {
        if self.wait.is_none() {
            let arm = self.arm;
            self.as_mut().wait().set(Some(arm(conn.clone())));
        }
    }

    fn poll_wait(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<()>>> {
        let Some(wait) = self.as_mut().wait().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let done = std::task::ready!(wait.poll(cx));
        self.wait().set(None);
        Poll::Ready(Some(done))
    }
}

/// A fresh, unarmed wait for one connection.
pub fn slot() -> Ready {
    Box::pin(Slot {
        arm: readiness,
        wait: None,
    })
}

/// Arms `slot` on an idle connection and submits its poll, so that whatever the origin
/// does while the connection idles completes it.
pub fn watch_idle(slot: &mut Ready, conn: &Shared) {
    slot.as_mut().arm(conn);
    let _ = slot
        .as_mut()
        .poll_wait(&mut Context::from_waker(Waker::noop()));
}

/// Whether the wait armed by [`watch_idle`] is still pending: the origin neither closed the
/// connection nor sent anything since it went idle.
pub fn still_quiet(slot: &mut Ready) -> bool {
    let polled = slot
        .as_mut()
        .poll_wait(&mut Context::from_waker(Waker::noop()));
    polled.is_pending()
}

/// Waits until the socket under a plain connection is readable (data, a close or an error).
/// A TLS connection is never watched this way: its session may hold bytes the socket's
/// readiness would not announce, so the wait never completes.
async fn readiness(conn: Shared) -> io::Result<()> {
    // SAFETY: the halves reach the connection through the same cell and take `&mut` from it
    // only for their own operations; this shared reference submits a poll (which keeps its
    // own handle of the descriptor) and reads no field those operations change.
    match unsafe { &*conn.get() } {
        OriginConn::Plain(Socket::Tcp(s)) => s.readable(false).await,
        OriginConn::Plain(Socket::Unix(s)) => s.readable(false).await,
        OriginConn::Tls(_) => std::future::pending().await,
    }
}
