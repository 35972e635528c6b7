//! The netns rig (`netem/rig.sh`) from the end-to-end tests: hub, router and agent namespaces on an
//! emulated L3 link, so the agent's real IP address can change under a running session.
//!
//! Each rig has its own `RIG_PREFIX` and state directory and is torn down when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::bin_dir;

/// The hub's address inside the rig.
pub const HUB_IP: &str = "198.18.0.1";

/// A running rig.
#[derive(Debug)]
pub struct Rig {
    prefix: String,
    state: tempfile::TempDir,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../netem")
        .join(name)
}

impl Rig {
    /// Bring a rig up under `prefix` with `profile` (a name or a `.toml` path), always on the
    /// userspace emulator: [`Rig::ctl`] talks to its control socket, which a kernel-netem rig
    /// (chosen by default where `sch_netem` exists) would not have. Panics with advice where
    /// network namespaces cannot be made (the tests need root).
    pub fn up(prefix: &str, profile: &str) -> Self {
        let rig = Self {
            prefix: prefix.to_owned(),
            state: tempfile::tempdir().expect("rig state dir"),
        };
        rig.run(
            "rig.sh",
            &["up", "--profile", profile, "--mode", "userspace"],
        );
        rig
    }

    /// The namespace of one side: `hub`, `router` or `agent`.
    pub fn netns(&self, side: &str) -> String {
        format!("{}-{side}", self.prefix)
    }

    /// Give the agent namespace a new address (`rig-ip-change.sh`, toggling .1 ↔ .2); returns the
    /// script's report, `agent address OLD -> NEW`.
    pub fn change_agent_ip(&self) -> String {
        let out = self.run("rig-ip-change.sh", &[]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `rig.sh ctl …` (userspace router: `outage 5s`, `counters`, `profile NAME`).
    pub fn ctl(&self, args: &[&str]) -> String {
        let mut full = vec!["ctl"];
        full.extend_from_slice(args);
        let out = self.run("rig.sh", &full);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn command(&self, name: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(script(name))
            .env("RIG_PREFIX", &self.prefix)
            .env("RIG_STATE_DIR", self.state.path().join("rig"))
            .env("OUTPOST_NETEM_BIN", bin_dir().join("outpost-netem"));
        command
    }

    fn run(&self, name: &str, args: &[&str]) -> Output {
        let out = self.command(name).args(args).output().expect("run the rig");
        assert!(
            out.status.success(),
            "{name} {args:?} failed (the rig needs root and network namespaces):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.command("rig.sh").arg("down").output();
    }
}
