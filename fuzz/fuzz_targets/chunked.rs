//! A chunked body split into reads at places the input's first bytes choose: the body, the
//! bytes left for the next message, and any error must not depend on where the reads fell.
//!
//! Input layout: one control byte, whose low three bits give how many piece lengths follow
//! and whose bit 3 asks for one-byte reads instead; then those lengths, one byte each; then
//! the chunked wire bytes.

#![no_main]

use adit::http::{BodyDecoder, BodyError, BodyFraming};
use adit_fuzz::drain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let count = usize::from(control & 0x7).min(data.len());
    let (lengths, wire) = data.split_at(count);

    let pieces: Vec<&[u8]> = match control & 0x8 {
        0 => {
            let mut pieces = Vec::with_capacity(count + 1);
            let mut rest = wire;
            for &len in lengths {
                let (piece, after) = rest.split_at(usize::from(len).min(rest.len()));
                pieces.push(piece);
                rest = after;
            }
            pieces.push(rest);
            pieces
        }
        _ => wire.chunks(1).collect(),
    };

    let whole = drain(&mut BodyDecoder::new(BodyFraming::Chunked), &[wire]);
    let mut split_decoder = BodyDecoder::new(BodyFraming::Chunked);
    let split = drain(&mut split_decoder, &pieces);
    assert_eq!(whole, split, "split into {pieces:?}");

    // A body the input left unfinished is truncated when the peer closes.
    if let Ok(drained) = split {
        let eof = split_decoder.eof();
        match drained.done {
            true => assert_eq!(eof, Ok(())),
            false => assert_eq!(eof, Err(BodyError::Truncated)),
        }
    }
});
