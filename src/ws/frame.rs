//! WebSocket frames (RFC 6455 §5): header encoding and decoding, masking, and a decoder that
//! turns a byte stream into payload runs and control messages. No sockets, no clock.
//!
//! Payloads of data frames are never gathered whole: the decoder hands out each run of
//! payload bytes as soon as it is in the buffer (unmasked in place), so memory stays bounded
//! by the read size whatever length a frame declares. Control frames (at most 125 bytes) are
//! gathered and handed out whole.

use bytes::{Buf, Bytes, BytesMut};

/// Longest frame header: 2 bytes, a 64-bit extended length, a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Room [`frame_in_place`] needs in front of a payload.
pub const HEADER_ROOM: usize = MAX_HEADER_LEN;

/// Longest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest payload a frame may declare: 16 MiB. adit itself sends frames of at most 64 KiB,
/// and payloads are streamed rather than gathered, so this bounds nothing in memory; it
/// refuses (with status 1009) lengths no sane peer of adit's sends.
pub const MAX_FRAME_PAYLOAD: u64 = 16 * 1024 * 1024;

/// Close status codes adit sends (§7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Sent by a bridge whose raw side broke off (a reset, a read error): the peer ends both
/// directions rather than take it for a half-close.
pub const CLOSE_RAW_BROKE: u16 = 1011;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A decoded or to-be-encoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
}

/// Which end of the WebSocket this is: a server requires masked frames from its client and
/// sends unmasked ones; a client the other way round (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// Why a peer's frames cannot be accepted. Each maps to the status of the Close frame sent
/// in answer ([`WsError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    #[error("frame with reserved bits set")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("control frame longer than 125 bytes")]
    ControlTooLong,
    #[error("frame length not in its shortest encoding")]
    NonMinimalLength,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_PAYLOAD}-byte limit")]
    TooLarge(u64),
    #[error("unmasked frame from a client")]
    Unmasked,
    #[error("masked frame from a server")]
    Masked,
    #[error("continuation frame outside a fragmented message")]
    UnexpectedContinuation,
    #[error("new message before the fragmented one ended")]
    ExpectedContinuation,
    #[error("text messages are not carried")]
    Text,
    #[error("malformed close frame")]
    BadClose,
}

impl WsError {
    /// The status of the Close frame that answers this error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooLarge(_) => CLOSE_TOO_BIG,
            WsError::Text => CLOSE_UNSUPPORTED,
            _ => CLOSE_PROTOCOL,
        }
    }
}

/// Decodes one frame header from the start of `buf`: `Ok(None)` when more bytes are needed,
/// else the header and its length in bytes. Checks everything a header alone can violate;
/// whether a mask must be present is the [`Decoder`]'s business.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, WsError> {
    let Some(&[b0, b1]) = buf.first_chunk::<2>() else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::UnknownOpcode(b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    let short = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(WsError::FragmentedControl);
        }
        if usize::from(short) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::ControlTooLong);
        }
    }

    let (len, mut at) = match short {
        126 => {
            let Some(&[l0, l1]) = buf.get(2..).and_then(<[u8]>::first_chunk::<2>) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([l0, l1]));
            if len < 126 {
                return Err(WsError::NonMinimalLength);
            }
            (len, 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..).and_then(<[u8]>::first_chunk::<8>) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(*bytes);
            if len <= u64::from(u16::MAX) {
                return Err(WsError::NonMinimalLength);
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    // Also refuses a 64-bit length with its most significant bit set (§5.2).
    if len > MAX_FRAME_PAYLOAD {
        return Err(WsError::TooLarge(len));
    }

    let mask = if masked {
        let Some(key) = buf.get(at..).and_then(<[u8]>::first_chunk::<4>) else {
            return Ok(None);
        };
        at += 4;
        Some(*key)
    } else {
        None
    };
    let header = FrameHeader {
        fin,
        opcode,
        mask,
        len,
    };
    Ok(Some((header, at)))
}

/// Encodes `header` at the start of `out`; returns how many bytes it took. Lengths always
/// take their shortest encoding.
pub fn encode_header(header: &FrameHeader, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    out[0] = u8::from(header.fin) << 7 | header.opcode.bits();
    let mask_bit = if header.mask.is_some() { 0x80 } else { 0 };
    let mut at = match header.len {
        len @ 0..=125 => {
            out[1] = mask_bit | len as u8;
            2
        }
        len @ 126..=0xFFFF => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        len => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&len.to_be_bytes());
            10
        }
    };
    if let Some(key) = header.mask {
        out[at..at + 4].copy_from_slice(&key);
        at += 4;
    }
    at
}

/// XORs `data` with `mask` in place, `data` starting `offset` bytes into the payload.
/// Masking and unmasking are the same operation (§5.3).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    // The key rotated so that it lines up with data[0], then doubled to mask 8 bytes a step.
    let shift = (offset % 4) as usize;
    let mut key = [0u8; 8];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = mask[(shift + i) % 4];
    }
    let wide = u64::from_ne_bytes(key);

    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        if let Ok(word) = <&mut [u8; 8]>::try_from(word) {
            *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
        }
    }
    // The tail starts at a multiple of 8, so the key still lines up.
    for (byte, k) in words.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

/// Turns `buf` (whose first [`HEADER_ROOM`] bytes are room for a header, followed by the
/// payload) into one final frame, masking the payload in place when `mask` is given. The
/// header is written just in front of the payload, so nothing is copied; `buf` is left
/// empty, with whatever spare capacity it had.
pub fn frame_in_place(buf: &mut BytesMut, opcode: Opcode, mask: Option<[u8; 4]>) -> Bytes {
    if buf.len() < HEADER_ROOM {
        buf.resize(HEADER_ROOM, 0);
    }
    let header = FrameHeader {
        fin: true,
        opcode,
        mask,
        len: (buf.len() - HEADER_ROOM) as u64,
    };
    let mut encoded = [0u8; MAX_HEADER_LEN];
    let len = encode_header(&header, &mut encoded);
    let start = HEADER_ROOM - len;
    buf[start..HEADER_ROOM].copy_from_slice(&encoded[..len]);
    if let Some(mask) = mask {
        apply_mask(&mut buf[HEADER_ROOM..], mask, 0);
    }
    buf.split().freeze().slice(start..)
}

/// A whole control frame; `payload` is cut to [`MAX_CONTROL_PAYLOAD`] bytes.
pub fn control_frame(opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
    let mut buf = BytesMut::with_capacity(HEADER_ROOM + payload.len());
    buf.resize(HEADER_ROOM, 0);
    buf.extend_from_slice(payload);
    frame_in_place(&mut buf, opcode, mask)
}

/// A Close frame with `code` and no reason.
pub fn close_frame(code: u16, mask: Option<[u8; 4]>) -> Bytes {
    control_frame(Opcode::Close, &code.to_be_bytes(), mask)
}

/// What the decoder found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A run of payload bytes of a binary message (possibly part of a frame), unmasked.
    Data(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A Close frame with its status code, if it had one.
    Close(Option<u16>),
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    /// Inside the payload of a data frame.
    Payload {
        mask: Option<[u8; 4]>,
        /// Payload bytes already handed out, for the mask's phase.
        offset: u64,
        remaining: u64,
    },
}

/// A streaming decoder of one direction of a WebSocket.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    state: State,
    /// A data message was started with FIN clear and has not ended yet.
    in_message: bool,
}

impl Decoder {
    pub fn new(role: Role) -> Decoder {
        Decoder {
            role,
            state: State::Header,
            in_message: false,
        }
    }

    /// Whether the decoder stands between frames (no partial frame consumed).
    pub fn between_frames(&self) -> bool {
        matches!(self.state, State::Header)
    }

    /// The next message from the start of `buf`, consuming what it takes: `Ok(None)` when
    /// `buf` holds nothing more that can be handed out yet (append more bytes and call
    /// again). Payload bytes come out of `buf` without being copied.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            match self.state {
                State::Payload { remaining: 0, .. } => self.state = State::Header,
                State::Payload {
                    mask,
                    offset,
                    remaining,
                } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = remaining.min(buf.len() as u64);
                    let mut run = buf.split_to(take as usize);
                    if let Some(mask) = mask {
                        apply_mask(&mut run, mask, offset);
                    }
                    self.state = State::Payload {
                        mask,
                        offset: offset + take,
                        remaining: remaining - take,
                    };
                    return Ok(Some(Message::Data(run.freeze())));
                }
                State::Header => {
                    let Some((header, used)) = decode_header(buf)? else {
                        return Ok(None);
                    };
                    match (self.role, header.mask.is_some()) {
                        (Role::Server, false) => return Err(WsError::Unmasked),
                        (Role::Client, true) => return Err(WsError::Masked),
                        _ => {}
                    }
                    if header.opcode.is_control() {
                        return self.control(buf, header, used);
                    }
                    self.start_data(header)?;
                    buf.advance(used);
                }
            }
        }
    }

    fn start_data(&mut self, header: FrameHeader) -> Result<(), WsError> {
        match header.opcode {
            Opcode::Continuation if !self.in_message => {
                return Err(WsError::UnexpectedContinuation)
            }
            Opcode::Binary | Opcode::Text if self.in_message => {
                return Err(WsError::ExpectedContinuation)
            }
            Opcode::Text => return Err(WsError::Text),
            _ => {}
        }
        self.in_message = !header.fin;
        self.state = State::Payload {
            mask: header.mask,
            offset: 0,
            remaining: header.len,
        };
        Ok(())
    }

    /// A control frame, once all of it is in `buf` (its header told it is short).
    fn control(
        &mut self,
        buf: &mut BytesMut,
        header: FrameHeader,
        used: usize,
    ) -> Result<Option<Message>, WsError> {
        let total = used + header.len as usize;
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(used);
        let mut payload = buf.split_to(header.len as usize);
        if let Some(mask) = header.mask {
            apply_mask(&mut payload, mask, 0);
        }
        let message = match header.opcode {
            Opcode::Ping => Message::Ping(payload.freeze()),
            Opcode::Pong => Message::Pong(payload.freeze()),
            _ => Message::Close(close_code(&payload)?),
        };
        Ok(Some(message))
    }
}

/// The status of a Close frame's payload (§5.5.1, §7.4): none, or a code that may be sent
/// followed by a UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    let Some((&[c0, c1], reason)) = payload.split_first_chunk::<2>() else {
        return if payload.is_empty() {
            Ok(None)
        } else {
            Err(WsError::BadClose)
        };
    };
    let code = u16::from_be_bytes([c0, c1]);
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable || std::str::from_utf8(reason).is_err() {
        return Err(WsError::BadClose);
    }
    Ok(Some(code))
}

#[cfg(test)]
mod tests;
