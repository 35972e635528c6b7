//! A real image registry for the end-to-end tests: Debian's `docker-registry` (distribution 2.8,
//! installed by `scripts/docker-setup.sh`) serving plain HTTP from a temporary directory, run
//! inside a network namespace the test made (a rig's hub side), so that an engine on the rig's
//! agent side pulls across the emulated link. Nothing else can reach it, and it reaches nothing.
//!
//! [`CorruptingUpstream`] is the labelled test double of an upstream whose blobs fail their digest.
//!
//! `start_local` runs one on a loopback port of the test's own namespace instead, optionally with
//! htpasswd Basic auth (the mirror's upstream in `tests/tests/mirror.rs`).
//!
//! Around it, what the image tests of the agent's registry each set up the same way: a registry
//! and an engine at the two ends of a rig ([`Registry::with_engine`]), an image of random layers
//! pushed to it ([`push_random_image`]), an agent whose loopback registry the engine pulls from
//! ([`start_agent`]) and the wait for the hub's grant ([`wait_granted`]).
//!
//! The registry is the test's own process (`ip netns exec` execs it, so the child's pid is the
//! registry's); dropping a [`Registry`] stops it (SIGTERM, then SIGKILL) and removes its storage.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::docker::TEST_IMAGE;
use crate::dockerd::Dockerd;
use crate::rig::Rig;
use crate::{command_in, wait_for, wait_for_result, Agent, AgentOptions};

/// How long the registry may take to listen.
const READY: Duration = Duration::from_secs(20);
/// How long it may take to stop after SIGTERM.
const STOP: Duration = Duration::from_secs(10);

/// A running `docker-registry serve`; stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Serve on `addr` (`198.18.0.1:5000`: an address of namespace `netns`) with empty storage;
    /// panics with the registry's log if it does not listen within [`READY`].
    pub fn start_in_netns(netns: &str, addr: &str) -> Self {
        Self::launch(Some(netns), addr, None)
    }

    /// Serve on `addr` (a free loopback port) in the test's own namespace, with HTTP Basic auth
    /// against `htpasswd` (bcrypt entries) when given.
    pub fn start_local(addr: &str, htpasswd: Option<&Path>) -> Self {
        Self::launch(None, addr, htpasswd)
    }

    fn launch(netns: Option<&str>, addr: &str, htpasswd: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().expect("registry directory");
        let config = dir.path().join("config.yml");
        let mut yaml = config_yaml(&dir.path().join("data"), addr);
        if let Some(path) = htpasswd {
            yaml.push_str(&auth_yaml(path));
        }
        std::fs::write(&config, yaml).expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = command_in(netns, "docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (scripts/docker-setup.sh)");
        let mut registry = Self {
            child,
            addr: addr.to_owned(),
            dir,
        };
        registry.wait_listening();
        registry
    }

    /// A registry at `addr` on `rig`'s hub side, and an engine on its agent side that pulls from
    /// it over plain HTTP.
    pub fn with_engine(rig: &Rig, addr: &str) -> (Self, Dockerd) {
        let registry = Self::start_in_netns(&rig.netns("hub"), addr);
        let insecure = ["--insecure-registry", registry.addr()];
        let engine = Dockerd::start_in_netns(&rig.netns("agent"), &insecure);
        (registry, engine)
    }

    /// `host:port`, as image references name it.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The registry's log so far (one line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self) {
        let listening = format!("listening on {}", self.addr);
        let outcome = wait_for_result(READY, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Err(status));
            }
            self.log().contains(&listening).then_some(Ok(()))
        });
        match outcome {
            Some(Ok(())) => {}
            Some(Err(status)) => panic!("docker-registry exited ({status}):\n{}", self.log()),
            None => panic!(
                "docker-registry did not listen on {} within {READY:?}:\n{}",
                self.addr,
                self.log()
            ),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            if wait_for_result(STOP, || self.child.try_wait().ok().flatten()).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Build the test image plus one layer of random bytes per `(file, bytes)` of `layers` on
/// `engine` (its context in `context`), push it as `image` and remove it from the engine, so
/// that only a pull brings it back.
pub fn push_random_image(engine: &Dockerd, context: &Path, image: &str, layers: &[(&str, u64)]) {
    std::fs::create_dir_all(context).expect("image context");
    let mut dockerfile = format!("FROM {TEST_IMAGE}\n");
    for (file, bytes) in layers {
        dockerfile.push_str(&format!("RUN head -c {bytes} /dev/urandom >{file}\n"));
    }
    std::fs::write(context.join("Dockerfile"), dockerfile).expect("Dockerfile");
    let context = context.to_str().expect("a UTF-8 path");
    engine.ok(&["build", "--quiet", "--tag", image, context]);
    engine.ok(&["push", image]);
    engine.ok(&["rmi", image]);
}

/// An agent on `rig`'s device side managing `engine`, its loopback registry at `listen` (`off`
/// for none).
pub fn start_agent(rig: &Rig, dir: &Path, key: &str, engine: &Dockerd, listen: &str) -> Agent {
    let options = AgentOptions {
        netns: Some(rig.netns("agent")),
        transport: "lan",
    };
    let env = [
        ("EDGE_KEY", key),
        ("DOCKER_HOST", &engine.host()),
        ("OUTPOST_REGISTRY_LISTEN", listen),
    ];
    Agent::start_with(dir, &options, &env)
}

/// Wait until the hub has granted `agent` fetch streams: its loopback registry is served.
pub fn wait_granted(agent: &Agent) {
    wait_for(Duration::from_secs(30), "fetch streams granted", || {
        agent
            .log()
            .contains("the hub serves its registry mirror")
            .then_some(())
    });
}

/// `127.0.0.1:PORT` with a free port (bound, read, released), for a registry to listen on.
pub fn free_loopback() -> String {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let port = socket.local_addr().expect("its address").port();
    format!("127.0.0.1:{port}")
}

/// A test double, labelled as one: an upstream on loopback that answers every blob with the
/// wrong bytes, after a second (so other requests run while it is in flight), counting the
/// requests. The mirror must refuse what it sends. Every manifest it serves is one image whose
/// only layer is [`CorruptingUpstream::LAYER`]'s digest, so a device ordered the image may ask for
/// that layer.
#[derive(Debug)]
pub struct CorruptingUpstream {
    /// `host:port`.
    pub addr: String,
    /// Blob GETs answered so far.
    pub gets: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl CorruptingUpstream {
    /// The bytes its manifests' layer should have (it sends others).
    pub const LAYER: &[u8] = b"the real bytes";

    /// Listen on a free loopback port.
    pub fn start() -> Self {
        use axum::routing::get;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let gets = Arc::new(AtomicUsize::new(0));
        let counter = gets.clone();
        let app = axum::Router::new().route(
            "/v2/{*path}",
            get(
                move |axum::extract::Path(path): axum::extract::Path<String>| {
                    let counter = counter.clone();
                    async move {
                        if path.contains("/manifests/") {
                            return manifest();
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        (
                            [("content-type", "application/octet-stream")],
                            "corrupted bytes".to_owned(),
                        )
                    }
                },
            ),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            gets,
            _runtime: runtime,
        }
    }
}

/// A Docker schema 2 manifest whose only layer is [`CorruptingUpstream::LAYER`].
fn manifest() -> ([(&'static str, &'static str); 1], String) {
    let layer = crate::oci::sha256(CorruptingUpstream::LAYER);
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{SCHEMA2}","config":{{"digest":"{layer}","size":14}},"layers":[{{"digest":"{layer}","size":14}}]}}"#,
        SCHEMA2 = crate::oci::SCHEMA2,
    );
    ([("content-type", crate::oci::SCHEMA2)], body)
}

/// Basic auth against an htpasswd file (the registry accepts only bcrypt entries).
fn auth_yaml(htpasswd: &Path) -> String {
    format!(
        "auth:
  htpasswd:
    realm: outpost-test
    path: {}
",
        htpasswd.display()
    )
}

/// Filesystem storage under `root`, deletes allowed, plain HTTP on `addr`, no storage health
/// check (it would only log), no redirects to other hosts.
fn config_yaml(root: &Path, addr: &str) -> String {
    format!(
        "version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: {addr}
health:
  storagedriver:
    enabled: false
",
        root = root.display()
    )
}
