//! A stack's new image pulled over a slow link that goes dark in the middle of the pull (issue
//! #15): afterwards the device runs the old version or the new one, healthy — never a mix — as
//! the engine's own container list says.
//!
//! Every part is real. The netns rig (`netem/rig.sh`) puts Debian's `docker-registry` (2.8) in
//! its hub namespace at 198.18.0.1:5000 and an extra `dockerd` (20.10) in its agent namespace,
//! with the userspace emulator between them. The hub and the agent run on loopback outside the rig
//! (the agent reaches its engine through the engine's unix socket), so only the engine's pull
//! crosses the emulated link. A ~25 MB image of random bytes (incompressible) is built in that
//! engine, pushed while the link is transparent, and removed locally, so v2 must pull it.
//!
//! v1 (two services on the local test image) ends healthy. v2 moves `app` to the big image; the
//! link drops to 10 Mbit/s (~20 s for the layer), and once the device reports `pulling` with
//! bytes done the link is cut for 20 s, long enough for TCP's retransmission timer to back off
//! several times (the emulator's counters show the drops). While it is cut, the device still
//! says `pulling` (slow is not failed) and the engine runs v1's containers, untouched.
//!
//! **What the engine does:** it waits the outage out. Neither dockerd 20.10's registry client
//! (dial and TLS timeouts only, none on reading a body) nor the registry (no write timeout) gives
//! up on a stalled transfer, nor does the agent (its engine requests may take 12 h), and TCP
//! keeps retransmitting for ~15 min (`tcp_retries2`) before it would reset a connection. So the
//! same blob request carries on once a retransmission gets through — its timer has backed off
//! by then, so the pull moves again 20–30 s after the link is back — and dockerd's download
//! retry (a range request after a connection error) never runs: in every run so far the engine
//! logged no retry and the registry served the layer once, `200` with all its bytes (both are
//! printed). The outcome is therefore deterministic and asserted as such: v2 healthy — `app`
//! replaced by a container of the big image, `web` (unchanged) keeping its container — the
//! rollout completed, and nothing else in the project: no set-aside container left, no v1
//! container running. About 85 s, most of it the outage and TCP's wait after it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::disallowed_methods)] // wall-clock waits from a plain test thread

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use outpost_api::{RolloutDetail, RolloutTarget};
use outpost_tests::docker::{require_engine, TEST_IMAGE};
use outpost_tests::dockerd::Dockerd;
use outpost_tests::registry::{push_random_image, Registry};
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::stacks::{self, project_rows, ProjectRow as Row};
use outpost_tests::{wait_for, Agent, Hub};

/// Bytes of random data in the big image's top layer.
const BLOB_BYTES: u64 = 25_000_000;
/// The link while v2 pulls: 10 Mbit/s each way, 20 ms each way (~20 s for the layer).
const SLOW: &str = "description = \"pull outage test: 10 Mbit/s, 40 ms RTT\"
[both]
delay = \"20ms\"
[up]
rate = \"10mbit\"
queue = \"256KB\"
[down]
rate = \"10mbit\"
queue = \"256KB\"
";
/// The outage, mid-pull.
const OUTAGE: Duration = Duration::from_secs(20);
/// An apply without a pull, and its soak, on a busy machine.
const CONVERGE: Duration = Duration::from_secs(60);
/// The whole v2 rollout: the pull (~20 s), the outage and TCP's backed-off retransmission.
const SETTLE: Duration = Duration::from_secs(300);
const PROJECT: &str = "depot";

fn registry_addr() -> String {
    format!("{HUB_IP}:5000")
}

fn big_image() -> String {
    format!("{}/outpost/big:1", registry_addr())
}

/// web: unchanged across versions. app: v1 on the test image, v2 on the big one, healthy once
/// the big layer's file is whole. Both exit at once on SIGTERM.
fn compose(app_image: &str, release: &str) -> String {
    format!(
        "services:
  web:
    image: {TEST_IMAGE}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; mkdir -p /www; httpd -f -p 80 -h /www & wait\"]
    healthcheck:
      test: [\"CMD-SHELL\", \"true\"]
      interval: 1s
      retries: 2
  app:
    image: {app_image}
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]
    environment:
      RELEASE: {release}
    depends_on: [web]
    healthcheck:
      test: [\"CMD-SHELL\", \"test ! -e /blob || test $$(wc -c </blob) -eq {BLOB_BYTES}\"]
      interval: 1s
      retries: 2
"
    )
}

/// Build `FROM test image` + 25 MB of `/dev/urandom` in `engine`, push it to the registry across
/// the (transparent) link, and remove it locally so that only a pull brings it back.
fn push_big_image(engine: &Dockerd, dir: &Path) {
    let image = big_image();
    push_random_image(engine, &dir.join("big"), &image, &[("/blob", BLOB_BYTES)]);
    let gone = engine.docker(&["image", "inspect", &image]);
    assert!(!gone.status.success(), "{image} is no longer on the engine");
}

/// The rig with a registry on its hub side and an engine on its agent side (the big image
/// pushed), and a hub and an agent on loopback managing that engine. Fields drop in order:
/// processes first, then the engine, the registry, the rig's namespaces, the directory.
struct Depot {
    _agent: Agent,
    hub: Hub,
    endpoint: u64,
    engine: Dockerd,
    registry: Registry,
    rig: Rig,
    dir: tempfile::TempDir,
}

impl Depot {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::up(
            &format!("opull{}", std::process::id() % 100_000),
            "transparent",
        );
        let (registry, engine) = Registry::with_engine(&rig, &registry_addr());
        push_big_image(&engine, dir.path());
        let hub = Hub::start();
        let (endpoint, key) = hub.create_endpoint("depot", &[]);
        let host = engine.host();
        let agent_dir = hub.data_dir.parent().unwrap().join("agent");
        let agent = Agent::start(&agent_dir, &[("EDGE_KEY", &key), ("DOCKER_HOST", &host)]);
        hub.wait_status(endpoint, "standby", Duration::from_secs(20));
        Self {
            _agent: agent,
            hub,
            endpoint,
            engine,
            registry,
            rig,
            dir,
        }
    }

    /// Store the next version of the stack; each service's config hash in it, from the hub's
    /// own record.
    fn save(&self, compose: &str) -> BTreeMap<String, String> {
        let saved = stacks::save(&self.hub, self.dir.path(), PROJECT, compose);
        stacks::config_hashes(&self.hub, PROJECT, saved.version)
    }

    /// `stack deploy --endpoint ID --soak 2s`: the rollout's id.
    fn deploy(&self) -> i64 {
        let endpoint = self.endpoint.to_string();
        stacks::deploy(
            &self.hub,
            PROJECT,
            &["--endpoint", &endpoint, "--soak", "2s"],
        )
    }

    /// The device's target in rollout `id`.
    fn target(&self, id: i64) -> RolloutTarget {
        stacks::rollout(&self.hub, id).targets.remove(0)
    }

    /// Wait until rollout `id` is no longer `running`, showing `watch` each view of the device.
    fn wait_settled(
        &self,
        id: i64,
        within: Duration,
        mut watch: impl FnMut(&RolloutTarget),
    ) -> RolloutDetail {
        stacks::wait_rollout(&self.hub, id, within, |detail| {
            watch(&detail.targets[0]);
            detail.summary.state != "running"
        })
    }

    /// Deploy v1 (the test image only) and see it healthy: the engine's containers and the
    /// hub's hashes of v1.
    fn v1_healthy(&self) -> (Vec<Row>, BTreeMap<String, String>) {
        let hashes = self.save(&compose(TEST_IMAGE, "one"));
        let done = self.wait_settled(self.deploy(), CONVERGE, |_| {});
        assert_eq!(done.summary.state, "completed", "{done:#?}");
        assert_eq!(done.targets[0].state, "healthy", "{done:#?}");
        let v1 = self.rows();
        let seen: BTreeMap<String, String> = v1
            .iter()
            .map(|r| (r.service.clone(), r.hash.clone()))
            .collect();
        assert_eq!(seen, hashes, "the engine runs v1: {v1:#?}");
        assert!(v1.iter().all(|r| r.state == "running"), "{v1:#?}");
        (v1, hashes)
    }

    /// Cut the link for [`OUTAGE`] while rollout `id` pulls; until just before it ends, check
    /// every second that the device still says `pulling` and the engine runs `v1` untouched;
    /// assert the emulator dropped packets for it. When it was cut.
    fn cut_link_mid_pull(&self, id: i64, v1: &[Row], v2: &BTreeMap<String, String>) -> Instant {
        self.rig.ctl(&["outage", &format!("{}s", OUTAGE.as_secs())]);
        let cut = Instant::now();
        let mut pulled = Vec::new();
        while cut.elapsed() < OUTAGE - Duration::from_secs(2) {
            let t = self.target(id);
            assert_eq!(t.state, "pulling", "slow is not failed: {t:#?}");
            let now = self.rows();
            let untouched = outcome(&now, v1, v2);
            assert_eq!(
                untouched,
                Ok(Outcome::Old),
                "v1 runs during the pull: {now:#?}"
            );
            if !pulled.contains(&t.pulled) {
                pulled.push(t.pulled);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let counters = self.rig.ctl(&["counters"]);
        eprintln!("during the outage: v1 untouched, pulled {pulled:?}\n{counters}");
        assert!(
            outage_drops(&counters) > 0,
            "the outage dropped nothing: {counters}"
        );
        cut
    }

    /// `docker ps -a` on the engine, the project's containers only, by service.
    fn rows(&self) -> Vec<Row> {
        project_rows(&self.engine.host(), PROJECT).expect("the engine answers")
    }

    /// What the registry served of the big image: its blob requests, as it logged them.
    fn blob_requests(&self) -> Vec<String> {
        let log = self.registry.log();
        let requests = log.lines().filter_map(|l| {
            let at = l.find("\"GET /v2/outpost/big/blobs/")?;
            let (request, _user_agent) = l[at..].split_once(" \"\" ")?;
            Some(request.to_owned())
        });
        requests.collect()
    }

    /// The engine's log lines about retried downloads.
    fn engine_retries(&self) -> Vec<String> {
        let log = self.engine.log();
        let retries = log.lines().filter(|l| l.contains("retrying"));
        retries.map(str::to_owned).collect()
    }
}

/// Which version the engine runs.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// v1's own containers, all running.
    Old,
    /// One running container per service, each with v2's config.
    New,
}

/// What `now` is, given v1's containers and v2's hashes; why it is neither, if it is a mix.
fn outcome(now: &[Row], v1: &[Row], v2: &BTreeMap<String, String>) -> Result<Outcome, String> {
    let expected: Vec<String> = v2.keys().map(|s| format!("{PROJECT}-{s}-1")).collect();
    let mut names: Vec<String> = now.iter().map(|r| r.name.clone()).collect();
    names.sort();
    if names != expected {
        return Err(format!(
            "containers {names:?}, not one per service {expected:?}"
        ));
    }
    if let Some(stopped) = now.iter().find(|r| r.state != "running") {
        return Err(format!("{} is {}", stopped.name, stopped.state));
    }
    let ids = |rows: &[Row]| -> Vec<(String, String)> {
        rows.iter()
            .map(|r| (r.id.clone(), r.hash.clone()))
            .collect()
    };
    if ids(now) == ids(v1) {
        return Ok(Outcome::Old);
    }
    let hashes: BTreeMap<String, String> = now
        .iter()
        .map(|r| (r.service.clone(), r.hash.clone()))
        .collect();
    if &hashes == v2 {
        return Ok(Outcome::New);
    }
    Err("running containers of both versions".to_owned())
}

/// Packets the emulator dropped for an outage, both ways, from `rig.sh ctl counters`.
fn outage_drops(counters: &str) -> u64 {
    let drops = |line: &str| -> Option<u64> {
        let rules = line.split_whitespace().last()?;
        rules.split('/').nth(2)?.parse().ok()
    };
    let directions = counters
        .lines()
        .filter(|l| l.starts_with("up ") || l.starts_with("down "));
    directions.filter_map(drops).sum()
}

#[test]
fn an_outage_mid_pull_is_waited_out_and_ends_with_v2_healthy_never_a_mix() {
    require_engine();
    let started = Instant::now();
    let d = Depot::start();
    eprintln!(
        "rig, registry, engine (image pushed), hub and agent up at {:?}",
        started.elapsed()
    );

    // v1: healthy, completed; the engine runs both services as the hub's v1.
    let (v1, v1_hashes) = d.v1_healthy();
    eprintln!("v1 healthy at {:?}", started.elapsed());

    // v2 moves app to the big image; the link slows to 10 Mbit/s; the device starts pulling.
    let v2_hashes = d.save(&compose(&big_image(), "two"));
    assert_eq!(v2_hashes["web"], v1_hashes["web"]);
    assert_ne!(v2_hashes["app"], v1_hashes["app"]);
    let slow = d.dir.path().join("slow-pull.toml");
    std::fs::write(&slow, SLOW).unwrap();
    d.rig.ctl(&["profile", slow.to_str().unwrap()]);
    let second = d.deploy();
    let deployed = Instant::now();
    let before = wait_for(CONVERGE, "the device to report pull progress", || {
        let t = d.target(second);
        t.pulled
            .filter(|[done, _]| t.state == "pulling" && *done > 0)
    });
    assert!(
        before[0] < BLOB_BYTES / 2,
        "the pull is early on: {before:?}"
    );

    // The link goes dark for 20 s: the device keeps pulling, the engine keeps v1 running.
    let cut = d.cut_link_mid_pull(second, &v1, &v2_hashes);

    // It settles on v2, healthy: app replaced with the big image, web untouched, nothing else.
    let mut resumed = None;
    let settled = d.wait_settled(second, SETTLE, |t| {
        let moved = t
            .pulled
            .map_or(t.state != "pulling", |[done, _]| done > before[0]);
        if moved && resumed.is_none() {
            resumed = Some(cut.elapsed().saturating_sub(OUTAGE));
        }
    });
    eprintln!(
        "v2 {} {:?} after the deploy; the link was cut {:?} after it, {before:?} bytes pulled; \
         the pull moved again {resumed:?} after the link came back; engine retries {:?}; \
         registry blob requests {:#?}\n{}",
        settled.summary.state,
        deployed.elapsed(),
        cut.duration_since(deployed),
        d.engine_retries(),
        d.blob_requests(),
        d.rig.ctl(&["counters"])
    );
    let end = d.rows();
    assert_eq!(
        outcome(&end, &v1, &v2_hashes),
        Ok(Outcome::New),
        "{end:#?}\n{settled:#?}"
    );
    assert_eq!(settled.summary.state, "completed", "{settled:#?}");
    assert_eq!(settled.targets[0].state, "healthy", "{settled:#?}");
    assert_eq!(
        (end[0].service.as_str(), end[0].image.clone()),
        ("app", big_image())
    );
    assert!(
        end.iter().all(|r| r.status.contains("(healthy)")),
        "{end:#?}"
    );
    assert_eq!(end[1].id, v1[1].id, "web kept its container");
    assert_ne!(end[0].id, v1[0].id, "app was replaced");
    eprintln!("done at {:?}", started.elapsed());
}

/// The outcome check itself, on made-up listings: it must catch what the test guards against.
#[test]
fn an_outcome_is_all_v1_or_all_v2_and_nothing_else() {
    let row = |id: &str, service: &str, hash: &str, state: &str| Row {
        id: id.to_owned(),
        name: format!("{PROJECT}-{service}-1"),
        service: service.to_owned(),
        hash: hash.to_owned(),
        image: String::new(),
        state: state.to_owned(),
        status: String::new(),
    };
    let v1 = vec![
        row("1", "app", "a1", "running"),
        row("2", "web", "w", "running"),
    ];
    let v2 = BTreeMap::from([
        ("app".to_owned(), "a2".to_owned()),
        ("web".to_owned(), "w".to_owned()),
    ]);
    let new = vec![row("3", "app", "a2", "running"), v1[1].clone()];
    assert_eq!(outcome(&v1, &v1, &v2), Ok(Outcome::Old));
    assert_eq!(outcome(&new, &v1, &v2), Ok(Outcome::New));
    let stopped = vec![row("1", "app", "a1", "exited"), v1[1].clone()];
    assert!(outcome(&stopped, &v1, &v2).is_err_and(|why| why.contains("exited")));
    let mut aside = new.clone();
    aside.push(Row {
        name: format!("{PROJECT}-app-1-outpost-previous-1"),
        ..v1[0].clone()
    });
    assert!(outcome(&aside, &v1, &v2).is_err_and(|why| why.contains("not one per service")));
    // v2 changes both: v1's app beside v2's web.
    let both = BTreeMap::from([
        ("app".to_owned(), "a2".to_owned()),
        ("web".to_owned(), "w2".to_owned()),
    ]);
    let mix = vec![v1[0].clone(), row("4", "web", "w2", "running")];
    assert_eq!(
        outcome(&mix, &v1, &both),
        Err("running containers of both versions".to_owned())
    );
}

#[test]
fn outage_drops_are_read_from_the_counters() {
    let counters = "ok\n\
        dir    submitted       sent    dropped    delayed  queue-hw(B)  drops: loss/queue/outage/mtu/rule\n\
        up          100         90         10          0            0  0/3/7/0/0\n\
        down        200        150         50          0            0  1/0/49/0/0\n\
        nat: …";
    assert_eq!(outage_drops(counters), 56);
}
