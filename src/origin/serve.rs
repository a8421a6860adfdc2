//! One origin connection: parse a request, answer by route, loop while keep-alive holds.

use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use monoio::net::TcpStream;

use crate::http::{self, body, BodyDecoder, BodyFraming, HeadError, MAX_HEADERS};
use crate::runtime::io::{
    body_chunk, invalid_data, read_more, write_all, write_bytes, write_chunk,
};

/// Most bytes `/bytes/N` and `/stream` will produce, so a typo cannot run for hours.
const MAX_GENERATED: u64 = 64 * 1024 * 1024 * 1024;

/// What the route handlers need from a request head, owned.
struct Request {
    method: String,
    target: String,
    framing: BodyFraming,
    keep_alive: bool,
    headers: Vec<(String, String)>,
}

/// Serves requests on one connection until the client closes or keep-alive ends.
pub async fn serve_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let request = match read_request(&mut stream, &mut buf).await? {
            Some(Ok(request)) => request,
            Some(Err(err)) => {
                let mut out = BytesMut::new();
                http::pages::error_response(
                    &mut out,
                    err.status(),
                    "Bad request",
                    &err.to_string(),
                    true,
                );
                return write_all(&mut stream, out.freeze()).await;
            }
            None => return Ok(()),
        };
        let mut decoder = BodyDecoder::new(request.framing);
        respond(&mut stream, &mut buf, &mut decoder, &request).await?;

        // Whatever the handler left of the body is drained so the next request starts clean.
        while body_chunk(&mut stream, &mut buf, &mut decoder)
            .await?
            .is_some()
        {}
        if !request.keep_alive {
            return Ok(());
        }
    }
}

/// Reads one request head; `None` when the client closed between requests.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> io::Result<Option<Result<Request, HeadError>>> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match http::parse_request(buf, &mut headers) {
                Ok(Some(head)) => {
                    let framing = match http::request_framing(head.headers) {
                        Ok(framing) => framing,
                        Err(err) => return Ok(Some(Err(err))),
                    };
                    let request = Request {
                        method: head.method.to_owned(),
                        target: head.target.to_owned(),
                        framing,
                        keep_alive: http::head::keep_alive(head.version, head.headers),
                        headers: head
                            .headers
                            .iter()
                            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into()))
                            .collect(),
                    };
                    let len = head.len;
                    let _ = buf.split_to(len);
                    return Ok(Some(Ok(request)));
                }
                Ok(None) => {}
                Err(err) => return Ok(Some(Err(err))),
            }
        }
        let (result, filled) = read_more(stream, std::mem::take(buf)).await;
        *buf = filled;
        if result? == 0 {
            return Ok(None);
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut BodyDecoder,
    request: &Request,
) -> io::Result<()> {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let head_only = request.method == "HEAD";
    match path {
        "/" => {
            fixed(
                stream,
                200,
                "text/plain",
                b"Hello from the adit origin\n",
                head_only,
            )
            .await
        }
        "/echo" => echo(stream, buf, decoder, request).await,
        "/sha256" => {
            let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
            while let Some(chunk) = body_chunk(stream, buf, decoder).await? {
                digest.update(&chunk);
            }
            let hex = hex::encode(digest.finish());
            fixed(stream, 200, "text/plain", hex.as_bytes(), head_only).await
        }
        "/headers" => {
            let json = serde_json::to_vec(&request.headers).map_err(invalid_data)?;
            fixed(stream, 200, "application/json", &json, head_only).await
        }
        _ => {
            if let Some(n) = path
                .strip_prefix("/bytes/")
                .and_then(|n| n.parse::<u64>().ok())
            {
                return bytes(stream, n.min(MAX_GENERATED), head_only).await;
            }
            if let Some(ms) = path
                .strip_prefix("/delay/")
                .and_then(|n| n.parse::<u64>().ok())
            {
                monoio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
                return fixed(stream, 200, "text/plain", b"done\n", head_only).await;
            }
            if let Some(code) = path
                .strip_prefix("/status/")
                .and_then(|n| n.parse::<u16>().ok())
            {
                if (200..600).contains(&code) {
                    let body = format!("{code} {}\n", http::head::reason(code));
                    return fixed(stream, code, "text/plain", body.as_bytes(), head_only).await;
                }
            }
            if path == "/stream" {
                return chunks(stream, query).await;
            }
            fixed(
                stream,
                404,
                "text/plain",
                b"no such route on the adit origin\n",
                head_only,
            )
            .await
        }
    }
}

fn head(out: &mut BytesMut, status: u16, content_type: &str) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.to_string().as_bytes());
    out.put_u8(b' ');
    out.put_slice(http::head::reason(status).as_bytes());
    out.put_slice(b"\r\nServer: adit-origin\r\nContent-Type: ");
    out.put_slice(content_type.as_bytes());
    out.put_slice(b"\r\n");
}

async fn fixed(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let mut out = BytesMut::with_capacity(256 + body.len());
    head(&mut out, status, content_type);
    let no_body = head_only || status == 204 || status == 304;
    if status != 204 && status != 304 {
        out.put_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.put_slice(b"\r\n");
    if !no_body {
        out.put_slice(body);
    }
    write_all(stream, out.freeze()).await
}

async fn echo(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut BodyDecoder,
    request: &Request,
) -> io::Result<()> {
    let mut out = BytesMut::with_capacity(256);
    head(&mut out, 200, "application/octet-stream");
    let length = match request.framing {
        BodyFraming::Length(n) => Some(n),
        BodyFraming::None => Some(0),
        _ => None,
    };
    match length {
        Some(n) => out.put_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes()),
        None => out.put_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
    }
    write_all(stream, out.freeze()).await?;
    while let Some(chunk) = body_chunk(stream, buf, decoder).await? {
        if length.is_some() {
            write_bytes(stream, chunk).await?;
        } else {
            write_chunk(stream, chunk).await?;
        }
    }
    if length.is_none() {
        write_all(stream, body::LAST_CHUNK).await?;
    }
    Ok(())
}

/// `/bytes/N`: N bytes of a repeating pattern, written from one shared 64 KiB block.
async fn bytes(stream: &mut TcpStream, n: u64, head_only: bool) -> io::Result<()> {
    let mut out = BytesMut::with_capacity(256);
    head(&mut out, 200, "application/octet-stream");
    out.put_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
    write_all(stream, out.freeze()).await?;
    if head_only {
        return Ok(());
    }
    let block: Bytes = (0..64 * 1024)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut left = n;
    while left > 0 {
        let take = left.min(block.len() as u64) as usize;
        write_bytes(stream, block.slice(..take)).await?;
        left -= take as u64;
    }
    Ok(())
}

/// `/stream?chunks=N&interval_ms=M`: N chunks `chunk i\n`, one every M ms.
async fn chunks(stream: &mut TcpStream, query: &str) -> io::Result<()> {
    let param = |name: &str, default: u64| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let count = param("chunks", 10).min(1_000_000);
    let interval = Duration::from_millis(param("interval_ms", 0).min(60_000));
    let mut out = BytesMut::with_capacity(256);
    head(&mut out, 200, "text/plain");
    out.put_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    write_all(stream, out.freeze()).await?;
    for i in 0..count {
        if !interval.is_zero() && i > 0 {
            monoio::time::sleep(interval).await;
        }
        write_chunk(stream, Bytes::from(format!("chunk {i}\n"))).await?;
    }
    write_all(stream, body::LAST_CHUNK).await
}
