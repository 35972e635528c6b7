//! NAT rebinding under running transfers: the agent sits behind the netem relay, which acts as a
//! NAT, and the NAT moves the device to a new port every second or so while a `docker logs -f` or a
//! multi-megabyte `docker save` is streaming. QUIC migrates; the hub counts it; the bytes the
//! client receives are the bytes the engine sent (SHA-256 against the engine's own output).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_netem::control::Controllable;
use outpost_netem::model::Capacity;
use outpost_netem::Profile;
use outpost_protocol::token::JoinToken;
use outpost_tests::docker::{
    chatter, direct_logs, numbered_lines, require_engine, sha256_bytes, sha256_of, Image,
};
use outpost_tests::link::{DeviceOptions, RelayedDevice};
use tokio::time::Instant;

/// How often the NAT moves the device in these tests ("every few seconds" in the field; faster
/// here so that every transfer sees several moves).
const REBIND_EVERY: Duration = Duration::from_millis(1200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_rebinding_during_logs_follow_loses_nothing_and_is_counted() {
    require_engine();
    let d = RelayedDevice::start("roaming", DeviceOptions::default()).await;
    let relay_addr = d.relay.local_addr().to_string();
    let key = d.hub.create_endpoint("another", &[]).1;
    assert_eq!(JoinToken::decode(&key).unwrap().hub_addrs, vec![relay_addr]);
    // 60 numbered lines and 60 × 3000 random bytes over about 6 s.
    let script = chatter(60, 3000, "0.1");
    let container = tokio::task::block_in_place(|| d.docker.start("roam", &["sh", "-c", &script]));

    let mut follower = d.docker.follow(&["logs", "-f", &container.name]);
    let mut rebinds = 0;
    while !follower.has_exited() && rebinds < 10 {
        tokio::time::sleep(REBIND_EVERY).await;
        d.link.rebind();
        rebinds += 1;
    }
    let followed = tokio::task::block_in_place(|| follower.finish(Duration::from_secs(60)));
    assert!(followed.status.success(), "{}", followed.stderr);
    let numbered: Vec<String> = followed
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(
        numbered,
        numbered_lines(60),
        "the followed log lost or reordered lines across {rebinds} rebinds"
    );
    let engine = tokio::task::block_in_place(|| direct_logs(&container.name));
    assert!(engine.len() > 180_000, "{} bytes of log", engine.len());
    assert_eq!(
        sha256_bytes(&followed.stdout),
        sha256_bytes(&engine),
        "the followed log differs from the engine's ({} bytes received, {} logged)",
        followed.stdout.len(),
        engine.len()
    );
    let moved = d.link.counters().nat.rebinds;
    assert!(
        moved >= 3,
        "the NAT moved the device only {moved} times during the log ({rebinds} commands)"
    );

    // The hub saw the device come from new ports (counted at check-ins, every second here).
    let shown = tokio::task::block_in_place(|| {
        outpost_tests::wait_for(
            Duration::from_secs(10),
            "the migrations to be counted",
            || {
                let shown = d.hub.show(d.id);
                (shown["migrations"].as_u64().unwrap() + 1 >= moved).then_some(shown)
            },
        )
    });
    assert_ne!(shown["status"], "offline");
}

/// The device's uplink for the save test: 12 Mbit/s, so an 8 MB image takes about 5.5 s and the
/// NAT moves it four or more times mid-transfer.
fn slow_uplink() -> Profile {
    let mut profile = Profile::transparent();
    profile.up.capacity = Capacity::Rate(12_000_000);
    profile.up.queue_bytes = Some(256 * 1024);
    profile
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_rebinding_during_a_multi_megabyte_save_delivers_the_same_archive() {
    require_engine();
    let options = DeviceOptions {
        profile: slow_uplink(),
        ..DeviceOptions::default()
    };
    let d = RelayedDevice::start("saving", options).await;
    let tmp = tempfile::tempdir().unwrap();
    let image = tokio::task::block_in_place(|| Image::random("rebind-save", 8_000_000, 11));
    let expected = tokio::task::block_in_place(|| image.direct_save_sha256(tmp.path()));

    let archive = tmp.path().join("through-hub.tar");
    let started = Instant::now();
    let mut save = d
        .docker
        .follow(&["save", "-o", archive.to_str().unwrap(), &image.tag]);
    let mut rebinds_during = 0;
    while !save.has_exited() && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(REBIND_EVERY).await;
        if !save.has_exited() {
            d.link.rebind();
            rebinds_during += 1;
        }
    }
    let saved = tokio::task::block_in_place(|| save.finish(Duration::from_secs(10)));
    let took = started.elapsed();
    assert!(saved.status.success(), "docker save: {}", saved.stderr);
    let size = std::fs::metadata(&archive).unwrap().len();
    println!(
        "save of {size} bytes took {took:?} across {rebinds_during} NAT rebindings ({:?} apart)",
        REBIND_EVERY
    );
    assert!(
        rebinds_during >= 3,
        "the save finished after only {rebinds_during} rebindings ({took:?})"
    );
    assert_eq!(
        sha256_of(&archive),
        expected,
        "the archive received through the hub differs from the engine's"
    );
    let migrations = tokio::task::block_in_place(|| {
        outpost_tests::wait_for(
            Duration::from_secs(10),
            "the migrations to be counted",
            || {
                let shown = d.hub.show(d.id);
                let migrations = shown["migrations"].as_u64().unwrap();
                (migrations + 1 >= rebinds_during).then_some(migrations)
            },
        )
    });
    println!("the hub counted {migrations} migrations");
}
