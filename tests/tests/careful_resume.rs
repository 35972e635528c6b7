//! Issue #14 through the whole product on the in-process netem relay: the docker CLI → hub → QUIC
//! across the relay → agent → dockerd, with 10 MB `docker load`s going hub → device.
//!
//! - **Careful Resume across a hub restart** (`geo-satellite`: 600 ms, 1 % loss, 20 Mbit/s down):
//!   the first load's connection measures the path; the
//!   stopping hub saves it with the device; after the restart, the new connection's first load
//!   resumes at that rate once its round trip matches.
//!
//! - **A 5 s outage mid-load** (on a clean cellular link, 5 Mbit/s and 100 ms, so there are rounds
//!   to count): within two round trips after the path returns the hub's sender delivers at least
//!   half the rate it had before. Read from the controller's silence record (the endpoint's
//!   `silences`), which measures the recovery whether quinn called the outage persistent
//!   congestion (and the controller resumed) or not (and it kept its state): which of the two a
//!   5 s outage is depends on the probe timeouts, which a loaded machine stretches — why the
//!   outage case was not a test before, when only a declared outage was counted.
//!
//! Both assert the hub's controller's own counters (the endpoint's `resumes` and `silences`), not
//! wall time; the times are printed.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_netem::control::Controllable;
use outpost_netem::Profile;
use outpost_tests::docker::{direct, require_engine, Image};
use outpost_tests::link::{DeviceOptions, RelayedDevice};
use serde_json::Value;
use tokio::time::Instant;

/// A load on this link takes 7–15 s in a debug build; more means it is stuck.
const LOAD_WITHIN: Duration = Duration::from_secs(40);

fn geo() -> DeviceOptions {
    DeviceOptions {
        profile: Profile::load("geo-satellite").unwrap(),
        seed: 5,
        transport: "satellite",
        hub_flags: vec!["--transport".into(), "satellite".into()],
        ready_within: Duration::from_secs(60),
        ..DeviceOptions::default()
    }
}

/// `flaky-cellular`'s rates and round trip without its loss, outages and NAT: the outage is the
/// test's own, and the rounds after it are the controller's alone.
const CLEAN_CELLULAR: &str = r#"
description = "flaky-cellular's rates and round trip, nothing else"
[both]
delay = "50ms"
[up]
rate = "1mbit"
queue = "64KB"
[down]
rate = "5mbit"
queue = "256KB"
"#;
/// The down rate of [`CLEAN_CELLULAR`], bytes per second.
const CLEAN_CELLULAR_RATE: u64 = 5_000_000 / 8;
/// The outage: issue #14's.
const OUTAGE: Duration = Duration::from_secs(5);
/// How soon after the path returns its first ack arrives: the probe interval during an outage is
/// capped at 250 ms or one probe timeout (`profile::PROBE_INTERVAL_DURING_OUTAGE`), plus a round
/// trip and room for a busy machine's late timers; uncapped, the doubled probe timeout waits up to
/// 6 s more.
const NOTICED_WITHIN: Duration = Duration::from_millis(2_500);
/// How far into the load the outage starts: past startup (a few 100 ms rounds), well before the
/// load's ~17 s end.
const OUTAGE_AFTER: Duration = Duration::from_secs(6);

fn clean_cellular() -> DeviceOptions {
    DeviceOptions {
        profile: Profile::from_toml("clean-cellular", CLEAN_CELLULAR, std::path::Path::new("."))
            .unwrap(),
        transport: "cellular",
        hub_flags: vec!["--transport".into(), "cellular".into()],
        ..DeviceOptions::default()
    }
}

/// A 10 MB image saved to a tar in `dir` and removed from the engine, so it can be loaded again.
fn image_tar(dir: &std::path::Path, name: &str, seed: u64) -> (Image, String) {
    let tar = dir.join(format!("{name}.tar"));
    let tar = tar.to_str().unwrap().to_owned();
    let image = Image::random(name, 10 << 20, seed);
    assert!(direct(&["save", "-o", &tar, &image.tag]).status.success());
    assert!(direct(&["rmi", "-f", &image.tag]).status.success());
    (image, tar)
}

/// `docker load` through the hub; returns how long it took.
fn load(d: &RelayedDevice, image: &Image, tar: &str) -> Duration {
    load_with(d, image, tar, None)
}

/// [`load`], with an outage of the link `cut.1` long once the load has run for `cut.0`.
fn load_with(
    d: &RelayedDevice,
    image: &Image,
    tar: &str,
    mut cut: Option<(Duration, Duration)>,
) -> Duration {
    let start = Instant::now();
    let mut child = d.docker.spawn(&["load", "-i", tar]);
    while child.try_wait().unwrap().is_none() && start.elapsed() < LOAD_WITHIN {
        if let Some((after, length)) = cut.filter(|(after, _)| start.elapsed() >= *after) {
            eprintln!("outage of {length:?} {after:?} into the load");
            d.link.outage(length);
            cut = None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = child.kill();
    let loaded = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success() && stdout.contains(&image.tag),
        "docker load after {took:?}: {stdout} {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(direct(&["rmi", "-f", &image.tag]).status.success());
    took
}

fn resumes(d: &RelayedDevice) -> Value {
    d.hub.show(d.id)["resumes"].clone()
}

/// The last resume delivered at least half of what it lent.
fn assert_held(resumes: &Value) {
    let lent = resumes["last_lent"].as_u64().unwrap();
    let measured = resumes["last_measured"].as_u64().unwrap();
    assert!(
        measured * 2 >= lent,
        "lent {lent} B/s, the path delivered {measured} B/s: {resumes}"
    );
    assert_eq!(resumes["retreated"], 0, "{resumes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_hub_restart_the_first_load_resumes_at_the_saved_rate() {
    require_engine();
    let mut d = RelayedDevice::start("resume", geo()).await;
    let dir = tempfile::tempdir().unwrap();
    tokio::task::block_in_place(|| {
        let (image, tar) = image_tar(dir.path(), "careful-resume", 7);
        d.docker.ok(&["ps", "-a"]);
        let first = load(&d, &image, &tar);
        let before = resumes(&d);
        assert_eq!(before["last_from_saved_path"], false, "{before}");

        let relay = d.relay.local_addr().to_string();
        let options = geo();
        let mut flags = vec!["--public-addr", relay.as_str()];
        flags.extend(options.hub_flags.iter().map(String::as_str));
        d.hub.restart_with(&flags);
        let shown = d.hub.wait_status(d.id, "standby", Duration::from_secs(60));
        let saved = &shown["saved_path"];
        assert!(
            saved["rate_bytes_per_s"].as_u64().unwrap() > 1_000_000,
            "the first load's rate was saved: {shown}"
        );
        let min_rtt = saved["min_rtt_ms"].as_f64().unwrap();
        assert!((500.0..900.0).contains(&min_rtt), "the GEO path's: {saved}");

        d.docker.ok(&["ps", "-a"]);
        let second = load(&d, &image, &tar);
        let after = resumes(&d);
        eprintln!(
            "10 MB docker load across geo-satellite: first-ever connection {:.2} s, after a hub restart {:.2} s; saved path {saved}; resumes {after}",
            first.as_secs_f64(),
            second.as_secs_f64()
        );
        assert_eq!(after["last_from_saved_path"], true, "{after}");
        assert!(after["resumed"].as_u64().unwrap() >= 1, "{after}");
        assert_held(&after);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_5_s_outage_mid_load_the_sender_is_back_at_half_its_rate_within_two_round_trips() {
    require_engine();
    let d = RelayedDevice::start("silence", clean_cellular()).await;
    let dir = tempfile::tempdir().unwrap();
    tokio::task::block_in_place(|| {
        let (image, tar) = image_tar(dir.path(), "outage-recovery", 11);
        d.docker.ok(&["ps", "-a"]);
        let took = load_with(&d, &image, &tar, Some((OUTAGE_AFTER, OUTAGE)));
        let dropped = d.link.counters();
        assert!(
            dropped.down.dropped_outage > 0,
            "the outage fell in the load: {dropped:?}"
        );
        let shown = d.hub.show(d.id);
        let (silences, resumes) = (&shown["silences"], &shown["resumes"]);
        eprintln!(
            "10 MB docker load with a 5 s outage on a clean 5 Mbit/s link: {:.2} s; silences {silences}; resumes {resumes}",
            took.as_secs_f64()
        );
        assert!(silences["silences"].as_u64().unwrap() >= 1, "{silences}");
        let last = &silences["last"];
        let length = Duration::from_millis(last["length_ms"].as_u64().unwrap());
        assert!(
            length >= OUTAGE - Duration::from_millis(500),
            "the last silence is the outage's: {last}"
        );
        assert!(
            length <= OUTAGE + NOTICED_WITHIN,
            "probes found the returning path within {NOTICED_WITHIN:?}: {last}"
        );
        let before = last["before"].as_u64().unwrap();
        assert!(
            before * 2 >= CLEAN_CELLULAR_RATE,
            "the sender ran near the link's rate before the outage: {last}"
        );
        assert_eq!(last["rounds"], 2, "two busy round trips measured: {last}");
        let after = last["after"].as_u64().unwrap();
        assert!(
            after * 2 >= before,
            "within two round trips the path delivered {after} B/s of {before}: {last}"
        );
        assert_eq!(resumes["retreated"], 0, "{resumes}");
        let sender = &shown["sender"];
        assert!(sender["startup_exit"].is_string(), "{sender}");
        assert!(
            sender["rate_bytes_per_s"].as_u64().unwrap() * 2 >= CLEAN_CELLULAR_RATE,
            "the sender's rate after the load: {sender}"
        );
    });
}
