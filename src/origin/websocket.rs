//! `/ws` after the handshake: a WebSocket echo (RFC 6455). Each data frame comes back
//! unmasked with the same opcode, FIN bit and length, so text stays text, binary stays
//! binary and fragmented messages keep their fragments. Payloads are relayed run by run as
//! they arrive, never gathered whole. A ping is answered with a pong carrying its payload, a
//! close with a close carrying the same status, after which the origin closes the socket.
//!
//! The codec's [`Decoder`](crate::ws::Decoder) is not used because it refuses text messages
//! (adit's own WebSocket carries only bytes); this loop works on frame headers directly.
//! Text payloads are echoed without checking that they are UTF-8.

use std::io;

use bytes::{Buf, BufMut};
use monoio::io::AsyncWriteRent;

use super::serve::Conn;
use crate::runtime::io::{read_more, write_bytes};
use crate::ws::frame::{
    apply_mask, decode_header, encode_header, FrameHeader, Opcode, CLOSE_PROTOCOL, MAX_HEADER_LEN,
};

/// Payload runs up to this size are copied behind their frame header into one write.
const COPY_LIMIT: usize = 16 * 1024;

/// Echoes frames on an upgraded connection until either side closes.
pub(super) async fn echo(conn: &mut Conn) -> io::Result<()> {
    let mut in_message = false;
    loop {
        let (header, used) = match next_header(conn).await? {
            Some(Ok(found)) => found,
            Some(Err(err)) => {
                tracing::debug!("origin websocket: {err}");
                return close(conn, Some(err.close_code())).await;
            }
            None => return Ok(()),
        };
        // A client must mask every frame (§5.1).
        let Some(mask) = header.mask else {
            return close(conn, Some(CLOSE_PROTOCOL)).await;
        };

        if header.opcode.is_control() {
            // The header checks bound a control payload to 125 bytes.
            let len = header.len as usize;
            if !fill(conn, used + len).await? {
                return Ok(());
            }
            conn.buf.advance(used);
            let mut payload = conn.buf.split_to(len);
            apply_mask(&mut payload, mask, 0);
            match header.opcode {
                Opcode::Ping => {
                    put_header(conn, Opcode::Pong, true, len as u64);
                    conn.out.put_slice(&payload);
                    conn.flush().await?;
                }
                Opcode::Pong => {}
                _ => return close(conn, close_reply(&payload)).await,
            }
            continue;
        }

        // Continuation frames, and only they, may follow a frame without FIN (§5.4).
        if (header.opcode == Opcode::Continuation) != in_message {
            return close(conn, Some(CLOSE_PROTOCOL)).await;
        }
        in_message = !header.fin;
        conn.buf.advance(used);
        if !relay(conn, header, mask).await? {
            return Ok(());
        }
    }
}

/// Sends one frame's payload back, unmasked, behind a header like the one it came with.
/// `false` when the client went away mid-frame.
async fn relay(conn: &mut Conn, header: FrameHeader, mask: [u8; 4]) -> io::Result<bool> {
    put_header(conn, header.opcode, header.fin, header.len);
    let mut offset = 0;
    while offset < header.len {
        if conn.buf.is_empty() && !read(conn).await? {
            return Ok(false);
        }
        let take = (header.len - offset).min(conn.buf.len() as u64);
        let mut run = conn.buf.split_to(take as usize);
        apply_mask(&mut run, mask, offset);
        offset += take;
        if run.len() <= COPY_LIMIT {
            conn.out.put_slice(&run);
            conn.flush().await?;
        } else {
            conn.flush().await?;
            write_bytes(&mut conn.stream, run.freeze()).await?;
        }
    }
    // A frame with no payload still has its header waiting.
    conn.flush().await?;
    Ok(true)
}

fn put_header(conn: &mut Conn, opcode: Opcode, fin: bool, len: u64) {
    let header = FrameHeader {
        fin,
        opcode,
        mask: None,
        len,
    };
    let mut encoded = [0u8; MAX_HEADER_LEN];
    let used = encode_header(&header, &mut encoded);
    conn.out.put_slice(&encoded[..used]);
}

/// The status to answer a client's close with: its own, or none when it sent none, or
/// 1002 when its payload is malformed (one byte, or a status that may not be sent).
fn close_reply(payload: &[u8]) -> Option<u16> {
    let Some((&[c0, c1], reason)) = payload.split_first_chunk::<2>() else {
        return if payload.is_empty() {
            None
        } else {
            Some(CLOSE_PROTOCOL)
        };
    };
    let code = u16::from_be_bytes([c0, c1]);
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if sendable && std::str::from_utf8(reason).is_ok() {
        Some(code)
    } else {
        Some(CLOSE_PROTOCOL)
    }
}

/// Sends a close frame (with `code`, if any) and closes the socket; the server closes the
/// TCP connection first (§7.1.1).
async fn close(conn: &mut Conn, code: Option<u16>) -> io::Result<()> {
    match code {
        Some(code) => {
            put_header(conn, Opcode::Close, true, 2);
            conn.out.put_slice(&code.to_be_bytes());
        }
        None => put_header(conn, Opcode::Close, true, 0),
    }
    conn.flush().await?;
    conn.stream.shutdown().await
}

/// The next frame header at the start of `buf`, reading as needed; `None` at end of stream.
async fn next_header(
    conn: &mut Conn,
) -> io::Result<Option<Result<(FrameHeader, usize), crate::ws::WsError>>> {
    loop {
        match decode_header(&conn.buf) {
            Ok(Some(found)) => return Ok(Some(Ok(found))),
            Ok(None) => {
                if !read(conn).await? {
                    return Ok(None);
                }
            }
            Err(err) => return Ok(Some(Err(err))),
        }
    }
}

/// Reads until `buf` holds `len` bytes; `false` at end of stream.
async fn fill(conn: &mut Conn, len: usize) -> io::Result<bool> {
    while conn.buf.len() < len {
        if !read(conn).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads once more into `buf`; `false` at end of stream.
async fn read(conn: &mut Conn) -> io::Result<bool> {
    let (result, filled) = read_more(&mut conn.stream, std::mem::take(&mut conn.buf)).await;
    conn.buf = filled;
    Ok(result? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_replies_carry_the_clients_status() {
        assert_eq!(close_reply(b""), None);
        assert_eq!(close_reply(&[0x03]), Some(CLOSE_PROTOCOL));
        assert_eq!(close_reply(&1000u16.to_be_bytes()), Some(1000));
        assert_eq!(close_reply(b"\x0f\xa0bye"), Some(4000));
        assert_eq!(close_reply(&1005u16.to_be_bytes()), Some(CLOSE_PROTOCOL));
        assert_eq!(close_reply(b"\x03\xe8\xff"), Some(CLOSE_PROTOCOL));
    }
}
