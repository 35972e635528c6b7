//! Byte budgets (issue #16 item 5): a device with a 50 MB budget a period is sent a stack whose
//! image is 200 MB. Its image transfers stop at the budget and the rollout shows the device
//! `deferred` (the hub's reason: `budget`), never failed; each next period goes on from the byte
//! where the last one stopped, until the image is whole and the stack runs. Docker calls through
//! the hub are never held back.
//!
//! Every part is real: the netns rig (transparent link) with Debian's `docker-registry` and the
//! hub (`--registry`, `--budget-period 15s` so that periods pass within the test) on its hub side,
//! and the agent with its own `dockerd` on its agent side, as in `agent_registry.rs`. A second
//! test closes the device's transfer window: its stack and a fleet pre-pull (`image pull`) both
//! wait (`deferred: window`, nothing of the image crossed) until an admin opens the window, when
//! both go on at once. The image's
//! four 50 MB layers of random bytes are built in the device's engine, pushed, and removed; then
//! the link becomes 100 Mbit/s with a 10 ms round trip.
//!
//! What is asserted, from the hub's own counters and views: the rollout shows the device
//! `deferred: budget` and never `failed`; every period's bytes (`endpoint show`'s
//! `traffic.history`, every class both ways) are within the budget (1 % for the framing of bytes
//! in flight when it ran out), at least four periods spent it, and together they carried the
//! image; the hub resumed blobs part-way (its log); the image bytes the hub sent the device add up
//! to the image once (`outpost_hub_mirror_agent_bytes_total` within 2 % of the blobs: nothing sent
//! twice); the image runs. About ninety seconds.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::disallowed_methods)] // wall-clock waits from a plain test thread

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_api::{JobDetail, JobDevice};
use outpost_protocol::fetch::DeferCause;
use outpost_tests::docker::{require_engine, DockerCli};
use outpost_tests::dockerd::Dockerd;
use outpost_tests::registry::{push_random_image, start_agent, Registry};
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::{metric, stacks, wait_for, Agent, Hub};
use serde_json::Value;

/// Random bytes in each of the image's layers.
const LAYER_BYTES: u64 = 50_000_000;
/// Layers of random bytes.
const LAYERS: u64 = 4;
/// The device's budget a period.
const BUDGET: u64 = 50_000_000;
/// The budget period the hub runs with.
const PERIOD: &str = "15s";
const REPO: &str = "outpost/heavy";
/// The device's link once the image is pushed: 100 Mbit/s each way, 10 ms round trip (a period
/// then carries its 50 MB in about four seconds).
const LINK: &str = "description = \"budget test: 100 Mbit/s, 10 ms RTT\"
[both]
delay = \"5ms\"
[up]
rate = \"100mbit\"
queue = \"512KB\"
[down]
rate = \"100mbit\"
queue = \"512KB\"
";

fn upstream_addr() -> String {
    format!("{HUB_IP}:5000")
}

fn image() -> String {
    format!("{}/{REPO}:1", upstream_addr())
}

/// `layers` layers of random bytes on the test image, pushed to the registry and removed
/// locally.
fn push_heavy_image(engine: &Dockerd, dir: &Path, layers: u64) {
    let files: Vec<String> = (1..=layers).map(|layer| format!("/blob{layer}")).collect();
    let layers: Vec<_> = files.iter().map(|f| (f.as_str(), LAYER_BYTES)).collect();
    push_random_image(engine, &dir.join("heavy"), &image(), &layers);
}

/// The rig with the registry and hub on its hub side, an engine and an agent on its agent side,
/// an image of `layers` random layers pushed, the link at [`LINK`]. Fields drop in order:
/// processes first, then the engine, registry and rig.
struct Metered {
    agent: Agent,
    id: u64,
    hub: Hub,
    engine: Dockerd,
    _registry: Registry,
    rig: Rig,
    dir: tempfile::TempDir,
}

impl Metered {
    /// Set up, with `before_agent` run on the hub before the agent first connects.
    fn start(layers: u64, before_agent: impl FnOnce(&Hub, u64)) -> Self {
        require_engine();
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::up(
            &format!("obud{}", std::process::id() % 100_000),
            "transparent",
        );
        let (registry, engine) = Registry::with_engine(&rig, &upstream_addr());
        push_heavy_image(&engine, dir.path(), layers);
        let link = dir.path().join("link.toml");
        std::fs::write(&link, LINK).unwrap();
        rig.ctl(&["profile", link.to_str().unwrap()]);
        let agent_addr = format!("{HUB_IP}:4433");
        let upstream = format!("http://{}", upstream_addr());
        let hub = Hub::start_in_netns(
            &rig.netns("hub"),
            dir.path().join("hub"),
            &agent_addr,
            &format!("{HUB_IP}:9443"),
            &[
                "--public-addr",
                &agent_addr,
                "--registry",
                &upstream,
                "--budget-period",
                PERIOD,
            ],
        );
        let (id, key) = hub.create_endpoint("metered", &[]);
        before_agent(&hub, id);
        let agent_dir = dir.path().join("agent");
        let agent = start_agent(&rig, &agent_dir, &key, &engine, "127.0.0.1:5380");
        hub.wait_status(id, "standby", Duration::from_secs(30));
        Self {
            agent,
            id,
            hub,
            engine,
            _registry: registry,
            rig,
            dir,
        }
    }

    /// Deploy a stack running the image: the rollout's id.
    fn deploy(&self) -> i64 {
        let compose = format!(
            "services:\n  app:\n    image: {}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n",
            image()
        );
        stacks::save(&self.hub, self.dir.path(), "heavy", &compose);
        let endpoint = self.id.to_string();
        stacks::deploy(
            &self.hub,
            "heavy",
            &["--endpoint", &endpoint, "--soak", "1s"],
        )
    }
}

#[test]
fn a_spent_budget_defers_a_rollout_and_each_period_resumes_where_the_last_stopped() {
    let started = Instant::now();
    let m = Metered::start(LAYERS, |hub, id| {
        let endpoint = id.to_string();
        let set = hub.cli(&["budget", "set", "50MB", "--endpoint", &endpoint]);
        assert!(set.status.success(), "{set:?}");
    });
    let (hub, agent, engine, id) = (&m.hub, &m.agent, &m.engine, m.id);
    let rollout = m.deploy();

    // The budget runs out part-way: deferred, with the hub's reason, and within the budget.
    let deferred = stacks::wait_rollout(hub, rollout, Duration::from_secs(120), |r| {
        assert_ne!(r.targets[0].state, "failed", "{r:#?}\n{}", agent.log());
        r.targets[0].state == "deferred"
    });
    let reason = deferred.targets[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("deferred: budget"), "{deferred:#?}");
    let traffic: Value = hub.show(id)["traffic"].clone();
    eprintln!("while deferred: {traffic}");
    assert_eq!(traffic["budget"]["bytes"], BUDGET, "{traffic}");
    // Docker calls through the hub are never held back.
    let docker = DockerCli::for_endpoint(hub, id);
    docker.ok(&["ps"]);

    // Period after period the pull goes on, and the stack runs.
    let mut states = Vec::new();
    let done = stacks::wait_rollout(hub, rollout, Duration::from_secs(300), |r| {
        let state = r.targets[0].state.clone();
        if states.last() != Some(&state) {
            states.push(state);
        }
        r.summary.state != "running"
    });
    eprintln!(
        "the device's states: {states:?}; {:?} in all",
        started.elapsed()
    );
    assert_eq!(
        done.summary.state,
        "completed",
        "{done:#?}\n{}",
        agent.log()
    );
    assert!(!states.iter().any(|s| s == "failed"), "{states:?}");
    let size = engine.ok(&["run", "--rm", &image(), "stat", "-c", "%s", "/blob4"]);
    assert_eq!(size.trim(), LAYER_BYTES.to_string());

    // Each period the device's link carried at most its budget (every class, both ways).
    std::thread::sleep(Duration::from_secs(16));
    let traffic: Value = hub.show(id)["traffic"].clone();
    let periods: Vec<u64> = traffic["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["used"].as_u64().unwrap())
        .collect();
    eprintln!(
        "bytes per period, newest first: {periods:?}\n{}",
        m.rig.ctl(&["counters"])
    );
    let total: u64 = periods.iter().sum();
    assert!(
        total >= LAYERS * LAYER_BYTES,
        "the image crossed: {periods:?}"
    );
    let spent = periods.iter().filter(|&&p| p > BUDGET / 2).count();
    assert!(
        spent >= 4,
        "at least four periods spent their budget: {periods:?}"
    );
    for used in &periods {
        assert!(
            *used <= BUDGET + BUDGET / 100,
            "a period's bytes within the budget (1 % for in-flight framing): {periods:?}"
        );
    }

    // Nothing crossed twice: blobs were resumed part-way, and the image bytes the hub sent add
    // up to the image once.
    let log = hub.log();
    let resumed = log
        .lines()
        .filter(|l| l.contains("resuming a blob for an agent"))
        .count();
    assert!(resumed >= 1, "a blob resumed part-way:\n{log}");
    assert!(
        log.contains("budget spent part-way through a blob"),
        "{log}"
    );
    let sent = metric(&hub.metrics(), "outpost_hub_mirror_agent_bytes_total");
    let image_bytes = LAYERS * LAYER_BYTES;
    eprintln!("image bytes sent to the device: {sent} for {image_bytes} of random layers");
    assert!(
        sent >= image_bytes && sent <= image_bytes + image_bytes / 50,
        "each byte sent once: {sent} for {image_bytes}"
    );
}

/// The device's local time (the agent's clock and time zone are this machine's): `HH:MM`
/// `minutes` from now.
fn local_time_in(minutes: i64) -> String {
    let out = std::process::Command::new("date")
        .arg("-d")
        .arg(format!("{minutes} minutes"))
        .arg("+%H:%M")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn outside_its_transfer_window_a_device_waits_and_a_window_opened_now_lets_it_go_on() {
    // Closed now: it opens in an hour, on the device's clock.
    let closed = format!("{}-{}", local_time_in(60), local_time_in(120));
    let m = Metered::start(1, |hub, _| {
        let set = hub.cli(&["window", "set", &closed, "--fleet"]);
        assert!(set.status.success(), "{set:?}");
    });
    let rollout = m.deploy();
    let deferred = stacks::wait_rollout(&m.hub, rollout, Duration::from_secs(90), |r| {
        assert_ne!(r.targets[0].state, "failed", "{r:#?}\n{}", m.agent.log());
        r.targets[0].state == "deferred"
    });
    let reason = deferred.targets[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("deferred: window") && reason.contains(&closed),
        "{deferred:#?}"
    );
    let traffic = m.hub.show(m.id)["traffic"].clone();
    assert_eq!(traffic["window"], closed.as_str(), "{traffic}");
    let images = traffic["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "images")
        .and_then(|c| c["down"].as_u64())
        .unwrap();
    assert!(
        images < 1_000_000,
        "no layer crossed outside the window: {traffic}"
    );
    // Docker calls through the hub are never held back.
    DockerCli::for_endpoint(&m.hub, m.id).ok(&["ps"]);
    // A fleet pre-pull of the same image waits too, and says why.
    let endpoint = m.id.to_string();
    let out = m
        .hub
        .cli(&["image", "pull", &image(), "--endpoint", &endpoint, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = created["id"].as_i64().unwrap().to_string();
    let pull_state = || -> JobDevice {
        let detail: JobDetail = m.hub.cli_json(&["job", "show", &job, "--json"]);
        detail.devices[0].clone()
    };
    wait_for(Duration::from_secs(60), "the pull job deferred", || {
        let device = pull_state();
        assert_ne!(device.state, "failed", "{device:?}\n{}", m.agent.log());
        let progress = device.progress?;
        (progress.deferred == Some(DeferCause::Window)).then_some(())
    });

    // An admin opens the window now: the hub tells the agent, which goes on at once.
    let open = format!("{}-{}", local_time_in(-60), local_time_in(60));
    let set = m.hub.cli(&["window", "set", &open, "--fleet"]);
    assert!(set.status.success(), "{set:?}");
    let done = stacks::wait_rollout(&m.hub, rollout, Duration::from_secs(90), |r| {
        r.summary.state != "running"
    });
    assert_eq!(
        done.summary.state,
        "completed",
        "{done:#?}\n{}",
        m.agent.log()
    );
    wait_for(Duration::from_secs(60), "the pull job done", || {
        (pull_state().state == "succeeded").then_some(())
    });
    let size = m
        .engine
        .ok(&["run", "--rm", &image(), "stat", "-c", "%s", "/blob1"]);
    assert_eq!(size.trim(), LAYER_BYTES.to_string());
    assert!(
        m.agent.log().contains("the transfer window changed"),
        "{}",
        m.agent.log()
    );
}

#[test]
fn budgets_refuse_bad_input_and_need_an_admin() {
    let hub = Hub::start();
    let (id, _) = hub.create_endpoint("kiosk", &["--group", "berlin"]);
    let endpoint = id.to_string();
    for (args, words) in [
        (vec!["--endpoint", "9999"], "does not exist"),
        (vec!["--group", "bad,name"], "cannot contain"),
    ] {
        let mut all = vec!["budget", "set", "5MB"];
        all.extend_from_slice(&args);
        let out = hub.cli(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(words),
            "{args:?}: {stderr}"
        );
    }
    let bad_unit = hub.cli(&["budget", "set", "5 furlongs", "--fleet"]);
    assert!(!bad_unit.status.success());
    let answer = hub.api_call(
        "PUT",
        "/api/budgets",
        Some(serde_json::json!({"scope": "fleet", "name": "x", "bytes": 5})),
    );
    assert_eq!(answer.status, 400, "{answer:?}");
    let answer = hub.api_call(
        "PUT",
        "/api/budgets",
        Some(serde_json::json!({"scope": "planet", "bytes": 5})),
    );
    assert_eq!(answer.status, 400, "{answer:?}");
    let said = String::from_utf8_lossy(&answer.body).into_owned();
    assert!(said.contains("fleet, group or endpoint"), "{said}");
    let nothing: Vec<Value> = hub.cli_json(&["budget", "list", "--json"]);
    assert!(nothing.is_empty(), "nothing stored: {nothing:?}");

    // An operator may not set one; an admin may, and the device shows it applied.
    let operator = hub.cli(&["token", "create", "ops", "--role", "operator"]);
    let token = String::from_utf8_lossy(&operator.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("opt_"))
        .unwrap()
        .to_owned();
    let body = serde_json::json!({"scope": "group", "name": "berlin", "bytes": 5_000_000});
    let refused = hub.api_call_as(&token, "PUT", "/api/budgets", Some(body.clone()));
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(hub.api_call("PUT", "/api/budgets", Some(body)).status, 200);
    let shown = hub.show(id);
    assert_eq!(shown["traffic"]["budget"]["bytes"], 5_000_000, "{shown}");
    assert_eq!(
        shown["traffic"]["budget"]["set_on"], "group berlin",
        "{shown}"
    );
    assert_eq!(shown["traffic"]["deferred"], Value::Null, "{shown}");
    let own = hub.cli(&["budget", "set", "1MB", "--endpoint", &endpoint]);
    assert!(own.status.success(), "{own:?}");
    assert_eq!(
        hub.show(id)["traffic"]["budget"]["set_on"],
        format!("endpoint {id}")
    );
    let removed = hub.cli(&["budget", "remove", "--endpoint", &endpoint]);
    assert!(removed.status.success(), "{removed:?}");
    let again = hub.cli(&["budget", "remove", "--endpoint", &endpoint]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("has no budget"),
        "{again:?}"
    );
    // The hub still serves.
    assert_eq!(hub.show(id)["traffic"]["budget"]["set_on"], "group berlin");
}
