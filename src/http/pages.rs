//! The error pages a user sees, one place for wording and status.

use bytes::BytesMut;

/// Appends a complete HTTP/1.1 response: the status line, `Content-Type: text/html`,
/// `Content-Length`, `Connection: close` when `close`, and a small HTML page with `title` and
/// `detail` (HTML-escaped).
pub fn error_response(out: &mut BytesMut, status: u16, title: &str, detail: &str, close: bool) {
    let _ = (out, status, title, detail, close);
    todo!()
}
