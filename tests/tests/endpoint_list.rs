//! The endpoint list through the real hub and CLI: an operator groups and tags devices, then finds
//! them again by name, status, group and tag, a page at a time; bad list parameters are refused
//! with a message that says what is accepted.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_hub::store::{ListQuery, StatusFilter, Store};
use outpost_tests::{Agent, Hub};
use serde_json::Value;
use tokio::time::Instant;

/// How long a fresh agent may take to enrol and check in.
const ONLINE: Duration = Duration::from_secs(30);

/// The ids of a `list --json` answer, in order.
fn ids(list: &Value) -> Vec<u64> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_u64().expect("id"))
        .collect()
}

fn list(hub: &Hub, args: &[&str]) -> Value {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    hub.admin_json(&all)
}

/// What a client of the API sees: status, the `X-Total-Count` header and the JSON body.
struct Answer {
    status: u16,
    total_header: Option<u64>,
    body: Value,
}

/// A call to the hub's API as a client sees it.
fn api(hub: &Hub, method: &str, path: &str, body: Option<Value>) -> Answer {
    let answer = hub.api_call(method, path, body);
    Answer {
        status: answer.status,
        total_header: answer
            .headers
            .get("x-total-count")
            .map(|v| v.to_str().unwrap().parse().unwrap()),
        body: serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    }
}

#[test]
fn devices_are_grouped_tagged_and_found_again_a_page_at_a_time() {
    let hub = Hub::start();
    let shop = |name: &str, tags: &[&str]| {
        let mut extra = vec!["--group", "Shops"];
        for tag in tags {
            extra.extend(["--tag", tag]);
        }
        hub.create_endpoint(name, &extra).0
    };
    let kiosk_b = shop("kiosk-b", &["prod", "eu"]);
    let kiosk_a = shop("Kiosk-a", &["prod"]);
    let sign_c = shop("sign-c", &["eu"]);
    let (depot, _) = hub.create_endpoint("depot-1", &["--group", "depots", "--tag", "prod"]);
    let (loose, _) = hub.create_endpoint("loose", &[]);

    let created = list(&hub, &[]);
    assert_eq!(created["total"], 5);
    assert_eq!(ids(&created), [kiosk_b, kiosk_a, sign_c, depot, loose]);
    assert_eq!(created["items"][0]["group"], "Shops");
    assert_eq!(
        created["items"][0]["tags"],
        serde_json::json!(["eu", "prod"])
    );

    assert_eq!(
        ids(&list(&hub, &["--group", "shops", "--sort", "name"])),
        [kiosk_a, kiosk_b, sign_c]
    );
    assert_eq!(
        ids(&list(&hub, &["--tag", "prod", "--sort", "name", "--desc"])),
        [kiosk_b, kiosk_a, depot]
    );
    assert_eq!(
        ids(&list(&hub, &["--search", "KIOSK", "--tag", "eu"])),
        [kiosk_b]
    );
    let second = list(&hub, &["--sort", "name", "--per-page", "2", "--page", "2"]);
    assert_eq!(second["total"], 5);
    assert_eq!(ids(&second), [kiosk_b, loose]);

    // Retag and regroup from the CLI; the list follows at once.
    assert!(hub
        .admin(&["tag", &loose.to_string(), "prod"])
        .status
        .success());
    assert!(hub
        .admin(&["untag", &depot.to_string(), "PROD"])
        .status
        .success());
    assert!(hub
        .admin(&["group", &loose.to_string(), "depots"])
        .status
        .success());
    assert!(hub
        .admin(&["ungroup", &sign_c.to_string()])
        .status
        .success());
    assert_eq!(
        ids(&list(&hub, &["--tag", "prod"])),
        [kiosk_b, kiosk_a, loose]
    );
    assert_eq!(ids(&list(&hub, &["--group", "depots"])), [depot, loose]);
    let shown = hub.show(loose);
    assert_eq!(shown["group"], "depots");
    assert_eq!(shown["tags"], serde_json::json!(["prod"]));
    assert_eq!(hub.show(sign_c)["group"], Value::Null);

    let out = hub.admin(&["untag", &depot.to_string(), "prod"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no tag"));
    let table = hub.admin(&["list", "--tag", "prod", "--sort", "name"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("GROUP") && table.contains("TAGS"), "{table}");
    assert!(table.contains("eu,prod"), "{table}");
    assert!(table.contains("(3 in all)"), "{table}");
}

#[test]
fn a_device_that_checks_in_is_online_at_once_and_the_others_offline() {
    let hub = Hub::start();
    let (device, key) = hub.create_endpoint("kiosk-1", &["--tag", "field"]);
    let (never, _) = hub.create_endpoint("kiosk-2", &["--tag", "field"]);
    let dir = hub
        .data_dir
        .parent()
        .expect("hub dir has a parent")
        .join("agent");
    let _agent = Agent::start(&dir, &[("EDGE_KEY", &key)]);
    hub.wait_status(device, "standby", ONLINE);
    outpost_tests::wait_for(ONLINE, "a first check-in", || {
        hub.show(device)["last_checkin"].as_str().map(drop)
    });

    // Answered from the store's connected flags: the liveness changes not yet flushed (every 5 s)
    // are written before the query, so the device is online in the list as soon as it is live.
    assert_eq!(ids(&list(&hub, &["--status", "online"])), [device]);
    assert_eq!(ids(&list(&hub, &["--status", "standby"])), [device]);
    assert_eq!(ids(&list(&hub, &["--status", "offline"])), [never]);
    assert_eq!(ids(&list(&hub, &["--status", "active"])), Vec::<u64>::new());
    let newest = list(
        &hub,
        &["--tag", "field", "--sort", "last_checkin", "--desc"],
    );
    assert_eq!(ids(&newest), [device, never]);
    assert!(newest["items"][0]["last_checkin"].is_string(), "{newest}");
}

/// The check-in interval the hub is given below.
const CHECKIN: Duration = Duration::from_secs(1);
/// docs/architecture.md, Session: offline after 2 × interval + 10 s without a check-in.
const STALE_AFTER: Duration = Duration::from_secs(12);

/// A connected device's stored check-in is refreshed only every 10 minutes, yet it stays in
/// `status=online` long past the liveness bound, because the list reads whether the hub holds a
/// live session for it; killed (no goodbye: the hub only notices the silence), it moves to
/// `status=offline` when its row says offline, at the liveness bound, not at the QUIC idle timeout.
#[test]
fn a_device_stays_online_past_the_liveness_bound_and_goes_offline_when_killed() {
    let hub = Hub::start_with_flags(&["--checkin-interval", "1s"]);
    let (device, key) = hub.create_endpoint("kiosk-1", &[]);
    let dir = hub
        .data_dir
        .parent()
        .expect("hub dir has a parent")
        .join("agent");
    let mut agent = Agent::start(&dir, &[("EDGE_KEY", &key)]);
    hub.wait_status(device, "standby", ONLINE);
    let online = || ids(&list(&hub, &["--status", "online"]));
    let offline = || ids(&list(&hub, &["--status", "offline"]));

    let connected = Instant::now();
    let mut asked = 0;
    while connected.elapsed() < STALE_AFTER * 2 {
        assert_eq!(
            online(),
            [device],
            "{:?} after connecting",
            connected.elapsed()
        );
        assert_eq!(offline(), Vec::<u64>::new());
        asked += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(asked >= 10, "asked {asked} times");

    agent.kill();
    let killed = Instant::now();
    // The last check-in came at most one interval before the kill; the list follows the row's
    // status within a second of polling.
    let bound = STALE_AFTER + CHECKIN + Duration::from_secs(3);
    outpost_tests::wait_for(bound, "the killed device in status=offline", || {
        (offline() == [device]).then_some(())
    });
    let after = killed.elapsed();
    println!("offline in the list {after:?} after the kill (bound {bound:?})");
    assert!(
        after >= STALE_AFTER - CHECKIN,
        "offline too soon: {after:?}"
    );
    assert_eq!(online(), Vec::<u64>::new());
    assert_eq!(hub.show(device)["status"], "offline");
}

/// What the store says is online, read from the database file of a stopped hub.
fn stored_online(hub: &Hub) -> u64 {
    let store = Store::open(&hub.data_dir.join("hub.db")).unwrap();
    let query = ListQuery {
        page: 1,
        per_page: 10,
        status: Some(StatusFilter::Online { except: vec![] }),
        ..Default::default()
    };
    let (_, total) = outpost_hub::store::list::list(&store.lock(), &query).unwrap();
    total
}

/// A hub that crashed with a device connected does not count it online after its restart (the
/// start clears what the crash left), and a clean stop leaves nothing counted online.
#[test]
fn after_a_crash_or_a_stop_a_device_counts_online_only_once_it_is_back() {
    let mut hub = Hub::start();
    let (device, key) = hub.create_endpoint("kiosk-1", &[]);
    let dir = hub
        .data_dir
        .parent()
        .expect("hub dir has a parent")
        .join("agent");
    let mut agent = Agent::start(&dir, &[("EDGE_KEY", &key)]);
    let online = |hub: &Hub| ids(&list(hub, &["--status", "online"]));
    outpost_tests::wait_for(ONLINE, "the device online", || {
        (online(&hub) == [device]).then_some(())
    });

    agent.kill();
    let crash = std::process::Command::new("kill")
        .args(["-KILL", &hub.pid().to_string()])
        .status()
        .unwrap();
    assert!(crash.success());
    hub.restart();
    assert_eq!(
        online(&hub),
        Vec::<u64>::new(),
        "the crash's flag is cleared"
    );
    assert_eq!(ids(&list(&hub, &["--status", "offline"])), [device]);

    let _agent = Agent::start(&dir, &[]);
    outpost_tests::wait_for(ONLINE, "the device back online", || {
        (online(&hub) == [device]).then_some(())
    });
    assert!(hub.stop().success());
    assert_eq!(stored_online(&hub), 0, "a clean stop clears every flag");
}

#[test]
fn the_api_sends_the_total_and_refuses_bad_list_parameters_with_a_message() {
    let hub = Hub::start();
    for i in 0..3 {
        hub.create_endpoint(&format!("pos-{i}"), &[]);
    }
    let answer = api(
        &hub,
        "GET",
        "/api/endpoints?per_page=2&sort=name&order=desc",
        None,
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.total_header, Some(3));
    assert_eq!(answer.body["total"], 3);
    assert_eq!(answer.body["items"][0]["name"], "pos-2");
    assert_eq!(answer.body["items"].as_array().unwrap().len(), 2);

    let refused = [
        (
            "per_page=0",
            "per_page must be a whole number from 1 to 1000",
        ),
        (
            "per_page=100000",
            "per_page must be a whole number from 1 to 1000",
        ),
        (
            "per_page=ten",
            "per_page must be a whole number from 1 to 1000",
        ),
        ("page=0", "page must be a whole number"),
        (
            "sort=size",
            "unknown sort \"size\": use name, created, last_checkin",
        ),
        ("order=up", "unknown order \"up\": use asc, desc"),
        (
            "status=asleep",
            "unknown status \"asleep\": use pending, offline, online",
        ),
        ("kind=robot", "unknown kind \"robot\""),
        ("tag=a,b", "tag: a group or tag name cannot contain ','"),
        ("perpage=10", "unknown field `perpage`"),
    ];
    for (query, message) in refused {
        let answer = api(&hub, "GET", &format!("/api/endpoints?{query}"), None);
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        let text = answer.body["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{query}: {text}");
    }

    let out = hub.admin(&["list", "--per-page", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("per_page must be"));
}

#[test]
fn groups_and_tags_are_set_through_the_api() {
    let hub = Hub::start();
    let created = api(
        &hub,
        "POST",
        "/api/endpoints",
        Some(serde_json::json!({"name": "gw", "group": "edge", "tags": ["a", "b"]})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["tags"], serde_json::json!(["a", "b"]));
    let id = created.body["id"].as_u64().unwrap();
    let path = format!("/api/endpoints/{id}");

    let patched = api(
        &hub,
        "PATCH",
        &path,
        Some(serde_json::json!({"group": null, "tags": ["c"]})),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["group"], Value::Null);
    assert_eq!(patched.body["tags"], serde_json::json!(["c"]));

    // Only the tags change when the group is left out.
    let grouped = api(
        &hub,
        "PATCH",
        &path,
        Some(serde_json::json!({"group": "x"})),
    );
    assert_eq!(grouped.body["group"], "x");
    assert_eq!(grouped.body["tags"], serde_json::json!(["c"]));

    for i in 0..31 {
        let tag = serde_json::json!({ "tag": format!("t{i}") });
        assert_eq!(
            api(&hub, "POST", &format!("{path}/tags"), Some(tag)).status,
            200
        );
    }
    let full = api(
        &hub,
        "POST",
        &format!("{path}/tags"),
        Some(serde_json::json!({"tag": "z"})),
    );
    assert_eq!(full.status, 409);
    assert!(full.body["message"].as_str().unwrap().contains("32 tags"));
    let too_many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let refused = api(
        &hub,
        "PATCH",
        &path,
        Some(serde_json::json!({ "tags": too_many })),
    );
    assert_eq!(refused.status, 400);

    let removed = api(&hub, "DELETE", &format!("{path}/tags/T0"), None);
    assert_eq!(removed.status, 200);
    assert_eq!(removed.body["tags"].as_array().unwrap().len(), 31);
    assert_eq!(
        api(&hub, "DELETE", "/api/endpoints/999/tags/a", None).status,
        404
    );
    assert_eq!(
        api(
            &hub,
            "PATCH",
            "/api/endpoints/999",
            Some(serde_json::json!({"group": "x"}))
        )
        .status,
        404
    );
}
