//! Optional pinning of worker threads to CPUs (`--pin-cpus`).
//!
//! A pinned worker keeps its caches, its io_uring and the interrupts steered to its core
//! warm, and the scheduler cannot move two busy workers onto one core. Worker `i` goes to
//! the `i`-th CPU the process may run on, wrapping around, so a process started under
//! `taskset` or in a cpuset-limited container stays within the CPUs it was given.

use std::io;

/// The CPUs the calling thread may run on, in ascending order; at process start that is
/// the process's own affinity mask (`taskset`, cgroup cpusets).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array for which all zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t and the size passed is its own.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let slots = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    let allowed = (0..slots).filter(|cpu| {
        // SAFETY: every index checked is below CPU_SETSIZE, the capacity of `set`.
        unsafe { libc::CPU_ISSET(*cpu, &set) }
    });
    Ok(allowed.collect())
}

/// The CPU for worker `index`: the allowed CPUs taken in turn, wrapping around when there
/// are more workers than CPUs. `None` when no CPU is known.
pub fn cpu_for_worker(index: usize, allowed: &[usize]) -> Option<usize> {
    if allowed.is_empty() {
        return None;
    }
    allowed.get(index % allowed.len()).copied()
}

/// Restricts the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let slots = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    if cpu >= slots {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} is beyond the {slots} a cpu set holds"),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array for which all zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked to be below CPU_SETSIZE, the capacity of `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t and the size passed is its own; pid 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling worker thread, logging where it went; a failure costs only the pinning.
pub(super) fn pin_worker(index: usize, allowed: &[usize]) {
    let Some(cpu) = cpu_for_worker(index, allowed) else {
        tracing::warn!(
            worker = index,
            "cannot pin the worker: no allowed cpu is known"
        );
        return;
    };
    match pin_current_thread(cpu) {
        Ok(()) => tracing::debug!(worker = index, cpu, "worker pinned"),
        Err(err) => tracing::warn!(worker = index, cpu, "cannot pin the worker: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_the_allowed_cpus_in_turn() {
        let allowed = [0, 1, 2, 3];
        let cpus: Vec<_> = (0..6).map(|i| cpu_for_worker(i, &allowed)).collect();
        assert_eq!(cpus, [Some(0), Some(1), Some(2), Some(3), Some(0), Some(1)]);
    }

    #[test]
    fn a_restricted_mask_is_respected() {
        // As under `taskset -c 2,5,7`: workers land only on those, in order.
        let allowed = [2, 5, 7];
        let cpus: Vec<_> = (0..5).map(|i| cpu_for_worker(i, &allowed)).collect();
        assert_eq!(cpus, [Some(2), Some(5), Some(7), Some(2), Some(5)]);
        assert_eq!(cpu_for_worker(0, &[]), None);
    }

    #[test]
    fn a_thread_pins_to_an_allowed_cpu() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, [last]);
    }

    #[test]
    fn a_cpu_beyond_the_set_is_refused() {
        let err = pin_current_thread(1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "cpu 1048576 is beyond the 1024 a cpu set holds"
        );
    }
}
