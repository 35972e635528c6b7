//! The harness of the stack tests: a project of the test's own on the real engine, the specs it
//! applies, and the docker CLI for what a user would do by hand.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptionsBuilder,
};
use bollard::Docker;
use outpost_agent::docker_host::DockerHost;
use outpost_agent::snapshot::engine_client;
use outpost_agent::stack::names::{container_name, network_name};
use outpost_agent::stack::{apply, observe, Applied, ApplyError, Health, Progress};
use outpost_protocol::stack::{
    Healthcheck, Mount, MountSource, PortBinding, PortProtocol, RestartPolicy, ServiceSpec,
    StackSpec,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const SOCKET: &str = "/var/run/docker.sock";
const IMAGE: &str = "outpost-test/busybox:latest";
const ADVICE: &str = "run scripts/docker-setup.sh (as root) first";

/// How long a healthcheck every 200 ms may take to say healthy on a loaded two-core machine.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// One test's project on the real engine; dropping it removes everything labelled with it.
pub(crate) struct TestStack {
    pub(crate) project: String,
    pub(crate) docker: Docker,
    state: tempfile::TempDir,
    pub(crate) port: u16,
}

impl TestStack {
    pub(crate) async fn new(test: &str) -> Self {
        assert!(
            Path::new(SOCKET).exists(),
            "no Docker engine at {SOCKET}: {ADVICE}"
        );
        let docker = engine_client(&DockerHost::Unix(SOCKET.into())).unwrap();
        let image = docker.inspect_image(IMAGE).await;
        assert!(image.is_ok(), "no {IMAGE} on the engine: {ADVICE}");
        let project = format!("outpost-stack-{test}-{}", std::process::id());
        clean_up(&project); // a leftover of a killed run with the same pid
        Self {
            project,
            docker,
            state: tempfile::tempdir().unwrap(),
            port: free_port(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        self.state.path()
    }

    /// Version 1: `db` (healthcheck, named volume) and `web` (published port), both stopping
    /// at once on SIGTERM.
    pub(crate) fn v1(&self) -> StackSpec {
        let mut db = service("db", &["sleep", "3600"]);
        db.restart = RestartPolicy::UnlessStopped;
        db.healthcheck = Some(Healthcheck {
            test: vec!["CMD-SHELL".to_owned(), "true".to_owned()],
            interval_ms: Some(200),
            timeout_ms: Some(2_000),
            start_period_ms: None,
            retries: Some(3),
        });
        db.mounts = vec![Mount {
            source: MountSource::Volume("data".to_owned()),
            target: "/data".to_owned(),
            read_only: false,
        }];
        let mut web = service("web", &["httpd", "-f", "-p", "80"]);
        web.depends_on = vec!["db".to_owned()];
        web.ports = vec![PortBinding {
            host_ip: Some("127.0.0.1".to_owned()),
            host_port: Some(self.port),
            container_port: 80,
            protocol: PortProtocol::Tcp,
        }];
        web.labels = vec![("shop".to_owned(), "12".to_owned())];
        StackSpec {
            project: self.project.clone(),
            version: 1,
            services: vec![db, web],
            volumes: vec!["data".to_owned()],
        }
    }

    pub(crate) fn name(&self, service: &str) -> String {
        container_name(&self.project, service)
    }

    pub(crate) fn names(&self, services: &[&str]) -> Vec<String> {
        services.iter().map(|s| self.name(s)).collect()
    }

    pub(crate) async fn inspect(&self, service: &str) -> Option<ContainerInspectResponse> {
        let options = None::<InspectContainerOptions>;
        self.docker
            .inspect_container(&self.name(service), options)
            .await
            .ok()
    }

    /// Container id by service, for the project's two services.
    pub(crate) async fn ids(&self) -> HashMap<String, String> {
        let mut ids = HashMap::new();
        for service in ["db", "web"] {
            if let Some(container) = self.inspect(service).await {
                ids.insert(service.to_owned(), container.id.unwrap());
            }
        }
        ids
    }

    pub(crate) async fn all_running(&self) -> bool {
        for service in ["db", "web"] {
            let state = self.inspect(service).await.and_then(|c| c.state);
            if state.and_then(|s| s.running) != Some(true) {
                return false;
            }
        }
        true
    }

    /// Names of every container labelled with the project, sorted.
    pub(crate) async fn containers(&self) -> Vec<String> {
        let filter = HashMap::from([("label", vec![project_label(&self.project)])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filter)
            .build();
        let listed = self.docker.list_containers(Some(options)).await.unwrap();
        let mut names: Vec<String> = listed
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect();
        names.sort();
        names
    }

    pub(crate) async fn network_exists(&self) -> bool {
        let name = network_name(&self.project);
        self.docker
            .inspect_network(&name, None::<InspectNetworkOptions>)
            .await
            .is_ok()
    }

    pub(crate) async fn wait_healthy(&self, spec: &StackSpec, service: &str) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            let seen = observe(&self.docker, spec).await.unwrap();
            let health = seen
                .services
                .iter()
                .find(|s| s.service == service)
                .unwrap()
                .health;
            if health == Some(Health::Healthy) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{service} not healthy within {HEALTHY_WITHIN:?}: {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Apply `spec` in a task that dies (as a killed agent would: no further engine request, no
    /// clean-up) the moment the apply reports `at`; awaiting it gives the panic.
    pub(crate) fn apply_until_killed(
        &self,
        spec: &StackSpec,
        at: Progress,
    ) -> JoinHandle<Result<Applied, ApplyError>> {
        let (docker, dir, spec) = (self.docker.clone(), self.dir().to_owned(), spec.clone());
        tokio::spawn(async move {
            let die = |event: Progress| assert_ne!(event, at, "killed");
            apply(&docker, &dir, &spec, None, die).await
        })
    }

    /// docker-compose 1.29, given a file with the same services, lists the stack's containers
    /// as its project's.
    pub(crate) fn assert_compose_lists(&self, services: &[&str]) {
        let file = self.dir().join("docker-compose.yml");
        let mut yaml = String::from("version: \"2.4\"\nservices:\n");
        for service in services {
            yaml.push_str(&format!("  {service}:\n    image: {IMAGE}\n"));
        }
        std::fs::write(&file, yaml).unwrap();
        let file = file.to_str().unwrap();
        let listed = run(
            "docker-compose",
            &[
                "-p",
                &self.project,
                "-f",
                file,
                "ps",
                "--services",
                "--filter",
                "status=running",
            ],
        );
        let mut listed: Vec<&str> = listed.lines().collect();
        listed.sort_unstable();
        assert_eq!(listed, services, "docker-compose ps");
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        clean_up(&self.project);
    }
}

/// A service on the test image running `program` under a shell that exits on SIGTERM (as PID 1
/// neither `sleep` nor `httpd` would, and every replacement would wait out the stop timeout).
fn service(name: &str, program: &[&str]) -> ServiceSpec {
    let script = format!("trap 'exit 0' TERM; {} & wait", program.join(" "));
    ServiceSpec {
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), script]),
        environment: vec![("ROLE".to_owned(), name.to_owned())],
        ..ServiceSpec::new(name, IMAGE)
    }
}

/// Version 2 of `v1` whose web runs a program that does not exist: create succeeds, start fails.
pub(crate) fn broken(v1: &StackSpec) -> StackSpec {
    let mut v2 = v1.clone();
    v2.version = v1.version + 1;
    v2.services[1].command = Some(vec!["/no/such/program".to_owned()]);
    v2
}

pub(crate) fn assert_compose_labels(
    container: &ContainerInspectResponse,
    spec: &StackSpec,
    service: &ServiceSpec,
    working_dir: &Path,
) {
    let labels = container.config.as_ref().unwrap().labels.as_ref().unwrap();
    let hash = service.config_hash();
    let dir = working_dir.display().to_string();
    let expected = [
        ("com.docker.compose.project", spec.project.as_str()),
        ("com.docker.compose.service", service.name.as_str()),
        ("com.docker.compose.config-hash", hash.as_str()),
        ("com.docker.compose.container-number", "1"),
        ("com.docker.compose.oneoff", "False"),
        ("com.docker.compose.project.working_dir", dir.as_str()),
        ("com.docker.compose.version", "1.29.2"),
    ];
    for (key, value) in expected {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
    }
    for (key, value) in &service.labels {
        assert_eq!(labels.get(key), Some(value), "the service's own {key}");
    }
}

pub(crate) type Events = Arc<Mutex<Vec<Progress>>>;

/// A progress callback that records, and what it recorded.
pub(crate) fn recorder() -> (Events, impl FnMut(Progress) + Send) {
    let events = Events::default();
    let sink = Arc::clone(&events);
    (events, move |event| sink.lock().unwrap().push(event))
}

fn project_label(project: &str) -> String {
    format!("com.docker.compose.project={project}")
}

/// A port free on this host's loopback now (the engine, in its own network namespace, has only
/// the tests' containers on it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Remove everything labelled with `project`, ignoring what is not there.
fn clean_up(project: &str) {
    let filter = format!("label={}", project_label(project));
    let ids = run_lenient("docker", &["ps", "-aq", "--filter", &filter]);
    for id in ids.split_whitespace() {
        run_lenient("docker", &["rm", "-f", "-v", id]);
    }
    run_lenient("docker", &["network", "rm", &network_name(project)]);
    let volumes = run_lenient("docker", &["volume", "ls", "-q", "--filter", &filter]);
    for volume in volumes.split_whitespace() {
        run_lenient("docker", &["volume", "rm", volume]);
    }
}

/// The docker CLI's output, stdout and stderr together, whether it succeeded or not.
pub(crate) fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// `program`'s stdout; it must succeed.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}: {ADVICE}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `program`'s stdout, or nothing if it could not run.
fn run_lenient(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}
