//! A worker's reusable buffers for the request path, so that a proxied request allocates
//! nothing in the steady state.
//!
//! Two kinds, by how long their bytes live:
//!
//! - **Read buffers** belong to one exchange at a time: taken when it starts, given back
//!   when it ends. Body bytes split off them travel on as `Bytes` (into a QUIC stream,
//!   until acknowledged); `reserve` takes the allocation back once all of those are gone.
//! - **The frame block** holds small encoded pieces that leave as `Bytes` and outlive the
//!   code that made them (header frames queued on a stream, request heads written to an
//!   origin). Each piece is split off the block; when the block is full it is taken back if
//!   nothing of it is still alive, and only otherwise replaced, the old one being freed with
//!   its last piece.
//!
//! Everything here belongs to one worker thread.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

use crate::runtime::io::READ_CHUNK;

/// Size of each frame block: a few hundred frames' worth.
const FRAME_BLOCK: usize = 32 * 1024;

/// Read buffers kept for reuse; more are dropped when given back.
const KEPT_READS: usize = 256;

/// A read buffer grown past this is dropped when given back instead of kept.
const MAX_KEPT_READ: usize = 4 * READ_CHUNK;

/// One worker's buffers. See the module documentation.
#[derive(Default)]
pub struct Buffers {
    frames: RefCell<BytesMut>,
    reads: RefCell<Vec<BytesMut>>,
}

impl Buffers {
    /// Runs `encode` on the frame block and splits off what it wrote. `size` is the
    /// expected length; a longer piece still fits (the block grows).
    pub fn encode<E>(
        &self,
        size: usize,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        let mut block = self.frames.borrow_mut();
        if !block.try_reclaim(size) {
            *block = BytesMut::with_capacity(FRAME_BLOCK.max(size));
        }
        let result = encode(&mut block);
        let piece = block.split().freeze();
        result.map(|()| piece)
    }

    /// An empty read buffer.
    pub fn take_read(&self) -> BytesMut {
        self.reads
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
    }

    /// Gives a read buffer back; what it still holds is discarded.
    pub fn give_read(&self, mut buf: BytesMut) {
        buf.clear();
        let mut reads = self.reads.borrow_mut();
        if reads.len() < KEPT_READS && buf.capacity() <= MAX_KEPT_READ {
            reads.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn put(buffers: &Buffers, data: &[u8]) -> Bytes {
        let encoded = buffers.encode(data.len(), |b| {
            b.put_slice(data);
            Ok::<_, ()>(())
        });
        encoded.unwrap()
    }

    #[test]
    fn the_frame_block_is_reused_once_its_pieces_are_gone() {
        let buffers = Buffers::default();
        let first = put(&buffers, b"first");
        let at = first.as_ptr();
        assert_eq!(&first[..], b"first");
        drop(first);
        // Fill the block so the next piece needs it back.
        drop(put(&buffers, &[0; FRAME_BLOCK - 5]));
        let again = put(&buffers, b"again");
        assert_eq!(again.as_ptr(), at);
        assert_eq!(&again[..], b"again");
    }

    #[test]
    fn a_pinned_frame_block_is_replaced() {
        let buffers = Buffers::default();
        let pinned = put(&buffers, &[1; FRAME_BLOCK]);
        let next = put(&buffers, b"next");
        assert_eq!(&next[..], b"next");
        assert_eq!(pinned.len(), FRAME_BLOCK);
        assert_eq!(pinned[FRAME_BLOCK - 1], 1);
    }

    #[test]
    fn a_failed_encoding_yields_its_error() {
        let buffers = Buffers::default();
        let result = buffers.encode(16, |b| {
            b.put_slice(b"partial");
            Err("too large")
        });
        assert_eq!(result, Err("too large"));
        assert_eq!(&put(&buffers, b"after")[..], b"after");
    }

    #[test]
    fn read_buffers_come_back_empty() {
        let buffers = Buffers::default();
        let mut buf = buffers.take_read();
        assert_eq!(buf.capacity(), READ_CHUNK);
        buf.put_slice(b"left over");
        let at = buf.as_ptr();
        buffers.give_read(buf);
        let again = buffers.take_read();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), at);
    }
}
