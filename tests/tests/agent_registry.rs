//! The device's loopback registry (issue #16 item 2): the operator orders `outpost/big:1` onto a
//! device (`image pull`), the device's engine pulls `127.0.0.1:5380/outpost/big:1` from its
//! agent, and the agent fetches what the engine lacks from the hub's mirror over QUIC fetch
//! streams — resuming a cut blob from the byte it stopped at when an admin then runs `docker pull`
//! through the hub's Docker proxy.
//!
//! Every part is real. The netns rig (`netem/rig.sh`) has Debian's `docker-registry` and the hub
//! (`--registry`) in its hub namespace, and the agent with its own `dockerd` in its agent
//! namespace, so the QUIC connection crosses the emulated link (8 Mbit/s, 40 ms round trip: the
//! ~20 MB layer takes ~20 s) and the engine's `127.0.0.1` is the agent's. The big image (a random,
//! incompressible 20 MB layer on the test image) is built in the device's engine, pushed while the
//! link is transparent, and removed, so the pull must fetch its top layer again.
//!
//! Mid-layer the link goes dark for a few seconds (QUIC waits it out), then the agent is killed
//! like a power cut — the pre-pull is interrupted — and restarted. The `.partial` file
//! it left is where the second pull's transfer starts: the hub logs a blob resumed from that
//! offset, and counts it (`outpost_hub_mirror_agent_fetches_total{start="resumed"}`). Afterwards the image is on the device's engine and runs, the registry's access log
//! shows each blob fetched once, and the bytes the kernel counted on the device's link are within
//! 5 % of the blobs that had to cross (UDP payload; the figures are printed).
//!
//! Then a stack naming the image by its upstream name (`198.18.0.1:5000/outpost/big:1`) is
//! deployed: the agent pulls it through its registry as well and tags it with that name.
//!
//! While the layer flows, `docker ps` through the hub is timed against idle: fetch streams are sent
//! at a lower priority than proxy streams, and the test allows two round trips (one measured).
//!
//! A second test needs no rig: a blob whose bytes do not match its digest (the mirror's
//! corrupting test upstream from `mirror.rs`, a labelled test double, its image ordered onto the
//! device) is refused by the agent's registry with `DIGEST_INVALID`, and nothing of it is kept on
//! the device.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::disallowed_methods)] // wall-clock waits from a plain test thread

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use outpost_tests::admin_api::block_on;
use outpost_tests::docker::{require_engine, DockerCli};
use outpost_tests::dockerd::Dockerd;
use outpost_tests::oci::sha256;
use outpost_tests::registry::{
    free_loopback, push_random_image, start_agent, wait_granted, CorruptingUpstream, Registry,
};
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::stacks;
use outpost_tests::{command_in, metric, wait_for, Agent, Hub};

/// The random bytes of the big image's top layer.
const LAYER_BYTES: u64 = 20_000_000;
/// The device's link while it pulls: 8 Mbit/s each way, 40 ms round trip.
const SLOW: &str = "description = \"agent registry test: 8 Mbit/s, 40 ms RTT\"
[both]
delay = \"20ms\"
[up]
rate = \"8mbit\"
queue = \"256KB\"
[down]
rate = \"8mbit\"
queue = \"256KB\"
";
/// The link's round trip in [`SLOW`].
const RTT: Duration = Duration::from_millis(40);
/// The agent's registry, at its documented default.
const LOOPBACK: &str = "127.0.0.1:5380";
const REPO: &str = "outpost/big";

fn upstream_addr() -> String {
    format!("{HUB_IP}:5000")
}

/// The device: a rig with the registry and hub on its hub side, an engine and an agent on its
/// agent side. Fields drop in order: processes first, then the engine, registry and rig.
struct Device {
    agent: Agent,
    agent_dir: PathBuf,
    key: String,
    id: u64,
    hub: Hub,
    docker: DockerCli,
    engine: Dockerd,
    registry: Registry,
    rig: Rig,
    dir: tempfile::TempDir,
}

impl Device {
    fn start() -> Self {
        require_engine();
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::up(
            &format!("oreg{}", std::process::id() % 100_000),
            "transparent",
        );
        let (registry, engine) = Registry::with_engine(&rig, &upstream_addr());
        let image = format!("{}/{REPO}:1", upstream_addr());
        let big = dir.path().join("big");
        push_random_image(&engine, &big, &image, &[("/blob", LAYER_BYTES)]);
        let agent_addr = format!("{HUB_IP}:4433");
        let upstream = format!("http://{}", upstream_addr());
        let hub = Hub::start_in_netns(
            &rig.netns("hub"),
            dir.path().join("hub"),
            &agent_addr,
            &format!("{HUB_IP}:9443"),
            &["--public-addr", &agent_addr, "--registry", &upstream],
        );
        let (id, key) = hub.create_endpoint("kiosk", &[]);
        let agent_dir = dir.path().join("agent");
        let mut device = Self {
            agent: start_agent(&rig, &agent_dir, &key, &engine, LOOPBACK),
            agent_dir,
            key,
            id,
            docker: DockerCli::for_endpoint(&hub, id),
            hub,
            engine,
            registry,
            rig,
            dir,
        };
        device
            .hub
            .wait_status(id, "standby", Duration::from_secs(30));
        device.wait_registry_granted(1);
        let slow = device.dir.path().join("slow.toml");
        std::fs::write(&slow, SLOW).unwrap();
        device.rig.ctl(&["profile", slow.to_str().unwrap()]);
        device
    }

    /// Wait until the agent's `n`th session was granted fetch streams.
    fn wait_registry_granted(&mut self, n: usize) {
        wait_for(
            Duration::from_secs(30),
            "the hub to grant fetch streams",
            || {
                let log = self.agent.log();
                (log.matches("the hub serves its registry mirror").count() >= n).then_some(())
            },
        );
    }

    /// Bytes the kernel counted on the device's side of the link: (received, sent, packets).
    fn link_bytes(&self) -> (u64, u64, u64) {
        let read = |name: &str| -> u64 {
            let out = command_in(Some(&self.rig.netns("agent")), "cat")
                .arg(format!("/sys/class/net/eth0/statistics/{name}"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let packets = read("rx_packets") + read("tx_packets");
        (read("rx_bytes"), read("tx_bytes"), packets)
    }

    fn blobs_dir(&self) -> PathBuf {
        self.agent_dir.join("registry").join("blobs")
    }

    /// The largest `.partial` file's length, if one is there.
    fn partial_len(&self) -> Option<u64> {
        std::fs::read_dir(self.blobs_dir())
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .max()
    }

    /// Complete blobs on the device: (digest, size).
    fn complete_blobs(&self) -> Vec<(String, u64)> {
        let entries = std::fs::read_dir(self.blobs_dir())
            .unwrap()
            .filter_map(Result::ok);
        entries
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".partial"))
            .map(|e| {
                let name = format!("sha256:{}", e.file_name().to_string_lossy());
                (name, e.metadata().unwrap().len())
            })
            .collect()
    }

    /// The median of three `docker ps` through the hub.
    fn ps_latency(&self) -> Duration {
        let mut times: Vec<Duration> = (0..3)
            .map(|_| {
                let started = Instant::now();
                self.docker.ok(&["ps"]);
                started.elapsed()
            })
            .collect();
        times.sort();
        times[1]
    }

    /// The operator pre-pulls the image onto the device (`image pull`): the order that lets the
    /// device fetch it through the hub, and the first pull.
    fn order_pull(&self) {
        let image = format!("{REPO}:1");
        let endpoint = self.id.to_string();
        let out = self
            .hub
            .cli(&["image", "pull", &image, "--endpoint", &endpoint]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pull(&self) -> Child {
        let image = format!("{LOOPBACK}/{REPO}:1");
        let mut command = self.docker.command(&["pull", &image]);
        command.stdout(std::process::Stdio::null());
        command.spawn().unwrap()
    }
}

/// The offsets the hub logged resuming blobs for agents.
fn resumed_offsets(hub_log: &str) -> Vec<u64> {
    let lines = hub_log
        .lines()
        .filter(|l| l.contains("resuming a blob for an agent"));
    lines
        .filter_map(|l| {
            l.split("offset=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// GETs of `digest` the upstream registry answered with 200.
fn upstream_gets(registry: &Registry, digest: &str) -> usize {
    let line = format!("\"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\" 200");
    registry.log().matches(&line).count()
}

#[test]
fn a_pull_through_the_agent_resumes_across_an_outage_and_an_agent_restart() {
    let started = Instant::now();
    let mut d = Device::start();
    let idle = d.ps_latency();
    let before = d.link_bytes();

    // First pull, the operator's pre-pull: the layer starts to flow; the link goes dark, then the
    // agent dies mid-layer.
    d.order_pull();
    wait_for(Duration::from_secs(60), "the layer to flow", || {
        (d.partial_len()? >= LAYER_BYTES / 6).then_some(())
    });
    // Only the blob is sending: the hub's sender keeps the device's queue short for the admin.
    let sender = d.hub.show(d.id)["sender"].clone();
    assert_eq!(sender["yielding"], true, "while the layer flows: {sender}");
    // Fetch streams yield to proxy streams: an admin's `docker ps` meanwhile.
    let busy = d.ps_latency();
    eprintln!("docker ps through the hub: idle {idle:?}, during the transfer {busy:?}");
    assert!(
        busy <= idle + 2 * RTT,
        "docker ps waited behind the layer: idle {idle:?}, busy {busy:?}"
    );
    let third = LAYER_BYTES / 3;
    wait_for(Duration::from_secs(60), "a third of the layer", || {
        (d.partial_len()? >= third).then_some(())
    });
    d.rig.ctl(&["outage", "5s"]);
    std::thread::sleep(Duration::from_secs(5));
    let grown = third * 2;
    wait_for(
        Duration::from_secs(60),
        "two thirds after the outage",
        || (d.partial_len()? >= grown).then_some(()),
    );
    d.agent.kill();
    let kept = d.partial_len().unwrap();
    // The engine lost its client with the agent and cancelled its pull; the restarted agent
    // reports the job interrupted rather than run it again.
    eprintln!("agent killed with {kept} bytes of the layer on disk");

    // The agent comes back; the admin's pull through the hub (the image is still ordered onto
    // the device) finishes from where the first stopped.
    d.agent = start_agent(&d.rig, &d.agent_dir, &d.key, &d.engine, LOOPBACK);
    d.wait_registry_granted(1);
    let status = d.pull().wait().unwrap();
    let after = d.link_bytes();
    assert!(status.success(), "second pull:\n{}", d.agent.log());

    let offsets = resumed_offsets(&d.hub.log());
    assert!(
        offsets.iter().any(|&o| o >= kept),
        "the hub resumed the layer from the agent's {kept} bytes: {offsets:?}"
    );
    let blobs = d.complete_blobs();
    let crossed: u64 = blobs.iter().map(|(_, size)| size).sum();
    assert!(crossed >= LAYER_BYTES, "{blobs:?}");
    for (digest, _) in &blobs {
        assert_eq!(
            upstream_gets(&d.registry, digest),
            1,
            "{digest} fetched upstream once"
        );
    }
    assert_eq!(d.partial_len(), None, "no partial file is left");
    // The hub's counters say the same: one upstream fetch per blob, a resumed agent fetch.
    let metrics = d.hub.metrics();
    let fetched = format!(
        "outpost_hub_mirror_upstream_fetches_total{{kind=\"blob\"}} {}\n",
        blobs.len()
    );
    assert!(metrics.contains(&fetched), "{fetched} in:\n{metrics}");
    let resumed = metric(
        &metrics,
        "outpost_hub_mirror_agent_fetches_total{start=\"resumed\"}",
    );
    assert!(resumed >= 1, "a resumed agent fetch in:\n{metrics}");

    // The engine has the image and runs it.
    let image = format!("{LOOPBACK}/{REPO}:1");
    let size = d
        .engine
        .ok(&["run", "--rm", &image, "stat", "-c", "%s", "/blob"]);
    assert_eq!(size.trim(), LAYER_BYTES.to_string());

    // A stack naming the image by its upstream name pulls it through the agent's registry too
    // (only the manifest crosses: the engine has the layers) and runs it under that name.
    let upstream_image = format!("{}/{REPO}:1", upstream_addr());
    let compose = format!(
        "services:\n  app:\n    image: {upstream_image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
    );
    stacks::save(&d.hub, d.dir.path(), "depot", &compose);
    let endpoint = d.id.to_string();
    let rollout = stacks::deploy(&d.hub, "depot", &["--endpoint", &endpoint, "--soak", "1s"]);
    let done = stacks::wait_rollout(&d.hub, rollout, Duration::from_secs(90), |r| {
        r.summary.state != "running"
    });
    assert_eq!(
        done.summary.state,
        "completed",
        "{done:#?}\n{}",
        d.agent.log()
    );
    assert!(
        d.agent.log().contains("pulled through the hub's mirror"),
        "{}",
        d.agent.log()
    );
    d.engine.ok(&["image", "inspect", &upstream_image]);
    // No blob is sending any more: the sender goes back to the rate it measured.
    wait_for(
        Duration::from_secs(60),
        "the sender to stop yielding",
        || (d.hub.show(d.id)["sender"]["yielding"] == false).then_some(()),
    );

    // The device's link carried the blobs once, plus the transport's framing.
    let (rx, tx, packets) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let headers = packets * 42; // Ethernet 14 + IPv4 20 + UDP 8 per frame
    let payload = (rx + tx).saturating_sub(headers);
    let ratio = payload as f64 / crossed as f64;
    eprintln!(
        "blobs crossed {crossed} B; link rx {rx} B, tx {tx} B in {packets} frames; UDP payload \
         {payload} B = {ratio:.3} x the blobs; frames on the wire {:.3} x; {:?} in all",
        (rx + tx) as f64 / crossed as f64,
        started.elapsed()
    );
    assert!(
        ratio <= 1.05,
        "the device's link carried {ratio:.3} x the blobs"
    );
}

#[test]
fn a_blob_that_fails_its_digest_is_refused_and_never_kept_on_the_device() {
    let corrupting = CorruptingUpstream::start();
    let hub = Hub::start_with_flags(&["--registry", &format!("http://{}", corrupting.addr)]);
    let (till, key) = hub.create_endpoint("till", &[]);
    // The image is ordered onto the device (its engine here is the test engine, which cannot
    // reach this registry: the job fails, the order stands until it expires).
    let image = format!("{}/evil/app:1", corrupting.addr);
    let ordered = hub.cli(&["image", "pull", &image, "--endpoint", &till.to_string()]);
    assert!(
        ordered.status.success(),
        "{}",
        String::from_utf8_lossy(&ordered.stderr)
    );
    let listen = free_loopback();
    let agent_dir = hub.data_dir.parent().unwrap().join("agent");
    let agent = Agent::start(
        &agent_dir,
        &[("EDGE_KEY", &key), ("OUTPOST_REGISTRY_LISTEN", &listen)],
    );
    wait_granted(&agent);

    // What the engine would ask: the blob, by the name that routes to the corrupting upstream.
    let digest = sha256(CorruptingUpstream::LAYER);
    let url = format!(
        "http://{listen}/v2/{}/evil/app/blobs/{digest}",
        corrupting.addr
    );
    let (status, body) = block_on(async {
        let response = reqwest::get(&url).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("DIGEST_INVALID") && body.contains("digest mismatch"),
        "{body}"
    );
    let blobs = agent_dir.join("registry").join("blobs");
    let kept: Vec<_> = std::fs::read_dir(&blobs).unwrap().collect();
    assert!(
        kept.is_empty(),
        "nothing of the bad blob is on the device: {kept:?}"
    );
    assert_eq!(corrupting.gets.load(Ordering::SeqCst), 1);
    assert!(
        hub.log().contains("fetch refused (Corrupt)"),
        "{}",
        hub.log()
    );
}

#[test]
fn a_hub_without_a_mirror_grants_nothing_and_the_engine_is_told_at_once() {
    // What a hub that predates fetch streams does too: it ignores the REGISTRY bit.
    let hub = Hub::start();
    let (_, key) = hub.create_endpoint("plain", &[]);
    let listen = free_loopback();
    let agent_dir = hub.data_dir.parent().unwrap().join("agent");
    let agent = Agent::start(
        &agent_dir,
        &[("EDGE_KEY", &key), ("OUTPOST_REGISTRY_LISTEN", &listen)],
    );
    wait_for(Duration::from_secs(30), "a session", || {
        agent.log().contains("session established").then_some(())
    });
    std::thread::sleep(Duration::from_secs(6));
    let asked = Instant::now();
    let url = format!("http://{listen}/v2/pos/web/manifests/1");
    let (status, body) = block_on(async {
        let response = reqwest::get(&url).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("UNAVAILABLE") && body.contains("--registry"),
        "{body}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(!agent.log().contains("the hub serves its registry mirror"));
    assert!(
        !agent.log().contains("reconnecting"),
        "the session stays up"
    );
}
