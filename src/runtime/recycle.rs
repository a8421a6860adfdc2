//! Heap room for futures, recycled per thread: [`boxed`] is `Box::pin` without an allocation
//! in the steady state.
//!
//! The edge boxes each request's state so that a connection idling between requests does
//! not carry room for it inline (about 8 KiB of a connection's future). A fresh box per
//! request would cost an allocation per request; instead the memory a finished future leaves
//! goes back to a small per-thread free list and the next future of the same layout takes it.

use std::alloc::Layout;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Blocks kept per thread; more finished at once are freed.
const KEEP: usize = 256;

thread_local! {
    static FREE: RefCell<Vec<(Layout, NonNull<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// A future in recycled heap memory. It never moves once placed, so it may be polled pinned.
pub struct Recycled<F: Future> {
    ptr: NonNull<F>,
    /// Owns an `F` (for the drop check).
    _owns: std::marker::PhantomData<F>,
}

/// Places `future` in a recycled block of its layout (or a new one).
pub fn boxed<F: Future>(future: F) -> Recycled<F> {
    let layout = Layout::new::<F>();
    let block = FREE
        .try_with(|free| {
            let mut free = free.borrow_mut();
            let at = free.iter().rposition(|(l, _)| *l == layout)?;
            Some(free.swap_remove(at).1)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| allocate(layout));
    let ptr = block.cast::<F>();
    // SAFETY: `ptr` points at a block of `F`'s size and alignment that nothing else uses
    // (fresh, or taken off the free list), so writing an `F` there is sound.
    unsafe { ptr.as_ptr().write(future) };
    Recycled {
        ptr,
        _owns: std::marker::PhantomData,
    }
}

fn allocate(layout: Layout) -> NonNull<u8> {
    if layout.size() == 0 {
        // A dangling, well-aligned pointer is a valid place for a zero-sized value.
        return NonNull::new(layout.align() as *mut u8).unwrap_or(NonNull::dangling());
    }
    // SAFETY: the layout has a non-zero size.
    let raw = unsafe { std::alloc::alloc(layout) };
    NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
}

impl<F: Future> Future for Recycled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the future lives at `ptr` from `boxed` until `drop`, is never moved, and
        // `Recycled` owns it alone; `&mut self` gives exclusive access for this call.
        let future = unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()) };
        future.poll(cx)
    }
}

impl<F: Future> Drop for Recycled<F> {
    fn drop(&mut self) {
        let layout = Layout::new::<F>();
        // SAFETY: the future was written in `boxed` and is dropped exactly once, here, in
        // place (it was pinned there).
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        let block = self.ptr.cast::<u8>();
        if layout.size() == 0 {
            return;
        }
        let kept = FREE
            .try_with(|free| {
                let mut free = free.borrow_mut();
                if free.len() < KEEP {
                    free.push((layout, block));
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: the block came from `allocate` with this same layout and is unused.
            unsafe { std::alloc::dealloc(block.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_finished_future_leaves_its_block_for_the_next() {
        let first = boxed(async { 7u64 });
        let at = first.ptr.as_ptr() as usize;
        assert_eq!(crate::runtime::block_on(first).unwrap(), 7);
        let second = boxed(async { 9u64 });
        assert_eq!(second.ptr.as_ptr() as usize, at);
        assert_eq!(crate::runtime::block_on(second).unwrap(), 9);
    }

    #[test]
    fn dropping_an_unfinished_future_drops_what_it_holds() {
        let held = Rc::new(());
        let probe = held.clone();
        let future = boxed(async move {
            let _keep = probe;
            std::future::pending::<()>().await;
        });
        assert_eq!(Rc::strong_count(&held), 2);
        drop(future);
        assert_eq!(Rc::strong_count(&held), 1);
    }
}
