//! The stock `docker` CLI, pointed at a device through the hub (or straight at the local engine, to
//! check what the engine really did). The engine is the real `dockerd` that `scripts/docker-setup.sh`
//! starts; these helpers fail with that advice when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{command_in, Hub};

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
    netns: Option<String>,
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
            netns: hub.netns().map(str::to_owned),
            host: format!("tcp://{}/api/endpoints/{id}/docker", hub.api_addr),
            ca: hub.data_dir.join("ca.pem"),
            credential,
            config_dir,
        }
    }

    /// A `docker` command ready to run against the device.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = command_in(self.netns.as_deref(), "docker");
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

/// An image built straight on the engine; removed when dropped.
#[derive(Debug)]
pub struct Image {
    /// `name:tag`.
    pub tag: String,
}

impl Image {
    /// `FROM TEST_IMAGE` plus a layer of `size` incompressible bytes drawn from `seed`.
    pub fn random(prefix: &str, size: usize, seed: u64) -> Self {
        let image = Self {
            tag: format!("{}:v1", unique(prefix)),
        };
        let context = tempfile::tempdir().expect("build context");
        std::fs::write(context.path().join("blob.bin"), random_bytes(size, seed)).expect("blob");
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {TEST_IMAGE}\nCOPY blob.bin /blob.bin\n"),
        )
        .expect("Dockerfile");
        let context_dir = context.path().to_string_lossy().into_owned();
        let built = direct(&["build", "-q", "-t", &image.tag, &context_dir]);
        assert!(
            built.status.success(),
            "docker build {}: {}",
            image.tag,
            String::from_utf8_lossy(&built.stderr)
        );
        image
    }

    /// SHA-256 of `docker save` of this image straight from the engine (the engine writes the same
    /// archive for the same image every time).
    pub fn direct_save_sha256(&self, dir: &Path) -> String {
        let archive = dir.join("direct-save.tar");
        let path = archive.to_string_lossy().into_owned();
        let out = direct(&["save", "-o", &path, &self.tag]);
        assert!(
            out.status.success(),
            "direct docker save: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sha256_of(&archive)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = direct(&["rmi", "-f", &self.tag]);
    }
}

/// `len` pseudo-random bytes from `seed` (xorshift: incompressible, reproducible).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The engine's own `docker logs` of a container (stdout only), to compare with what a client saw.
pub fn direct_logs(container: &str) -> Vec<u8> {
    let out = direct(&["logs", container]);
    assert!(
        out.status.success(),
        "direct docker logs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
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

/// SHA-256 of bytes in memory, through the same sha256sum.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("sha256sum output");
    writer.join().expect("sha256sum writer");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A streaming command (`logs -f`, `save`, `exec -i`) whose stdout and stderr are collected on
/// threads while the test changes the link under it.
#[derive(Debug)]
pub struct Follower {
    child: Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// What a [`Follower`] saw.
#[derive(Debug)]
pub struct Followed {
    /// How the CLI exited.
    pub status: std::process::ExitStatus,
    /// All of its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr, as text.
    pub stderr: String,
}

impl Followed {
    /// Stdout as lines.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn collected(reader: Option<std::thread::JoinHandle<Vec<u8>>>) -> Vec<u8> {
    reader
        .map(|r| r.join().expect("output reader"))
        .unwrap_or_default()
}

fn drain(mut from: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = from.read_to_end(&mut all);
        all
    })
}

impl Follower {
    /// Whether the command has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Its stdin, when started with [`DockerCli::follow_with_stdin`].
    pub fn stdin(&mut self) -> &mut std::process::ChildStdin {
        self.child.stdin.as_mut().expect("started with stdin")
    }

    /// Close its stdin (end of input).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Wait up to `timeout` for the command to end and collect what it printed.
    pub fn finish(mut self, timeout: std::time::Duration) -> Followed {
        let child = &mut self.child;
        let waited = crate::wait_for_result(timeout, || child.try_wait().ok().flatten());
        let status = match waited {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                let stderr = collected(self.stderr.take());
                panic!(
                    "the docker command did not finish within {timeout:?}; stderr: {}",
                    String::from_utf8_lossy(&stderr)
                );
            }
        };
        Followed {
            status,
            stdout: collected(self.stdout.take()),
            stderr: String::from_utf8_lossy(&collected(self.stderr.take())).into_owned(),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DockerCli {
    /// Start `args` with stdout and stderr collected.
    pub fn follow(&self, args: &[&str]) -> Follower {
        self.follow_inner(args, Stdio::null())
    }

    /// Start `args` with stdout and stderr collected and stdin open for [`Follower::stdin`].
    pub fn follow_with_stdin(&self, args: &[&str]) -> Follower {
        self.follow_inner(args, Stdio::piped())
    }

    fn follow_inner(&self, args: &[&str], stdin: Stdio) -> Follower {
        let mut child = self
            .command(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker");
        let stdout = drain(child.stdout.take().expect("stdout"));
        let stderr = drain(child.stderr.take().expect("stderr"));
        Follower {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }
}

/// A container script printing `lines` numbered lines, each followed by a line of `noise` random
/// bytes in base64, one pair every `pause` (a busybox `sleep` argument, e.g. `0.1`).
pub fn chatter(lines: u32, noise: u32, pause: &str) -> String {
    format!(
        "i=0; while [ $i -lt {lines} ]; do echo line $i; head -c {noise} /dev/urandom | base64; i=$((i+1)); sleep {pause}; done"
    )
}

/// The numbered lines [`chatter`] prints, to compare with what a client saw.
pub fn numbered_lines(lines: u32) -> Vec<String> {
    (0..lines).map(|i| format!("line {i}")).collect()
}
