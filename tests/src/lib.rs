//! The end-to-end harness: real `outpost-hub` and `outpost-agent` processes on loopback, each in its
//! own temporary data directory, driven through the real admin CLI. Tests read like what an operator
//! does: start a hub, create an endpoint, start an agent with its EDGE_KEY, look at the endpoint.
//!
//! Processes are killed when their handle drops, so a failing test leaves nothing running.

// The harness drives processes from plain test threads: wall-clock waits are what it needs, and
// no async code here could share a paused clock.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use outpost_api::EndpointCreated;
use serde_json::Value;

pub mod admin_api;
mod agent;
pub mod bench_image;
pub mod bench_store;
pub mod docker;
pub mod dockerd;
pub mod fake_engine;
pub mod flood;
pub mod hubs;
pub mod l3_paths;
pub mod l3_rig;
pub mod link;
pub mod oci;
pub mod proc_stats;
pub mod prometheus;
pub mod raw_agent;
pub mod raw_enrol;
pub mod registry;
pub mod rig;
pub mod saved;
pub mod slow_clients;
pub mod stacks;
pub mod swarm_child;
pub mod timed;

pub use agent::{Agent, AgentExit, AgentOptions};

/// Build the hub and agent binaries once per test process and return the directory holding them.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps")
            .to_owned();
        // A test run does not put the binaries in target/<profile> (only test harnesses), so build
        // them here; `scripts/test.sh` builds them first, making this a no-op there. Benches run the
        // release binaries.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--workspace", "--bins"]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        // Run cargo as a shell would: the variables a test runner sets for this process (package
        // metadata, library paths) would otherwise make cargo see a different build and redo it.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("NEXTEST")
                || matches!(
                    &*key,
                    "CARGO_MANIFEST_DIR" | "LD_LIBRARY_PATH" | "CARGO_PRIMARY_PACKAGE"
                )
            {
                build.env_remove(&*key);
            }
        }
        let status = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo must be on PATH to build the binaries under test");
        assert!(
            status.success(),
            "building outpost-hub and outpost-agent failed"
        );
        dir
    })
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Poll `probe` until it returns `Some`, or give up with `None` after `timeout`.
pub fn wait_for_result<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `probe` until it returns `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    wait_for_result(timeout, probe)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// The `RUST_LOG` filter for the hub and agent processes: `OUTPOST_TEST_LOG` when set (to debug a
/// failing test), else info without quinn's chatter.
pub(crate) fn child_log_filter() -> String {
    std::env::var("OUTPOST_TEST_LOG").unwrap_or_else(|_| "info,quinn=warn".to_owned())
}

/// Timing for tests: check-ins every second (offline shows within 12 s), standby after 3 s.
const TEST_TIMING: &[&str] = &[
    "--checkin-interval",
    "1s",
    "--standby-after",
    "3s",
    "--summon-timeout",
    "5s",
];

/// A command for `program`, run inside network namespace `netns` when one is given (the harness
/// runs as root there; `ip netns exec` execs the program, so the child's pid is the program's).
pub fn command_in(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// The command that runs `outpost-hub`: the binary itself, or, when `OUTPOST_BENCH_HUB_WRAPPER`
/// names a program and its arguments (`heaptrack -o /tmp/hub`), that program running it: how the
/// per-connection heap in BENCHMARKS.md ("Hub per-agent cost") is measured under a bench. The
/// harness then stops the wrapper, not the hub: stop the hub with SIGTERM afterwards (heaptrack
/// writes its file when the hub exits).
fn hub_command(netns: Option<&str>) -> Command {
    let hub = binary("outpost-hub");
    let wrapper = std::env::var("OUTPOST_BENCH_HUB_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = command_in(netns, program);
            command.args(words).arg(hub);
            command
        }
        None => command_in(netns, hub),
    }
}

/// A running `outpost-hub serve`.
#[derive(Debug)]
pub struct Hub {
    child: Option<Child>,
    netns: Option<String>,
    /// The hub's data directory.
    pub data_dir: PathBuf,
    /// Bound UDP address for agents.
    pub agent_addr: String,
    /// Bound API address.
    pub api_addr: String,
    _tmp: Option<tempfile::TempDir>,
}

/// One answer of the hub's API: status, headers and the raw body.
#[derive(Debug)]
pub struct ApiAnswer {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body, unparsed.
    pub body: Vec<u8>,
}

impl Hub {
    /// One HTTPS call to the hub's API (`path` from the root, e.g. `/api/endpoints`) with its
    /// admin token and CA, blocking: what any API client sees, headers included.
    pub fn api_call(&self, method: &str, path: &str, body: Option<Value>) -> ApiAnswer {
        let token =
            std::fs::read_to_string(self.data_dir.join("admin.token")).expect("admin token");
        self.api_call_as(&token, method, path, body)
    }

    /// [`Hub::api_call`] with another bearer token (a named one, or a malformed one).
    pub fn api_call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> ApiAnswer {
        let read = |name: &str| std::fs::read(self.data_dir.join(name)).expect(name);
        let ca = reqwest::Certificate::from_pem(&read("ca.pem")).expect("hub CA");
        let base = String::from_utf8(read("api.url")).expect("api.url");
        let url = format!("{}{path}", base.trim());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .add_root_certificate(ca)
                .build()
                .expect("HTTPS client");
            let mut request = client
                .request(method.parse().expect("HTTP method"), &url)
                .bearer_auth(token.trim());
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.expect("the API answers");
            ApiAnswer {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.bytes().await.expect("the body").to_vec(),
            }
        })
    }

    /// A new hub in a fresh directory on free loopback ports, with a 1 s check-in interval.
    pub fn start() -> Self {
        Self::start_with_flags(&[])
    }

    /// Like [`Hub::start`], with extra `serve` flags (later flags win).
    pub fn start_with_flags(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut flags = TEST_TIMING.to_vec();
        flags.extend_from_slice(extra);
        let mut hub =
            Self::start_with(tmp.path().join("hub"), "127.0.0.1:0", "127.0.0.1:0", &flags);
        hub._tmp = Some(tmp);
        hub
    }

    /// A hub on `data_dir` with its own `serve` flags (timing, transport).
    pub fn start_with(
        data_dir: PathBuf,
        agent_listen: &str,
        api_listen: &str,
        flags: &[&str],
    ) -> Self {
        Self::launch(None, data_dir, agent_listen, api_listen, flags)
    }

    /// A hub inside network namespace `netns` with the test timing plus `extra` flags; its admin
    /// commands and [`docker::DockerCli`]s run in that namespace too.
    pub fn start_in_netns(
        netns: &str,
        data_dir: PathBuf,
        agent_listen: &str,
        api_listen: &str,
        extra: &[&str],
    ) -> Self {
        let mut flags = TEST_TIMING.to_vec();
        flags.extend_from_slice(extra);
        Self::launch(Some(netns), data_dir, agent_listen, api_listen, &flags)
    }

    fn launch(
        netns: Option<&str>,
        data_dir: PathBuf,
        agent_listen: &str,
        api_listen: &str,
        flags: &[&str],
    ) -> Self {
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("hub log");
        let start = std::fs::read_to_string(&log).unwrap_or_default().len();
        let child = hub_command(netns)
            .args(["serve", "--data-dir"])
            .arg(&data_dir)
            .args(["--agent-listen", agent_listen, "--api-listen", api_listen])
            .args(flags)
            .env("RUST_LOG", child_log_filter())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start outpost-hub");
        let line = wait_for(
            Duration::from_secs(30),
            "the hub to report its addresses",
            || {
                let text = std::fs::read_to_string(&log).ok()?;
                text[start.min(text.len())..]
                    .lines()
                    .find(|l| l.contains("agents on udp"))
                    .map(str::to_owned)
            },
        );
        let agent_addr = between(&line, "agents on udp ", ",");
        let api_addr = between(&line, "https://", "\n");
        Self {
            child: Some(child),
            netns: netns.map(str::to_owned),
            data_dir,
            agent_addr,
            api_addr,
            _tmp: None,
        }
    }

    /// The network namespace the hub runs in, if not the test's own.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The hub's process id (for reading its RSS and CPU time from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("hub is running").id()
    }

    /// Stop the hub with SIGTERM and wait for it.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("hub is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().expect("wait for hub")
    }

    /// Kill the hub with SIGKILL (no close frames, no final flush) and wait for it; `restart`
    /// then starts it again.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("hub is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Restart on the same directory and ports (agents know the hub by its address).
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// Restart on the same directory and ports with extra `serve` flags (e.g. `--public-addr` of a
    /// NAT in front of it, known only once the hub's own port is).
    pub fn restart_with(&mut self, extra: &[&str]) {
        if self.child.is_some() {
            self.stop();
        }
        let mut flags = TEST_TIMING.to_vec();
        flags.extend_from_slice(extra);
        let again = Self::launch(
            self.netns.as_deref(),
            self.data_dir.clone(),
            &self.agent_addr,
            &self.api_addr,
            &flags,
        );
        self.child = Some(again.into_child());
    }

    fn into_child(mut self) -> Child {
        self.child.take().expect("running")
    }

    /// `outpost-hub GROUP ARGS…` against this hub: its data directory goes right after the
    /// command group (`job`, `stack`, …), so a job's own `--` cannot swallow it.
    pub fn cli(&self, args: &[&str]) -> Output {
        let (group, rest) = args.split_at(args.len().min(1));
        command_in(self.netns(), binary("outpost-hub"))
            .args(group)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(rest)
            .output()
            .expect("run outpost-hub")
    }

    /// `outpost-hub ARGS…` that must succeed and print JSON of type `T`.
    pub fn cli_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "outpost-hub {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the command prints JSON")
    }

    /// Run an admin command (`outpost-hub endpoint …`) against this hub.
    pub fn admin(&self, args: &[&str]) -> Output {
        command_in(self.netns(), binary("outpost-hub"))
            .args(["endpoint"])
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("run outpost-hub endpoint")
    }

    /// Run an admin command that must succeed and print JSON.
    pub fn admin_json(&self, args: &[&str]) -> Value {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "outpost-hub endpoint {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("admin command prints JSON")
    }

    /// Create an endpoint; returns its id and join token.
    pub fn create_endpoint(&self, name: &str, extra: &[&str]) -> (u64, String) {
        let mut args = vec!["create", "--name", name];
        args.extend_from_slice(extra);
        let created: EndpointCreated =
            serde_json::from_value(self.admin_json(&args)).expect("create prints the endpoint");
        (created.id, created.edge_key)
    }

    /// `outpost-hub admin-cert create --out DIR`: an admin client certificate in Docker's layout.
    pub fn admin_cert(&self, out: &Path) {
        let output = command_in(self.netns(), binary("outpost-hub"))
            .args(["admin-cert", "create", "--out"])
            .arg(out)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("run outpost-hub admin-cert");
        assert!(
            output.status.success(),
            "admin-cert create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The endpoint as `endpoint show --json` prints it.
    pub fn show(&self, id: u64) -> Value {
        self.admin_json(&["show", &id.to_string(), "--json"])
    }

    /// Wait until the endpoint shows `status`.
    pub fn wait_status(&self, id: u64, status: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let what = format!("endpoint {id} to become {status}");
        wait_for(timeout, &what, || {
            last = self.show(id);
            (last["status"] == status).then(|| last.clone())
        })
    }

    /// The hub's Prometheus text (`GET /metrics` with its admin token), fetched with `curl` from
    /// inside the hub's namespace when it runs in one.
    pub fn metrics(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.data_dir.join(name)).expect(name);
        let out = command_in(self.netns(), "curl")
            .arg("-sf")
            .arg("--cacert")
            .arg(self.data_dir.join("ca.pem"))
            .arg("-H")
            .arg(format!(
                "Authorization: Bearer {}",
                read("admin.token").trim()
            ))
            .arg(format!("{}/metrics", read("api.url").trim()))
            .output()
            .expect("run curl");
        assert!(out.status.success(), "GET /metrics: {out:?}");
        String::from_utf8(out.stdout).expect("metrics are text")
    }

    /// The hub's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .map(|i| i + start.len())
        .expect("marker in hub output");
    let rest = &text[from..];
    rest[..rest.find(end).unwrap_or(rest.len())]
        .trim()
        .to_owned()
}

/// The value of the sample named `name` (labels included, as `name{label="value"}`) in Prometheus
/// text; panics with the text when it is missing.
pub fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in:\n{metrics}"))
}
