//! The namespace rig (`netem/rig.sh`) from Rust: a hub namespace and an agent namespace joined by
//! the userspace L3 emulator (`outpost-netem router`), so TCP and QUIC cross the same emulated
//! link. Benchmarks put Outpost's hub and agent on either side and, for comparison, the Docker API
//! served over TLS from the agent side.
//!
//! Needs root. Processes started in a namespace are killed when their handle drops, and the rig is
//! torn down (namespaces deleted, router stopped) when the [`Rig`] drops.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::bin_dir;

/// The hub namespace's address (`rig.sh`).
pub const HUB_IP: &str = "198.18.0.1";
/// The agent namespace's address (`rig.sh`).
pub const AGENT_IP: &str = "198.18.1.1";

/// One of the rig's namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Where the hub (and the admin's docker CLI) runs.
    Hub,
    /// Where the emulator runs.
    Router,
    /// Where the device (agent, engine front) runs.
    Agent,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Hub => "hub",
            Self::Router => "router",
            Self::Agent => "agent",
        }
    }
}

/// How to run `rig.sh` for one rig; cheap to clone into the handles that need it.
#[derive(Clone, Debug)]
pub struct RigExec {
    prefix: String,
    state_dir: PathBuf,
}

impl RigExec {
    fn script(&self) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netem/rig.sh");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .env("RIG_PREFIX", &self.prefix)
            .env("RIG_STATE_DIR", &self.state_dir)
            .env("OUTPOST_NETEM_BIN", bin_dir().join("outpost-netem"));
        command
    }

    /// `program` run inside `side`'s namespace (its pid is the program's: `rig.sh exec` execs).
    pub fn command(&self, side: Side, program: impl AsRef<OsStr>) -> Command {
        let mut command = self.script();
        command.args(["exec", side.name()]).arg(program);
        command
    }

    /// Run `rig.sh ARGS…` and panic with its output if it fails.
    fn run(&self, args: &[&str]) -> Output {
        let out = self.script().args(args).output().expect("run netem/rig.sh");
        assert!(
            out.status.success(),
            "rig.sh {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// IP-layer byte counters of one namespace (`IpExtInOctets`/`IpExtOutOctets` of
/// `/proc/net/netstat`): whole IP packets, headers included, on every interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpOctets {
    /// Bytes received.
    pub received: u64,
    /// Bytes sent.
    pub sent: u64,
}

impl IpOctets {
    /// Parses the `IpExt:` header and value lines of `/proc/net/netstat`.
    pub fn parse(netstat: &str) -> Option<Self> {
        let mut lines = netstat.lines().filter(|l| l.starts_with("IpExt:"));
        let names = lines.next()?.split_whitespace();
        let values = lines.next()?.split_whitespace();
        let mut octets = Self::default();
        for (name, value) in names.zip(values) {
            match name {
                "InOctets" => octets.received = value.parse().ok()?,
                "OutOctets" => octets.sent = value.parse().ok()?,
                _ => {}
            }
        }
        Some(octets)
    }

    /// Both directions together.
    pub fn total(self) -> u64 {
        self.received + self.sent
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            received: self.received.saturating_sub(earlier.received),
            sent: self.sent.saturating_sub(earlier.sent),
        }
    }
}

/// A rig that is up; torn down on drop.
#[derive(Debug)]
pub struct Rig {
    exec: RigExec,
    _state: tempfile::TempDir,
}

impl Rig {
    /// Brings up namespaces `PREFIX-{hub,router,agent}` with `profile` (a name or a `.toml`
    /// path) on the userspace router, seeded with `seed`.
    pub fn up(prefix: &str, profile: &str, seed: u64) -> Self {
        let state = tempfile::tempdir().expect("rig state dir");
        let exec = RigExec {
            prefix: prefix.to_owned(),
            state_dir: state.path().join("rig"),
        };
        let seed = seed.to_string();
        exec.run(&[
            "up",
            "--profile",
            profile,
            "--seed",
            &seed,
            "--mode",
            "userspace",
        ]);
        Self {
            exec,
            _state: state,
        }
    }

    /// A handle for running commands in the rig's namespaces.
    pub fn exec(&self) -> RigExec {
        self.exec.clone()
    }

    /// `program` run inside `side`'s namespace.
    pub fn command(&self, side: Side, program: impl AsRef<OsStr>) -> Command {
        self.exec.command(side, program)
    }

    /// Starts `command` (from [`Rig::command`]) with stdout and stderr appended to `log`.
    pub fn spawn(&self, mut command: Command, log: &Path) -> NsProcess {
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("process log")
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(file())
            .stderr(file())
            .spawn()
            .expect("start a process in the rig");
        NsProcess { child }
    }

    /// The IP byte counters of `side`'s namespace now.
    pub fn ip_octets(&self, side: Side) -> IpOctets {
        let out = self
            .command(side, "cat")
            .arg("/proc/net/netstat")
            .output()
            .expect("read /proc/net/netstat in the namespace");
        IpOctets::parse(&String::from_utf8_lossy(&out.stdout)).expect("IpExt counters")
    }

    /// The emulator's counter table (`rig.sh ctl counters`).
    pub fn counters(&self) -> String {
        let out = self.exec.run(&["ctl", "counters"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.exec.script().arg("down").output();
    }
}

/// A process started in a rig namespace; killed when dropped.
#[derive(Debug)]
pub struct NsProcess {
    child: Child,
}

impl NsProcess {
    /// The program's process id (`rig.sh exec` execs it, so it is the child's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::IpOctets;

    #[test]
    fn ip_octets_are_read_from_the_ipext_lines() {
        let netstat = "TcpExt: SyncookiesSent X\nTcpExt: 0 1\n\
                       IpExt: InNoRoutes InOctets OutOctets\nIpExt: 3 1500 700\n";
        let octets = IpOctets::parse(netstat).expect("IpExt lines");
        assert_eq!(
            octets,
            IpOctets {
                received: 1500,
                sent: 700
            }
        );
        let later = IpOctets {
            received: 1600,
            sent: 760,
        };
        assert_eq!(later.since(octets).total(), 160);
    }
}
