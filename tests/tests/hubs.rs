//! Several hubs on one PostgreSQL store (issue #18), end to end: real hub and agent processes on
//! loopback, a throwaway database on the test cluster (`scripts/postgres-setup.sh`), a real
//! dockerd behind the agent.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(clippy::disallowed_methods)] // the failover is timed on the wall clock, from a plain test thread

use std::time::{Duration, Instant};

use outpost_certs::{cert_to_pem, ClientRole, HubPki};
use outpost_protocol::token::JoinToken;
use outpost_protocol::wire::{EnrollReply, RefusalReason};
use outpost_tests::bench_store::{BenchStore, StoreKind};
use outpost_tests::docker::{chatter, numbered_lines, random_bytes, require_engine, DockerCli};
use outpost_tests::hubs::{hub_flags, start_hub};
use outpost_tests::{raw_enrol, wait_for, wait_for_result, Agent, ApiAnswer, Hub};
use serde_json::Value;

/// What issue #18 allows a failover: every agent of a killed hub online on another within 60 s.
const FAILOVER: Duration = Duration::from_secs(60);

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
    let flags = hub_flags(&db, "hub-a");
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
    let flags = hub_flags(&db, "hub-b");
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

#[test]
fn docker_through_any_hub_reaches_a_device_another_hub_holds() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let a = start_hub(&db, "hub-a");
    let b = start_hub(&db, "hub-b");
    std::fs::copy(
        a.data_dir.join("admin.token"),
        b.data_dir.join("admin.token"),
    )
    .unwrap();
    let (id, key) = b.create_endpoint("pos", &[]);
    let agent_dir = b.data_dir.parent().unwrap().join("pos");
    let _agent = Agent::start(&agent_dir, &[("EDGE_KEY", &key)]);
    b.wait_status(id, "standby", Duration::from_secs(20));
    // hub-a's next heartbeat (5 s) knows hub-b alive; until then the device shows offline there.
    wait_for(
        Duration::from_secs(15),
        "hub-a to see the device on hub-b",
        || (a.show(id)["status"] == "standby").then_some(()),
    );
    assert_eq!(a.show(id)["hub"], "hub-b", "{}", a.show(id));
    assert_eq!(b.show(id)["hub"], "hub-b");

    // Through hub-a, which does not hold the device: a call, a stream and a hijack.
    let docker = DockerCli::for_endpoint(&a, id);
    assert!(docker.ok(&["ps"]).starts_with("CONTAINER ID"));
    let lines = 15;
    let talker = docker.start("relay-logs", &["sh", "-c", &chatter(lines, 0, "0.2")]);
    let followed = docker
        .follow(&["logs", "-f", &talker.name])
        .finish(Duration::from_secs(60));
    assert!(followed.status.success(), "{}", followed.stderr);
    assert_eq!(
        followed.lines(),
        numbered_lines(lines),
        "logs -f through hub-a"
    );
    let sleeper = docker.start("relay-exec", &["sleep", "300"]);
    let input = random_bytes(200_000, 11);
    let out = docker.with_stdin(&["exec", "-i", &sleeper.name, "cat"], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == input,
        "exec -i through hub-a returned other bytes"
    );

    // A summon through hub-a is answered by hub-b, which holds the session.
    let summoned = a.api_call("POST", &format!("/api/endpoints/{id}/summon"), None);
    assert_eq!(
        summoned.status,
        200,
        "{}",
        String::from_utf8_lossy(&summoned.body)
    );
    assert_eq!(json(&summoned)["status"], "active");
    assert_eq!(b.show(id)["status"], "active");
}

#[test]
fn the_peer_routes_serve_only_a_registered_hubs_certificate() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let a = start_hub(&db, "hub-a");
    let (id, key) = a.create_endpoint("kiosk", &[]);
    let agent_dir = a.data_dir.parent().unwrap().join("kiosk");
    let _agent = Agent::start(&agent_dir, &[("EDGE_KEY", &key)]);
    a.wait_status(id, "standby", Duration::from_secs(20));
    let ping = format!("/peer/v1/endpoints/{id}/docker/_ping");

    // The admin token is not a hub's certificate.
    let with_token = a.api_call("GET", &ping, None);
    assert_eq!(
        with_token.status,
        403,
        "{}",
        String::from_utf8_lossy(&with_token.body)
    );
    // A certificate from the fleet's CA for a hub the store does not know.
    let intruder = peer_call(&a, "hub-x", &ping);
    assert_eq!(
        intruder.status,
        403,
        "{}",
        String::from_utf8_lossy(&intruder.body)
    );
    assert!(String::from_utf8_lossy(&intruder.body).contains("not registered"));
    // The registered hub's name gets the device's engine; the hub still serves its admins.
    let registered = peer_call(&a, "hub-a", &ping);
    assert_eq!(
        registered.status,
        200,
        "{}",
        String::from_utf8_lossy(&registered.body)
    );
    assert_eq!(registered.body, b"OK");
    assert_eq!(a.show(id)["status"], "active");
    // A forwarded request is never forwarded again: a device this hub does not hold is offline.
    let (absent, _) = a.create_endpoint("never-connected", &[]);
    let elsewhere = peer_call(
        &a,
        "hub-a",
        &format!("/peer/v1/endpoints/{absent}/docker/_ping"),
    );
    assert_eq!(
        elsewhere.status,
        503,
        "{}",
        String::from_utf8_lossy(&elsewhere.body)
    );
    assert!(String::from_utf8_lossy(&elsewhere.body).contains("offline"));
}

#[test]
fn a_hub_stopping_cleanly_hands_its_device_to_another_hub() {
    let dir = tempfile::tempdir().unwrap();
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let a = start_hub(&db, "hub-a");
    let mut b = start_hub(&db, "hub-b");
    std::fs::copy(
        a.data_dir.join("admin.token"),
        b.data_dir.join("admin.token"),
    )
    .unwrap();
    // The device's list starts with hub-b, where it enrolled; hub-a is second.
    let (id, key) = b.create_endpoint("signage", &[]);
    let agent_dir = b.data_dir.parent().unwrap().join("signage");
    let agent = Agent::start(&agent_dir, &[("EDGE_KEY", &key)]);
    b.wait_status(id, "standby", Duration::from_secs(20));

    let stopped = Instant::now();
    let status = b.stop();
    assert!(status.success(), "{status:?}");
    // Handed over: the device dials hub-a first, within the notice's spread (5 s for one agent
    // on one other hub), instead of waiting for hub-b to come back.
    let moved = wait_for_result(Duration::from_secs(20), || {
        hubs(&a)
            .iter()
            .any(|(n, _, d)| n == "hub-a" && *d == 1)
            .then(|| stopped.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "the device did not move to hub-a; agent log:\n{}",
            agent.log()
        )
    });
    assert!(moved < Duration::from_secs(12), "took {moved:?}");
    let log = agent.log();
    assert!(
        log.contains("to another hub of the fleet first"),
        "the agent was handed over, not lost:\n{log}"
    );
    assert_eq!(a.show(id)["hub"], "hub-a");
    let listed = hubs(&a);
    assert!(
        listed
            .iter()
            .any(|(name, health, devices)| name == "hub-b" && health == "stopped" && *devices == 0),
        "{listed:?}"
    );
}

#[test]
fn enrolment_works_through_any_hub_and_a_bound_token_is_refused_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let a = start_hub(&db, "hub-a");
    let b = start_hub(&db, "hub-b");
    let (id, key) = a.create_endpoint("kiosk", &[]);
    let token = JoinToken::decode(&key).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The token was made on hub-a; the device enrols through hub-b, which shares the store.
    let first = raw_enrol::request(&token, token.secret.clone(), "1.0");
    let accepted = runtime.block_on(raw_enrol::enrol(&b, &first));
    assert!(matches!(accepted, EnrollReply::Accepted(_)), "{accepted:?}");
    // Another device with the same token, through hub-a: the token is bound.
    let second = raw_enrol::request(&token, token.secret.clone(), "1.0");
    match runtime.block_on(raw_enrol::enrol(&a, &second)) {
        EnrollReply::Refused(refusal) => {
            assert_eq!(refusal.reason, RefusalReason::AlreadyBound, "{refusal:?}")
        }
        EnrollReply::Accepted(_) => panic!("a bound token was accepted on the other hub"),
    }
    assert_eq!(a.show(id)["agent_id"], first.agent_id.to_string());
}

#[test]
fn a_second_hub_under_a_running_hubs_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let mut a = start_hub(&db, "hub-a");
    let other = dir.path().join("other");
    let mut args = vec![
        "serve".to_owned(),
        "--data-dir".to_owned(),
        other.display().to_string(),
        "--agent-listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--api-listen".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    args.extend(hub_flags(&db, "hub-a"));
    let refused = std::process::Command::new(outpost_tests::bin_dir().join("outpost-hub"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("is taken by a running hub"), "{stderr}");
    // The running hub is untouched and still its name's; a restart on its own directory is fine.
    assert_eq!(hubs(&a), [("hub-a".to_owned(), "alive".to_owned(), 0)]);
    let flags = hub_flags(&db, "hub-a");
    a.restart_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(hubs(&a)[0].1, "alive");
}

fn json(answer: &ApiAnswer) -> Value {
    serde_json::from_slice(&answer.body).unwrap()
}

/// `GET path` on `hub`'s API presenting a hub certificate for `name`, issued from a copy of the
/// hub's CA (what any holder of the fleet's CA key could make).
fn peer_call(hub: &Hub, name: &str, path: &str) -> ApiAnswer {
    let ca_dir = tempfile::tempdir().unwrap();
    for file in ["ca.pem", "ca.key"] {
        std::fs::copy(hub.data_dir.join(file), ca_dir.path().join(file)).unwrap();
    }
    let pki = HubPki::load_or_create(ca_dir.path(), &[]).unwrap();
    let (issued, key) = pki
        .issue_client_cert_with_key(&ClientRole::Hub(name.to_owned()), Duration::from_secs(3600))
        .unwrap();
    let identity =
        reqwest::Identity::from_pem(format!("{}{key}", cert_to_pem(&issued.der)).as_bytes())
            .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(hub.data_dir.join("ca.pem")).unwrap())
        .unwrap();
    let base = std::fs::read_to_string(hub.data_dir.join("api.url")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .identity(identity)
            .build()
            .unwrap();
        let response = client
            .get(format!("{}{path}", base.trim()))
            .send()
            .await
            .unwrap();
        ApiAnswer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    })
}
