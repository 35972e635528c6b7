//! The rig: hub, router and agent namespaces on an emulated link. UDP and TCP both pay the
//! profile's delay, a scripted outage cuts the link, and the agent's address can change mid-run.
//!
//! Needs root and network namespaces; where they cannot be created the test says so and passes.

#![allow(clippy::unwrap_used)] // Test code: a failed setup step should panic loudly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_outpost-netem");

fn rig_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// One rig, torn down when dropped (even when the test fails).
struct Rig {
    prefix: String,
    state: tempfile::TempDir,
    children: Vec<Child>,
}

impl Rig {
    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(rig_script(script))
            .env("RIG_PREFIX", &self.prefix)
            .env("RIG_STATE_DIR", self.state.path().join("rig"))
            .env("OUTPOST_NETEM_BIN", BIN);
        cmd
    }

    fn run(&self, script: &str, args: &[&str]) -> Output {
        let out = self.command(script).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{script} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn spawn_in(&mut self, ns: &str, args: &[&str]) {
        let child = self
            .command("rig.sh")
            .args(["exec", ns, BIN])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Runs `outpost-netem ping` in the agent namespace; returns (received, p50 in ms).
    fn ping(&self, args: &[&str]) -> (u64, f64) {
        let mut full = vec!["exec", "agent", BIN, "ping"];
        full.extend_from_slice(args);
        let out = self.run("rig.sh", &full);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("result "))
            .expect("a result line");
        let field = |key: &str| -> f64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        (field("received=") as u64, field("p50_ms="))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.command("rig.sh").arg("down").output();
    }
}

/// Why namespaces cannot be used here, if they cannot.
fn namespaces_unavailable(prefix: &str) -> Option<String> {
    let probe = format!("{prefix}-probe");
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(out) if out.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).output();
            None
        }
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(format!("cannot run `ip`: {e}")),
    }
}

#[test]
fn rig_carries_udp_and_tcp_over_the_same_emulated_link() {
    let prefix = format!("ortest{}", std::process::id() % 100_000);
    if let Some(why) = namespaces_unavailable(&prefix) {
        eprintln!("SKIP rig test: network namespaces cannot be created here ({why})");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let profile = state.path().join("rig-test.toml");
    std::fs::write(
        &profile,
        "description = \"rig test\"\n[both]\ndelay = \"20ms\"\n",
    )
    .unwrap();
    let mut rig = Rig {
        prefix,
        state,
        children: Vec::new(),
    };
    let up = rig.run("rig.sh", &["up", "--profile", profile.to_str().unwrap()]);
    println!("{}", String::from_utf8_lossy(&up.stdout));

    // A stand-in hub in its own namespace (fixed ports are safe in a namespace we just made).
    rig.spawn_in(
        "hub",
        &[
            "echo",
            "--udp",
            "198.18.0.1:7000",
            "--tcp",
            "198.18.0.1:7001",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));

    // UDP and TCP both pay 20 ms each way.
    let (received, p50) = rig.ping(&["--target", "198.18.0.1:7000", "--count", "50"]);
    assert_eq!(received, 50);
    assert!((40.0..60.0).contains(&p50), "udp p50 {p50} ms");
    let (received, p50) = rig.ping(&["--tcp", "--target", "198.18.0.1:7001", "--count", "20"]);
    assert_eq!(received, 20);
    assert!((40.0..80.0).contains(&p50), "tcp p50 {p50} ms");

    // A scripted outage cuts the link for everyone.
    rig.run("rig.sh", &["ctl", "outage", "2s"]);
    let (received, _) = rig.ping(&[
        "--target",
        "198.18.0.1:7000",
        "--count",
        "10",
        "--wait-s",
        "1",
    ]);
    assert_eq!(received, 0);
    std::thread::sleep(std::time::Duration::from_millis(1000));

    // The agent's address changes mid-run and the link still works from the new one.
    let changed = rig.run("rig-ip-change.sh", &[]);
    assert!(String::from_utf8_lossy(&changed.stdout).contains("-> 198.18.1.2"));
    let addr = rig.run(
        "rig.sh",
        &["exec", "agent", "ip", "-4", "addr", "show", "eth0"],
    );
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(
        addr.contains("198.18.1.2/24") && !addr.contains("198.18.1.1/24"),
        "{addr}"
    );
    let (received, _) = rig.ping(&["--target", "198.18.0.1:7000", "--count", "10"]);
    assert_eq!(received, 10);

    let counters = rig.run("rig.sh", &["ctl", "counters"]);
    let counters = String::from_utf8_lossy(&counters.stdout);
    assert!(
        counters.contains("up") && counters.contains("down"),
        "{counters}"
    );
    println!("{counters}");
}
