//! The client's half of the WebSocket opening handshake with the edge, sans-IO: the request
//! bytes, and a reader of the answer that either switches (with any bytes that came after
//! the head) or turns a refusal page into a readable error.

use bytes::{Buf, Bytes, BytesMut};

use super::AccessError;
use crate::http::{self, BodyDecoder, BodyFraming, MAX_HEADERS};
use crate::ws::handshake;

/// Most bytes of a refusal page kept for the message.
const MAX_PAGE: usize = 16 * 1024;

/// The upgrade request for `host` with the client's `key`.
pub fn request(host: &str, key: &str) -> Bytes {
    format!(
        "GET / HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: {version}\r\n\
         User-Agent: adit/{agent}\r\n\
         \r\n",
        version = handshake::VERSION,
        agent = env!("CARGO_PKG_VERSION"),
    )
    .into()
}

/// What [`Answer::step`] found.
#[derive(Debug)]
pub enum Step {
    /// Read more into [`Answer::buffer`] (or report the end of the stream).
    More,
    /// The edge switched protocols; these WebSocket bytes came right after the head.
    Switched(Bytes),
    Failed(AccessError),
}

/// A refused upgrade whose page is being read.
#[derive(Debug)]
struct Refusal {
    status: u16,
    reason: String,
    decoder: BodyDecoder,
    page: Vec<u8>,
}

/// Reads the edge's answer to the upgrade request.
#[derive(Debug)]
pub struct Answer {
    accept: String,
    buf: BytesMut,
    refusal: Option<Refusal>,
}

impl Answer {
    /// For a request sent with `key`.
    pub fn new(key: &str) -> Answer {
        Answer {
            accept: handshake::accept_key(key.as_bytes()),
            buf: BytesMut::with_capacity(4096),
            refusal: None,
        }
    }

    /// Where the IO layer appends what it reads from the edge.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Looks at what was read so far; `eof` says the edge closed after it.
    pub fn step(&mut self, eof: bool) -> Step {
        if self.refusal.is_some() {
            return self.read_page(eof);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = match http::parse_response(&self.buf, &mut headers) {
            Ok(Some(head)) => head,
            Ok(None) if eof => {
                let why = "the edge closed the connection before answering".to_owned();
                return Step::Failed(AccessError::Handshake(why));
            }
            Ok(None) => return Step::More,
            Err(err) => return Step::Failed(AccessError::Handshake(err.to_string())),
        };

        let len = head.len;
        if head.status == 101 {
            let field = |name: &str| {
                head.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value.trim_ascii())
            };
            let upgrade = field("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
            if !upgrade {
                let why = "the edge switched to another protocol than WebSocket".to_owned();
                return Step::Failed(AccessError::Handshake(why));
            }
            if field("sec-websocket-accept") != Some(self.accept.as_bytes()) {
                let why = "the edge's Sec-WebSocket-Accept does not match the key".to_owned();
                return Step::Failed(AccessError::Handshake(why));
            }
            self.buf.advance(len);
            return Step::Switched(std::mem::take(&mut self.buf).freeze());
        }

        let framing = match http::response_framing("GET", head.status, head.headers) {
            Ok(framing) => framing,
            Err(_) => BodyFraming::UntilClose,
        };
        self.refusal = Some(Refusal {
            status: head.status,
            reason: head.reason.to_owned(),
            decoder: BodyDecoder::new(framing),
            page: Vec::new(),
        });
        self.buf.advance(len);
        self.read_page(eof)
    }

    fn read_page(&mut self, eof: bool) -> Step {
        let Some(refusal) = self.refusal.as_mut() else {
            return Step::More;
        };
        while !self.buf.is_empty() && !refusal.decoder.is_done() {
            let Ok(step) = refusal.decoder.decode(&self.buf) else {
                break;
            };
            if let Some(data) = self.buf.get(step.data) {
                let room = MAX_PAGE.saturating_sub(refusal.page.len());
                refusal
                    .page
                    .extend_from_slice(data.get(..room).unwrap_or(data));
            }
            self.buf.advance(step.consumed);
            if step.consumed == 0 {
                break;
            }
        }
        let complete = refusal.decoder.is_done() || refusal.page.len() >= MAX_PAGE;
        if !complete && !eof {
            return Step::More;
        }
        Step::Failed(AccessError::Refused {
            status: refusal.status,
            reason: refusal.reason.clone(),
            text: page_text(&refusal.page),
        })
    }
}

/// The readable text of an error page: for HTML, the text of its body without tags, one
/// line per non-empty line of markup, entities decoded.
pub fn page_text(page: &[u8]) -> String {
    let page = String::from_utf8_lossy(page);
    let body = match (page.find("<body"), page.rfind("</body>")) {
        (Some(start), Some(end)) if start < end => &page[start..end],
        _ => &page[..],
    };

    let mut text = String::with_capacity(body.len());
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.lines()
        .map(str::trim)
        // The footer of adit's own pages says nothing about this error.
        .filter(|line| !line.is_empty() && *line != "adit")
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_the_handshake_fields() {
        let request = request("ssh.example.com", "dGhlIHNhbXBsZSBub25jZQ==");
        let expected = format!(
            "GET / HTTP/1.1\r\nHost: ssh.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nUser-Agent: adit/{}\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(request, expected.as_bytes());
    }

    fn answer(chunks: &[&[u8]]) -> Step {
        let mut answer = Answer::new("dGhlIHNhbXBsZSBub25jZQ==");
        for chunk in chunks {
            answer.buffer().extend_from_slice(chunk);
            match answer.step(false) {
                Step::More => {}
                done => return done,
            }
        }
        answer.step(true)
    }

    #[test]
    fn a_switch_keeps_the_bytes_after_the_head() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                     Upgrade: websocket\r\n\
                     sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        match answer(&[&head[..20], &head[20..], b"\x82\x01x"]) {
            Step::Switched(rest) => assert_eq!(rest, &b""[..]),
            other => panic!("unexpected {other:?}"),
        }
        let mut with_frame = head.to_vec();
        with_frame.extend_from_slice(b"\x82\x01x");
        match answer(&[&with_frame]) {
            Step::Switched(rest) => assert_eq!(rest, &b"\x82\x01x"[..]),
            other => panic!("unexpected {other:?}"),
        }

        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n";
        match answer(&[wrong]) {
            Step::Failed(err) => assert_eq!(
                err.to_string(),
                "the edge's answer is not a WebSocket upgrade: \
                 the edge's Sec-WebSocket-Accept does not match the key"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_refusal_reads_its_page() {
        let mut page = BytesMut::new();
        crate::http::pages::error_response(
            &mut page,
            404,
            "No tunnel for this hostname",
            "No tunnel is routed for a.test. Route one with: adit tunnel route dns TUNNEL a.test",
            false,
        );
        let (head, body) = page.split_at(page.len() - 100);
        match answer(&[head, body]) {
            Step::Failed(err) => assert_eq!(
                err.to_string(),
                "the edge refused the connection: 404 Not Found\n\
                 No tunnel for this hostname\n\
                 No tunnel is routed for a.test. Route one with: adit tunnel route dns \
                 TUNNEL a.test"
            ),
            other => panic!("unexpected {other:?}"),
        }

        let plain = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\nno &amp; way\n";
        match answer(&[plain]) {
            Step::Failed(AccessError::Refused {
                status,
                reason,
                text,
            }) => {
                assert_eq!((status, reason.as_str()), (502, "Bad Gateway"));
                assert_eq!(text, "no & way");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
