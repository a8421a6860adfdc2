//! Small helpers over monoio's owned-buffer IO.
//!
//! Reads land in the spare capacity of a `BytesMut`; filled bytes are split off and frozen
//! into `Bytes` that move on (into a QUIC stream or a socket write) without being copied.
//! Once every `Bytes` split from an allocation is dropped, `reserve` takes the allocation
//! back, so a connection keeps reusing one buffer in the steady state.

use std::io;
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};

use crate::http::BodyDecoder;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Size of each socket read.
pub const READ_CHUNK: usize = 64 * 1024;

/// Reads once into the spare capacity of `buf` (reserving `READ_CHUNK` when it has less),
/// appending to what it holds. Returns the count read; 0 means end of stream.
pub async fn read_more<R: AsyncReadRent>(
    reader: &mut R,
    mut buf: BytesMut,
) -> (io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    let start = buf.len();
    let end = buf.capacity();
    let (result, slice) = reader.read(buf.slice_mut(start..end)).await;
    (result, slice.into_inner())
}

/// Reads what a plain socket that turned readable holds into the spare capacity of `buf`
/// with one non-blocking call. The bytes are there, and the direct call spares the ring's
/// round trip (a submission, its completion and the task's wake-up) on every request.
/// `None` when the socket had nothing after all; the caller then posts a normal read.
pub fn recv_ready(socket: &impl AsRawFd, buf: &mut BytesMut) -> Option<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    let spare = buf.spare_capacity_mut();
    // SAFETY: the kernel writes at most `spare.len()` bytes into the spare capacity `buf`
    // owns, which outlives the call; the descriptor is the live socket `socket` owns.
    let got = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match usize::try_from(got) {
        Ok(n) => {
            // SAFETY: the call initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            Some(Ok(n))
        }
        Err(_) => {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                _ => Some(Err(err)),
            }
        }
    }
}

/// Writes all of an owned buffer.
pub async fn write_all<W: AsyncWriteRent, B: monoio::buf::IoBuf>(
    writer: &mut W,
    buf: B,
) -> io::Result<()> {
    let (result, _) = writer.write_all(buf).await;
    result.map(|_| ())
}

/// Writes `Bytes` and flushes nothing (monoio sockets are unbuffered).
pub async fn write_bytes<W: AsyncWriteRent>(writer: &mut W, bytes: Bytes) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    write_all(writer, bytes).await
}

/// The next run of body bytes of a message being read from `reader`: first from what `buf`
/// already holds, then from the socket. `Ok(None)` once the body is complete; the bytes
/// after it stay in `buf` for the next message.
pub async fn body_chunk<R: AsyncReadRent>(
    reader: &mut R,
    buf: &mut BytesMut,
    decoder: &mut BodyDecoder,
) -> io::Result<Option<Bytes>> {
    loop {
        if decoder.is_done() {
            return Ok(None);
        }
        if !buf.is_empty() {
            let step = decoder.decode(buf).map_err(invalid_data)?;
            if step.consumed > 0 {
                let taken = buf.split_to(step.consumed).freeze();
                if !step.data.is_empty() {
                    return Ok(Some(taken.slice(step.data)));
                }
                continue;
            }
            if decoder.is_done() {
                return Ok(None);
            }
        }
        let (result, filled) = read_more(reader, std::mem::take(buf)).await;
        *buf = filled;
        if result? == 0 {
            decoder.eof().map_err(invalid_data)?;
            return Ok(None);
        }
    }
}

/// An `io::Error` of kind `InvalidData` carrying `err`.
pub fn invalid_data<E: std::error::Error + Send + Sync + 'static>(err: E) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}
