//! What an idle keep-alive client connection holds: its socket and its task, not a read
//! buffer nor a frame buffer.
//!
//! A read posted to io_uring owns its buffer until the client sends something, so a
//! connection waiting for its next request with a read in flight pins a whole read buffer
//! (64 KiB) for as long as it idles; ten thousand idle clients would hold 640 MiB. Between
//! requests a plain TCP connection instead waits for readability (a poll, no buffer) and
//! only then takes a buffer. The buffer a request frame is encoded into (4 KiB) likewise
//! goes back while the connection idles. The buffers of connections that went idle wait in
//! a few per-worker spares, so a busy connection takes one back without allocating.

use std::cell::RefCell;

use bytes::BytesMut;
use monoio::io::OwnedReadHalf;

use super::proxy::ClientStream;
use crate::runtime::io::{read_more, READ_CHUNK};

/// Spare buffers of each kind a worker keeps: enough for the requests that start while
/// others end, few enough that an idle worker holds at most half a MiB of read buffers.
const SPARES: usize = 8;

/// Capacity of a fresh frame buffer: a request frame is its head re-encoded, and heads are
/// rarely larger.
pub const FRAME_CAPACITY: usize = 4 * 1024;

/// A worker's spare buffers of one kind: read buffers or frame buffers.
pub struct Spares {
    spare: RefCell<Vec<BytesMut>>,
    /// A buffer with less room than this is not worth keeping.
    keep_from: usize,
    /// Capacity of the buffer handed out when no spare waits.
    fresh: usize,
}

impl Spares {
    /// Read buffers: a fresh one is empty and the next read sizes it.
    pub fn read_buffers() -> Spares {
        Spares {
            spare: RefCell::default(),
            keep_from: READ_CHUNK / 4,
            fresh: 0,
        }
    }

    /// Buffers request frames are encoded into.
    pub fn frame_buffers() -> Spares {
        Spares {
            spare: RefCell::default(),
            keep_from: FRAME_CAPACITY / 4,
            fresh: FRAME_CAPACITY,
        }
    }

    /// Keeps an empty buffer of a connection that goes idle, when there is room; one too
    /// small to use without growing is dropped instead.
    pub fn put(&self, mut buf: BytesMut) {
        let mut spare = self.spare.borrow_mut();
        if buf.is_empty() && buf.capacity() < self.fresh.max(self.keep_from) {
            // The room that frames or reads already handed on took is free again once
            // all of them were dropped: take it back instead of dropping the buffer.
            let _ = buf.try_reclaim(self.fresh.max(self.keep_from));
        }
        if buf.is_empty() && buf.capacity() >= self.keep_from && spare.len() < SPARES {
            spare.push(buf);
        }
    }

    /// A spare buffer, or a fresh one.
    pub fn take(&self) -> BytesMut {
        match self.spare.borrow_mut().pop() {
            Some(buf) => buf,
            None => BytesMut::with_capacity(self.fresh),
        }
    }

    /// How many buffers wait.
    pub fn len(&self) -> usize {
        self.spare.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads more of a client's request into `buf`. With `idle` (no request begun, nothing
/// buffered) the buffer goes to the spares while the connection waits for readability, and
/// the read that follows takes one back; otherwise it reads straight into `buf`.
pub async fn read_request<S: ClientStream>(
    spares: &Spares,
    reader: &mut OwnedReadHalf<S>,
    buf: BytesMut,
    idle: bool,
) -> (std::io::Result<usize>, BytesMut) {
    if !idle {
        return read_more(reader, buf).await;
    }
    spares.put(buf);
    if let Err(err) = S::readable(reader).await {
        return (Err(err), BytesMut::new());
    }
    read_more(reader, spares.take()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_bounded_and_only_usable_buffers_kept() {
        let spares = Spares::read_buffers();
        spares.put(BytesMut::new());
        spares.put(BytesMut::with_capacity(1024));
        let mut holding = BytesMut::with_capacity(READ_CHUNK);
        holding.extend_from_slice(b"GET");
        spares.put(holding);
        assert_eq!(spares.len(), 0);

        for _ in 0..SPARES + 3 {
            spares.put(BytesMut::with_capacity(READ_CHUNK));
        }
        assert_eq!(spares.len(), SPARES);

        let taken = spares.take();
        assert_eq!(taken.capacity(), READ_CHUNK);
        assert_eq!(spares.len(), SPARES - 1);
        while !spares.is_empty() {
            spares.take();
        }
        assert_eq!(spares.take().capacity(), 0);
    }

    #[test]
    fn frame_spares_hand_out_fresh_buffers_and_keep_roomy_ones() {
        let frames = Spares::frame_buffers();
        let mut frame = frames.take();
        assert_eq!(frame.capacity(), FRAME_CAPACITY);

        // Room whose frames were all dropped is taken back whole.
        frame.extend_from_slice(&[0; 100]);
        drop(frame.split());
        assert_eq!(frame.capacity(), FRAME_CAPACITY - 100);
        frames.put(frame);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames.take().capacity(), FRAME_CAPACITY);

        // A nearly used-up buffer whose frame is still held (unacknowledged) is dropped.
        let mut small = BytesMut::with_capacity(FRAME_CAPACITY);
        small.extend_from_slice(&[0; FRAME_CAPACITY - 100]);
        let held = small.split();
        frames.put(small);
        assert!(frames.is_empty());
        drop(held);

        // One with room left is kept even while its frame is held.
        let mut roomy = BytesMut::with_capacity(FRAME_CAPACITY);
        roomy.extend_from_slice(&[0; 100]);
        let held = roomy.split();
        frames.put(roomy);
        assert_eq!(frames.take().capacity(), FRAME_CAPACITY - 100);
        assert!(frames.is_empty());
        drop(held);
    }
}
