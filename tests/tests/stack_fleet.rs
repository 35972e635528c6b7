//! Stacks on a fleet of real devices (issue #15), each agent with a real `dockerd` of its own
//! ([`Dockerd`]): what the hub says and what every engine runs must agree.
//!
//! - A two-service stack (a healthcheck, a named volume, a published port) rolled out to a group
//!   of three agents ends healthy on all three and the rollout completes; Debian's
//!   `docker-compose` 1.29, pointed straight at each engine, lists the project's services as its
//!   own; v2 changes one service and the other keeps its container on every engine.
//! - An agent killed (SIGKILL) while it applies v2 — its old container half-way through a slow
//!   stop — leaves the engine with one version, never a mix of two, at every moment the engine is
//!   looked at from the kill until the restarted agent (same data directory) has v2 healthy.
//! - A device offline when the rollout started, and one put in the group after it started,
//!   converge at the first check-in of their sessions.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::disallowed_methods)] // wall-clock sampling from a plain test thread

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_api::{EndpointDetail, RolloutDetail, StackVersionSaved};
use outpost_tests::docker::{require_engine, TEST_IMAGE};
use outpost_tests::dockerd::Dockerd;
use outpost_tests::stacks::{self, config_hashes, project_rows, ProjectRow as Row};
use outpost_tests::{wait_for, wait_for_result, Agent, AgentOptions, Hub};

/// Long enough for an apply and a soak on a busy machine (no pull: every engine has the image).
const CONVERGE: Duration = Duration::from_secs(60);

/// `stack create`, which must store a new version.
fn save(hub: &Hub, dir: &Path, name: &str, compose: &str) -> StackVersionSaved {
    let saved = stacks::save(hub, dir, name, compose);
    assert!(saved.created, "a new version: {saved:?}");
    saved
}

/// `stack deploy NAME <target…> --soak 2s`: the rollout's id.
fn deploy(hub: &Hub, stack: &str, target: &[&str]) -> i64 {
    stacks::deploy(hub, stack, &[target, &["--soak", "2s"]].concat())
}

/// Wait for rollout `id` to complete, printing its last view if it does not.
fn wait_completed(hub: &Hub, id: i64) -> RolloutDetail {
    stacks::wait_rollout_state(hub, id, "completed", CONVERGE)
}

/// Every container of `project` on `engine`, stopped ones too, by service.
fn rows(engine: &Dockerd, project: &str) -> Option<Vec<Row>> {
    project_rows(&engine.host(), project)
}

fn running(rows: &[Row]) -> Vec<&Row> {
    rows.iter().filter(|r| r.state == "running").collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Start an agent on its own engine (`DOCKER_HOST`, which is the agent's `--docker-host`).
fn agent_on(dir: &Path, engine: &Dockerd, key: Option<&str>) -> Agent {
    let host = engine.host();
    let mut env = vec![("DOCKER_HOST", host.as_str())];
    if let Some(key) = key {
        env.push(("EDGE_KEY", key));
    }
    Agent::start_with(dir, &AgentOptions::default(), &env)
}

// --- (a) three agents -----------------------------------------------------------------------

/// db: a named volume; web: a published port on a host port the engine picks (three engines
/// share the host's loopback), a healthcheck that fetches its page, and `MODE` — the one thing
/// v2 changes.
fn fleet_compose(mode: &str) -> String {
    format!(
        "services:
  db:
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]
    volumes: [\"data:/data\"]
  web:
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; mkdir -p /www; echo ok >/www/index.html; httpd -f -p 80 -h /www & wait\"]
    environment:
      MODE: {mode}
    ports: [\"127.0.0.1::80\"]
    depends_on: [db]
    healthcheck:
      test: [\"CMD-SHELL\", \"wget -q -O /dev/null http://127.0.0.1/\"]
      interval: 1s
      retries: 3
volumes:
  data: {{}}
"
    )
}

/// Debian's `docker-compose` (1.29, Python) as a user on the device would run it, straight at
/// `engine`: `docker-compose --file F --project-name P ps`.
fn compose_ps(engine: &Dockerd, dir: &Path, project: &str) -> String {
    let out = Command::new("docker-compose")
        .current_dir(dir)
        .arg("--file")
        .arg(dir.join("compose.yml"))
        .args(["--project-name", project, "ps"])
        .env("DOCKER_HOST", engine.host())
        .env("DOCKER_CONFIG", dir)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        // python-requests would prefer these CA bundles over what the client configures.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("docker-compose (Debian's package) is installed: scripts/docker-setup.sh");
    assert!(out.status.success(), "docker-compose ps: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_stack_rolls_out_to_three_agents_each_with_its_own_engine_and_v2_keeps_the_unchanged_service() {
    require_engine();
    let started = Instant::now();
    let engines = Dockerd::start_many(3);
    eprintln!("three engines up in {:?}", started.elapsed());
    let hub = Hub::start();
    let base = hub.data_dir.parent().unwrap().to_owned();
    let mut agents = Vec::new();
    let mut endpoints = Vec::new();
    for (i, engine) in engines.iter().enumerate() {
        let (id, key) = hub.create_endpoint(&format!("store-{i}"), &["--group", "stores"]);
        agents.push(agent_on(
            &base.join(format!("agent-{i}")),
            engine,
            Some(&key),
        ));
        endpoints.push(id);
    }
    for id in &endpoints {
        hub.wait_status(*id, "standby", Duration::from_secs(20));
    }
    eprintln!("hub and three agents up at {:?}", started.elapsed());
    let project = "pos";
    let dir = tempfile::tempdir().unwrap();

    // v1 to the group: every device healthy, the rollout completed.
    save(&hub, dir.path(), project, &fleet_compose("one"));
    let v1_hashes = config_hashes(&hub, project, 1);
    let first = deploy(&hub, project, &["--group", "stores"]);
    let done = wait_completed(&hub, first);
    assert_eq!(done.summary.counts.get("healthy"), Some(&3), "{done:#?}");
    let mut targets: Vec<u64> = done.targets.iter().map(|t| t.endpoint).collect();
    targets.sort_unstable();
    assert_eq!(targets, endpoints, "the group's three devices");
    assert!(
        done.targets.iter().all(|t| t.state == "healthy"),
        "{done:#?}"
    );
    eprintln!("v1 healthy on three devices at {:?}", started.elapsed());

    // Each engine runs both services as the hub's v1, web healthy on a loopback port, the
    // volume there; Compose itself lists the project.
    let mut v1_ids = Vec::new();
    for engine in &engines {
        let v1 = rows(engine, project).unwrap();
        let seen: BTreeMap<String, String> = v1
            .iter()
            .map(|r| (r.service.clone(), r.hash.clone()))
            .collect();
        assert_eq!(seen, v1_hashes, "{} runs v1: {v1:#?}", engine.host());
        assert!(v1.iter().all(|r| r.state == "running"), "{v1:#?}");
        assert!(v1[1].status.contains("(healthy)"), "{v1:#?}");
        let port = engine.ok(&["port", &v1[1].id, "80/tcp"]);
        assert!(
            port.trim().starts_with("127.0.0.1:") && !port.trim().ends_with(":0"),
            "web is published on loopback: {port}"
        );
        let volume = engine.ok(&["volume", "inspect", "--format", "{{.Name}}", "pos_data"]);
        assert_eq!(volume.trim(), "pos_data");
        let listed = compose_ps(engine, dir.path(), project);
        let line = |name: &str| {
            listed
                .lines()
                .find(|l| l.starts_with(name))
                .map(str::to_owned)
        };
        let db = line("pos-db-1").unwrap_or_default();
        let web = line("pos-web-1").unwrap_or_default();
        assert!(
            db.contains(" Up") && web.contains("Up (healthy)"),
            "docker-compose ps on {} lists both services, running:\n{listed}",
            engine.host()
        );
        v1_ids.push(v1);
    }

    // v2 changes web only: on every engine db keeps its container, web is replaced.
    save(&hub, dir.path(), project, &fleet_compose("two"));
    let v2_hashes = config_hashes(&hub, project, 2);
    assert_eq!(v2_hashes["db"], v1_hashes["db"]);
    assert_ne!(v2_hashes["web"], v1_hashes["web"]);
    let second = deploy(&hub, project, &["--group", "stores"]);
    let done = wait_completed(&hub, second);
    assert_eq!(done.summary.counts.get("healthy"), Some(&3), "{done:#?}");
    for (engine, v1) in engines.iter().zip(&v1_ids) {
        let v2 = rows(engine, project).unwrap();
        let seen: BTreeMap<String, String> = v2
            .iter()
            .map(|r| (r.service.clone(), r.hash.clone()))
            .collect();
        assert_eq!(
            seen,
            v2_hashes,
            "{} runs v2 and nothing else: {v2:#?}",
            engine.host()
        );
        assert_eq!(
            v2[0].id,
            v1[0].id,
            "db kept its container on {}",
            engine.host()
        );
        assert_ne!(v2[1].id, v1[1].id, "web was replaced on {}", engine.host());
        assert!(v2.iter().all(|r| r.state == "running"), "{v2:#?}");
    }
    eprintln!("v2 healthy on three devices at {:?}", started.elapsed());
}

// --- (b) an agent killed mid-apply ------------------------------------------------------------

// --- offline devices and late joiners --------------------------------------------------------

/// Longer than any wait below: a device that converged within it did so on the first check-in
/// of its session, not on a later one.
const LONG_CHECKIN: &str = "300s";

/// A device that was offline when the rollout started, and one put in the group after it
/// started, each converge as soon as they connect: at the first check-in of their session (the
/// check-in interval is longer than the test waits).
#[test]
fn a_device_offline_during_the_rollout_and_one_that_joins_later_converge_when_they_connect() {
    require_engine();
    let engines = Dockerd::start_many(3);
    let hub = Hub::start_with_flags(&["--checkin-interval", LONG_CHECKIN]);
    let base = hub.data_dir.parent().unwrap().to_owned();
    let group = ["--group", "stores"];
    let (online, online_key) = hub.create_endpoint("store-online", &group);
    let (offline, offline_key) = hub.create_endpoint("store-offline", &group);
    let _first = agent_on(&base.join("agent-online"), &engines[0], Some(&online_key));
    hub.wait_status(online, "standby", Duration::from_secs(20));
    let project = "pos";
    let dir = tempfile::tempdir().unwrap();
    save(&hub, dir.path(), project, &fleet_compose("one"));
    let v1 = config_hashes(&hub, project, 1);
    let rollout = deploy(&hub, project, &group);
    let done = wait_completed(&hub, rollout);
    let state = |detail: &RolloutDetail, id: u64| {
        let target = detail.targets.iter().find(|t| t.endpoint == id);
        target.map(|t| t.state.clone()).unwrap_or_default()
    };
    assert_eq!(state(&done, online), "healthy", "{done:#?}");
    assert_ne!(
        state(&done, offline),
        "healthy",
        "never connected: {done:#?}"
    );

    // A device put in the group after the rollout started joins it.
    let (late, late_key) = hub.create_endpoint("store-late", &group);
    let _second = agent_on(&base.join("agent-offline"), &engines[1], Some(&offline_key));
    let _third = agent_on(&base.join("agent-late"), &engines[2], Some(&late_key));
    let connected = Instant::now();
    let all = wait_for_result(CONVERGE, || {
        let detail: RolloutDetail =
            hub.cli_json(&["rollout", "show", &rollout.to_string(), "--json"]);
        [online, offline, late]
            .iter()
            .all(|id| state(&detail, *id) == "healthy")
            .then_some(detail)
    });
    let all = all.unwrap_or_else(|| panic!("not all three healthy within {CONVERGE:?}"));
    eprintln!(
        "both converged {:?} after their agents started",
        connected.elapsed()
    );
    assert_eq!(all.summary.counts.get("healthy"), Some(&3), "{all:#?}");
    for engine in &engines[1..] {
        let rows = rows(engine, project).unwrap();
        let seen: BTreeMap<String, String> = running(&rows)
            .iter()
            .map(|r| (r.service.clone(), r.hash.clone()))
            .collect();
        assert_eq!(seen, v1, "{} runs v1: {rows:#?}", engine.host());
    }
}

/// web: unchanged across versions. worker: slow to stop (it takes 6 s after SIGTERM, within the
/// agent's 10 s stop timeout), saying so in its log; `RELEASE` is what v2 changes.
fn slow_compose(release: &str) -> String {
    format!(
        "services:
  web:
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; mkdir -p /www; httpd -f -p 80 -h /www & wait\"]
    ports: [\"127.0.0.1::80\"]
    healthcheck:
      test: [\"CMD-SHELL\", \"true\"]
      interval: 1s
      retries: 2
  worker:
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'echo stopping; sleep 6; exit 0' TERM; echo started; sleep 3600 & wait\"]
    environment:
      RELEASE: {release}
    depends_on: [web]
"
    )
}

/// What the engine listed, and when (since the kill).
#[derive(Debug)]
struct Sample {
    at: Duration,
    rows: Vec<Row>,
}

/// Lists the project's containers over and over on a thread until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<Sample>, u32)>,
}

impl Sampler {
    fn start(engine: &Dockerd, project: &str, from: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let host = engine.host();
        let project = project.to_owned();
        let thread = std::thread::spawn(move || {
            let (mut samples, mut failures) = (Vec::new(), 0);
            while !flag.load(Ordering::Relaxed) {
                match project_rows(&host, &project) {
                    Some(rows) => samples.push(Sample {
                        at: from.elapsed(),
                        rows,
                    }),
                    None => failures += 1,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (samples, failures)
        });
        Self { stop, thread }
    }

    fn finish(self) -> (Vec<Sample>, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Why `rows` is a mix of versions, if it is: a container of neither version, a service running
/// twice, or running containers that are not all of one version.
fn mix(
    rows: &[Row],
    v1: &BTreeMap<String, String>,
    v2: &BTreeMap<String, String>,
) -> Option<String> {
    let of = |version: &BTreeMap<String, String>, r: &Row| version.get(&r.service) == Some(&r.hash);
    if let Some(stranger) = rows.iter().find(|r| !of(v1, r) && !of(v2, r)) {
        return Some(format!("{} is of neither version", stranger.name));
    }
    let live = running(rows);
    let mut services: Vec<&str> = live.iter().map(|r| r.service.as_str()).collect();
    services.sort_unstable();
    if services.windows(2).any(|w| w[0] == w[1]) {
        return Some(format!("a service runs twice: {services:?}"));
    }
    let one_version = live.iter().all(|r| of(v1, r)) || live.iter().all(|r| of(v2, r));
    (!one_version).then(|| "running containers of both versions".to_owned())
}

/// The device's own report of stack `stack`: `(version, phase)`.
fn reported(hub: &Hub, endpoint: u64, stack: &str) -> Option<(u32, String)> {
    let detail: EndpointDetail =
        hub.cli_json(&["endpoint", "show", &endpoint.to_string(), "--json"]);
    let found = detail.stacks.iter().find(|s| s.stack == stack)?;
    Some((found.version, found.phase.clone()))
}

#[test]
fn an_agent_killed_mid_apply_leaves_one_version_running_and_its_restart_ends_on_v2_healthy() {
    require_engine();
    let started = Instant::now();
    let engine = Dockerd::start();
    let hub = Hub::start();
    let (endpoint, key) = hub.create_endpoint("till", &[]);
    let agent_dir = hub.data_dir.parent().unwrap().join("agent");
    let mut agent = agent_on(&agent_dir, &engine, Some(&key));
    hub.wait_status(endpoint, "standby", Duration::from_secs(20));
    eprintln!("engine, hub and agent up at {:?}", started.elapsed());
    let project = "till";
    let dir = tempfile::tempdir().unwrap();
    let target = endpoint.to_string();
    let target = ["--endpoint", target.as_str()];

    // v1 healthy.
    save(&hub, dir.path(), project, &slow_compose("one"));
    let v1_hashes = config_hashes(&hub, project, 1);
    wait_completed(&hub, deploy(&hub, project, &target));
    let v1 = rows(&engine, project).unwrap();
    let seen: BTreeMap<String, String> = v1
        .iter()
        .map(|r| (r.service.clone(), r.hash.clone()))
        .collect();
    assert_eq!(seen, v1_hashes, "the engine runs v1: {v1:#?}");
    let (web_v1, worker_v1) = (v1[0].clone(), v1[1].clone());
    eprintln!("v1 healthy at {:?}", started.elapsed());

    // v2 changes the worker. The device reports it is applying v2, and the engine is stopping
    // the old worker (its trap has run): kill the agent there.
    save(&hub, dir.path(), project, &slow_compose("two"));
    let v2_hashes = config_hashes(&hub, project, 2);
    assert_eq!(v2_hashes["web"], v1_hashes["web"]);
    assert_ne!(v2_hashes["worker"], v1_hashes["worker"]);
    let second = deploy(&hub, project, &target);
    let mut phase = None;
    wait_for(
        Duration::from_secs(30),
        "the agent to be stopping v1's worker for v2",
        || {
            phase = reported(&hub, endpoint, project);
            let applying = phase == Some((2, "starting".to_owned()));
            let logs = engine.docker(&["logs", &worker_v1.id]);
            let stopping = String::from_utf8_lossy(&logs.stdout).contains("stopping");
            (applying && stopping).then_some(())
        },
    );
    let killed_at = Instant::now();
    agent.kill();
    let sampler = Sampler::start(&engine, project, killed_at);
    eprintln!(
        "agent killed mid-apply at {:?} (device said {phase:?})",
        started.elapsed()
    );

    // With no agent the engine finishes the stop it was asked for and nothing more: the old
    // worker exited, no v2 container made — the apply was cut in the middle.
    let cut = wait_for(
        Duration::from_secs(15),
        "the old worker to finish stopping",
        || {
            let now = rows(&engine, project)?;
            now.iter()
                .any(|r| r.id == worker_v1.id && r.state == "exited")
                .then_some(now)
        },
    );
    let ids: Vec<&str> = cut.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [web_v1.id.as_str(), worker_v1.id.as_str()],
        "only v1's containers, the worker stopped: {cut:#?}"
    );

    // Restarted on the same data directory, it settles the interrupted apply and reaches v2.
    let restarted_at = killed_at.elapsed();
    let first_log = agent.log();
    let _agent = agent_on(&agent_dir, &engine, None);
    let done = wait_completed(&hub, second);
    assert_eq!(done.targets[0].state, "healthy", "{done:#?}");
    assert_eq!(
        reported(&hub, endpoint, project),
        Some((2, "healthy".to_owned()))
    );
    let converged_at = killed_at.elapsed();
    let (samples, failures) = sampler.finish();
    eprintln!(
        "restarted {restarted_at:?} after the kill, v2 healthy after {converged_at:?}; \
         {} engine samples ({failures} failed)",
        samples.len()
    );

    // Never a mix, at any moment the engine was looked at.
    assert!(
        samples.iter().filter(|s| s.at < restarted_at).count() >= 5
            && samples.iter().filter(|s| s.at >= restarted_at).count() >= 5,
        "the engine was sampled before and after the restart ({} samples, {failures} failed)",
        samples.len()
    );
    for sample in &samples {
        if let Some(why) = mix(&sample.rows, &v1_hashes, &v2_hashes) {
            panic!(
                "{why}, {:?} after the kill (restart at {restarted_at:?}): {:#?}\n\
                 agent before the kill:\n{first_log}",
                sample.at, sample.rows
            );
        }
    }

    // The end: v2, web's container never replaced, nothing left over from the cut apply.
    let end = rows(&engine, project).unwrap();
    let seen: BTreeMap<String, String> = end
        .iter()
        .map(|r| (r.service.clone(), r.hash.clone()))
        .collect();
    assert_eq!(seen, v2_hashes, "v2 and nothing else: {end:#?}");
    assert_eq!(end.len(), 2, "no set-aside container left: {end:#?}");
    assert!(end.iter().all(|r| r.state == "running"), "{end:#?}");
    assert_eq!(end[0].id, web_v1.id, "web was never replaced");
    assert_ne!(end[1].id, worker_v1.id);
}

/// The mix check itself, on made-up engine listings: it must catch what the test guards against.
#[test]
fn a_mix_is_two_versions_running_a_service_twice_or_a_stranger() {
    let version = |worker: &str| {
        BTreeMap::from([
            ("web".to_owned(), "w".to_owned()),
            ("worker".to_owned(), worker.to_owned()),
        ])
    };
    let (v1, v2) = (version("a"), version("b"));
    let row = |id: &str, service: &str, hash: &str, state: &str| Row {
        id: id.to_owned(),
        name: format!("till-{service}-{id}"),
        service: service.to_owned(),
        hash: hash.to_owned(),
        image: String::new(),
        state: state.to_owned(),
        status: String::new(),
    };
    let web = row("1", "web", "w", "running");
    let old = |state: &str| row("2", "worker", "a", state);
    let new = |state: &str| row("3", "worker", "b", state);
    for one_version in [
        vec![web.clone(), old("running")],
        vec![web.clone(), old("exited")],
        vec![web.clone(), old("exited"), new("running")],
        vec![web.clone(), old("running"), new("created")],
    ] {
        assert_eq!(mix(&one_version, &v1, &v2), None, "{one_version:#?}");
    }
    let two_workers = vec![web.clone(), old("running"), new("running")];
    assert_eq!(
        mix(&two_workers, &v1, &v2).as_deref(),
        Some("a service runs twice: [\"web\", \"worker\", \"worker\"]")
    );
    let stranger = vec![web.clone(), row("4", "worker", "z", "exited")];
    assert!(mix(&stranger, &v1, &v2).is_some_and(|why| why.contains("neither version")));
    let (w1, w2) = (
        version("a"),
        BTreeMap::from([("web".to_owned(), "x".to_owned())]),
    );
    let both = vec![row("5", "web", "x", "running"), old("running")];
    assert_eq!(
        mix(&both, &w1, &w2).as_deref(),
        Some("running containers of both versions")
    );
}
