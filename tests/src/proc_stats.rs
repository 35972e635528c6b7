//! One process's resource use from `/proc`, for the benches: resident memory (`VmRSS` of
//! `/proc/PID/status`) and CPU time (utime + stime of `/proc/PID/stat`).
//!
//! `stat`'s second field is the command name in parentheses, which may itself hold spaces and
//! `)`, so fields are counted from the last `)`.

use std::io;
use std::process::Command;
use std::sync::OnceLock;

/// Resident memory and CPU time of one process at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcSample {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// User plus system CPU time so far, seconds.
    pub cpu_seconds: f64,
}

impl ProcSample {
    /// Read process `pid`'s sample now.
    pub fn take(pid: u32) -> io::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let rss_kib = rss_kib(&status).ok_or_else(|| malformed("status", "VmRSS"))?;
        let ticks = cpu_ticks(&stat).ok_or_else(|| malformed("stat", "utime and stime"))?;
        Ok(Self {
            rss_kib,
            cpu_seconds: ticks as f64 / clock_ticks_per_second()?,
        })
    }

    /// CPU seconds used since `earlier`, a sample of the same process.
    pub fn cpu_since(&self, earlier: &Self) -> f64 {
        self.cpu_seconds - earlier.cpu_seconds
    }
}

fn malformed(file: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("/proc/PID/{file} has no readable {what}"),
    )
}

/// `VmRSS:` of a `/proc/PID/status`, in KiB.
fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a `/proc/PID/stat`, in clock ticks.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 (1-based) are utime and stime; after the name the count starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), read once.
fn clock_ticks_per_second() -> io::Result<f64> {
    static HZ: OnceLock<Option<f64>> = OnceLock::new();
    let hz = HZ.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    });
    hz.ok_or_else(|| io::Error::other("`getconf CLK_TCK` gave no number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_from_the_last_parenthesis_of_the_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194304 100 0 0 0 7 5 0 0 20 0 1 0 99 1 2";
        assert_eq!(cpu_ticks(stat), Some(12));
        assert_eq!(cpu_ticks("42 (truncated) S 1"), None);
        let status = "Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t    1234 kB\n";
        assert_eq!(rss_kib(status), Some(1234));
        assert_eq!(rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn the_own_process_has_memory_and_its_cpu_time_grows_with_work() {
        let pid = std::process::id();
        let first = ProcSample::take(pid).expect("own /proc entry");
        assert!(first.rss_kib > 1024, "{first:?}");
        let mut latest = first;
        let mut sum = 0u64;
        // A clock tick is 10 ms at the usual 100 Hz; each round is a few ms of arithmetic, so a
        // tick passes within a few rounds even on a shared machine.
        for round in 0..2_000u64 {
            for i in 0..1_000_000u64 {
                sum = sum.wrapping_add(std::hint::black_box(i ^ round));
            }
            latest = ProcSample::take(pid).expect("own /proc entry");
            if latest.cpu_since(&first) > 0.0 {
                break;
            }
        }
        std::hint::black_box(sum);
        assert!(latest.cpu_since(&first) > 0.0, "{first:?} → {latest:?}");
    }
}
