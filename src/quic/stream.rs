//! Stream handles: the two halves of a bidirectional stream.
//!
//! Writes move `Bytes` into quinn-proto's send buffer without copying; reads hand out the
//! `Bytes` quinn-proto assembled from received packets. Both act on the connection state
//! directly and queue the connection for the driver when something must be sent.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use quinn_proto::{FinishError, ReadError, ReadableError, StreamId, VarInt, WriteError};

use super::conn::{ConnRef, Half, StreamSlot};
use super::driver::StreamError;
use crate::runtime::gather::{self, Gather};

/// The sending half of a stream. Dropping it without [`SendStream::finish`] resets it.
pub struct SendStream {
    conn: Rc<ConnRef>,
    id: StreamId,
    /// Finished, reset or stopped: nothing more will be sent.
    done: bool,
}

impl SendStream {
    pub(super) fn new(conn: Rc<ConnRef>, id: StreamId) -> SendStream {
        SendStream {
            conn,
            id,
            done: false,
        }
    }

    /// Queues `data` on the stream, moving the buffer (no copy), waiting while flow control
    /// has no room for it. Returns once all of `data` is queued.
    ///
    /// Queued is not delivered: the data may still be in flight or lost with the connection.
    pub async fn write(&mut self, data: Bytes) -> Result<(), StreamError> {
        let mut chunks = [data];
        poll_fn(|cx| self.poll_write(cx, &mut chunks)).await
    }

    fn poll_write(
        &mut self,
        cx: &Context<'_>,
        chunks: &mut [Bytes; 1],
    ) -> Poll<Result<(), StreamError>> {
        let shared = &self.conn.shared;
        let mut state = shared.state.borrow_mut();
        if let Some(error) = &state.error {
            return Poll::Ready(Err(StreamError::ConnectionLost(error.clone())));
        }

        // A partial write does not arm quinn's Writable event; only a Blocked result does,
        // so keep writing until the data is gone or quinn says Blocked.
        let mut wrote = false;
        let result = loop {
            if chunks[0].is_empty() {
                break Poll::Ready(Ok(()));
            }
            match state.conn.send_stream(self.id).write_chunks(chunks) {
                Ok(written) if written.bytes > 0 => wrote = true,
                // Nothing taken yet not Blocked: wait for Writable rather than spin.
                Ok(_) => {
                    if let Some(slot) = state.streams.get_mut(&self.id) {
                        StreamSlot::register(&mut slot.writer, cx);
                    }
                    break Poll::Pending;
                }
                Err(WriteError::Blocked) => {
                    if let Some(slot) = state.streams.get_mut(&self.id) {
                        StreamSlot::register(&mut slot.writer, cx);
                    }
                    break Poll::Pending;
                }
                Err(WriteError::Stopped(code)) => {
                    self.done = true;
                    state.half_done(self.id, Half::Send);
                    answer_stop(&mut state.conn, self.id, code);
                    wrote = true;
                    break Poll::Ready(Err(StreamError::Stopped(code.into_inner())));
                }
                Err(WriteError::ClosedStream) => break Poll::Ready(Err(StreamError::ClosedStream)),
            }
        };
        drop(state);

        if wrote {
            shared.touch_sending();
        }
        result
    }

    /// Ends the stream cleanly after the queued data.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        let shared = &self.conn.shared;
        let mut state = shared.state.borrow_mut();
        if let Some(error) = &state.error {
            return Err(StreamError::ConnectionLost(error.clone()));
        }

        let result = state.conn.send_stream(self.id).finish();
        match result {
            Ok(()) => {
                self.done = true;
                state.half_done(self.id, Half::Send);
                drop(state);
                shared.touch_sending();
                Ok(())
            }
            Err(FinishError::Stopped(code)) => {
                self.done = true;
                state.half_done(self.id, Half::Send);
                answer_stop(&mut state.conn, self.id, code);
                drop(state);
                shared.touch();
                Err(StreamError::Stopped(code.into_inner()))
            }
            Err(FinishError::ClosedStream) => Err(StreamError::ClosedStream),
        }
    }

    /// Abandons the stream with an application error code.
    pub fn reset(&mut self, code: u32) {
        let shared = &self.conn.shared;
        let mut state = shared.state.borrow_mut();
        self.done = true;
        state.half_done(self.id, Half::Send);
        if state.error.is_some() {
            return;
        }
        // An error here means the stream is already finished and acknowledged, or reset.
        let _ = state
            .conn
            .send_stream(self.id)
            .reset(VarInt::from_u32(code));
        drop(state);
        shared.touch();
    }

    /// Resolves when the peer stops the stream (it no longer wants the data), with the code.
    ///
    /// Fails with [`StreamError::ClosedStream`] once the stream is finished and all its data
    /// acknowledged, or after it was reset.
    pub async fn stopped(&mut self) -> Result<u64, StreamError> {
        poll_fn(|cx| {
            let mut state = self.conn.shared.state.borrow_mut();
            if let Some(error) = &state.error {
                return Poll::Ready(Err(StreamError::ConnectionLost(error.clone())));
            }
            match state.conn.send_stream(self.id).stopped() {
                Ok(Some(code)) => Poll::Ready(Ok(code.into_inner())),
                Ok(None) => {
                    if let Some(slot) = state.streams.get_mut(&self.id) {
                        StreamSlot::register(&mut slot.stopped, cx);
                    }
                    Poll::Pending
                }
                Err(_) => Poll::Ready(Err(StreamError::ClosedStream)),
            }
        })
        .await
    }
}

/// Answers the peer's STOP_SENDING with a RESET_STREAM of the same code, as RFC 9000 asks.
/// quinn-proto keeps a stopped stream's send state (and counts it as unacknowledged) until
/// the stream is reset; without this every request a client abandoned stayed there for the
/// life of the connection, and a draining connector waited its whole grace period for it.
fn answer_stop(conn: &mut quinn_proto::Connection, id: StreamId, code: VarInt) {
    // An error means quinn already forgot the stream.
    let _ = conn.send_stream(id).reset(code);
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.done {
            self.reset(0);
        }
        self.conn
            .shared
            .state
            .borrow_mut()
            .half_dropped(self.id, Half::Send);
    }
}

/// Where a receive half stands, from the handle's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvEnd {
    Open,
    /// All data was read.
    Finished,
    /// Reset by the peer or stopped by us.
    Closed,
}

/// The receiving half of a stream. Dropping it before the end stops it.
pub struct RecvStream {
    conn: Rc<ConnRef>,
    id: StreamId,
    end: RecvEnd,
}

impl RecvStream {
    pub(super) fn new(conn: Rc<ConnRef>, id: StreamId) -> RecvStream {
        RecvStream {
            conn,
            id,
            end: RecvEnd::Open,
        }
    }

    /// The next chunk of at most `max` bytes, in order; `Ok(None)` at the end of the stream.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        let mut slot = None;
        let mut take = |chunk| {
            slot = Some(chunk);
            None
        };
        let got = poll_fn(|cx| self.poll_chunks(cx, max.max(1), &mut take)).await?;
        Ok(if got { slot } else { None })
    }

    /// Waits for data, then moves every chunk already received into `out`, until it is
    /// full. `Ok(false)` at the end of the stream, with nothing added.
    pub async fn read_gather(&mut self, out: &mut Gather) -> Result<bool, StreamError> {
        let mut take = take_into(out);
        let max = gather::MAX_BYTES;
        poll_fn(|cx| self.poll_chunks(cx, max, &mut take)).await
    }

    /// Moves every chunk already received into `out` without waiting; `Ok(false)` when
    /// there was none. The end of the stream, if it was reached, shows in
    /// [`RecvStream::is_finished`].
    pub fn try_gather(&mut self, out: &mut Gather) -> Result<bool, StreamError> {
        let mut take = take_into(out);
        // A waker that does nothing: if nothing is there, the caller's next read registers
        // the real one before waiting.
        let cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_chunks(&cx, gather::MAX_BYTES, &mut take) {
            Poll::Ready(result) => result,
            Poll::Pending => Ok(false),
        }
    }

    /// Hands chunks in order to `take`, which returns the most bytes the next may hold, or
    /// `None` to stop. Ready with `true` once a chunk was taken, `false` at the end.
    fn poll_chunks(
        &mut self,
        cx: &Context<'_>,
        mut max: usize,
        take: &mut dyn FnMut(Bytes) -> Option<usize>,
    ) -> Poll<Result<bool, StreamError>> {
        match self.end {
            RecvEnd::Open => {}
            RecvEnd::Finished => return Poll::Ready(Ok(false)),
            RecvEnd::Closed => return Poll::Ready(Err(StreamError::ClosedStream)),
        }

        let shared = &self.conn.shared;
        let mut state = shared.state.borrow_mut();
        let mut got = false;
        let read = match state.conn.recv_stream(self.id).read(true) {
            Ok(mut chunks) => {
                let result = loop {
                    match chunks.next(max) {
                        Ok(Some(chunk)) => {
                            got = true;
                            match take(chunk.bytes) {
                                Some(next) => max = next,
                                None => break Ok(Some(())),
                            }
                        }
                        other => break other.map(|_| None),
                    }
                };
                // Without finalize the flow-control credit freed by this read is never sent.
                Ok((result, chunks.finalize().should_transmit()))
            }
            Err(ReadableError::ClosedStream | ReadableError::IllegalOrderedRead) => Err(()),
        };
        let Ok((result, transmit)) = read else {
            let error = match &state.error {
                Some(error) => StreamError::ConnectionLost(error.clone()),
                None => StreamError::ClosedStream,
            };
            return Poll::Ready(Err(error));
        };

        let poll = match result {
            Ok(Some(())) => Poll::Ready(Ok(true)),
            Ok(None) => {
                self.end = RecvEnd::Finished;
                state.half_done(self.id, Half::Recv);
                Poll::Ready(Ok(got))
            }
            Err(ReadError::Reset(code)) => {
                self.end = RecvEnd::Closed;
                state.half_done(self.id, Half::Recv);
                Poll::Ready(Err(StreamError::Reset(code.into_inner())))
            }
            Err(ReadError::Blocked) if got => Poll::Ready(Ok(true)),
            Err(ReadError::Blocked) => match &state.error {
                Some(error) => Poll::Ready(Err(StreamError::ConnectionLost(error.clone()))),
                None => {
                    if let Some(slot) = state.streams.get_mut(&self.id) {
                        StreamSlot::register(&mut slot.reader, cx);
                    }
                    Poll::Pending
                }
            },
        };
        drop(state);

        if transmit {
            shared.touch();
        }
        poll
    }

    /// Whether every byte of the stream was read: the next read returns the end.
    pub fn is_finished(&self) -> bool {
        self.end == RecvEnd::Finished
    }

    /// Tells the peer to stop sending, with an application error code.
    pub fn stop(&mut self, code: u32) {
        if self.end != RecvEnd::Open {
            return;
        }
        self.end = RecvEnd::Closed;
        let shared = &self.conn.shared;
        let mut state = shared.state.borrow_mut();
        state.half_done(self.id, Half::Recv);
        if state.error.is_some() {
            return;
        }
        // An error here means quinn already forgot the stream (finished or reset).
        if !discard_to_end(state.conn.recv_stream(self.id)) {
            let _ = state.conn.recv_stream(self.id).stop(VarInt::from_u32(code));
        }
        drop(state);
        shared.touch();
    }
}

/// Reads and drops what was received; true when that reached the end of the stream (or
/// its reset). A stream whose every byte up to the end has arrived then needs no stop:
/// quinn-proto would send the peer a STOP_SENDING all the same, which tells it nothing and
/// costs a retransmission record on each request that did not read its stream to the end.
fn discard_to_end(mut stream: quinn_proto::RecvStream<'_>) -> bool {
    let Ok(mut chunks) = stream.read(true) else {
        return false;
    };
    let ended = loop {
        match chunks.next(usize::MAX) {
            Ok(Some(_)) => continue,
            Ok(None) | Err(ReadError::Reset(_)) => break true,
            Err(ReadError::Blocked) => break false,
        }
    };
    // The credit for what was discarded goes out with the next packet, as a stop's would.
    let _ = chunks.finalize();
    ended
}

/// Takes chunks into `out` until it is full; each may be as large as the room left.
fn take_into(out: &mut Gather) -> impl FnMut(Bytes) -> Option<usize> + '_ {
    |chunk| {
        out.push(chunk);
        (!out.is_full()).then_some(gather::MAX_BYTES.saturating_sub(out.len()).max(1))
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        self.stop(0);
        self.conn
            .shared
            .state
            .borrow_mut()
            .half_dropped(self.id, Half::Recv);
    }
}
