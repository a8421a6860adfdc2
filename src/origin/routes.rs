//! The origin's handlers for the routes with a body worth more than one line: generated
//! bytes, echoes, digests, slow streams and the headers as JSON.

use std::io;
use std::time::Duration;

use bytes::BufMut;
use monoio::io::AsyncWriteRentExt;

use super::serve::{put_decimal, reason, BodyLen, Conn, TEXT};
use crate::http::{body, BodyDecoder, BodyFraming};
use crate::runtime::io::{body_chunk, write_bytes};

/// Most bytes `/bytes/N` will produce, so a typo cannot run for hours.
pub(super) const MAX_GENERATED: u64 = 64 * 1024 * 1024 * 1024;

/// Most chunks or events `/stream` and `/sse` will send.
const MAX_REPEAT: u64 = 1_000_000;

/// Longest pause between chunks or events.
const MAX_INTERVAL_MS: u64 = 60_000;

/// Bodies up to this size are copied behind their head so both leave in one write; larger
/// ones are written from where they are.
const COPY_LIMIT: usize = 16 * 1024;

const BLOCK_LEN: usize = 64 * 1024;

/// The bytes of `/bytes/N`, in static memory so that no worker ever allocates them: byte `i`
/// of a body is `b'a' + (i % 65536) % 26`, the block repeated.
static BLOCK: [u8; BLOCK_LEN] = block();

const fn block() -> [u8; BLOCK_LEN] {
    let mut block = [0u8; BLOCK_LEN];
    let mut i = 0;
    while i < BLOCK_LEN {
        block[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    block
}

/// `/bytes/N`: N bytes of [`BLOCK`], written straight from static memory.
pub(super) async fn bytes(conn: &mut Conn, n: u64, head_only: bool) -> io::Result<()> {
    conn.head(200, "application/octet-stream", BodyLen::Length(n));
    if head_only {
        return conn.flush().await;
    }
    if n <= COPY_LIMIT as u64 {
        conn.out.put_slice(&BLOCK[..n as usize]);
        return conn.flush().await;
    }
    conn.flush().await?;
    let mut left = n;
    while left > 0 {
        let take = left.min(BLOCK_LEN as u64) as usize;
        let block: &'static [u8] = &BLOCK;
        let (result, _) = conn.stream.write_all(&block[..take]).await;
        result?;
        left -= take as u64;
    }
    Ok(())
}

/// `/echo`: the request body back as it arrives, with the request's length when it had one
/// and chunked otherwise.
pub(super) async fn echo(
    conn: &mut Conn,
    decoder: &mut BodyDecoder,
    framing: BodyFraming,
    head_only: bool,
) -> io::Result<()> {
    let length = match framing {
        BodyFraming::Length(n) => Some(n),
        BodyFraming::Chunked | BodyFraming::UntilClose => None,
        BodyFraming::None => Some(0),
    };
    let len = length.map_or(BodyLen::Streamed, BodyLen::Length);
    conn.head(200, "application/octet-stream", len);
    if head_only {
        return conn.flush().await;
    }
    let chunked = len == BodyLen::Streamed && !conn.http10;
    conn.flush().await?;
    while let Some(data) = body_chunk(&mut conn.stream, &mut conn.buf, decoder).await? {
        if !chunked {
            write_bytes(&mut conn.stream, data).await?;
        } else if data.len() <= COPY_LIMIT {
            body::chunk_header(data.len(), &mut conn.out);
            conn.out.put_slice(&data);
            conn.out.put_slice(body::CHUNK_END);
            conn.flush().await?;
        } else {
            body::chunk_header(data.len(), &mut conn.out);
            conn.flush().await?;
            write_bytes(&mut conn.stream, data).await?;
            conn.out.put_slice(body::CHUNK_END);
        }
    }
    if chunked {
        conn.out.put_slice(body::LAST_CHUNK);
    }
    conn.flush().await
}

/// `/sha256`: the hex SHA-256 of the request body, hashed as it streams in.
pub(super) async fn sha256(
    conn: &mut Conn,
    decoder: &mut BodyDecoder,
    head_only: bool,
) -> io::Result<()> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    while let Some(data) = body_chunk(&mut conn.stream, &mut conn.buf, decoder).await? {
        digest.update(&data);
    }
    let hex = hex::encode(digest.finish());
    conn.fixed(200, TEXT, hex.as_bytes(), head_only).await
}

/// `/status/CODE`: that status, with `CODE reason\n` (or `CODE\n` for a code with no
/// reason phrase) as the body (none for 204 and 304).
pub(super) async fn status(conn: &mut Conn, code: u16, head_only: bool) -> io::Result<()> {
    let body = match reason(code) {
        "" => format!("{code}\n"),
        reason => format!("{code} {reason}\n"),
    };
    conn.fixed(code, TEXT, body.as_bytes(), head_only).await
}

/// What `/stream` and `/sse` repeat.
#[derive(Debug, Clone, Copy)]
pub(super) enum Repeat {
    /// `chunk i\n` as plain text, one chunk each.
    Chunks,
    /// `data: event i\n\n` as `text/event-stream`, one chunk each.
    Events,
}

/// The count (query parameter `name`, default 10) and `interval_ms` (default 0) of `/stream`
/// and `/sse`; values that are not numbers take the default.
pub(super) fn repeat_params(query: &str, name: &str) -> (u64, Duration) {
    let param = |wanted: &str, default: u64| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == wanted)
            .and_then(|(_, value)| value.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let count = param(name, 10).min(MAX_REPEAT);
    let interval = Duration::from_millis(param("interval_ms", 0).min(MAX_INTERVAL_MS));
    (count, interval)
}

/// `/stream` and `/sse`: `count` pieces, one every `interval` (the first at once), each
/// written (flushed) on its own.
pub(super) async fn repeat(
    conn: &mut Conn,
    what: Repeat,
    count: u64,
    interval: Duration,
    head_only: bool,
) -> io::Result<()> {
    match what {
        Repeat::Chunks => conn.head(200, TEXT, BodyLen::Streamed),
        Repeat::Events => conn.head_with(
            200,
            "text/event-stream",
            BodyLen::Streamed,
            b"Cache-Control: no-cache\r\n",
        ),
    }
    if head_only {
        return conn.flush().await;
    }
    let chunked = !conn.http10;
    conn.flush().await?;

    let (prefix, suffix): (&[u8], &[u8]) = match what {
        Repeat::Chunks => (b"chunk ", b"\n"),
        Repeat::Events => (b"data: event ", b"\n\n"),
    };
    let mut piece = bytes::BytesMut::with_capacity(64);
    for i in 0..count {
        if i > 0 && !interval.is_zero() {
            monoio::time::sleep(interval).await;
        }
        piece.clear();
        piece.put_slice(prefix);
        put_decimal(&mut piece, i);
        piece.put_slice(suffix);
        if chunked {
            body::chunk_header(piece.len(), &mut conn.out);
            conn.out.put_slice(&piece);
            conn.out.put_slice(body::CHUNK_END);
        } else {
            conn.out.put_slice(&piece);
        }
        conn.flush().await?;
    }
    if chunked {
        conn.out.put_slice(body::LAST_CHUNK);
    }
    conn.flush().await
}

/// `/headers`: the request's fields as a JSON object. Names are lowercased (field names are
/// case-insensitive) and appear in the order they first came; a name sent once maps to its
/// value, a name sent more than once to the array of its values in order. Values that are
/// not UTF-8 have their stray bytes replaced by U+FFFD.
pub(super) fn headers_json(headers: &[httparse::Header<'_>]) -> Vec<u8> {
    let mut fields: Vec<(String, Vec<String>)> = Vec::with_capacity(headers.len());
    for header in headers {
        let name = header.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(header.value).into_owned();
        match fields.iter_mut().find(|(known, _)| *known == name) {
            Some((_, values)) => values.push(value),
            None => fields.push((name, vec![value])),
        }
    }

    let mut json = Vec::with_capacity(256);
    json.push(b'{');
    for (index, (name, values)) in fields.iter().enumerate() {
        if index > 0 {
            json.push(b',');
        }
        json_string(&mut json, name);
        json.push(b':');
        match values.as_slice() {
            [value] => json_string(&mut json, value),
            values => {
                json.push(b'[');
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        json.push(b',');
                    }
                    json_string(&mut json, value);
                }
                json.push(b']');
            }
        }
    }
    json.push(b'}');
    json
}

/// Appends `text` as a JSON string (RFC 8259 §7): quotes, backslashes and control
/// characters escaped, everything else as it is.
fn json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_become_arrays() {
        let headers = [
            httparse::Header {
                name: "Host",
                value: b"a.test",
            },
            httparse::Header {
                name: "X-Tag",
                value: b"one",
            },
            httparse::Header {
                name: "Accept",
                value: b"*/*",
            },
            httparse::Header {
                name: "x-tag",
                value: b"two \"quoted\"\t\\",
            },
        ];
        assert_eq!(
            String::from_utf8(headers_json(&headers)).unwrap(),
            r#"{"host":"a.test","x-tag":["one","two \"quoted\"\t\\"],"accept":"*/*"}"#
        );
        assert_eq!(headers_json(&[]), b"{}");
    }

    #[test]
    fn json_strings_escape_controls() {
        let mut out = Vec::new();
        json_string(&mut out, "a\u{1}\u{1f}é\r\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\u0001\\u001fé\\r\\n\""
        );
    }

    #[test]
    fn repeat_parameters_have_defaults_and_caps() {
        assert_eq!(repeat_params("", "chunks"), (10, Duration::ZERO));
        assert_eq!(
            repeat_params("chunks=3&interval_ms=25", "chunks"),
            (3, Duration::from_millis(25))
        );
        assert_eq!(
            repeat_params("events=x&interval_ms=99999999", "events"),
            (10, Duration::from_secs(60))
        );
        assert_eq!(repeat_params("events=5000000", "events").0, 1_000_000);
    }

    #[test]
    fn the_block_repeats_the_alphabet() {
        assert_eq!(&BLOCK[..28], b"abcdefghijklmnopqrstuvwxyzab");
        assert_eq!(BLOCK[BLOCK_LEN - 1], b'a' + ((BLOCK_LEN - 1) % 26) as u8);
    }
}
