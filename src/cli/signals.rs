//! SIGINT and SIGTERM, taken synchronously by one thread instead of async handlers.
//!
//! [`block`] must run before any other thread starts, so every thread inherits the blocked
//! mask and only [`spawn_waiter`]'s thread ever sees the signals.

use std::io;
use std::time::{Duration, Instant};

/// A signal this soon after the first one is the same request, not a second one: GNU
/// `timeout` signals the process and then its process group, a fraction of a millisecond
/// apart, and a second signal means "exit at once".
pub const REPEAT_WINDOW: Duration = Duration::from_millis(250);

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset only write the set they are given, which lives on
    // this stack frame and is fully initialised by sigemptyset first.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and every thread it starts after).
pub fn block() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is a valid, initialised signal set; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Starts a thread that sends the number of each SIGINT or SIGTERM to `signals`.
pub fn spawn_waiter(signals: crossbeam_channel::Sender<i32>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first = None;
            loop {
                let set = termination_set();
                let mut signal = 0;
                // SAFETY: `set` is initialised and `signal` is a valid place for the result.
                let rc = unsafe { libc::sigwait(&set, &mut signal) };
                if rc != 0 {
                    return;
                }
                let now = Instant::now();
                if !passes(first, now) {
                    tracing::debug!(signal, "repeat of the first signal ignored");
                    continue;
                }
                first.get_or_insert(now);
                if signals.send(signal).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Whether a signal received at `now` is passed on, given when the first one came: the
/// first always is, a later one only [`REPEAT_WINDOW`] or more after the first.
fn passes(first: Option<Instant>, now: Instant) -> bool {
    first.is_none_or(|first| now.saturating_duration_since(first) >= REPEAT_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_the_window_is_ignored() {
        let first = Instant::now();
        assert!(passes(None, first));
        assert!(!passes(Some(first), first));
        assert!(!passes(Some(first), first + Duration::from_micros(100)));
        assert!(!passes(Some(first), first + Duration::from_millis(249)));
        assert!(passes(Some(first), first + Duration::from_millis(250)));
        assert!(passes(Some(first), first + Duration::from_secs(3)));
    }
}
