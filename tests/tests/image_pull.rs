//! `outpost-hub image pull` (issue #16 item 3): an operator pre-pulls an image across a group of
//! devices; each device's engine pulls it from its agent's loopback registry, the agent reports
//! bytes pulled while it runs, and a device that is offline waits `queued` and pulls when it
//! connects.
//!
//! Real parts throughout: the netns rig with the device's link at 8 Mbit/s and 40 ms (so a pull
//! takes long enough to be watched), a hub that reaches no registry holding an image pushed with
//! `image push` (a `docker save` of a multi-layer image built on the device's `dockerd`), and two
//! agents in the device namespace sharing that engine (two devices on one test bench), each with
//! its loopback registry on its own port. The first connects before the push: the hub, holding
//! nothing then, grants its registry with the pull job. A third device's agent runs no loopback registry (as
//! an agent from before pull jobs announces no `IMAGE_PULL`): it is not sent the job, and fails
//! at once saying to upgrade it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::disallowed_methods)] // wall-clock waits from a plain test thread

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_api::JobDetail;
use outpost_tests::docker::{require_engine, TEST_IMAGE};
use outpost_tests::dockerd::Dockerd;
use outpost_tests::registry::{start_agent, wait_granted};
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::{wait_for, Hub};

/// The device's link while it pulls: 8 Mbit/s each way, 40 ms round trip.
const SLOW: &str = "description = \"image pull test: 8 Mbit/s, 40 ms RTT\"
[both]
delay = \"20ms\"
[up]
rate = \"8mbit\"
queue = \"256KB\"
[down]
rate = \"8mbit\"
queue = \"256KB\"
";
/// Random bytes in the image's big layer: ~5 s on [`SLOW`].
const NOISE: usize = 5_000_000;

#[test]
fn a_fleet_pre_pull_reports_progress_and_reaches_an_offline_device_when_it_returns() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::up(
        &format!("opul{}", std::process::id() % 100_000),
        "transparent",
    );
    let engine = Dockerd::start_in_netns(&rig.netns("agent"), &[]);
    let image_id = build_and_save(&engine, dir.path());
    let agent_addr = format!("{HUB_IP}:4433");
    let hub = Hub::start_in_netns(
        &rig.netns("hub"),
        dir.path().join("hub"),
        &agent_addr,
        &format!("{HUB_IP}:9443"),
        &["--public-addr", &agent_addr],
    );
    let (online, online_key) = hub.create_endpoint("till-1", &["--group", "shop"]);
    let (offline, offline_key) = hub.create_endpoint("till-2", &["--group", "shop"]);
    let (old, old_key) = hub.create_endpoint("till-old", &["--group", "shop"]);
    let first = start_agent(
        &rig,
        &dir.path().join("a1"),
        &online_key,
        &engine,
        "127.0.0.1:5380",
    );
    hub.wait_status(online, "standby", Duration::from_secs(30));
    let _old = start_agent(&rig, &dir.path().join("a3"), &old_key, &engine, "off");
    hub.wait_status(old, "standby", Duration::from_secs(30));
    // The hub held nothing when the device connected, so it granted no fetch streams; it does
    // with the pull job.
    assert!(!first.log().contains("the hub serves its registry mirror"));
    let saved = dir.path().join("app.tar");
    let out = hub.cli(&["image", "push", "--file", saved.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slow = dir.path().join("slow.toml");
    std::fs::write(&slow, SLOW).unwrap();
    rig.ctl(&["profile", slow.to_str().unwrap()]);

    let out = hub.cli(&[
        "image",
        "pull",
        "outpost/app:1",
        "--group",
        "shop",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = created["id"].as_i64().unwrap().to_string();
    assert_eq!(created["what"], "pull outpost/app:1");

    // While the online device pulls, its bytes climb; the offline one waits.
    let mut seen = Vec::new();
    let started = Instant::now();
    let done = loop {
        let detail: JobDetail = hub.cli_json(&["job", "show", &job, "--json"]);
        let device = |id: u64| detail.devices.iter().find(|d| d.endpoint == id).unwrap();
        assert_eq!(device(offline).state, "queued", "the offline device waits");
        if let Some(progress) = device(online).progress {
            seen.push(progress);
        }
        if device(online).state == "succeeded" {
            break device(online).clone();
        }
        assert!(device(online).state != "failed", "{:?}", device(online));
        assert!(started.elapsed() < Duration::from_secs(90), "{detail:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(first.log().contains("the hub serves its registry mirror"));
    assert!(
        seen.iter().any(|p| p.done > 0 && p.done < p.total),
        "progress seen mid-pull: {seen:?} then {done:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].done <= w[1].done),
        "progress only climbs: {seen:?}"
    );
    let output: serde_json::Value = hub.cli_json(&[
        "job",
        "show",
        &job,
        "--device",
        &online.to_string(),
        "--json",
    ]);
    let said = output["head"].as_str().unwrap();
    assert!(
        said.starts_with("pulled 127.0.0.1:5380/outpost/app:1: "),
        "{said}"
    );
    assert_eq!(
        inspect_id(&engine, "127.0.0.1:5380/outpost/app:1"),
        image_id
    );

    // The second device connects; it is sent the job and pulls.
    rig.ctl(&["profile", "transparent"]);
    let second = start_agent(
        &rig,
        &dir.path().join("a2"),
        &offline_key,
        &engine,
        "127.0.0.1:5381",
    );
    wait_granted(&second);
    wait_for(
        Duration::from_secs(60),
        "the returning device's pull",
        || {
            let detail: JobDetail = hub.cli_json(&["job", "show", &job, "--json"]);
            let device = detail.devices.iter().find(|d| d.endpoint == offline)?;
            assert!(device.state != "failed", "{device:?}");
            (device.state == "succeeded").then_some(())
        },
    );
    assert_eq!(
        inspect_id(&engine, "127.0.0.1:5381/outpost/app:1"),
        image_id
    );
    let detail: JobDetail = hub.cli_json(&["job", "show", &job, "--json"]);
    assert_eq!(detail.summary.state, "finished");
    assert_eq!(detail.summary.counts["succeeded"], 2);
    assert_eq!(detail.summary.counts["failed"], 1);
    let refused = detail.devices.iter().find(|d| d.endpoint == old).unwrap();
    let reason = refused.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("upgrade the agent"), "{refused:?}");
}

/// Build a multi-layer image (busybox, random bytes, a marker) on `engine`, save it to
/// `dir/app.tar` as `outpost/app:1` and remove it; its id.
fn build_and_save(engine: &Dockerd, dir: &Path) -> String {
    let context = dir.join("app");
    std::fs::create_dir_all(&context).unwrap();
    let dockerfile = format!(
        "FROM {TEST_IMAGE}\nRUN head -c {NOISE} /dev/urandom >/noise\nRUN echo fleet >/marker\n"
    );
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    let tag = "outpost/app:1";
    engine.ok(&["build", "--quiet", "--tag", tag, context.to_str().unwrap()]);
    let id = inspect_id(engine, tag);
    let saved = dir.join("app.tar");
    engine.ok(&["save", "--output", saved.to_str().unwrap(), tag]);
    engine.ok(&["rmi", tag]);
    id
}

fn inspect_id(engine: &Dockerd, image: &str) -> String {
    engine
        .ok(&["image", "inspect", "--format", "{{.Id}}", image])
        .trim()
        .to_owned()
}
