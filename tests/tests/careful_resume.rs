//! Issue #14 through the whole product on the `geo-satellite` relay (600 ms, 1 % loss, 20 Mbit/s
//! down): the docker CLI → hub → QUIC across the in-process netem relay → agent → dockerd, with
//! 10 MB `docker load`s going hub → device.
//!
//! - **Careful Resume across a hub restart**: the first load's connection measures the path; the
//!   stopping hub saves it with the device; after the restart, the new connection's first load
//!   resumes at that rate once its round trip matches.
//!
//! It asserts the hub's controller's own counters (the endpoint's `resumes`), not wall time; the
//! times are printed. The outage case (a resume after a mid-load outage, and the path delivering at
//! least half of it within the loan's rounds) is measured by the `congestion` bench's
//! `--outage-s 5` and the virtual-clock tests in `transport/src/congestion/delivery_rate/`; through
//! the product it held unloaded (3 of 3) but on a loaded machine the hub declared no outage at all
//! (issue #14's note), so it is not a test yet.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

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
    let start = Instant::now();
    let mut child = d.docker.spawn(&["load", "-i", tar]);
    while child.try_wait().unwrap().is_none() && start.elapsed() < LOAD_WITHIN {
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
