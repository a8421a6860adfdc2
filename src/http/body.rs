//! Body framing as a sans-IO decoder: feed it bytes, it says which of them are body.

use std::ops::Range;

use super::head::BodyFraming;

/// Largest chunk-size line (size, extensions, CRLF) accepted, in bytes.
pub const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("malformed chunked encoding: {0}")]
    Chunked(&'static str),
    #[error("connection closed before the body ended")]
    Truncated,
}

/// One step of decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input this step used (framing and data alike).
    pub consumed: usize,
    /// Body bytes, as a range of the input (empty when this step held none).
    pub data: Range<usize>,
    /// The body is complete; bytes after `consumed` belong to the next message.
    pub done: bool,
}

/// Turns framed bytes into body bytes for one message.
#[derive(Debug)]
pub struct BodyDecoder {
    framing: BodyFraming,
}

impl BodyDecoder {
    pub fn new(framing: BodyFraming) -> Self {
        BodyDecoder { framing }
    }

    /// Decodes from `input`, returning at most one run of body bytes. Call again with the
    /// rest of the input while `consumed` is non-zero and the body is not done.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, BodyError> {
        let _ = (input, self.framing);
        todo!()
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        todo!()
    }

    /// The peer closed: fine for [`BodyFraming::UntilClose`] (the body is then done),
    /// [`BodyError::Truncated`] for anything that was still expecting bytes.
    pub fn eof(&mut self) -> Result<(), BodyError> {
        todo!()
    }
}

/// Appends a chunk-size line for a chunk of `len` bytes (`{len:x}\r\n`).
pub fn chunk_header(len: usize, out: &mut bytes::BytesMut) {
    let _ = (len, out);
    todo!()
}

/// Ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
