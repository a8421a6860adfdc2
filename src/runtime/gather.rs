//! Gathered socket writes: several `Bytes` chunks handed to one `writev`.
//!
//! A QUIC stream hands out its data one STREAM frame at a time, about one packet's worth
//! (1.2–1.4 KiB) each. Writing each to the client socket on its own costs a syscall, a TCP
//! push and, on loopback, a softirq per chunk: for a 1 MiB response that was over half of the
//! edge's CPU. A [`Gather`] collects every chunk already received and writes them with one
//! `writev`, without copying them into a larger buffer.
//!
//! Gathers are recycled through a per-thread pool, so the steady state allocates nothing: the
//! chunk and iovec vectors keep their capacity, and the small buffer chunk-size lines are
//! written into is taken back once the write that carried them is done.

use std::cell::RefCell;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::AsyncWriteRent;

/// Most chunks in one write (Linux allows 1,024 iovecs; a packet's worth each, 64 is
/// about 90 KiB).
pub const MAX_CHUNKS: usize = 64;

/// Most bytes gathered before a write goes out, so a fast sender cannot make one write
/// arbitrarily large.
pub const MAX_BYTES: usize = 256 * 1024;

/// Gathers kept for reuse per thread; more in flight at once are allocated and freed.
const POOL_LIMIT: usize = 1024;

thread_local! {
    static POOL: RefCell<Vec<Parts>> = const { RefCell::new(Vec::new()) };
}

/// The reusable storage of a gather.
struct Parts {
    chunks: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    /// Where chunk-size lines are written; split off per write and reclaimed afterwards.
    scratch: BytesMut,
}

impl Parts {
    fn new() -> Parts {
        Parts {
            chunks: Vec::with_capacity(MAX_CHUNKS + 2),
            iov: Vec::with_capacity(MAX_CHUNKS + 2),
            scratch: BytesMut::with_capacity(64),
        }
    }
}

/// Chunks waiting to be written together. Dropping it returns its storage to the pool.
pub struct Gather {
    parts: Option<Parts>,
    /// Bytes gathered and not yet written.
    len: usize,
}

impl Gather {
    /// An empty gather from this thread's pool.
    pub fn new() -> Gather {
        let parts = POOL
            .with(|pool| pool.borrow_mut().pop())
            .unwrap_or_else(Parts::new);
        Gather {
            parts: Some(parts),
            len: 0,
        }
    }

    fn parts(&mut self) -> &mut Parts {
        self.parts.get_or_insert_with(Parts::new)
    }

    /// Bytes gathered and not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether another chunk should wait for the next write.
    pub fn is_full(&self) -> bool {
        let chunks = self.parts.as_ref().map_or(0, |p| p.chunks.len());
        chunks >= MAX_CHUNKS || self.len >= MAX_BYTES
    }

    /// Adds a chunk to the next write; empty chunks are skipped.
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.len += chunk.len();
        self.parts().chunks.push(chunk);
    }

    /// Puts a chunk before everything gathered (a head in front of its body).
    pub fn push_front(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.len += chunk.len();
        self.parts().chunks.insert(0, chunk);
    }

    /// Copies everything gathered onto the end of `out` and empties the gather.
    pub fn drain_into(&mut self, out: &mut BytesMut) {
        for chunk in &self.parts().chunks {
            out.extend_from_slice(chunk);
        }
        self.clear();
    }

    /// Drops everything gathered.
    pub fn clear(&mut self) {
        self.len = 0;
        let parts = self.parts();
        parts.chunks.clear();
        parts.iov.clear();
    }

    /// Frames everything gathered as one chunk of a chunked body: the size line goes in
    /// front and CRLF after, with no copy of the data.
    pub fn frame_chunked(&mut self) {
        if self.len == 0 {
            return;
        }
        let len = self.len;
        let parts = self.parts();
        parts.scratch.reserve(24);
        crate::http::body::chunk_header(len, &mut parts.scratch);
        let header = parts.scratch.split().freeze();
        parts.chunks.insert(0, header);
        parts
            .chunks
            .push(Bytes::from_static(crate::http::body::CHUNK_END));
        self.len += parts.chunks[0].len() + crate::http::body::CHUNK_END.len();
    }

    /// Writes everything gathered, then hands the emptied gather back for the next batch.
    pub async fn write_all<W: AsyncWriteRent>(mut self, writer: &mut W) -> (io::Result<()>, Self) {
        while self.len > 0 {
            self.fill_iov();
            let (result, back) = writer.writev(self).await;
            self = back;
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), self),
                Ok(n) => self.advance(n),
                Err(error) => return (Err(error), self),
            }
        }
        (Ok(()), self)
    }

    /// Points the iovecs at the chunks left to write.
    fn fill_iov(&mut self) {
        let parts = self.parts();
        parts.iov.clear();
        for chunk in &parts.chunks {
            parts.iov.push(libc::iovec {
                iov_base: chunk.as_ptr() as *mut libc::c_void,
                iov_len: chunk.len(),
            });
        }
    }

    /// Drops the first `n` written bytes.
    fn advance(&mut self, mut n: usize) {
        self.len = self.len.saturating_sub(n);
        let parts = self.parts();
        let mut done = 0;
        for chunk in parts.chunks.iter_mut() {
            if n < chunk.len() {
                chunk.advance(n);
                break;
            }
            n -= chunk.len();
            done += 1;
        }
        parts.chunks.drain(..done);
        if parts.chunks.is_empty() {
            parts.iov.clear();
        }
    }
}

impl Default for Gather {
    fn default() -> Gather {
        Gather::new()
    }
}

impl Drop for Gather {
    fn drop(&mut self) {
        let Some(mut parts) = self.parts.take() else {
            return;
        };
        parts.chunks.clear();
        parts.iov.clear();
        // Thread-local storage is gone while the thread exits; the parts are freed then.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_LIMIT {
                pool.push(parts);
            }
        });
    }
}

// SAFETY: the iovecs live in a heap vector that is not touched while the runtime owns the
// gather (only `fill_iov` and `advance` change it, between writes), and each points into a
// `Bytes` the gather keeps alive for as long.
unsafe impl monoio::buf::IoVecBuf for Gather {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.parts
            .as_ref()
            .map_or(std::ptr::null(), |p| p.iov.as_ptr())
    }

    fn read_iovec_len(&self) -> usize {
        self.parts.as_ref().map_or(0, |p| p.iov.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn contents(gather: &mut Gather) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in &gather.parts().chunks {
            out.put_slice(chunk);
        }
        out
    }

    #[test]
    fn advance_drops_written_chunks_and_cuts_a_partial_one() {
        let mut gather = Gather::new();
        gather.push(Bytes::from_static(b"abc"));
        gather.push(Bytes::new());
        gather.push(Bytes::from_static(b"defg"));
        gather.push(Bytes::from_static(b"h"));
        assert_eq!(gather.len(), 8);
        gather.advance(5);
        assert_eq!(gather.len(), 3);
        assert_eq!(contents(&mut gather), b"fgh");
        assert_eq!(gather.parts().chunks.len(), 2);
        gather.advance(3);
        assert!(gather.is_empty());
        assert_eq!(gather.parts().chunks.len(), 0);
    }

    #[test]
    fn chunked_framing_wraps_everything_gathered_once() {
        let mut gather = Gather::new();
        gather.push(Bytes::from_static(b"0123456789"));
        gather.push(Bytes::from_static(b"abcdef"));
        gather.frame_chunked();
        assert_eq!(contents(&mut gather), b"10\r\n0123456789abcdef\r\n");
        assert_eq!(gather.len(), 22);
    }

    #[test]
    fn full_at_the_chunk_or_byte_limit() {
        let mut gather = Gather::new();
        for _ in 0..MAX_CHUNKS - 1 {
            gather.push(Bytes::from_static(b"x"));
        }
        assert!(!gather.is_full());
        gather.push(Bytes::from_static(b"x"));
        assert!(gather.is_full());

        let mut big = Gather::new();
        big.push(Bytes::from(vec![0u8; MAX_BYTES]));
        assert!(big.is_full());
    }

    #[test]
    fn writes_everything_in_order_through_a_socket() {
        // The reader is joined after the runtime is gone: monoio closes the socket on the
        // runtime, so joining inside it would wait for an end of stream that never comes.
        let reader = crate::runtime::block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reader = std::thread::spawn(move || {
                use std::io::Read;
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                let mut out = Vec::new();
                stream.read_to_end(&mut out).unwrap();
                out
            });
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut gather = Gather::new();
            for i in 0..200u32 {
                gather.push(Bytes::from(vec![(i % 251) as u8; 1000 + i as usize]));
                if gather.is_full() {
                    let (result, back) = gather.write_all(&mut socket).await;
                    result.unwrap();
                    gather = back;
                }
            }
            let (result, _) = gather.write_all(&mut socket).await;
            result.unwrap();
            reader
        })
        .unwrap();
        let written = reader.join().unwrap();
        let expected: Vec<u8> = (0..200u32)
            .flat_map(|i| std::iter::repeat_n((i % 251) as u8, 1000 + i as usize))
            .collect();
        assert_eq!(written.len(), expected.len());
        assert!(written == expected);
    }
}
