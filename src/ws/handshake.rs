//! The opening handshake (RFC 6455 §4): the client's key, the server's accept value, and
//! the checks on an upgrade request. Sans-IO.

use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};

/// The GUID a server appends to the client's key before hashing (§1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version there is (§4.1).
pub const VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of the key and
/// [`GUID`]. SHA-1 serves here only to prove the server read the handshake, not as a
/// security measure.
pub fn accept_key(key: &[u8]) -> String {
    let mut input = Vec::with_capacity(key.len() + GUID.len());
    input.extend_from_slice(key);
    input.extend_from_slice(GUID.as_bytes());
    base64(digest(&SHA1_FOR_LEGACY_USE_ONLY, &input).as_ref())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded.
pub fn new_key() -> String {
    base64(&rand::random::<[u8; 16]>())
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: the base64 encoding of 16 bytes, which is
/// 22 characters of the base64 alphabet followed by `==` (§4.1). Surrounding whitespace is
/// the caller's to trim.
pub fn is_valid_key(key: &[u8]) -> bool {
    let Some((text, padding)) = key.split_at_checked(22) else {
        return false;
    };
    padding == b"==" && text.iter().all(|&b| sextet(b).is_some())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("Sec-WebSocket-Version must be 13")]
    Version,
    #[error("missing or invalid Sec-WebSocket-Key")]
    Key,
}

/// Checks the WebSocket fields of an upgrade request (the `Upgrade` and `Connection` fields
/// are the carrier's business) and returns the key, trimmed.
pub fn check_request<'a>(
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<&'a [u8], HandshakeError> {
    let mut key = None;
    let mut keys = 0;
    let mut version_ok = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            keys += 1;
            key = Some(value.trim_ascii());
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            version_ok = value.trim_ascii() == VERSION.as_bytes();
        }
    }
    if !version_ok {
        return Err(HandshakeError::Version);
    }
    match key {
        Some(key) if keys == 1 && is_valid_key(key) => Ok(key),
        _ => Err(HandshakeError::Key),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    let symbol = |bits: u32| char::from(ALPHABET[(bits & 0x3F) as usize]);
    let mut groups = data.chunks_exact(3);
    for group in &mut groups {
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        out.extend([18, 12, 6, 0].map(|shift| symbol(bits >> shift)));
    }
    match *groups.remainder() {
        [a] => {
            let bits = u32::from(a) << 16;
            out.extend([symbol(bits >> 18), symbol(bits >> 12), '=', '=']);
        }
        [a, b] => {
            let bits = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend([
                symbol(bits >> 18),
                symbol(bits >> 12),
                symbol(bits >> 6),
                '=',
            ]);
        }
        _ => {}
    }
    out
}

fn sextet(byte: u8) -> Option<u8> {
    ALPHABET.iter().position(|&b| b == byte).map(|at| at as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_of_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xFB, 0xFF, 0xBF]), "+/+/");
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn keys_are_checked() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        let key = new_key();
        assert_eq!(key.len(), 24);
        assert!(is_valid_key(key.as_bytes()));
        assert!(!is_valid_key(b""));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ==="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZ!=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQAA"));
    }

    #[test]
    fn upgrade_requests_are_checked() {
        let key = &b"dGhlIHNhbXBsZSBub25jZQ=="[..];
        let check = |fields: &[(&'static [u8], &'static [u8])]| {
            check_request(fields.iter().map(|&(name, value)| (name, value)))
        };
        assert_eq!(
            check(&[
                (b"Sec-WebSocket-Key", b" dGhlIHNhbXBsZSBub25jZQ== "),
                (b"sec-websocket-version", b"13"),
            ]),
            Ok(key)
        );
        assert_eq!(
            check(&[(b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]),
            Err(HandshakeError::Version)
        );
        assert_eq!(
            check(&[
                (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"sec-websocket-version", b"8"),
            ]),
            Err(HandshakeError::Version)
        );
        assert_eq!(
            check(&[(b"sec-websocket-version", b"13")]),
            Err(HandshakeError::Key)
        );
        assert_eq!(
            check(&[
                (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                (b"sec-websocket-version", b"13"),
            ]),
            Err(HandshakeError::Key)
        );
    }
}
