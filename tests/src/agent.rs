//! An `outpost-agent` process for the end-to-end tests: started on its own data directory with
//! the environment a test gives it (EDGE_KEY, a Docker host), optionally in a network namespace,
//! its stderr kept in a log beside that directory; killed when its handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::{binary, child_log_filter, command_in, wait_for};

/// A running (or finished) `outpost-agent`.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    /// The agent's data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
}

/// How an agent process ended.
#[derive(Debug)]
pub struct AgentExit {
    /// Exit code.
    pub code: Option<i32>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Where and how an agent process runs.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Network namespace to run in (`None`: the test's own).
    pub netns: Option<String>,
    /// QUIC transport profile (`--transport`).
    pub transport: &'static str,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            netns: None,
            transport: "lan",
        }
    }
}

impl Agent {
    /// Start an agent on `data_dir` with extra environment (EDGE_KEY, EDGE_ID…).
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(data_dir, &AgentOptions::default(), env)
    }

    /// Like [`Agent::start`], in a chosen namespace and with a chosen transport profile.
    pub fn start_with(data_dir: &Path, options: &AgentOptions, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(data_dir).expect("agent dir");
        let log = data_dir.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("agent log");
        let mut command = command_in(options.netns.as_deref(), binary("outpost-agent"));
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--transport", options.transport])
            .env_remove("EDGE_KEY")
            .env_remove("EDGE_ID")
            .env("RUST_LOG", child_log_filter())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (key, value) in env {
            command.env(key, value);
        }
        Self {
            child: Some(command.spawn().expect("start outpost-agent")),
            data_dir: data_dir.to_owned(),
            log,
        }
    }

    /// The agent id it persisted.
    pub fn agent_id(&self) -> String {
        wait_for(Duration::from_secs(10), "agent.id", || {
            std::fs::read_to_string(self.data_dir.join("agent.id")).ok()
        })
        .trim()
        .to_owned()
    }

    /// Wait for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> AgentExit {
        let child = self.child.as_mut().expect("agent was started");
        let status = wait_for(timeout, "the agent to exit", || {
            child.try_wait().ok().flatten()
        });
        self.child = None;
        AgentExit {
            code: status.code(),
            stderr: self.log(),
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Kill it (a power cut, as far as the hub can tell).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
