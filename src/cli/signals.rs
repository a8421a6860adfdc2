//! SIGINT and SIGTERM, taken synchronously by one thread instead of async handlers.
//!
//! [`block`] must run before any other thread starts, so every thread inherits the blocked
//! mask and only [`spawn_waiter`]'s thread ever sees the signals.

use std::io;

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
        .spawn(move || loop {
            let set = termination_set();
            let mut signal = 0;
            // SAFETY: `set` is initialised and `signal` is a valid place for the result.
            let rc = unsafe { libc::sigwait(&set, &mut signal) };
            if rc != 0 || signals.send(signal).is_err() {
                return;
            }
        })?;
    Ok(())
}
