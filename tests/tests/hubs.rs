//! Several hubs on one PostgreSQL store (issue #18), end to end: real hub and agent processes on
//! loopback, a throwaway database on the test cluster (`scripts/postgres-setup.sh`), a real
//! dockerd behind the agent.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::disallowed_methods)] // the failover is timed on the wall clock, from a plain test thread

use std::time::{Duration, Instant};

use outpost_tests::bench_store::{BenchStore, StoreKind};
use outpost_tests::docker::{require_engine, DockerCli};
use outpost_tests::{wait_for, wait_for_result, Agent, Hub};
use serde_json::Value;

/// What issue #18 allows a failover: every agent of a killed hub online on another within 60 s.
const FAILOVER: Duration = Duration::from_secs(60);

fn on_store(db: &BenchStore, name: &str) -> Vec<String> {
    let mut flags = db.serve_flags();
    flags.extend(["--hub-name".to_owned(), name.to_owned()]);
    flags
}

fn start_hub(db: &BenchStore, name: &str) -> Hub {
    let flags = on_store(db, name);
    Hub::start_with_flags(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `outpost-hub hubs --json` on `hub`: each hub's name, health and devices held.
fn hubs(hub: &Hub) -> Vec<(String, String, u64)> {
    let listed: Vec<Value> = hub.cli_json(&["hubs", "--json"]);
    listed
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["health"].as_str().unwrap().to_owned(),
                h["devices"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The ids `hub`'s list shows online.
fn online(hub: &Hub) -> Vec<u64> {
    let list = hub.admin_json(&["list", "--json", "--status", "online"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn hubs_on_one_store_share_the_fleet_and_a_killed_hubs_device_moves_to_another() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let mut a = start_hub(&db, "hub-a");
    let mut b = start_hub(&db, "hub-b");
    let ca = |hub: &Hub| std::fs::read(hub.data_dir.join("ca.pem")).unwrap();
    assert_eq!(ca(&a), ca(&b), "the second hub took the store's CA");
    // The admin token is the fleet's: the first hub wrote it, every hub takes it.
    let token = a.data_dir.join("admin.token");
    assert!(!b.data_dir.join("admin.token").exists());
    std::fs::copy(&token, b.data_dir.join("admin.token")).unwrap();

    // hub-b found hub-a registered when it started, so its tokens and welcomes list both; the
    // device enrols and connects through hub-b, the first address of its list.
    let (id, key) = b.create_endpoint("kiosk", &[]);
    let agent_dir = b.data_dir.parent().unwrap().join("kiosk");
    let mut agent = Agent::start(&agent_dir, &[("EDGE_KEY", &key)]);
    b.wait_status(id, "standby", Duration::from_secs(20));
    let held = |hub: &Hub, by: &str| hubs(hub).iter().any(|(n, _, d)| n == by && *d == 1);
    wait_for(Duration::from_secs(15), "hub-b to hold the device", || {
        held(&a, "hub-b").then_some(())
    });
    // The stock docker CLI through the hub that holds the device.
    DockerCli::for_endpoint(&b, id).ok(&["ps"]);

    // A restart of hub-a leaves hub-b's device online: a hub releases only its own at a start.
    let flags = on_store(&db, "hub-a");
    a.restart_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(online(&a), [id]);

    // kill -9 hub-b: the agent finds hub-a answering while hub-b is silent, and moves.
    let killed = Instant::now();
    b.crash();
    let moved = wait_for_result(FAILOVER, || held(&a, "hub-a").then(|| killed.elapsed()))
        .unwrap_or_else(|| {
            panic!(
                "the device is not online on hub-a {FAILOVER:?} after hub-b was killed; agent \
                 log:\n{}\nhub-a log:\n{}",
                agent.log(),
                a.log()
            )
        });
    assert!(moved < FAILOVER, "took {moved:?}");
    assert_eq!(a.show(id)["status"], "standby");
    assert_eq!(online(&a), [id], "shown online once, on hub-a");
    let listed = hubs(&a);
    assert!(
        listed
            .iter()
            .any(|(name, _, devices)| name == "hub-b" && *devices == 0),
        "{listed:?}"
    );
    let log = agent.log();
    assert!(
        log.contains("another hub of the fleet answers"),
        "the agent moved because hub-a answered, not after its idle timeout:\n{log}"
    );
    DockerCli::for_endpoint(&a, id).ok(&["ps"]);

    // The killed hub comes back; removing the device through it closes the session hub-a holds
    // (PostgreSQL NOTIFY), within the second issue #18 allows.
    let flags = on_store(&db, "hub-b");
    b.restart_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let removed = b.api_call("DELETE", &format!("/api/endpoints/{id}"), None);
    assert_eq!(
        removed.status,
        200,
        "{}",
        String::from_utf8_lossy(&removed.body)
    );
    let asked = Instant::now();
    let exit = agent.wait_exit(Duration::from_secs(10));
    let closed = asked.elapsed();
    assert!(
        exit.stderr.contains("removed by an administrator"),
        "{}",
        exit.stderr
    );
    assert!(
        closed < Duration::from_secs(1),
        "the session closed {closed:?} after the removal"
    );
    assert_eq!(
        a.api_call("GET", &format!("/api/endpoints/{id}"), None)
            .status,
        404
    );
}

#[test]
fn a_hub_that_joins_later_is_told_to_connected_agents_and_taken_when_theirs_dies() {
    let dir = tempfile::tempdir().unwrap();
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let mut a = start_hub(&db, "hub-a");
    // The device connects while hub-a is the fleet's only hub: its token and welcome list one.
    let (id, key) = a.create_endpoint("sign", &[]);
    let agent_dir = a.data_dir.parent().unwrap().join("sign");
    let agent = Agent::start(&agent_dir, &[("EDGE_KEY", &key)]);
    a.wait_status(id, "standby", Duration::from_secs(20));

    let b = start_hub(&db, "hub-b");
    std::fs::copy(
        a.data_dir.join("admin.token"),
        b.data_dir.join("admin.token"),
    )
    .unwrap();
    // hub-a's next heartbeat sees hub-b and tells its sessions.
    wait_for(
        Duration::from_secs(15),
        "the agent to hear of hub-b",
        || {
            agent
                .log()
                .contains("the fleet's hubs changed")
                .then_some(())
        },
    );
    assert!(agent.log().contains(&b.agent_addr), "{}", agent.log());

    let killed = Instant::now();
    a.crash();
    let moved = wait_for_result(FAILOVER, || {
        hubs(&b)
            .iter()
            .any(|(n, _, d)| n == "hub-b" && *d == 1)
            .then(|| killed.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "the device is not online on hub-b {FAILOVER:?} after hub-a was killed; agent \
             log:\n{}",
            agent.log()
        )
    });
    assert!(moved < FAILOVER, "took {moved:?}");
    assert!(agent.log().contains("another hub of the fleet answers"));
    assert_eq!(b.show(id)["status"], "standby");
}
