//! What an idle keep-alive client connection holds: its socket and its task, not a read
//! buffer.
//!
//! A read posted to io_uring owns its buffer until the client sends something, so a
//! connection waiting for its next request with a read in flight pins a whole read buffer
//! (64 KiB) for as long as it idles; ten thousand idle clients would hold 640 MiB. Between
//! requests a plain TCP connection instead waits for readability (a poll, no buffer) and
//! only then takes a buffer. The buffers of connections that went idle wait in a few
//! per-worker spares, so a busy connection takes back a buffer without allocating one.

use std::cell::RefCell;

use bytes::BytesMut;
use monoio::io::OwnedReadHalf;

use super::proxy::ClientStream;
use crate::runtime::io::{read_more, READ_CHUNK};

/// Spare read buffers a worker keeps: enough for the requests that start while others end,
/// few enough that an idle worker holds at most half a MiB of them.
const SPARES: usize = 8;

/// A worker's spare read buffers.
#[derive(Default)]
pub struct ReadBuffers {
    spare: RefCell<Vec<BytesMut>>,
}

impl ReadBuffers {
    /// Keeps an empty buffer of a connection that goes idle, when there is room; one too
    /// small to read into without growing is dropped instead.
    pub fn put(&self, buf: BytesMut) {
        let mut spare = self.spare.borrow_mut();
        if buf.is_empty() && buf.capacity() >= READ_CHUNK / 4 && spare.len() < SPARES {
            spare.push(buf);
        }
    }

    /// A spare buffer, or an empty one that the next read sizes.
    pub fn take(&self) -> BytesMut {
        self.spare.borrow_mut().pop().unwrap_or_default()
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
    spares: &ReadBuffers,
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
        let spares = ReadBuffers::default();
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
}
