//! Run a command with a deadline and time it: benchmarks over slow emulated links must report
//! "timeout" for a call that would take minutes, not hang on it.
//!
//! Output goes to files rather than pipes, so a command writing megabytes (`docker save`) never
//! blocks on a full pipe while we poll it, and a timed-out transfer still shows how far it got.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a running command is polled; bounds the timing error of a measurement.
const POLL: Duration = Duration::from_millis(2);

/// A finished (or abandoned) timed command.
#[derive(Debug)]
pub struct Timed {
    /// Wall time from spawn to exit (or to the deadline).
    pub elapsed: Duration,
    /// The exit status, or `None` when the deadline passed and the command was killed.
    pub status: Option<ExitStatus>,
    /// Where its stdout went.
    pub stdout: PathBuf,
    /// Where its stderr went.
    pub stderr: PathBuf,
}

impl Timed {
    /// True if it exited by itself with status 0.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// True if it was killed at the deadline.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// Its stdout as text.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Its stderr as text.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// How many bytes it wrote to stdout.
    pub fn stdout_len(&self) -> u64 {
        std::fs::metadata(&self.stdout).map_or(0, |m| m.len())
    }
}

/// Runs `command` with stdout and stderr into `dir/NAME.out` and `dir/NAME.err`, killing it at
/// `timeout`.
pub fn run(mut command: Command, dir: &Path, name: &str, timeout: Duration) -> Timed {
    let stdout = dir.join(format!("{name}.out"));
    let stderr = dir.join(format!("{name}.err"));
    let out = std::fs::File::create(&stdout).expect("stdout file");
    let err = std::fs::File::create(&stderr).expect("stderr file");
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn a timed command");
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll a timed command") {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(POLL);
    };
    Timed {
        elapsed: started.elapsed(),
        status,
        stdout,
        stderr,
    }
}
