//! Raw bytes both ways between a socket and a tunnel stream, after an upgrade.
//!
//! Each direction ends on its own, so a half-close crosses the tunnel: end of input from the
//! socket finishes the stream; the end of the stream shuts down writing on the socket. A
//! failure in either direction ends both (the other side would otherwise wait forever), but
//! for the far end stopping the stream: that ends only the upload, and the download still
//! delivers what the far end sends before its own end.

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::quic::{RecvStream, SendStream, StreamError};
use crate::runtime::gather::Gather;
use crate::runtime::io::read_more;

/// Stream reset code when the socket side of a spliced stream failed.
pub const RESET_SOCKET_FAILED: u32 = 3;

/// Copies until both directions have ended or one has failed. `pending` holds bytes already
/// read from the socket, `first` bytes already read from the stream.
pub async fn splice<R, W>(
    rd: &mut R,
    wr: &mut W,
    pending: &mut BytesMut,
    send: &mut SendStream,
    recv: &mut RecvStream,
    first: Bytes,
) where
    R: AsyncReadRent,
    W: AsyncWriteRent,
{
    let up = socket_to_stream(rd, pending, send);
    let down = stream_to_socket(recv, wr, first);
    both_unless_failed(up, down).await;
}

async fn socket_to_stream<R: AsyncReadRent>(
    rd: &mut R,
    buf: &mut BytesMut,
    send: &mut SendStream,
) -> bool {
    loop {
        if !buf.is_empty() {
            match send.write(buf.split().freeze()).await {
                Ok(()) => {}
                // The far end takes no more (its side of the connection broke off); what it
                // still sends, such as its reason, comes down the other direction, which
                // goes on to its end. This one ends here, as if the socket's input had.
                Err(StreamError::Stopped(_)) => return true,
                Err(_) => return false,
            }
        }
        let (result, filled) = read_more(rd, std::mem::take(buf)).await;
        *buf = filled;
        match result {
            Ok(0) => return send.finish().is_ok(),
            Ok(_) => {}
            Err(err) => {
                tracing::debug!("spliced socket read failed: {err}");
                send.reset(RESET_SOCKET_FAILED);
                return false;
            }
        }
    }
}

async fn stream_to_socket<W: AsyncWriteRent>(
    recv: &mut RecvStream,
    wr: &mut W,
    first: Bytes,
) -> bool {
    let mut gather = Gather::new();
    gather.push(first);
    loop {
        if gather.is_empty() {
            match recv.read_gather(&mut gather).await {
                Ok(true) => {}
                Ok(false) => return wr.shutdown().await.is_ok(),
                Err(err) => {
                    tracing::debug!("spliced stream failed: {err}");
                    let _ = wr.shutdown().await;
                    return false;
                }
            }
        }
        let (result, back) = gather.write_all(wr).await;
        if result.is_err() {
            recv.stop(RESET_SOCKET_FAILED);
            return false;
        }
        gather = back;
    }
}

/// Runs both to completion, unless one reports failure first: then the other is dropped.
async fn both_unless_failed(
    a: impl std::future::Future<Output = bool>,
    b: impl std::future::Future<Output = bool>,
) {
    use std::task::Poll;

    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut a_done, mut b_done) = (false, false);
    std::future::poll_fn(|cx| {
        if !a_done {
            if let Poll::Ready(ok) = a.as_mut().poll(cx) {
                if !ok {
                    return Poll::Ready(());
                }
                a_done = true;
            }
        }
        if !b_done {
            if let Poll::Ready(ok) = b.as_mut().poll(cx) {
                if !ok {
                    return Poll::Ready(());
                }
                b_done = true;
            }
        }
        if a_done && b_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
