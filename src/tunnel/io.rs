//! Reading header frames off QUIC streams.

use bytes::{Bytes, BytesMut};

use super::frame::{self, FrameError};
use crate::quic::{RecvStream, StreamError};

/// Largest chunk taken from a stream in one read.
pub const STREAM_READ: usize = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FrameReadError {
    #[error("{0}")]
    Stream(#[from] StreamError),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("stream ended before its header frame")]
    Ended,
}

/// Reads the header frame that opens a stream (or the next one, after interim responses),
/// starting with `pending`, bytes already read from the stream. Returns the frame's bytes
/// (decode them again with [`frame::decode`], which is cheap) and the bytes that arrived
/// after it.
///
/// A frame that fits in one chunk is sliced out of it without copying; only a frame split
/// across chunks is gathered. The frame codec bounds the frame, so this does too.
pub async fn read_frame(
    recv: &mut RecvStream,
    pending: Bytes,
) -> Result<(Bytes, Bytes), FrameReadError> {
    if !pending.is_empty() {
        if let Some((_, used)) = frame::decode(&pending)? {
            return Ok((pending.slice(..used), pending.slice(used..)));
        }
    }
    let mut gathered = BytesMut::new();
    gathered.extend_from_slice(&pending);
    loop {
        let chunk = recv
            .read_chunk(STREAM_READ)
            .await?
            .ok_or(FrameReadError::Ended)?;
        if gathered.is_empty() {
            if let Some((_, used)) = frame::decode(&chunk)? {
                return Ok((chunk.slice(..used), chunk.slice(used..)));
            }
            gathered.extend_from_slice(&chunk);
            continue;
        }
        gathered.extend_from_slice(&chunk);
        if let Some((_, used)) = frame::decode(&gathered)? {
            let all = gathered.freeze();
            return Ok((all.slice(..used), all.slice(used..)));
        }
    }
}
