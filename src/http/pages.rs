//! The error pages a user sees, one place for wording and status.

use std::fmt::{self, Write};

use bytes::BytesMut;

use super::head::reason;

/// Appends a complete HTTP/1.1 response: the status line, `Content-Type: text/html`,
/// `Content-Length`, `Connection: close` when `close`, and a small HTML page with `title` and
/// `detail` (HTML-escaped).
pub fn error_response(out: &mut BytesMut, status: u16, title: &str, detail: &str, close: bool) {
    // The page is written twice, first into a counter, so Content-Length is known up front
    // without building the page in a temporary buffer.
    let mut counter = Counter(0);
    // Neither sink can fail: the counter only adds and BytesMut grows as needed.
    let _ = write_page(&mut counter, status, title, detail);

    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Length: {length}\r\n\
         Cache-Control: no-store\r\n",
        reason = reason(status),
        length = counter.0,
    );
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let _ = write_page(out, status, title, detail);
}

fn write_page(out: &mut impl Write, status: u16, title: &str, detail: &str) -> fmt::Result {
    let (title, detail) = (Escaped(title), Escaped(detail));
    write!(
        out,
        "<!DOCTYPE html>\n\
         <html lang=\"en\">\n\
         <head><meta charset=\"utf-8\"><title>{status} {title}</title></head>\n\
         <body style=\"font-family: sans-serif; margin: 3em;\">\n\
         <h1>{title}</h1>\n\
         <p>{detail}</p>\n\
         <hr>\n\
         <p><small>adit</small></p>\n\
         </body>\n\
         </html>\n"
    )
}

/// Counts the bytes written to it.
struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Text made safe for HTML element content and attribute values.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_page() {
        let mut out = BytesMut::new();
        error_response(
            &mut out,
            502,
            "Bad <Gateway>",
            "origin \"a\" & 'b' refused",
            true,
        );
        let body = "<!DOCTYPE html>\n\
            <html lang=\"en\">\n\
            <head><meta charset=\"utf-8\"><title>502 Bad &lt;Gateway&gt;</title></head>\n\
            <body style=\"font-family: sans-serif; margin: 3em;\">\n\
            <h1>Bad &lt;Gateway&gt;</h1>\n\
            <p>origin &quot;a&quot; &amp; &#39;b&#39; refused</p>\n\
            <hr>\n\
            <p><small>adit</small></p>\n\
            </body>\n\
            </html>\n";
        let expected = format!(
            "HTTP/1.1 502 Bad Gateway\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\n\
             Cache-Control: no-store\r\n\
             Connection: close\r\n\
             \r\n{body}",
            body.len()
        );
        assert_eq!(std::str::from_utf8(&out), Ok(expected.as_str()));
        assert_eq!(body.len(), 291);
    }

    #[test]
    fn keep_alive_page_appends() {
        let mut out = BytesMut::from(&b"previous"[..]);
        error_response(&mut out, 404, "Not found", "no route for é.example", false);
        let text = std::str::from_utf8(&out[8..]).unwrap();
        assert!(out.starts_with(b"previous"));
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(!text.contains("Connection:"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(body.contains("<p>no route for é.example</p>\n"));
    }
}
