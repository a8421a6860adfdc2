//! Helpers shared by the fuzz targets: drive a [`BodyDecoder`] the way the IO layer does and
//! check, at every step, the promises its documentation makes.

use adit::http::{BodyDecoder, BodyError, Decoded};

/// What feeding a whole input to a decoder produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Drained {
    /// Body bytes, in order.
    pub body: Vec<u8>,
    /// Input bytes the decoder did not take: the next message's, once the body is done.
    pub rest: Vec<u8>,
    pub done: bool,
}

/// Checks one step's result against the input it was given and the decoder's state after it.
pub fn check_step(decoder: &BodyDecoder, input: &[u8], step: &Decoded) {
    assert!(
        step.consumed <= input.len(),
        "consumed past the input: {step:?}"
    );
    assert!(
        step.data.start <= step.data.end && step.data.end <= step.consumed,
        "data outside the consumed bytes: {step:?}"
    );
    if step.data.is_empty() {
        assert_eq!(
            step.data,
            step.consumed..step.consumed,
            "empty data range: {step:?}"
        );
    }
    assert_eq!(
        step.done,
        decoder.is_done(),
        "done disagrees with is_done: {step:?}"
    );

    // Framing bytes are never left behind: a step stops short of the input only when the body
    // is done or it returns a run of data (a second run waits for the next call).
    if !step.done && step.consumed < input.len() {
        assert!(
            !step.data.is_empty(),
            "stopped early without data: {step:?}"
        );
    }
}

/// Feeds `pieces` in order, keeping unconsumed bytes for the next call as the IO layer does.
pub fn drain(decoder: &mut BodyDecoder, pieces: &[&[u8]]) -> Result<Drained, BodyError> {
    let mut pending = Vec::new();
    let mut body = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            let step = decoder.decode(&pending)?;
            check_step(decoder, &pending, &step);
            body.extend_from_slice(&pending[step.data.clone()]);
            pending.drain(..step.consumed);
            if step.done || step.consumed == 0 {
                break;
            }
        }
    }

    // Once done, the decoder takes nothing more.
    let done = decoder.is_done();
    if done {
        let after = decoder.decode(&pending)?;
        assert_eq!(
            (after.consumed, after.done),
            (0, true),
            "decoded after done"
        );
    }
    Ok(Drained {
        body,
        rest: pending,
        done,
    })
}
