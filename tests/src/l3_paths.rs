//! Two ways to reach a device's Docker engine across the rig's emulated link, both driven by the
//! stock docker CLI in the hub namespace:
//!
//! - Outpost: `outpost-hub serve` in the hub namespace, `outpost-agent` in the agent namespace
//!   dialing the hub's rig address (the hub's `--public-addr`), the CLI talking HTTPS to the hub.
//! - The L3 baseline: the engine's API served over mutual TLS on `AGENT_IP:2376` by
//!   `docker-tls-front` in the agent namespace (how remote Docker hosts are usually exposed), the
//!   CLI dialing it with `--tlsverify`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use outpost_api::{EndpointCreated, EndpointDetail};
use serde::de::DeserializeOwned;

use crate::docker::DOCKER_SOCKET;
use crate::l3_rig::{NsProcess, Rig, RigExec, Side, AGENT_IP, HUB_IP};
use crate::{bin_dir, wait_for};

/// The hub's UDP port for agents in the rig.
pub const HUB_AGENT_PORT: u16 = 4433;
/// The Docker-over-TLS port of the baseline (Docker's convention).
pub const DOCKER_TLS_PORT: u16 = 2376;
/// The hub's API address inside the hub namespace.
const HUB_API: &str = "127.0.0.1:9443";

/// A hub running in the rig's hub namespace; killed when dropped.
#[derive(Debug)]
pub struct RigHub {
    process: NsProcess,
    exec: RigExec,
    /// The hub's data directory.
    pub data_dir: PathBuf,
    docker_config: tempfile::TempDir,
}

impl RigHub {
    /// `outpost-hub serve` in the hub namespace: agents on `HUB_IP:4433` (also its public
    /// address), the API on the namespace's loopback; `flags` are extra `serve` flags.
    pub fn start(rig: &Rig, data_dir: &Path, flags: &[&str]) -> Self {
        std::fs::create_dir_all(data_dir).expect("hub data dir");
        let log = data_dir.with_extension("log");
        let agents = format!("{HUB_IP}:{HUB_AGENT_PORT}");
        let mut command = rig.command(Side::Hub, bin_dir().join("outpost-hub"));
        command
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--agent-listen", &agents, "--api-listen", HUB_API])
            .args(["--public-addr", &agents])
            .args(flags)
            .env("RUST_LOG", crate::child_log_filter());
        let process = rig.spawn(command, &log);
        wait_for(Duration::from_secs(30), "the hub to start", || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("agents on udp").then_some(())
        });
        let token = std::fs::read_to_string(data_dir.join("admin.token")).expect("admin token");
        let docker_config = tempfile::tempdir().expect("docker config dir");
        let config = serde_json::json!({
            "HttpHeaders": { "Authorization": format!("Bearer {}", token.trim()) }
        });
        std::fs::write(docker_config.path().join("config.json"), config.to_string())
            .expect("config.json");
        Self {
            process,
            exec: rig.exec(),
            data_dir: data_dir.to_owned(),
            docker_config,
        }
    }

    /// `outpost-hub endpoint ARGS…` run in the hub namespace.
    pub fn endpoint_command(&self, args: &[&str]) -> Command {
        let mut command = self.exec.command(Side::Hub, bin_dir().join("outpost-hub"));
        command
            .arg("endpoint")
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir);
        command
    }

    /// An admin command that must succeed and print the API's answer as JSON.
    pub fn admin_json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let out: Output = self
            .endpoint_command(args)
            .output()
            .expect("run outpost-hub endpoint");
        assert!(
            out.status.success(),
            "outpost-hub endpoint {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("admin command prints JSON")
    }

    /// Create an endpoint; returns its id and join token.
    pub fn create_endpoint(&self, name: &str) -> (u64, String) {
        let created: EndpointCreated = self.admin_json(&["create", "--name", name]);
        (created.id, created.edge_key)
    }

    /// The endpoint's status (`offline`, `standby`, `active`…).
    pub fn status(&self, id: u64) -> String {
        let shown: EndpointDetail = self.admin_json(&["show", &id.to_string(), "--json"]);
        shown.endpoint.status.as_str().to_owned()
    }

    /// Polls until the endpoint shows `status`; false after `timeout`.
    pub fn reaches_status(&self, id: u64, status: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.status(id) == status {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// The hub's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The docker CLI in the hub namespace for endpoint `id`, through this hub.
    pub fn docker(&self, id: u64) -> Command {
        let mut command = self.exec.command(Side::Hub, "docker");
        command
            .env(
                "DOCKER_HOST",
                format!("tcp://{HUB_API}/api/endpoints/{id}/docker"),
            )
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_CONTEXT")
            .arg("--tls")
            .arg("--tlscacert")
            .arg(self.data_dir.join("ca.pem"));
        command
    }
}

/// `outpost-agent` in the agent namespace, enrolling with `edge_key` and serving the local engine.
pub fn start_agent(rig: &Rig, data_dir: &Path, edge_key: &str, transport: &str) -> NsProcess {
    start_agent_with(rig, data_dir, edge_key, transport, &[])
}

/// [`start_agent`] with `env` added (`OUTPOST_TCP_FALLBACK`, say).
pub fn start_agent_with(
    rig: &Rig,
    data_dir: &Path,
    edge_key: &str,
    transport: &str,
    env: &[(&str, &str)],
) -> NsProcess {
    std::fs::create_dir_all(data_dir).expect("agent dir");
    let mut command = rig.command(Side::Agent, bin_dir().join("outpost-agent"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--transport", transport])
        .env("EDGE_KEY", edge_key)
        .env_remove("EDGE_ID")
        .env("DOCKER_HOST", format!("unix://{DOCKER_SOCKET}"))
        .env("RUST_LOG", crate::child_log_filter())
        .envs(env.iter().copied());
    rig.spawn(command, &data_dir.with_extension("log"))
}

/// The engine's API over mutual TLS from the agent namespace, as a remote Docker host.
#[derive(Debug)]
pub struct TlsEngine {
    process: NsProcess,
    exec: RigExec,
    cert_dir: PathBuf,
    docker_config: tempfile::TempDir,
}

impl TlsEngine {
    /// Starts `docker-tls-front` on `AGENT_IP:2376`; client certificates go to `cert_dir`.
    pub fn start(rig: &Rig, cert_dir: &Path) -> Self {
        let listen = format!("{AGENT_IP}:{DOCKER_TLS_PORT}");
        let mut command = rig.command(Side::Agent, bin_dir().join("docker-tls-front"));
        command
            .args(["--listen", &listen, "--docker-socket", DOCKER_SOCKET])
            .arg("--cert-dir")
            .arg(cert_dir);
        let process = rig.spawn(command, &cert_dir.with_extension("log"));
        wait_for(Duration::from_secs(20), "docker-tls-front to start", || {
            cert_dir.join("key.pem").exists().then_some(())
        });
        Self {
            process,
            exec: rig.exec(),
            cert_dir: cert_dir.to_owned(),
            docker_config: tempfile::tempdir().expect("docker config dir"),
        }
    }

    /// `docker-tls-front`'s process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The docker CLI in the hub namespace, straight to the engine with `--tlsverify`.
    pub fn docker(&self) -> Command {
        let mut command = self.exec.command(Side::Hub, "docker");
        command
            .env("DOCKER_HOST", format!("tcp://{AGENT_IP}:{DOCKER_TLS_PORT}"))
            .env("DOCKER_CERT_PATH", &self.cert_dir)
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CONTEXT")
            .arg("--tlsverify");
        command
    }
}
