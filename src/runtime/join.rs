//! Two futures polled together, each stored once.
//!
//! An async function that takes futures and pins them (`pin!(a)`) keeps each twice in its
//! state: once as the argument, once where it was pinned. These combinators are plain
//! structs that poll their futures where they lie, so a request's future is no wider than
//! what it awaits, and building it copies no more bytes than it holds. Call them inline
//! (`until_second(a(), b()).await`): a future first bound to a variable and then awaited
//! is also stored twice.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which of two futures finished first, with its output.
pub enum Either<A, B> {
    First(A),
    Second(B),
}

/// See [`first_of`].
pub struct FirstOf<A, B> {
    a: A,
    b: B,
}

/// Polls `a` and then `b` until one completes; the other is dropped with whatever operation
/// it had in flight.
pub fn first_of<A: Future, B: Future>(a: A, b: B) -> FirstOf<A, B> {
    FirstOf { a, b }
}

impl<A: Future, B: Future> Future for FirstOf<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: neither field is ever moved out of the pinned struct: both are polled in
        // place and dropped with it.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above, `a` stays where it is.
        if let Poll::Ready(out) = unsafe { Pin::new_unchecked(&mut this.a) }.poll(cx) {
            return Poll::Ready(Either::First(out));
        }
        // SAFETY: as above, `b` stays where it is.
        unsafe { Pin::new_unchecked(&mut this.b) }
            .poll(cx)
            .map(Either::Second)
    }
}

/// See [`until_second`].
pub struct UntilSecond<A: Future, B> {
    a: A,
    /// The first's output, once it completed (it is not polled again).
    first: Option<A::Output>,
    b: B,
}

/// Polls both futures; completes as soon as the second does, with the first's output if
/// it finished by then. The first, if unfinished, is dropped with whatever operation it had
/// in flight.
pub fn until_second<A: Future, B: Future>(a: A, b: B) -> UntilSecond<A, B> {
    UntilSecond { a, first: None, b }
}

impl<A: Future, B: Future> Future for UntilSecond<A, B> {
    type Output = (Option<A::Output>, B::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `a` and `b` are never moved out of the pinned struct (polled in place,
        // dropped with it); `first` is not structurally pinned.
        let this = unsafe { self.get_unchecked_mut() };
        if this.first.is_none() {
            // SAFETY: as above, `a` stays where it is; it is not polled once it completed.
            if let Poll::Ready(out) = unsafe { Pin::new_unchecked(&mut this.a) }.poll(cx) {
                this.first = Some(out);
            }
        }
        // SAFETY: as above, `b` stays where it is.
        let second = std::task::ready!(unsafe { Pin::new_unchecked(&mut this.b) }.poll(cx));
        Poll::Ready((this.first.take(), second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn the_first_to_finish_wins_and_the_other_is_dropped() {
        let out = run(first_of(std::future::pending::<u8>(), async { 7u16 }));
        assert!(matches!(out, Either::Second(7)));
        let out = run(first_of(async { 1u8 }, async { 2u16 }));
        assert!(matches!(out, Either::First(1)));
    }

    #[test]
    fn until_second_keeps_the_first_output_only_when_it_was_ready() {
        let (first, second) = run(until_second(async { 1u8 }, async {
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            2u16
        }));
        assert_eq!((first, second), (Some(1), 2));
        let (first, second) = run(until_second(std::future::pending::<u8>(), async { 3u16 }));
        assert_eq!((first, second), (None, 3));
    }
}
