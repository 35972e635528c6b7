//! `outpost-swarm` as a child process of a bench, its stdout read line by line on a thread.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

use crate::Hub;

/// A running swarm.
#[derive(Debug)]
pub struct SwarmChild {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl SwarmChild {
    /// Start `agents` agents against `hub`, identities in `data`, with `extra` swarm flags.
    pub fn start(hub: &Hub, data: &Path, agents: usize, extra: &[&str]) -> Self {
        let mut child = Command::new(crate::bin_dir().join("outpost-swarm"))
            .args(["--agents", &agents.to_string()])
            .args(["--seconds", "86400", "--online-timeout", "1800"])
            .args(["--enrol-concurrency", "64", "--transport", "lan", "--json"])
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .arg("--hub-data-dir")
            .arg(&hub.data_dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start outpost-swarm");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("  swarm: {}", &line[..line.len().min(200)]);
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Wait for a line starting with `prefix`.
    pub fn wait_for(&self, prefix: &str) -> String {
        loop {
            let line = self.lines.recv().expect("the swarm ended early");
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Stop holding (SIGINT), and return the JSON report.
    pub fn finish(mut self) -> Value {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let report = self.wait_for("{");
        let _ = self.child.wait();
        serde_json::from_str(&report).expect("the swarm's report is JSON")
    }
}
