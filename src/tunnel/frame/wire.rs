//! Byte-level reading and writing of frame payloads: bounds-checked reads that name the frame
//! they fail in, and a writer that patches the frame length in once the payload is known.

use bytes::{BufMut, BytesMut};
use uuid::Uuid;

use super::{
    BodyLen, FrameError, Headers, BODY_EMPTY, BODY_KNOWN, BODY_UNKNOWN, FRAME_HEADER_LEN,
    MAX_FRAME_LEN, MAX_TEXT_LEN,
};

/// Appends one frame to a buffer that may already hold other bytes.
pub(super) struct Encoder<'o> {
    pub(super) out: &'o mut BytesMut,
    /// Where this frame's type byte sits in `out`.
    pub(super) start: usize,
}

impl<'o> Encoder<'o> {
    pub(super) fn begin(out: &'o mut BytesMut, ty: u8) -> Self {
        let start = out.len();
        out.put_u8(ty);
        // The real length is patched in once the payload is written.
        out.put_u32(0);
        Encoder { out, start }
    }

    pub(super) fn payload_len(&self) -> usize {
        self.out.len() - self.start - FRAME_HEADER_LEN
    }

    pub(super) fn check_size(&self) -> Result<(), FrameError> {
        match self.payload_len() {
            len if len > MAX_FRAME_LEN => Err(FrameError::TooLarge(len)),
            _ => Ok(()),
        }
    }

    pub(super) fn patch_len(&mut self) {
        let len = (self.payload_len() as u32).to_be_bytes();
        let at = self.start + 1;
        self.out[at..at + 4].copy_from_slice(&len);
    }

    pub(super) fn bytes16(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        let len = u16::try_from(bytes.len()).map_err(|_| FrameError::TooLarge(bytes.len()))?;
        self.out.put_u16(len);
        self.out.put_slice(bytes);
        Ok(())
    }

    /// Writes `text`, cut to [`MAX_TEXT_LEN`] bytes at a character boundary.
    pub(super) fn text(&mut self, text: &str) {
        let mut end = text.len().min(MAX_TEXT_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.out.put_u16(end as u16);
        self.out.put_slice(&text.as_bytes()[..end]);
    }

    pub(super) fn body_len(&mut self, body: BodyLen) {
        match body {
            BodyLen::Empty => self.out.put_u8(BODY_EMPTY),
            BodyLen::Known(n) => {
                self.out.put_u8(BODY_KNOWN);
                self.out.put_u64(n);
            }
            BodyLen::Unknown => self.out.put_u8(BODY_UNKNOWN),
        }
    }

    /// Writes a `u16` count, then the fields; stops early once the frame is already too big so
    /// a huge iterator is not copied only to be thrown away.
    pub(super) fn headers<'h>(
        &mut self,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        what: &'static str,
    ) -> Result<(), FrameError> {
        let count_at = self.out.len();
        self.out.put_u16(0);
        let mut count: usize = 0;
        for (name, value) in headers {
            if !is_token(name) || !is_field_value(value) {
                return Err(FrameError::Malformed(what));
            }
            self.bytes16(name)?;
            self.bytes16(value)?;
            count += 1;
            self.check_size()?;
        }
        let count = u16::try_from(count).map_err(|_| FrameError::TooLarge(self.payload_len()))?;
        self.out[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
        Ok(())
    }
}

/// Reads a payload front to back; every error names the frame being read.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    pub(super) fn malformed(&self) -> FrameError {
        FrameError::Malformed(self.what)
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or(self.malformed())?;
        self.buf = rest;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let (head, rest) = self.buf.split_first_chunk::<N>().ok_or(self.malformed())?;
        self.buf = rest;
        Ok(*head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(super) fn uuid(&mut self) -> Result<Uuid, FrameError> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    pub(super) fn bytes16(&mut self) -> Result<&'a [u8], FrameError> {
        let len = self.u16()?;
        self.take(len as usize)
    }

    pub(super) fn str16(&mut self) -> Result<&'a str, FrameError> {
        let bytes = self.bytes16()?;
        // Most fields are short and ASCII, which `is_ascii` checks a word at a time.
        if bytes.is_ascii() {
            // SAFETY: ASCII is valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|_| self.malformed())
    }

    pub(super) fn body_len(&mut self) -> Result<BodyLen, FrameError> {
        match self.u8()? {
            BODY_EMPTY => Ok(BodyLen::Empty),
            BODY_KNOWN => Ok(BodyLen::Known(self.u64()?)),
            BODY_UNKNOWN => Ok(BodyLen::Unknown),
            _ => Err(self.malformed()),
        }
    }

    /// Checks every field of a header block so [`Headers::iter`] can trust the lengths.
    pub(super) fn headers(&mut self) -> Result<Headers<'a>, FrameError> {
        let count = self.u16()?;
        let start = self.buf;
        for _ in 0..count {
            let name = self.bytes16()?;
            let value = self.bytes16()?;
            if !is_token(name) || !is_field_value(value) {
                return Err(self.malformed());
            }
        }
        let used = start.len() - self.buf.len();
        Ok(Headers {
            buf: &start[..used],
            count,
        })
    }

    /// A payload must be used up exactly; trailing bytes mean the peer and we disagree.
    pub(super) fn end(&self) -> Result<(), FrameError> {
        match self.buf.is_empty() {
            true => Ok(()),
            false => Err(self.malformed()),
        }
    }
}

/// An HTTP token (RFC 9110 §5.6.2): header names and methods. Checked on both sides so a
/// decoded frame can be written out as an HTTP/1 head without smuggling a line break.
pub(super) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && all_of(bytes, TOKEN)
}

/// A header value without the bytes that would end or split a line.
pub(super) fn is_field_value(bytes: &[u8]) -> bool {
    all_of(bytes, FIELD)
}

/// Authority and path: printable, no spaces, so the request line stays three words.
pub(super) fn is_visible(text: &str) -> bool {
    all_of(text.as_bytes(), VISIBLE)
}

/// Whether every byte is of `class`: one table load and test per byte, where matching each
/// byte against the token punctuation list cost a scan of that list (request and response
/// frames are checked on both sides, every field, so this is on every request's path).
fn all_of(bytes: &[u8], class: u8) -> bool {
    bytes.iter().all(|&b| CLASSES[usize::from(b)] & class != 0)
}

const TOKEN: u8 = 1;
const FIELD: u8 = 2;
const VISIBLE: u8 = 4;

/// The classes of each byte value, as bits.
static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < table.len() {
        let b = i as u8;
        if b.is_ascii_alphanumeric() {
            table[i] |= TOKEN;
        }
        if b == b'\t' || (b >= 0x20 && b != 0x7f) {
            table[i] |= FIELD;
        }
        if b > 0x20 && b != 0x7f {
            table[i] |= VISIBLE;
        }
        i += 1;
    }
    let punct = b"!#$%&'*+-.^_`|~";
    let mut j = 0;
    while j < punct.len() {
        table[punct[j] as usize] |= TOKEN;
        j += 1;
    }
    table
}
