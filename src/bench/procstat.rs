//! CPU time and peak memory of a process, read from `/proc` (Linux only).

use std::io;

/// CPU time in clock ticks, split as the kernel accounts it: in the process's own code (user)
/// and in the kernel on its behalf (system: system calls, and on loopback the receiving
/// side's protocol work, which runs in the sender's call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub user: u64,
    pub system: u64,
}

impl CpuTicks {
    pub fn total(self) -> u64 {
        self.user + self.system
    }

    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

impl std::ops::Add for CpuTicks {
    type Output = CpuTicks;

    fn add(self, other: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

/// User and system CPU time of `pid` so far.
pub fn cpu_ticks(pid: u32) -> io::Result<CpuTicks> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_ticks(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format"))
}

/// As [`cpu_ticks`], plus that of `pid`'s direct children (a proxy's worker processes).
pub fn tree_cpu_ticks(pid: u32) -> io::Result<CpuTicks> {
    let own = cpu_ticks(pid)?;
    Ok(children(pid)
        .iter()
        .filter_map(|c| cpu_ticks(*c).ok())
        .fold(own, |sum, c| sum + c))
}

/// As [`peak_rss_kib`], summed over `pid` and its direct children.
pub fn tree_peak_rss_kib(pid: u32) -> io::Result<u64> {
    let own = peak_rss_kib(pid)?;
    Ok(own
        + children(pid)
            .iter()
            .filter_map(|c| peak_rss_kib(*c).ok())
            .sum::<u64>())
}

/// As [`reset_peak_rss`], for `pid` and its direct children.
pub fn tree_reset_peak_rss(pid: u32) {
    for p in std::iter::once(pid).chain(children(pid)) {
        let _ = reset_peak_rss(p);
    }
}

/// Direct children of `pid`, from each of its threads' `children` list.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut all: Vec<u32> = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            let pids: Vec<u32> = text
                .split_ascii_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            pids
        })
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value; _SC_CLK_TCK is a valid name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// CPU seconds between two [`cpu_ticks`] readings.
pub fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / ticks_per_second() as f64
}

/// Peak resident set size of `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&text, "VmHWM")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmHWM in /proc status"))
}

/// Resets `pid`'s peak RSS to its current RSS, so the next [`peak_rss_kib`] covers only what
/// follows. Only works on processes this user may write `clear_refs` of (our children).
pub fn reset_peak_rss(pid: u32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// utime and stime from a `/proc/PID/stat` line. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat_ticks(stat: &str) -> Option<CpuTicks> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let user: u64 = fields.nth(11)?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(CpuTicks { user, system })
}

/// The value in kB of a `Name:   123 kB` line of `/proc/PID/status`.
fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_tricky_name() {
        let stat = "4242 (we ird) (x) R 1 4242 4242 0 -1 4194560 100 0 0 0 731 46 0 0 20 0 3 0 \
                    12345 1000000 200 18446744073709551615";
        let ticks = parse_stat_ticks(stat).unwrap();
        assert_eq!(
            ticks,
            CpuTicks {
                user: 731,
                system: 46
            }
        );
        assert_eq!(ticks.total(), 777);
        let later = CpuTicks {
            user: 800,
            system: 40,
        };
        assert_eq!(
            later.since(ticks),
            CpuTicks {
                user: 69,
                system: 0
            }
        );
        assert_eq!(parse_stat_ticks("4242 (short) R 1 2"), None);
    }

    #[test]
    fn status_values() {
        let status = "Name:\tadit\nVmPeak:\t  20000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t 4096 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(5120));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(4096));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn readers_on_this_process() {
        let pid = std::process::id();
        let before = cpu_ticks(pid).unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        // Spin for 200 ms of CPU so at least one tick is charged to this process.
        while started.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_ticks(pid).unwrap();
        assert!(
            after.total() > before.total(),
            "{after:?} after, {before:?} before"
        );
        assert!(
            after.user > before.user,
            "a spin is user time: {after:?}, {before:?}"
        );
        assert!(ticks_per_second() >= 1);

        // A 32 MiB allocation, touched, must show in the peak.
        let block = vec![1u8; 32 << 20];
        let peak = peak_rss_kib(pid).unwrap();
        assert!(peak >= 32 * 1024, "peak {peak} KiB");
        assert_eq!(std::hint::black_box(&block)[block.len() - 1], 1);
    }
}
