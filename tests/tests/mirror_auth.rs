//! Per-device mirror authorisation (issue #16): the hub's mirror serves a device only the images
//! the fleet ordered onto it, so a stolen kiosk cannot read the fleet's other images with the
//! hub's upstream credentials.
//!
//! Real parts, as in `image_pull.rs`: the netns rig, a hub that reaches no registry holding an
//! image pushed with `image push`, and two agents in the device namespace sharing one engine (two
//! devices on one bench), each with its loopback registry on its own port. An operator orders the
//! image pulled onto the first device: its pull succeeds. The second device, ordered nothing,
//! asks its loopback registry for the same image — its engine's pull and a plain HTTP request
//! for the manifest and for a layer of it are refused 403 `DENIED`, saying why — while the hub
//! goes on serving the first device, and logs the refusals. Restarted with half a layer on the
//! first device, the hub serves it the rest (its new session was served no manifest). Ordered the image in turn, the second
//! device pulls it.
//!
//! A second test needs no rig: two hubs on one PostgreSQL store mirror Debian's `docker-registry`.
//! An image ordered onto a device through the hub that does not hold it opens the mirror of the
//! hub that does (the grant is read from the store); another image stays closed to it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::disallowed_methods)] // wall-clock waits from a plain test thread

use std::path::Path;
use std::time::Duration;

use outpost_api::JobDetail;
use outpost_tests::admin_api::block_on;
use outpost_tests::bench_store::{BenchStore, StoreKind};
use outpost_tests::docker::{require_engine, TEST_IMAGE};
use outpost_tests::dockerd::Dockerd;
use outpost_tests::hubs::hub_flags;
use outpost_tests::oci::{push, random_image};
use outpost_tests::registry::{free_loopback, start_agent, wait_granted, Registry};
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::{command_in, wait_for, Agent, Hub};

const IMAGE: &str = "outpost/private:1";
const ORDERED: &str = "127.0.0.1:5380";
const UNORDERED: &str = "127.0.0.1:5381";

#[test]
fn a_device_fetches_only_what_was_ordered_onto_it() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::up(
        &format!("oath{}", std::process::id() % 100_000),
        "transparent",
    );
    let engine = Dockerd::start_in_netns(&rig.netns("agent"), &[]);
    let agent_addr = format!("{HUB_IP}:4433");
    let mut hub = Hub::start_in_netns(
        &rig.netns("hub"),
        dir.path().join("hub"),
        &agent_addr,
        &format!("{HUB_IP}:9443"),
        &["--public-addr", &agent_addr],
    );
    let saved = save_test_image(&engine, dir.path());
    let out = hub.cli(&["image", "push", "--file", saved.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let (kiosk, kiosk_key) = hub.create_endpoint("kiosk", &[]);
    let (stolen, stolen_key) = hub.create_endpoint("stolen", &[]);
    let first = start_agent(&rig, &dir.path().join("a1"), &kiosk_key, &engine, ORDERED);
    let second = start_agent(
        &rig,
        &dir.path().join("a2"),
        &stolen_key,
        &engine,
        UNORDERED,
    );
    wait_granted(&first);
    wait_granted(&second);

    // The operator orders the image onto the kiosk; it pulls.
    let job = pull_on(&hub, kiosk);
    wait_for(Duration::from_secs(90), "the kiosk's pull", || {
        let detail: JobDetail = hub.cli_json(&["job", "show", &job, "--json"]);
        let device = detail.devices.iter().find(|d| d.endpoint == kiosk)?;
        assert!(device.state != "failed", "{device:?}");
        (device.state == "succeeded").then_some(())
    });
    engine.ok(&["image", "inspect", &format!("{ORDERED}/{IMAGE}")]);

    // The other device was ordered nothing: its engine's pull is refused, saying why.
    let pull = engine.docker(&["pull", &format!("{UNORDERED}/{IMAGE}")]);
    assert!(!pull.status.success(), "the unordered pull succeeded");
    let said = stderr(&pull);
    assert!(
        said.contains("denied") && said.contains("not an image ordered onto this device"),
        "{said}"
    );

    // Asked directly, its registry answers 403 for the manifest and for a layer the kiosk holds.
    let (status, manifest) = get(&rig, ORDERED, "manifests/1");
    assert_eq!(status, 200, "the kiosk is still served: {manifest}");
    let layer = first_layer(&manifest);
    let (status, body) = get(&rig, UNORDERED, "manifests/1");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("DENIED"), "{body}");
    let (status, body) = get(&rig, UNORDERED, &format!("blobs/{layer}"));
    assert_eq!(status, 403, "{body}");

    // The hub went on serving the kiosk: a layer of its image, whole.
    let (status, _) = get(&rig, ORDERED, &format!("blobs/{layer}"));
    assert_eq!(status, 200);
    let log = hub.log();
    assert!(log.contains("fetch refused (Forbidden)"), "{log}");
    assert!(first.log().contains("blob verified"));
    assert!(!second.log().contains("blob verified"));

    // The hub restarts with half of that layer on the kiosk: its new session was served no
    // manifest, and the resumed blob is still granted, from the kiosk's orders.
    hub.restart_with(&["--public-addr", &agent_addr]);
    wait_for(Duration::from_secs(60), "the kiosk's new grant", || {
        let log = first.log();
        (log.matches("the hub serves its registry mirror").count() >= 2).then_some(())
    });
    let blobs = dir.path().join("a1").join("registry").join("blobs");
    let hex = layer.trim_start_matches("sha256:");
    let whole = std::fs::read(blobs.join(hex)).unwrap();
    std::fs::write(
        blobs.join(format!("{hex}.partial")),
        &whole[..whole.len() / 2],
    )
    .unwrap();
    std::fs::remove_file(blobs.join(hex)).unwrap();
    let (status, _) = get(&rig, ORDERED, &format!("blobs/{layer}"));
    assert_eq!(status, 200);
    assert_eq!(std::fs::read(blobs.join(hex)).unwrap(), whole);
    let log = hub.log();
    assert!(log.contains("resuming a blob for an agent"), "{log}");

    // Once the operator orders the image onto the second device too, it is served at once.
    let job = pull_on(&hub, stolen);
    wait_for(Duration::from_secs(90), "the second device's pull", || {
        let detail: JobDetail = hub.cli_json(&["job", "show", &job, "--json"]);
        let device = detail.devices.iter().find(|d| d.endpoint == stolen)?;
        assert!(device.state != "failed", "{device:?}");
        (device.state == "succeeded").then_some(())
    });
    let (status, _) = get(&rig, UNORDERED, &format!("blobs/{layer}"));
    assert_eq!(status, 200);
}

#[test]
fn an_order_made_through_one_hub_opens_the_mirror_of_the_hub_holding_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_local(&free_loopback(), None);
    let base = format!("http://{}", registry.addr());
    let (ordered, other) = (random_image(&[1 << 16]), random_image(&[1 << 16]));
    block_on(push(&base, "pos/web", "1", &ordered, None));
    block_on(push(&base, "pos/secret", "1", &other, None));
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let start_hub = |name: &str| {
        let mut flags = hub_flags(&db, name);
        flags.extend(["--registry", &base].map(String::from));
        Hub::start_with_flags(&flags.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (a, b) = (start_hub("hub-a"), start_hub("hub-b"));
    std::fs::copy(
        a.data_dir.join("admin.token"),
        b.data_dir.join("admin.token"),
    )
    .unwrap();
    let (id, key) = b.create_endpoint("kiosk", &[]);
    let listen = free_loopback();
    let agent_dir = b.data_dir.parent().unwrap().join("kiosk");
    let agent = Agent::start(
        &agent_dir,
        &[("EDGE_KEY", &key), ("OUTPOST_REGISTRY_LISTEN", &listen)],
    );
    wait_granted(&agent);
    let fetch = |path: &str| {
        block_on(async {
            let response = reqwest::get(format!("http://{listen}/v2/{path}"))
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let (status, body) = fetch("pos/web/manifests/1");
    assert_eq!(status, 403, "nothing ordered yet: {body}");

    // Ordered through hub-a. (The device's engine here is the test engine, which cannot reach
    // this registry: the job fails, and the order stands until it expires.)
    let out = a.cli(&["image", "pull", "pos/web:1", "--endpoint", &id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, body) = fetch("pos/web/manifests/1");
    assert_eq!(status, 200, "{body}");
    for (digest, _) in &ordered.blobs {
        let (status, body) = fetch(&format!("pos/web/blobs/{digest}"));
        assert_eq!(status, 200, "{digest}: {body}");
    }
    let (status, body) = fetch("pos/secret/manifests/1");
    assert_eq!(status, 403, "{body}");
    let (digest, _) = &other.blobs[1];
    let (status, body) = fetch(&format!("pos/web/blobs/{digest}"));
    assert_eq!(
        status, 403,
        "another image's layer under the ordered name: {body}"
    );
    assert!(b.log().contains("fetch refused (Forbidden)"));
}

/// Tag the test image as [`IMAGE`], save it to `dir/private.tar` and remove the tag.
fn save_test_image(engine: &Dockerd, dir: &Path) -> std::path::PathBuf {
    engine.ok(&["tag", TEST_IMAGE, IMAGE]);
    let saved = dir.join("private.tar");
    engine.ok(&["save", "--output", saved.to_str().unwrap(), IMAGE]);
    engine.ok(&["rmi", IMAGE]);
    saved
}

/// `image pull IMAGE` onto one endpoint; the job's id.
fn pull_on(hub: &Hub, endpoint: u64) -> String {
    let id = endpoint.to_string();
    let out = hub.cli(&["image", "pull", IMAGE, "--endpoint", &id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    created["id"].as_i64().unwrap().to_string()
}

/// `GET /v2/outpost/private/<path>` from the loopback registry at `registry`, inside the device
/// namespace: status and body.
fn get(rig: &Rig, registry: &str, path: &str) -> (u16, String) {
    let url = format!("http://{registry}/v2/outpost/private/{path}");
    let out = command_in(Some(&rig.netns("agent")), "curl")
        .args([
            "--silent",
            "--max-time",
            "60",
            "--write-out",
            "\n%{http_code}",
        ])
        .args([
            "--header",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ])
        .arg(&url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// The first layer's digest in a manifest's JSON.
fn first_layer(manifest: &str) -> String {
    let manifest: serde_json::Value = serde_json::from_str(manifest).unwrap();
    manifest["layers"][0]["digest"].as_str().unwrap().to_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
