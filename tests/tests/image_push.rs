//! `outpost-hub image push` (issue #16 item 1): an air-gapped site's operator loads a `docker save`
//! archive into a hub that reaches no registry, orders it onto a device (`image pull`), and the
//! device pulls it as `127.0.0.1:5380/NAME:TAG` from its agent's loopback registry.
//!
//! The first test is the whole story on real parts: the netns rig (hub side, device side), a
//! hub with no `--registry`, Debian's `dockerd` on the device building a multi-layer image
//! (classic builder, `FROM` the imported busybox), `docker save` of it, the push, and the device's
//! engine pulling and running it — same image id, same layers. The engine asks for the manifest
//! twice (by tag, then by digest); the hub's count of fetch streams shows the agent fetched it
//! once (`agent/src/loopback/recent.rs`), and each blob once.
//!
//! The second needs no engine: archives made in the test (`outpost_tests::saved`), each broken
//! in one way — not a tar, a layer that is not its `diff_id`, an entry climbing out with `..`, a
//! config past its bound, a long-name header claiming a terabyte, no index — are each refused with a message that says so, leave nothing
//! in the pushed store or its staging area, and the hub goes on serving: the valid archive pushed
//! afterwards is pulled through `/v2/` blob by blob (an operator may pull it, not push). A refusal that comes while most of a large
//! upload is still to be sent reaches the operator as the hub's message, not a reset connection,
//! and a hub whose mirror has no room says so with a 413.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use outpost_tests::docker::{require_engine, TEST_IMAGE};
use outpost_tests::dockerd::Dockerd;
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::saved::{archive, escape_first, huge_long_name, layer, Flaw};
use outpost_tests::{metric, wait_for, Agent, AgentOptions, Hub};
use serde_json::Value;

/// The agent's registry, at its documented default.
const LOOPBACK: &str = "127.0.0.1:5380";
const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[test]
fn a_saved_image_pushed_to_an_air_gapped_hub_is_pulled_and_run_by_a_device() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::up(
        &format!("oimg{}", std::process::id() % 100_000),
        "transparent",
    );
    let engine = Dockerd::start_in_netns(&rig.netns("agent"), &[]);
    let (image_id, layers) = build_and_save(&engine, dir.path());

    let agent_addr = format!("{HUB_IP}:4433");
    let hub = Hub::start_in_netns(
        &rig.netns("hub"),
        dir.path().join("hub"),
        &agent_addr,
        &format!("{HUB_IP}:9443"),
        &["--public-addr", &agent_addr],
    );
    let saved = dir.path().join("app.tar");
    let out = hub.cli(&["image", "push", "--file", saved.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = &pushed["images"][0];
    assert_eq!(
        image["tags"][0], "outpost/app:1",
        "the registry host is dropped"
    );
    assert_eq!(image["id"], image_id.as_str());
    assert_eq!(image["layers"], layers.len());

    // The device connects after the push: a hub mirroring nothing grants fetch streams once it
    // holds a pushed image.
    let (id, key) = hub.create_endpoint("kiosk", &[]);
    let options = AgentOptions {
        netns: Some(rig.netns("agent")),
        transport: "lan",
    };
    let env = [
        ("EDGE_KEY", key.as_str()),
        ("DOCKER_HOST", &engine.host()),
        ("OUTPOST_REGISTRY_LISTEN", LOOPBACK),
    ];
    let agent = Agent::start_with(&dir.path().join("agent"), &options, &env);
    hub.wait_status(id, "standby", Duration::from_secs(30));
    wait_for(Duration::from_secs(30), "fetch streams granted", || {
        agent
            .log()
            .contains("the hub serves its registry mirror")
            .then_some(())
    });

    // The operator orders the image onto the device (the hub serves a device only what it was
    // ordered); the device pulls it, and an admin's pull on the device is served too.
    let fetch_streams = || {
        let metrics = hub.metrics();
        let started = |from: &str| {
            let name = format!("outpost_hub_mirror_agent_fetches_total{{start=\"{from}\"}}");
            metric(&metrics, &name)
        };
        started("zero") + started("resumed")
    };
    let streams_before = fetch_streams();
    let endpoint = id.to_string();
    let out = hub.cli(&[
        "image",
        "pull",
        "outpost/app:1",
        "--endpoint",
        &endpoint,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"].to_string();
    wait_for(Duration::from_secs(60), "the ordered pull", || {
        let detail: Value = hub.cli_json(&["job", "show", &job, "--json"]);
        let state = detail["devices"][0]["state"].as_str()?.to_owned();
        assert_ne!(state, "failed", "{detail}");
        (state == "succeeded").then_some(())
    });
    // The engine asked for the manifest by its tag, then by its digest: the agent fetched it from
    // the hub once, and each blob the engine lacked once (each logged as verified).
    let blobs = agent.log().matches("blob verified").count() as u64;
    assert!(blobs >= 2, "the config and the new layers: {blobs}");
    assert_eq!(
        fetch_streams() - streams_before,
        1 + blobs,
        "one manifest fetch and {blobs} blob fetches"
    );
    let name = format!("{LOOPBACK}/outpost/app:1");
    engine.ok(&["pull", &name]);
    let pulled = inspect(&engine, &name);
    assert_eq!(pulled.0, image_id, "the device has exactly the saved image");
    assert_eq!(pulled.1, layers, "layer by layer");
    let said = engine.ok(&["run", "--rm", &name, "cat", "/etc/outpost-marker"]);
    assert_eq!(said.trim(), "pushed, not pulled from any registry");
}

/// Build a three-layer image on `engine` (busybox, a random MiB, a marker file), save it to
/// `dir/app.tar` under a registry-qualified name, remove it; its id and layer digests.
fn build_and_save(engine: &Dockerd, dir: &Path) -> (String, Vec<String>) {
    let context = dir.join("app");
    std::fs::create_dir_all(&context).unwrap();
    let dockerfile = format!(
        "FROM {TEST_IMAGE}\nRUN head -c 1048576 /dev/urandom >/noise\n\
         RUN echo 'pushed, not pulled from any registry' >/etc/outpost-marker\n"
    );
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    let tag = "registry.example:5000/outpost/app:1";
    engine.ok(&["build", "--quiet", "--tag", tag, context.to_str().unwrap()]);
    let built = inspect(engine, tag);
    assert!(built.1.len() >= 3, "a multi-layer image: {:?}", built.1);
    let saved = dir.join("app.tar");
    engine.ok(&["save", "--output", saved.to_str().unwrap(), tag]);
    engine.ok(&["rmi", tag]);
    built
}

/// An image's id and its layers' digests, as the engine reports them.
fn inspect(engine: &Dockerd, image: &str) -> (String, Vec<String>) {
    let text = engine.ok(&["image", "inspect", image]);
    let value: Value = serde_json::from_str(&text).unwrap();
    let id = value[0]["Id"].as_str().unwrap().to_owned();
    let layers = value[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    (id, layers)
}

#[test]
fn hostile_archives_are_refused_whole_and_the_hub_serves_on() {
    let hub = Hub::start();
    let layers = [
        layer("etc/one", b"first layer"),
        layer("etc/two", &vec![7u8; 200_000]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("not a tar", vec![0x42; 3000], "not a readable tar archive"),
        (
            "a layer that is not its diff_id",
            archive("outpost/app:1", &layers, Flaw::DiffIdMismatch).0,
            "l1/layer.tar: its bytes are sha256:",
        ),
        (
            "an entry climbing out",
            archive("outpost/app:1", &layers, Flaw::Traversal).0,
            "\"../escaped\" is absolute or leaves the archive",
        ),
        (
            "an oversized config",
            archive("outpost/app:1", &layers, Flaw::OversizedConfig).0,
            "is larger than the 1048576 bytes accepted",
        ),
        (
            "a long name claiming a terabyte",
            huge_long_name(),
            "a tar metadata entry (type 'L') of 1099511627776 bytes",
        ),
        (
            "no index",
            archive("outpost/app:1", &layers, Flaw::NoIndex).0,
            "no manifest.json in the archive",
        ),
    ];
    for (what, bytes, expected) in cases {
        let path = dir.path().join("hostile.tar");
        std::fs::write(&path, &bytes).unwrap();
        let out = hub.cli(&["image", "push", "--file", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: refused");
        assert!(
            stderr.contains("nothing kept") && stderr.contains(expected),
            "{what}: {stderr}"
        );
        assert_nothing_kept(&hub.data_dir, what);
        let alive = hub.api_call("GET", "/v2/", None);
        assert_eq!(alive.status, 200, "{what}: the hub still serves");
    }

    let (good, config) = archive("registry.example/outpost/app:1", &layers, Flaw::None);
    let path = dir.path().join("good.tar");
    std::fs::write(&path, &good).unwrap();
    let out = hub.cli(&["image", "push", "--file", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pushed outpost/app:1 (2 layers"),
        "{stdout}"
    );
    assert!(stdout.contains(&config), "{stdout}");

    let manifest = hub.api_call("GET", "/v2/outpost/app/manifests/1", None);
    assert_eq!(manifest.status, 200);
    assert_eq!(manifest.headers["content-type"], SCHEMA2);
    let parsed: Value = serde_json::from_slice(&manifest.body).unwrap();
    assert_eq!(parsed["config"]["digest"], config.as_str());
    for layer in parsed["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let blob = hub.api_call("GET", &format!("/v2/outpost/app/blobs/{digest}"), None);
        assert_eq!(blob.status, 200, "{digest}");
        assert_eq!(outpost_tests::oci::sha256(&blob.body), digest);
    }
    let absent = hub.api_call("GET", "/v2/outpost/app/manifests/2", None);
    assert_eq!(
        absent.status,
        404,
        "{}",
        String::from_utf8_lossy(&absent.body)
    );

    // Pushing is an admin's: an operator pulls what was pushed but cannot push.
    let out = hub.cli(&["token", "create", "ops", "--role", "operator"]);
    let operator = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let refused = hub.api_call_as(&operator, "POST", "/api/images", None);
    assert_eq!(
        refused.status,
        403,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let pulled = hub.api_call_as(&operator, "GET", "/v2/outpost/app/manifests/1", None);
    assert_eq!(pulled.status, 200);
}

#[test]
fn a_pushed_image_is_listed_and_an_admins_removal_frees_its_blobs() {
    let hub = Hub::start();
    let layers = [
        layer("etc/one", b"first layer"),
        layer("etc/two", &vec![7u8; 200_000]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (good, config) = archive("outpost/app:1", &layers, Flaw::None);
    let path = dir.path().join("good.tar");
    std::fs::write(&path, &good).unwrap();
    let out = hub.cli(&["image", "push", "--file", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let catalog: Value = hub.cli_json(&["image", "list", "--json"]);
    assert_eq!(catalog["images"][0]["name"], "outpost/app:1", "{catalog}");
    assert_eq!(catalog["images"][0]["source"], "pushed");
    assert!(catalog["pushed_bytes"].as_u64().unwrap() > 0, "{catalog}");

    // Reading the catalog is a viewer's; removing an image an admin's.
    let out = hub.cli(&["token", "create", "ops", "--role", "operator"]);
    let operator = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        hub.api_call_as(&operator, "GET", "/api/images", None)
            .status,
        200
    );
    let refused = hub.api_call_as(&operator, "DELETE", "/api/images?name=outpost/app:1", None);
    assert_eq!(refused.status, 403);
    assert_eq!(
        hub.api_call("GET", "/v2/outpost/app/manifests/1", None)
            .status,
        200,
        "the operator's attempt removed nothing"
    );

    let removed: Value = hub.cli_json(&["image", "rm", "outpost/app:1", "--json"]);
    assert_eq!(removed["image"]["name"], "outpost/app:1", "{removed}");
    assert_eq!(
        removed["freed_blobs"], 3,
        "the config and both layers: {removed}"
    );
    let gone = hub.api_call("GET", "/v2/outpost/app/manifests/1", None);
    assert_eq!(gone.status, 404);
    let blob = hub.api_call("GET", &format!("/v2/outpost/app/blobs/{config}"), None);
    assert_eq!(blob.status, 404, "its blobs left the disk");
    assert_nothing_kept_but_tags(&hub.data_dir);

    let again = hub.cli(&["image", "rm", "outpost/app:1"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(stderr.contains("neither pushed to this hub"), "{stderr}");
    let bad = hub.cli(&["image", "rm", "../etc:1"]);
    assert!(!bad.status.success());
    let bad = hub.api_call("DELETE", "/api/images?name=..%2Fetc%3A1", None);
    assert_eq!(bad.status, 400, "a malformed name is the caller's error");
    let unknown = hub.api_call("DELETE", "/api/images?name=other%2Fimage%3A1", None);
    assert_eq!(unknown.status, 404, "an unknown image is not there");
    assert_eq!(
        hub.api_call("GET", "/v2/", None).status,
        200,
        "the hub still serves"
    );
    let catalog: Value = hub.cli_json(&["image", "list", "--json"]);
    assert_eq!(catalog["images"], serde_json::json!([]), "{catalog}");
}

/// The pushed store holds no blob and no staging leftovers (its tag file says it holds nothing).
fn assert_nothing_kept_but_tags(data_dir: &Path) {
    let pushed = data_dir.join("mirror").join("pushed");
    let blobs = std::fs::read_dir(pushed.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
    let tags = std::fs::read_to_string(pushed.join("tags.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&tags).unwrap(),
        serde_json::json!({})
    );
}

/// The pushed store holds no blob, no tag and no staging leftovers.
fn assert_nothing_kept(data_dir: &Path, what: &str) {
    let pushed = data_dir.join("mirror").join("pushed");
    let entries = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        entries(&pushed.join("blobs/sha256")),
        Vec::<String>::new(),
        "{what}"
    );
    assert_eq!(entries(&pushed.join("tmp")), Vec::<String>::new(), "{what}");
    assert!(!pushed.join("tags.json").exists(), "{what}");
}

#[test]
fn an_early_refusal_of_a_large_upload_and_a_full_mirror_reach_the_operator_as_messages() {
    let hub = Hub::start_with_flags(&["--mirror-max-gib", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escape.tar");
    std::fs::write(&path, escape_first(64 << 20)).unwrap();
    let out = hub.cli(&["image", "push", "--file", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"../escaped\" is absolute or leaves the archive"),
        "the reason, not a reset: {stderr}"
    );
    let out = hub.cli(&[
        "image",
        "push",
        "--file",
        path.to_str().unwrap(),
        "--tag",
        "Up/Case:1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("image name \"Up/Case:1\""),
        "refused before the upload: {stderr}"
    );
    let bad_tag = hub.api_call("POST", "/api/images?tag=a:-x", None);
    assert_eq!(
        bad_tag.status,
        400,
        "{}",
        String::from_utf8_lossy(&bad_tag.body)
    );
    let layers = [layer("etc/one", b"first layer"), layer("etc/two", b"two")];
    std::fs::write(&path, archive("outpost/app:1", &layers, Flaw::None).0).unwrap();
    let out = hub.cli(&["image", "push", "--file", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("raise --mirror-max-gib") && stderr.contains("413"),
        "{stderr}"
    );
    assert_nothing_kept(&hub.data_dir, "a full mirror");
}
