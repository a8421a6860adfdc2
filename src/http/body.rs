//! Body framing as a sans-IO decoder: feed it bytes, it says which of them are body.

use std::ops::Range;

use super::head::BodyFraming;

/// Largest chunk-size line (size, extensions, CRLF) accepted, in bytes.
pub const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("malformed chunked encoding: {0}")]
    Chunked(&'static str),
    #[error("connection closed before the body ended")]
    Truncated,
}

/// One step of decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input this step used (framing and data alike).
    pub consumed: usize,
    /// Body bytes, as a range of the input (empty when this step held none).
    pub data: Range<usize>,
    /// The body is complete; bytes after `consumed` belong to the next message.
    pub done: bool,
}

/// Where the decoder is in the message. The chunked states keep what they parsed so far (the
/// size, the line length) instead of buffering bytes, so input may be split anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A fixed-length body with this many bytes still to come (never 0).
    Length {
        remaining: u64,
    },
    UntilClose,
    /// Hex digits of a chunk size; `digits` counted so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace between the size and a `;` that must follow.
    SizeSpace {
        size: u64,
    },
    /// A chunk extension, skipped up to the CR.
    Extension {
        size: u64,
    },
    /// The CR ending a size line was seen.
    SizeLf {
        size: u64,
    },
    /// Chunk data with this many bytes still to come (never 0).
    Data {
        remaining: u64,
    },
    /// The CRLF after chunk data.
    DataCr,
    DataLf,
    /// A trailer line; `empty` until it holds a byte, and an empty line ends the message.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Turns framed bytes into body bytes for one message.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    /// Bytes of the current size or trailer line so far, to bound it by [`MAX_CHUNK_LINE`].
    line: usize,
}

impl BodyDecoder {
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(remaining) => State::Length { remaining },
            BodyFraming::UntilClose => State::UntilClose,
            BodyFraming::Chunked => State::Size { size: 0, digits: 0 },
        };
        BodyDecoder { state, line: 0 }
    }

    /// Decodes from `input`, returning at most one run of body bytes. Call again with the
    /// rest of the input while `consumed` is non-zero and the body is not done.
    ///
    /// Framing bytes are always consumed, never left for the next call, so the caller need not
    /// keep them. When a step holds no body bytes, `data` is the empty range
    /// `consumed..consumed`.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, BodyError> {
        match self.state {
            State::Done => Ok(Decoded {
                consumed: 0,
                data: 0..0,
                done: true,
            }),
            State::UntilClose => Ok(Decoded {
                consumed: input.len(),
                data: 0..input.len(),
                done: false,
            }),
            State::Length { remaining } => {
                let n = take(remaining, input.len());
                let remaining = remaining - n as u64;
                self.state = match remaining {
                    0 => State::Done,
                    _ => State::Length { remaining },
                };
                Ok(Decoded {
                    consumed: n,
                    data: 0..n,
                    done: remaining == 0,
                })
            }
            _ => self.decode_chunked(input),
        }
    }

    /// Walks framing bytes one at a time and takes at most one run of chunk data; stops before
    /// a second run so each call returns a single range.
    fn decode_chunked(&mut self, input: &[u8]) -> Result<Decoded, BodyError> {
        let mut pos = 0;
        let mut data = None;
        loop {
            match self.state {
                State::Done => break,
                State::Data { remaining } => {
                    if data.is_some() || pos == input.len() {
                        break;
                    }
                    let n = take(remaining, input.len() - pos);
                    data = Some(pos..pos + n);
                    pos += n;
                    self.state = match remaining - n as u64 {
                        0 => State::DataCr,
                        remaining => State::Data { remaining },
                    };
                }
                _ => {
                    let Some(&byte) = input.get(pos) else { break };
                    self.step(byte).map_err(BodyError::Chunked)?;
                    pos += 1;
                }
            }
        }

        let done = self.state == State::Done;
        Ok(Decoded {
            consumed: pos,
            data: data.unwrap_or(pos..pos),
            done,
        })
    }

    /// Feeds one framing byte to the chunked state machine.
    fn step(&mut self, byte: u8) -> Result<(), &'static str> {
        let in_line = !matches!(self.state, State::DataCr | State::DataLf);
        if in_line {
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Err("line too long");
            }
        }
        let lf_expected = matches!(
            self.state,
            State::SizeLf { .. } | State::DataLf | State::TrailerLf { .. }
        );
        if byte == b'\n' && !lf_expected {
            return Err("bare LF line ending");
        }

        self.state = match (self.state, byte) {
            (State::Size { size, digits }, _) if hex_value(byte).is_some() => {
                if digits == 16 {
                    return Err("chunk size too long");
                }
                let value = hex_value(byte).map_or(0, u64::from);
                State::Size {
                    size: size << 4 | value,
                    digits: digits + 1,
                }
            }
            (State::Size { digits: 0, .. }, _) => return Err("missing chunk size"),
            (State::Size { size, .. }, b'\r') => State::SizeLf { size },
            (State::Size { size, .. } | State::SizeSpace { size }, b';') => {
                State::Extension { size }
            }
            (State::Size { size, .. } | State::SizeSpace { size }, b' ' | b'\t') => {
                State::SizeSpace { size }
            }
            (State::Size { .. } | State::SizeSpace { .. }, _) => return Err("invalid chunk size"),
            (State::Extension { size }, b'\r') => State::SizeLf { size },
            (State::Extension { size }, _) if is_text(byte) => State::Extension { size },
            (State::Extension { .. }, _) => return Err("invalid chunk extension"),
            (State::SizeLf { size: 0 }, b'\n') => self.next_line(State::Trailer { empty: true }),
            (State::SizeLf { size }, b'\n') => State::Data { remaining: size },
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => self.next_line(State::Size { size: 0, digits: 0 }),
            (State::DataCr | State::DataLf, _) => return Err("missing CRLF after chunk data"),
            (State::Trailer { empty }, b'\r') => State::TrailerLf { empty },
            (State::Trailer { .. }, _) if is_text(byte) => State::Trailer { empty: false },
            (State::Trailer { .. }, _) => return Err("invalid trailer field"),
            (State::TrailerLf { empty: true }, b'\n') => State::Done,
            (State::TrailerLf { empty: false }, b'\n') => {
                self.next_line(State::Trailer { empty: true })
            }
            (State::SizeLf { .. } | State::TrailerLf { .. }, _) => return Err("CR without LF"),
            // Data, Length, UntilClose and Done never reach here: the callers handle them.
            (state, _) => state,
        };
        Ok(())
    }

    /// Starts counting a new line's length.
    fn next_line(&mut self, state: State) -> State {
        self.line = 0;
        state
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The peer closed: fine for [`BodyFraming::UntilClose`] (the body is then done),
    /// [`BodyError::Truncated`] for anything that was still expecting bytes.
    pub fn eof(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(BodyError::Truncated),
        }
    }
}

/// How many of `available` bytes a body still wanting `remaining` takes.
fn take(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Bytes allowed inside an extension or trailer line: anything but controls, tab excepted.
fn is_text(byte: u8) -> bool {
    byte == b'\t' || (byte >= 0x20 && byte != 0x7f)
}

/// Appends a chunk-size line for a chunk of `len` bytes (`{len:x}\r\n`).
pub fn chunk_header(len: usize, out: &mut bytes::BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut start = digits.len();
    let mut rest = len;
    loop {
        start -= 1;
        digits[start] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
    out.extend_from_slice(b"\r\n");
}

/// Ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    const WIRE: &[u8] = b"5;name=\"v\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n\
                          3 ; x\r\n!!!\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\nNEXT";
    const BODY: &[u8] = b"helloabcdefghijklmnopqrstuvwxyz!!!";

    /// Feeds `pieces` through a decoder the way an IO layer would, keeping unconsumed bytes.
    /// Returns the body, the bytes left after the body, and whether it finished.
    fn run(framing: BodyFraming, pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), BodyError> {
        let mut decoder = BodyDecoder::new(framing);
        let mut pending = Vec::new();
        let mut body = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            loop {
                let step = decoder.decode(&pending)?;
                assert!(step.data.start <= step.data.end && step.data.end <= step.consumed);
                body.extend_from_slice(&pending[step.data]);
                pending.drain(..step.consumed);
                assert_eq!(step.done, decoder.is_done());
                if step.done || step.consumed == 0 {
                    break;
                }
            }
            if !decoder.is_done() {
                // Framing bytes are never left behind for the next call.
                assert!(pending.is_empty());
            }
        }
        Ok((body, pending, decoder.is_done()))
    }

    fn chunked(wire: &[u8]) -> Result<(Vec<u8>, Vec<u8>, bool), BodyError> {
        run(BodyFraming::Chunked, &[wire])
    }

    fn chunked_error(wire: &[u8]) -> Option<BodyError> {
        chunked(wire).err()
    }

    #[test]
    fn chunked_whole() {
        let (body, rest, done) = chunked(WIRE).unwrap();
        assert_eq!(body, BODY);
        assert_eq!(rest, b"NEXT");
        assert!(done);
    }

    #[test]
    fn chunked_split_at_every_boundary() {
        for at in 0..=WIRE.len() {
            let (body, rest, done) =
                run(BodyFraming::Chunked, &[&WIRE[..at], &WIRE[at..]]).unwrap();
            assert_eq!(
                (body.as_slice(), rest.as_slice(), done),
                (BODY, &b"NEXT"[..], true),
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = WIRE.chunks(1).collect();
        let (body, rest, done) = run(BodyFraming::Chunked, &bytes).unwrap();
        assert_eq!(
            (body.as_slice(), rest.as_slice(), done),
            (BODY, &b"NEXT"[..], true)
        );
    }

    #[test]
    fn one_run_per_call() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
        let input = b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n";
        assert_eq!(
            decoder.decode(input),
            Ok(Decoded {
                consumed: 10,
                data: 3..5,
                done: false
            })
        );
        assert_eq!(
            decoder.decode(&input[10..]),
            Ok(Decoded {
                consumed: 10,
                data: 0..3,
                done: true
            })
        );
        assert_eq!(
            decoder.decode(b"x"),
            Ok(Decoded {
                consumed: 0,
                data: 0..0,
                done: true
            })
        );

        // Only framing: the empty range sits where decoding stopped.
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
        assert_eq!(
            decoder.decode(b"10;a"),
            Ok(Decoded {
                consumed: 4,
                data: 4..4,
                done: false
            })
        );
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunked(b"0\r\n\r\n").unwrap(), (vec![], vec![], true));
        assert_eq!(
            chunked(b"000A\r\n0123456789\r\n0\r\n\r\n").unwrap().0,
            b"0123456789"
        );
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
        let step = decoder.decode(b"ffffffffffffffff\r\nxy").unwrap();
        assert_eq!(
            step,
            Decoded {
                consumed: 20,
                data: 18..20,
                done: false
            }
        );
        assert_eq!(decoder.eof(), Err(BodyError::Truncated));
    }

    #[test]
    fn malformed_chunked() {
        let err = |reason| Some(BodyError::Chunked(reason));
        assert_eq!(chunked_error(b"\r\n"), err("missing chunk size"));
        assert_eq!(chunked_error(b";a\r\n"), err("missing chunk size"));
        assert_eq!(chunked_error(b"g\r\n"), err("missing chunk size"));
        assert_eq!(chunked_error(b"3g\r\n"), err("invalid chunk size"));
        assert_eq!(chunked_error(b"-3\r\n"), err("missing chunk size"));
        assert_eq!(chunked_error(b"3 \r\nabc"), err("invalid chunk size"));
        assert_eq!(
            chunked_error(b"10000000000000000\r\n"),
            err("chunk size too long")
        );
        assert_eq!(
            chunked_error(b"3;a\x01b\r\n"),
            err("invalid chunk extension")
        );
        assert_eq!(chunked_error(b"3;a\rb\r\n"), err("CR without LF"));
        assert_eq!(chunked_error(b"3\n"), err("bare LF line ending"));
        assert_eq!(chunked_error(b"3;a\n"), err("bare LF line ending"));
        assert_eq!(
            chunked_error(b"3\r\nabcX\r\n"),
            err("missing CRLF after chunk data")
        );
        assert_eq!(
            chunked_error(b"3\r\nabc\rX"),
            err("missing CRLF after chunk data")
        );
        assert_eq!(
            chunked_error(b"3\r\nabc\n0\r\n\r\n"),
            err("bare LF line ending")
        );
        assert_eq!(
            chunked_error(b"0\r\nA: b\n\r\n"),
            err("bare LF line ending")
        );
        assert_eq!(chunked_error(b"0\r\n\n"), err("bare LF line ending"));
        assert_eq!(
            chunked_error(b"0\r\nA: \x00\r\n\r\n"),
            err("invalid trailer field")
        );
        assert_eq!(chunked_error(b"0\r\n\rx"), err("CR without LF"));

        let mut long = b"1;".to_vec();
        long.resize(MAX_CHUNK_LINE - 2, b'a');
        long.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(chunked(&long).unwrap().0, b"x");
        long.insert(3, b'a');
        assert_eq!(chunked_error(&long), err("line too long"));
        let mut long_trailer = b"0\r\nA: ".to_vec();
        long_trailer.resize(3 + MAX_CHUNK_LINE + 1, b'b');
        assert_eq!(chunked_error(&long_trailer), err("line too long"));
    }

    #[test]
    fn length_bodies() {
        let mut decoder = BodyDecoder::new(BodyFraming::Length(5));
        assert_eq!(
            decoder.decode(b"hel"),
            Ok(Decoded {
                consumed: 3,
                data: 0..3,
                done: false
            })
        );
        assert_eq!(decoder.eof(), Err(BodyError::Truncated));
        assert_eq!(
            decoder.decode(b"loworld"),
            Ok(Decoded {
                consumed: 2,
                data: 0..2,
                done: true
            })
        );
        assert!(decoder.is_done());
        assert_eq!(
            decoder.decode(b"world"),
            Ok(Decoded {
                consumed: 0,
                data: 0..0,
                done: true
            })
        );
        assert_eq!(decoder.eof(), Ok(()));

        for framing in [BodyFraming::Length(0), BodyFraming::None] {
            let mut decoder = BodyDecoder::new(framing);
            assert!(decoder.is_done());
            assert_eq!(
                decoder.decode(b"GET"),
                Ok(Decoded {
                    consumed: 0,
                    data: 0..0,
                    done: true
                })
            );
        }

        let mut decoder = BodyDecoder::new(BodyFraming::Length(u64::MAX));
        assert_eq!(
            decoder.decode(b"abc"),
            Ok(Decoded {
                consumed: 3,
                data: 0..3,
                done: false
            })
        );
    }

    #[test]
    fn until_close() {
        let mut decoder = BodyDecoder::new(BodyFraming::UntilClose);
        assert_eq!(
            decoder.decode(b"abc"),
            Ok(Decoded {
                consumed: 3,
                data: 0..3,
                done: false
            })
        );
        assert_eq!(
            decoder.decode(b""),
            Ok(Decoded {
                consumed: 0,
                data: 0..0,
                done: false
            })
        );
        assert!(!decoder.is_done());
        assert_eq!(decoder.eof(), Ok(()));
        assert!(decoder.is_done());
    }

    #[test]
    fn truncated_chunked() {
        for end in 0..WIRE.len() - 4 {
            let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
            let mut input = &WIRE[..end];
            while let Ok(step) = decoder.decode(input) {
                input = &input[step.consumed..];
                if step.consumed == 0 {
                    break;
                }
            }
            assert_eq!(decoder.eof(), Err(BodyError::Truncated), "cut at {end}");
        }
    }

    #[test]
    fn chunk_headers() {
        let mut out = bytes::BytesMut::new();
        chunk_header(0, &mut out);
        chunk_header(255, &mut out);
        chunk_header(0x1000, &mut out);
        assert_eq!(&out[..], b"0\r\nff\r\n1000\r\n");
        out.clear();
        chunk_header(usize::MAX, &mut out);
        assert_eq!(out.len(), 2 * std::mem::size_of::<usize>() + 2);
        assert!(out.iter().take(out.len() - 2).all(|&b| b == b'f'));
    }

    #[test]
    fn garbage_never_panics() {
        let alphabet = b"0123456789abcdefABCDEFxyz;= \t\r\n\r\n\x00\xff";
        let mut state: u64 = 0xdead_beef_cafe_f00d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = Vec::with_capacity(WIRE.len());
        for _ in 0..20_000 {
            buf.clear();
            if next() % 2 == 0 {
                buf.extend_from_slice(WIRE);
                for _ in 0..next() % 4 + 1 {
                    let x = next();
                    let at = x as usize % buf.len();
                    buf[at] = alphabet[(x >> 32) as usize % alphabet.len()];
                }
            } else {
                let len = next() % 64;
                buf.extend((0..len).map(|_| alphabet[next() as usize % alphabet.len()]));
            }
            let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
            let mut input = &buf[..];
            for _ in 0..=buf.len() {
                match decoder.decode(input) {
                    Ok(step) if step.consumed > 0 && !step.done => input = &input[step.consumed..],
                    _ => break,
                }
            }
        }
    }
}
