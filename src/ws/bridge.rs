//! Relaying between a WebSocket and a raw byte stream, both directions at once: the IO layer
//! over [`super::frame`].
//!
//! One side is the WebSocket carrier ([`WsRead`] and [`WsWrite`]: a tunnel stream at the
//! connector, the TCP connection to the edge at `adit access`), the other the raw stream (the
//! origin's socket, or the local client's). Towards the raw side, payload runs are written as
//! they are decoded; towards the WebSocket, each read from the raw side becomes one binary
//! frame, built in the read buffer itself. Neither direction holds more than one read of
//! 64 KiB, and each waits for its write before reading again, so a slow reader holds back
//! its writer instead of growing a queue.
//!
//! The end of a stream is a half-close: the end of the WebSocket shuts down the raw side's
//! writing, and the end of the raw stream finishes the WebSocket, while the other direction
//! goes on. A Close frame is echoed and ends both directions; so does an error on either
//! side (a protocol error is answered with a Close frame carrying its status), but for a
//! failed write to the raw side: what the raw side still sends is relayed, and the
//! WebSocket's data is read and dropped until it ends. A raw side that breaks off (a read
//! error, or the end of its input after it refused bytes) is answered with Close 1011, so
//! that the far end takes it for a broken connection, not a half-close.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::frame::{self, Decoder, Message, Opcode, Role, CLOSE_RAW_BROKE, HEADER_ROOM};
use crate::runtime::io::{read_more, write_bytes, READ_CHUNK};

/// The receiving half of a WebSocket carrier.
#[expect(
    async_fn_in_trait,
    reason = "monoio runs each task on one thread, so no caller needs the futures to be Send"
)]
pub trait WsRead {
    /// Appends what arrives next to `buf` and returns how much that was; 0 at the end of
    /// the stream.
    async fn read_into(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut);
}

/// The sending half of a WebSocket carrier.
#[expect(
    async_fn_in_trait,
    reason = "monoio runs each task on one thread, so no caller needs the futures to be Send"
)]
pub trait WsWrite {
    /// Writes all of `frame`.
    async fn write(&mut self, frame: Bytes) -> io::Result<()>;
    /// Ends the stream after what was written: the peer sees a clean end (half-close).
    async fn finish(&mut self) -> io::Result<()>;
    /// Abandons the stream, so that the peer can tell it broke off where it can.
    fn abort(&mut self);
}

/// A monoio socket (or one half of it) as a WebSocket carrier.
pub struct Socket<T>(pub T);

impl<T: AsyncReadRent> WsRead for Socket<T> {
    async fn read_into(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        read_more(&mut self.0, buf).await
    }
}

impl<T: AsyncWriteRent> WsWrite for Socket<T> {
    async fn write(&mut self, frame: Bytes) -> io::Result<()> {
        write_bytes(&mut self.0, frame).await
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }

    /// A TCP connection has no reset here; dropping it closes it.
    fn abort(&mut self) {}
}

/// How a bridge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions ended with the end of their stream.
    Ended,
    /// A Close frame from the peer ended the WebSocket; it was answered with this status.
    Closed(Option<u16>),
    /// One side broke off or broke the protocol; the other was torn down.
    Failed(String),
}

/// Relays until both directions end, or until a Close frame or an error ends both.
///
/// `initial` holds WebSocket bytes that arrived before the bridge started (with the
/// handshake). `role` says which end of the WebSocket this is: it decides which frames must
/// be masked.
pub async fn run<I, O, R, W>(
    role: Role,
    initial: Bytes,
    ws_in: &mut I,
    ws_out: &mut O,
    raw_in: R,
    raw_out: &mut W,
) -> Outcome
where
    I: WsRead,
    O: WsWrite,
    R: AsyncReadRent,
    W: AsyncWriteRent,
{
    let slot = Slot::default();
    let mut up = pin!(to_raw(role, initial, ws_in, raw_out, &slot));
    let mut down = pin!(to_ws(role, raw_in, ws_out, &slot));
    let mut up_end = None;
    let mut down_end = None;
    poll_fn(|cx| {
        if up_end.is_none() {
            if let Poll::Ready(end) = up.as_mut().poll(cx) {
                up_end = Some(end);
            }
        }
        if down_end.is_none() {
            if let Poll::Ready(end) = down.as_mut().poll(cx) {
                down_end = Some(end);
            }
        }
        // Either direction may end first and leave the other going (half-close), except
        // that the raw-to-WebSocket one ends everything when it sends Close or fails; the
        // other direction makes it do so when it meets Close or an error itself.
        match (&up_end, &down_end) {
            (_, Some(Down::Closed(_) | Down::Failed(_))) => Poll::Ready(()),
            (Some(_), Some(Down::Finished)) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    })
    .await;

    match (up_end, down_end) {
        (_, Some(Down::Failed(why))) => Outcome::Failed(why),
        (Some(Up::Failed(why)), _) => Outcome::Failed(why),
        (_, Some(Down::Closed(code))) => Outcome::Closed(code),
        _ => Outcome::Ended,
    }
}

/// What the WebSocket-to-raw direction asks of the other, which owns the WebSocket's
/// sending half.
#[derive(Debug)]
enum Control {
    Pong(Bytes),
    /// Send a Close frame with this status (none: an empty one) and end.
    Close(Option<u16>),
    /// The WebSocket broke off: abandon the sending half too.
    Abort,
}

impl Control {
    fn rank(&self) -> u8 {
        match self {
            Control::Pong(_) => 0,
            Control::Close(_) => 1,
            Control::Abort => 2,
        }
    }
}

/// One pending [`Control`]; a newer pong replaces an older one (§5.5.3 allows answering
/// only the latest ping), and an ending never gives way to a pong.
#[derive(Default)]
struct Slot {
    pending: Cell<Option<Control>>,
    waker: RefCell<Option<Waker>>,
    /// A write to the raw side failed: it reset or closed while bytes were still coming, so
    /// its end is no clean one even when its reading side then ends without an error (the
    /// socket reports its reset once, to whichever call comes first).
    raw_refused: Cell<bool>,
}

impl Slot {
    fn put(&self, control: Control) {
        let next = match self.pending.take() {
            Some(current) if current.rank() > control.rank() => current,
            _ => control,
        };
        self.pending.set(Some(next));
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn take(&self, cx: &Context<'_>) -> Option<Control> {
        let control = self.pending.take();
        if control.is_none() {
            *self.waker.borrow_mut() = Some(cx.waker().clone());
        }
        control
    }
}

enum Up {
    /// The WebSocket ended or sent Close; the raw side's writing was shut down.
    Ended,
    Failed(String),
}

/// Ends the WebSocket for a raw side that broke off (a reset): that is not an end of input,
/// so Close with [`CLOSE_RAW_BROKE`] tells the peer to end both of its directions. An abort
/// alone would reach the far end of `adit access` as a plain end of the stream.
async fn broke_off<O: WsWrite>(ws_out: &mut O, mask: Option<[u8; 4]>) {
    match ws_out
        .write(frame::close_frame(CLOSE_RAW_BROKE, mask))
        .await
    {
        Ok(()) => drop(ws_out.finish().await),
        Err(_) => ws_out.abort(),
    }
}

/// WebSocket to raw: decodes and writes payloads; control frames go to the other direction.
///
/// Once the raw side takes no more bytes (a write failed: it reset, or shut down its
/// reading), what it still sends may be relayed, so the WebSocket is read on and its data
/// dropped. Leaving it unread would stop the peer's sending side once the windows between
/// fill, and with it whatever the peer relays this way: when that is an echo of what the
/// raw side sent, the other direction then waits for ever on a write and never sees the
/// raw side's end.
async fn to_raw<I: WsRead, W: AsyncWriteRent>(
    role: Role,
    initial: Bytes,
    ws_in: &mut I,
    raw_out: &mut W,
    slot: &Slot,
) -> Up {
    let mut decoder = Decoder::new(role);
    let mut buf = BytesMut::from(&initial[..]);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Message::Data(_))) if slot.raw_refused.get() => {}
            Ok(Some(Message::Data(run))) => {
                if let Err(err) = write_bytes(raw_out, run).await {
                    tracing::trace!("raw side takes no more bytes, dropping the rest: {err}");
                    slot.raw_refused.set(true);
                }
            }
            Ok(Some(Message::Ping(payload))) => slot.put(Control::Pong(payload)),
            Ok(Some(Message::Pong(_))) => {}
            Ok(Some(Message::Close(code))) => {
                slot.put(Control::Close(code));
                let _ = raw_out.shutdown().await;
                return Up::Ended;
            }
            Ok(None) => {
                let (result, filled) = ws_in.read_into(std::mem::take(&mut buf)).await;
                buf = filled;
                match result {
                    Ok(0) if decoder.between_frames() && buf.is_empty() => {
                        let _ = raw_out.shutdown().await;
                        return Up::Ended;
                    }
                    Ok(0) => {
                        slot.put(Control::Abort);
                        return Up::Failed("the WebSocket ended inside a frame".to_owned());
                    }
                    Ok(_) => {}
                    Err(err) => {
                        slot.put(Control::Abort);
                        return Up::Failed(format!("the WebSocket broke off: {err}"));
                    }
                }
            }
            Err(err) => {
                slot.put(Control::Close(Some(err.close_code())));
                return Up::Failed(format!("WebSocket protocol error: {err}"));
            }
        }
    }
}

enum Down {
    /// The raw stream ended and the WebSocket was finished after it.
    Finished,
    /// A Close frame was sent and the WebSocket finished.
    Closed(Option<u16>),
    Failed(String),
}

/// Raw to WebSocket: each read becomes one binary frame; the controls the other direction
/// asks for are sent as soon as they come, between frames.
async fn to_ws<R: AsyncReadRent, O: WsWrite>(
    role: Role,
    raw_in: R,
    ws_out: &mut O,
    slot: &Slot,
) -> Down {
    let mask = || (role == Role::Client).then(rand::random::<[u8; 4]>);
    // The read in flight stays armed while controls are sent: dropping it could lose bytes
    // the kernel already delivered into its buffer.
    let mut read = pin!(Some(read_raw(raw_in, BytesMut::new())));
    loop {
        let next = poll_fn(|cx| {
            if let Some(control) = slot.take(cx) {
                return Poll::Ready(Err(control));
            }
            match read.as_mut().as_pin_mut() {
                Some(pending) => pending.poll(cx).map(Ok),
                None => Poll::Pending,
            }
        })
        .await;

        let (raw_in, result, mut buf) = match next {
            Err(Control::Pong(payload)) => {
                let pong = frame::control_frame(Opcode::Pong, &payload, mask());
                if let Err(err) = ws_out.write(pong).await {
                    return Down::Failed(format!("the WebSocket broke off: {err}"));
                }
                continue;
            }
            Err(Control::Close(code)) => {
                let close = match code {
                    Some(code) => frame::close_frame(code, mask()),
                    None => frame::control_frame(Opcode::Close, &[], mask()),
                };
                if ws_out.write(close).await.is_ok() {
                    let _ = ws_out.finish().await;
                }
                return Down::Closed(code);
            }
            Err(Control::Abort) => {
                ws_out.abort();
                return Down::Failed("the WebSocket broke off".to_owned());
            }
            Ok(read) => read,
        };
        read.set(None);

        match result {
            Ok(0) if slot.raw_refused.get() => {
                broke_off(ws_out, mask()).await;
                return Down::Failed("the raw side broke off after refusing bytes".to_owned());
            }
            Ok(0) => {
                return match ws_out.finish().await {
                    Ok(()) => Down::Finished,
                    Err(err) => Down::Failed(format!("the WebSocket broke off: {err}")),
                };
            }
            Ok(_) => {
                let frame = frame::frame_in_place(&mut buf, Opcode::Binary, mask());
                if let Err(err) = ws_out.write(frame).await {
                    return Down::Failed(format!("the WebSocket broke off: {err}"));
                }
            }
            Err(err) => {
                broke_off(ws_out, mask()).await;
                return Down::Failed(format!("the raw side broke off: {err}"));
            }
        }
        read.set(Some(read_raw(raw_in, buf)));
    }
}

/// One read of at most [`READ_CHUNK`] bytes into `buf`, after [`HEADER_ROOM`] bytes of room
/// for the frame header. Owns the reader so the read can stay armed across other work.
async fn read_raw<R: AsyncReadRent>(
    mut reader: R,
    mut buf: BytesMut,
) -> (R, io::Result<usize>, BytesMut) {
    buf.clear();
    buf.reserve(HEADER_ROOM + READ_CHUNK);
    buf.resize(HEADER_ROOM, 0);
    let window = buf.slice_mut(HEADER_ROOM..HEADER_ROOM + READ_CHUNK);
    let (result, window) = reader.read(window).await;
    (reader, result, window.into_inner())
}

#[cfg(test)]
mod tests;
