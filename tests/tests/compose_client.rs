//! A user's own, older Docker client through the hub: Debian's `docker-compose` 1.29 (docker-py 5,
//! which pins TLS 1.2) with an admin certificate, pointed at a device the way the stock CLI is
//! (`DOCKER_HOST=tcp://hub/api/endpoints/{id}/docker`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`),
//! brings a one-service project up, lists it and takes it down; the engine, asked directly, shows
//! what really happened.
//!
//! docker-py takes a base path in `DOCKER_HOST` as the CLI does (it sends
//! `/api/endpoints/{id}/docker/v1.xx/...`), so no context or rewriting is needed; what it needed
//! was the admin listener accepting TLS 1.2.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use outpost_tests::docker::{direct, require_engine, unique, TEST_IMAGE};
use outpost_tests::{command_in, Agent, Hub};

/// The label docker-compose puts on everything of a project.
const PROJECT_LABEL: &str = "com.docker.compose.project";

/// A project file (format 2.4, as projects written for docker-compose 1.x are) with one service
/// that sleeps on the test image: no pull, the engine has no network and needs none.
fn project_file(dir: &Path) -> PathBuf {
    let file = dir.join("docker-compose.yml");
    let yaml = format!(
        "version: \"2.4\"\nservices:\n  app:\n    image: {TEST_IMAGE}\n    command: [\"sleep\", \"3600\"]\n"
    );
    std::fs::write(&file, yaml).unwrap();
    file
}

/// `docker-compose` for a project of its own on one endpoint, authenticated with an admin
/// certificate directory (ca.pem, cert.pem, key.pem) as `DOCKER_CERT_PATH` expects it.
struct Compose {
    netns: Option<String>,
    host: String,
    certs: PathBuf,
    dir: tempfile::TempDir,
    file: PathBuf,
    project: String,
}

impl Compose {
    fn new(hub: &Hub, id: u64, certs: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = project_file(dir.path());
        Self {
            netns: hub.netns().map(str::to_owned),
            host: format!("tcp://{}/api/endpoints/{id}/docker", hub.api_addr),
            certs,
            dir,
            file,
            project: unique("compose"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = command_in(self.netns.as_deref(), "docker-compose");
        command
            .current_dir(self.dir.path())
            .arg("--file")
            .arg(&self.file)
            .args(["--project-name", &self.project])
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &self.certs)
            // A config dir of its own: no contexts or credentials of the machine's user.
            .env("DOCKER_CONFIG", self.dir.path())
            .env_remove("DOCKER_CONTEXT")
            // python-requests prefers these CA bundles over the one the client configures, which
            // would distrust the hub's CA.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            // Python's ssl writes each session's secrets here, labelled by TLS version.
            .env("SSLKEYLOGFILE", self.key_log());
        command
    }

    fn key_log(&self) -> PathBuf {
        self.dir.path().join("tls-keys.log")
    }

    /// Whether every connection so far spoke TLS 1.2: the key log has a TLS 1.2 master secret
    /// (`CLIENT_RANDOM`) and none of TLS 1.3's traffic secrets.
    fn spoke_only_tls12(&self) -> bool {
        let log = std::fs::read_to_string(self.key_log()).unwrap_or_default();
        log.lines().any(|l| l.starts_with("CLIENT_RANDOM "))
            && !log.lines().any(|l| l.contains("TRAFFIC_SECRET"))
    }

    /// Run, assert success, return stdout and stderr (compose reports progress on stderr).
    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        let text = text(&out);
        assert!(
            out.status.success(),
            "docker-compose {args:?} failed: {text}"
        );
        text
    }
}

/// The project's containers as the engine lists them: `name state` lines.
fn engine_containers(project: &str) -> Vec<String> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let out = direct(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The project's networks as the engine lists them.
fn engine_networks(project: &str) -> Vec<String> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let out = direct(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Removes what a failed test left of the project, straight on the engine.
struct ProjectCleanup(String);

impl Drop for ProjectCleanup {
    fn drop(&mut self) {
        for line in engine_containers(&self.0) {
            if let Some(name) = line.split_whitespace().next() {
                let _ = direct(&["rm", "-f", name]);
            }
        }
        let _ = direct(&["network", "rm", &format!("{}_default", self.0)]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn docker_compose_1_29_brings_a_project_up_lists_it_and_takes_it_down_through_the_hub() {
    require_engine();
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("compose", &[]);
    let agent_dir = hub.data_dir.parent().unwrap().join("agent");
    let _agent = Agent::start(
        &agent_dir,
        &[
            ("EDGE_KEY", &key),
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
        ],
    );
    hub.wait_status(id, "standby", Duration::from_secs(20));
    let certs = hub.data_dir.parent().unwrap().join("admin-cert");
    hub.admin_cert(&certs);
    let compose = Compose::new(&hub, id, certs);
    let _cleanup = ProjectCleanup(compose.project.clone());

    compose.ok(&["up", "-d"]);
    let service = format!("{}_app_1", compose.project);
    assert_eq!(
        engine_containers(&compose.project),
        [format!("{service} running")],
        "the engine runs the service, labelled with its project"
    );
    let network = format!("{}_default", compose.project);
    assert_eq!(engine_networks(&compose.project), [network]);
    assert!(
        compose.spoke_only_tls12(),
        "docker-compose 1.29 pins TLS 1.2; had it negotiated 1.3, this would not test the 1.2 path"
    );

    let listed = compose.ok(&["ps"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&service) && l.contains(" Up")),
        "docker-compose ps lists the service as Up:\n{listed}"
    );

    compose.ok(&["down"]);
    assert_eq!(
        engine_containers(&compose.project),
        Vec::<String>::new(),
        "down removed the service's container"
    );
    assert_eq!(engine_networks(&compose.project), Vec::<String>::new());
}
