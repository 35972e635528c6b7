//! The stock `docker` CLI, pointed at a device through the hub (or straight at the local engine, to
//! check what the engine really did). The engine is the real `dockerd` that `scripts/docker-setup.sh`
//! starts; these helpers fail with that advice when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Hub;

/// The image `scripts/docker-setup.sh` imports from Debian's busybox-static.
pub const TEST_IMAGE: &str = "outpost-test/busybox:latest";
/// The local engine's socket.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Panic with set-up advice unless the local engine and the test image are there.
pub fn require_engine() {
    let out = direct(&["image", "inspect", "--format", "{{.Id}}", TEST_IMAGE]);
    assert!(
        out.status.success(),
        "no Docker engine with {TEST_IMAGE} on {DOCKER_SOCKET}: run scripts/docker-setup.sh (as root) first.\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A name no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "outpost-{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run the docker CLI straight against the local engine.
pub fn direct(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", format!("unix://{DOCKER_SOCKET}"))
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("the docker CLI is on PATH")
}

/// How the CLI authenticates to the hub.
#[derive(Clone, Debug)]
pub enum Credential {
    /// `Authorization: Bearer …` from `~/.docker/config.json`'s `HttpHeaders`.
    Bearer(String),
    /// An admin client certificate directory (ca.pem, cert.pem, key.pem).
    Certificate(PathBuf),
    /// Nothing but the hub CA (to see the refusal).
    None,
}

/// The docker CLI configured for one device behind the hub.
#[derive(Debug)]
pub struct DockerCli {
    host: String,
    ca: PathBuf,
    credential: Credential,
    config_dir: tempfile::TempDir,
}

impl DockerCli {
    /// The CLI for endpoint `id` on `hub`, authenticated with the admin bearer token.
    pub fn for_endpoint(hub: &Hub, id: u64) -> Self {
        let token = std::fs::read_to_string(hub.data_dir.join("admin.token")).expect("admin token");
        Self::with_credential(hub, id, Credential::Bearer(token.trim().to_owned()))
    }

    /// The CLI for endpoint `id` with a chosen credential.
    pub fn with_credential(hub: &Hub, id: u64, credential: Credential) -> Self {
        let config_dir = tempfile::tempdir().expect("docker config dir");
        if let Credential::Bearer(token) = &credential {
            let config = serde_json::json!({ "HttpHeaders": { "Authorization": format!("Bearer {token}") } });
            std::fs::write(config_dir.path().join("config.json"), config.to_string())
                .expect("config.json");
        }
        Self {
            host: format!("tcp://{}/api/endpoints/{id}/docker", hub.api_addr),
            ca: hub.data_dir.join("ca.pem"),
            credential,
            config_dir,
        }
    }

    /// A `docker` command ready to run against the device.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker");
        command
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.config_dir.path())
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT");
        match &self.credential {
            Credential::Certificate(dir) => {
                command
                    .env("DOCKER_TLS_VERIFY", "1")
                    .env("DOCKER_CERT_PATH", dir);
            }
            Credential::Bearer(_) | Credential::None => {
                command
                    .env_remove("DOCKER_TLS_VERIFY")
                    .env_remove("DOCKER_CERT_PATH")
                    .arg("--tls")
                    .arg("--tlscacert")
                    .arg(&self.ca);
            }
        }
        command.args(args);
        command
    }

    /// Run to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run docker")
    }

    /// Run, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run with `input` on stdin; returns the output.
    pub fn with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("docker output");
        writer.join().expect("stdin writer");
        out
    }

    /// Start a long-running command (`logs -f`, `events`) with stdout piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker")
    }
}

/// A container started through the hub; removed (directly on the engine) when dropped.
#[derive(Debug)]
pub struct Container {
    /// Its unique name.
    pub name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = direct(&["rm", "-f", &self.name]);
    }
}

impl DockerCli {
    /// `docker run -d --name <unique> TEST_IMAGE command…` through the hub.
    pub fn start(&self, prefix: &str, command: &[&str]) -> Container {
        let container = Container {
            name: unique(prefix),
        };
        let mut args = vec!["run", "-d", "--name", &container.name, TEST_IMAGE];
        args.extend_from_slice(command);
        self.ok(&args);
        container
    }
}

/// Remove containers (directly on the engine) when dropped.
#[derive(Debug, Default)]
pub struct Cleanup(Vec<String>);

impl Cleanup {
    /// Remember a container or image to remove.
    pub fn add(&mut self, name: &str) {
        self.0.push(name.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = direct(&["rm", "-f", name]);
            let _ = direct(&["rmi", "-f", name]);
        }
    }
}

/// SHA-256 of a file, via the system's sha256sum (what an operator would use).
pub fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
