//! Waking at an intended send time to within tens of microseconds.
//!
//! monoio's timer wheel ticks in whole milliseconds and rounds every deadline up to the next
//! tick, so a connection that sleeps on it until its intended send time wakes up to a
//! millisecond late. Open-loop latency runs from the intended time, so that lateness would be
//! charged to the server: on a loopback target it doubled the median. A [`Pacer`] instead
//! arms a `timerfd` (a kernel high-resolution timer) for the exact instant and waits for it
//! with an io_uring read, which completes when the timer fires.

use std::fs::File as StdFile;
use std::io;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// One connection's high-resolution timer.
pub(super) struct Pacer {
    timer: monoio::fs::File,
    /// The 8-byte expiry count the read fills; owned by the read while it is in flight.
    count: Option<Box<[u8; 8]>>,
}

impl Pacer {
    /// A pacer, where the runtime reads through io_uring: the epoll fallback would read the
    /// timer with a blocking call and stall every connection of the worker meanwhile.
    pub fn new() -> Option<Pacer> {
        if !monoio::utils::detect_uring() {
            return None;
        }
        Pacer::create().ok()
    }

    fn create() -> io::Result<Pacer> {
        // SAFETY: timerfd_create takes no pointers; the result is checked before use.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let std = unsafe { StdFile::from_raw_fd(fd) };
        Ok(Pacer {
            timer: monoio::fs::File::from_std(std)?,
            count: Some(Box::new([0; 8])),
        })
    }

    /// Waits until `at`; returns at once when `at` has passed.
    pub async fn sleep_until(&mut self, at: Instant) -> io::Result<()> {
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        self.arm(left)?;
        let count = self.count.take().unwrap_or_else(|| Box::new([0; 8]));
        let (result, count) = self.timer.read_at(count, 0).await;
        self.count = Some(count);
        result.map(|_| ())
    }

    /// Arms the timer to fire once, `left` from now (`left` is not zero, which would disarm).
    fn arm(&self, left: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(left.subsec_nanos()),
            },
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.timer);
        // SAFETY: `spec` is a valid itimerspec for the call; the old value is not asked for.
        let rc = unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_no_earlier_than_the_intended_time() {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut pacer = Pacer::create().unwrap();
            let at = Instant::now() + Duration::from_micros(300);
            pacer.sleep_until(at).await.unwrap();
            assert!(Instant::now() >= at);
            // A past instant returns without arming the timer.
            let before = Instant::now();
            pacer
                .sleep_until(before - Duration::from_millis(1))
                .await
                .unwrap();
        });
    }
}
