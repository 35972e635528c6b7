//! Enrolment and identity, end to end: real hub and agent processes on loopback.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_protocol::token::JoinToken;
use outpost_tests::{Agent, Hub};
use serde_json::Value;

const ONLINE: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(20);

fn agent_dir(hub: &Hub, name: &str) -> std::path::PathBuf {
    hub.data_dir
        .parent()
        .expect("hub dir has a parent")
        .join(name)
}

#[test]
fn an_agent_enrols_goes_online_and_can_be_summoned() {
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("kiosk-17", &[]);
    let agent = Agent::start(&agent_dir(&hub, "kiosk-17"), &[("EDGE_KEY", &key)]);
    let shown = hub.wait_status(id, "standby", ONLINE);
    assert_eq!(shown["agent_id"], agent.agent_id());
    assert_eq!(shown["enroll_count"], 1);
    assert!(shown["last_checkin"].is_string(), "{shown}");
    assert!(shown["rtt_ms"].as_f64().is_some(), "{shown}");
    assert!(shown["remote_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    let out = hub.admin(&["summon", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready in"));
    assert_eq!(hub.show(id)["status"], "active");
    // The hub's standby period is 3 s: with nothing to do the agent returns to standby.
    hub.wait_status(id, "standby", Duration::from_secs(15));

    let list = hub.admin_json(&["list", "--json", "--status", "standby"]);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], id);
}

#[test]
fn a_reused_token_is_refused_and_the_first_binding_stays() {
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("pos-1", &[]);
    let first = Agent::start(&agent_dir(&hub, "first"), &[("EDGE_KEY", &key)]);
    hub.wait_status(id, "standby", ONLINE);
    let first_id = first.agent_id();

    let mut second = Agent::start(&agent_dir(&hub, "second"), &[("EDGE_KEY", &key)]);
    let exit = second.wait_exit(EXIT);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("already bound to another device"),
        "{}",
        exit.stderr
    );

    let shown = hub.show(id);
    assert_eq!(shown["agent_id"], first_id);
    assert_eq!(shown["enroll_count"], 1);
    assert_eq!(shown["status"], "standby");
}

#[test]
fn a_pre_assigned_agent_id_must_match() {
    let hub = Hub::start();
    let reserved = "5b0b1e34-8d5a-4c55-9a3e-3c1f4b7d2a10";
    let (id, key) = hub.create_endpoint("sign-4", &["--agent-id", reserved]);

    let mut wrong = Agent::start(
        &agent_dir(&hub, "wrong"),
        &[
            ("EDGE_KEY", &key),
            ("EDGE_ID", "0d7c1f5e-2b4a-4e7b-8f1d-9a6c3b2e1f00"),
        ],
    );
    let exit = wrong.wait_exit(EXIT);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("reserved for another agent id"),
        "{}",
        exit.stderr
    );
    assert!(hub.show(id)["agent_id"].is_null());

    let right = Agent::start(
        &agent_dir(&hub, "right"),
        &[("EDGE_KEY", &key), ("EDGE_ID", reserved)],
    );
    let shown = hub.wait_status(id, "standby", ONLINE);
    assert_eq!(shown["agent_id"], reserved);
    assert_eq!(right.agent_id(), reserved);
}

#[test]
fn an_agent_refuses_a_hub_whose_ca_does_not_match_the_token() {
    let genuine = Hub::start();
    let impostor = Hub::start();
    let (id, key) = genuine.create_endpoint("kiosk-9", &[]);
    // Same token, but its address now leads to another hub (DNS hijack, wrong config).
    let mut token = JoinToken::decode(&key).unwrap();
    token.hub_addrs = vec![impostor.agent_addr.clone()];
    let mut agent = Agent::start(
        &agent_dir(&genuine, "fooled"),
        &[("EDGE_KEY", &token.encode())],
    );
    let exit = agent.wait_exit(EXIT);
    assert_eq!(exit.code, Some(3), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("is not the hub this token trusts"),
        "{}",
        exit.stderr
    );
    assert!(
        !impostor.log().contains("enrolled"),
        "the impostor saw an enrolment"
    );
    assert!(genuine.show(id)["agent_id"].is_null());
}

#[test]
fn a_restarted_agent_keeps_its_identity_and_does_not_re_enrol() {
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("kiosk-2", &[]);
    let dir = agent_dir(&hub, "kiosk-2");
    let mut agent = Agent::start(&dir, &[("EDGE_KEY", &key)]);
    let before = hub.wait_status(id, "standby", ONLINE);
    agent.kill();
    hub.wait_status(id, "offline", Duration::from_secs(30));

    // No EDGE_KEY this time: the stored certificate is enough.
    let agent = Agent::start(&dir, &[]);
    let after = hub.wait_status(id, "standby", ONLINE);
    assert_eq!(after["agent_id"], before["agent_id"]);
    assert_eq!(after["enroll_count"], 1);
    assert!(
        !agent.log().contains("enrolled endpoint"),
        "{}",
        agent.log()
    );
}

#[test]
fn agents_come_back_by_themselves_after_a_hub_restart() {
    let mut hub = Hub::start();
    let mut ids = Vec::new();
    let mut agents = Vec::new();
    for name in ["a", "b", "c"] {
        let (id, key) = hub.create_endpoint(name, &[]);
        agents.push(Agent::start(&agent_dir(&hub, name), &[("EDGE_KEY", &key)]));
        ids.push(id);
    }
    for id in &ids {
        hub.wait_status(*id, "standby", ONLINE);
    }
    hub.restart();
    for id in &ids {
        let shown = hub.wait_status(*id, "standby", Duration::from_secs(60));
        assert_eq!(shown["enroll_count"], 1);
    }
    for agent in &mut agents {
        assert!(agent.is_running());
    }
}

#[test]
fn after_a_hub_crash_agents_reconnect_at_their_next_check_in_not_their_idle_timeout() {
    let mut hub = Hub::start();
    let (id, key) = hub.create_endpoint("crash", &[]);
    let mut agent = Agent::start(&agent_dir(&hub, "crash"), &[("EDGE_KEY", &key)]);
    hub.wait_status(id, "standby", ONLINE);
    hub.crash();
    hub.restart();
    // The crashed hub sent no close. The new one answers the agent's next check-in (1 s interval
    // here) with a stateless reset the agent trusts, because the reset key survived the crash;
    // without it the agent would sit out its 110 s idle timeout. The 20 s bound is far from both
    // (so a loaded machine cannot reach it); the log shows that the reset ended the session.
    let shown = hub.wait_status(id, "standby", Duration::from_secs(20));
    assert_eq!(shown["enroll_count"], 1);
    let log = agent.log();
    assert!(log.contains("connection lost: reset by peer"), "{log}");
    assert!(agent.is_running());
    agent.kill();
}

#[test]
fn bytes_on_the_wire_add_up_over_the_endpoints_connections() {
    let mut hub = Hub::start();
    let (id, key) = hub.create_endpoint("metered", &[]);
    let mut agent = Agent::start(&agent_dir(&hub, "metered"), &[("EDGE_KEY", &key)]);
    hub.wait_status(id, "standby", ONLINE);
    let total = |shown: &Value| {
        let total = &shown["wire_total"];
        total["tx_bytes"].as_u64().unwrap() + total["rx_bytes"].as_u64().unwrap()
    };
    // A few check-ins on the first connection (1 s apart here).
    std::thread::sleep(Duration::from_secs(3));
    let first = hub.show(id);
    let live =
        first["wire"]["tx_bytes"].as_u64().unwrap() + first["wire"]["rx_bytes"].as_u64().unwrap();
    assert!(live > 0 && total(&first) == live, "{first}");
    // A clean restart ends the connection and stores its bytes; the agent comes back on a new one.
    hub.restart();
    let second = hub.wait_status(id, "standby", Duration::from_secs(60));
    let live =
        second["wire"]["tx_bytes"].as_u64().unwrap() + second["wire"]["rx_bytes"].as_u64().unwrap();
    assert!(
        total(&second) >= total(&first) + live,
        "the first connection's bytes were not kept: {first} then {second}"
    );
    agent.kill();
}

#[test]
fn removing_an_endpoint_disconnects_it_within_a_second_and_revokes_its_certificate() {
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("stolen", &[]);
    let dir = agent_dir(&hub, "stolen");
    let mut agent = Agent::start(&dir, &[("EDGE_KEY", &key)]);
    hub.wait_status(id, "standby", ONLINE);

    let out = hub.admin(&["rm", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("its connection closed"));
    // "Within a second" is the hub closing the connection as part of the removal: the agent
    // exits on that close (its reason below), not at a later check-in. On loopback the close
    // arrives in milliseconds. The bound is 5 s from the command's return; a 1 s bound timed
    // from before the command also timed the admin CLI's start and TLS handshake, which a
    // loaded 2-core machine stretches past a second.
    let exit = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(exit.code, Some(4), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("removed by an administrator"),
        "{}",
        exit.stderr
    );

    // The old certificate is refused from now on.
    let mut again = Agent::start(&dir, &[]);
    let exit = again.wait_exit(EXIT);
    assert_eq!(exit.code, Some(4), "{}", exit.stderr);
    assert!(exit.stderr.contains("revoked"), "{}", exit.stderr);
    let out = hub.admin(&["show", &id.to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn fleet_devices_wait_in_pending_until_approved() {
    let hub = Hub::start();
    let (_fleet, key) = hub.create_endpoint("pos", &["--fleet"]);
    let _one = Agent::start(&agent_dir(&hub, "one"), &[("EDGE_KEY", &key)]);
    let _two = Agent::start(&agent_dir(&hub, "two"), &[("EDGE_KEY", &key)]);
    // Pending in the store as soon as they enrol; connected once their sessions are up (`wire`
    // is shown only for a live connection) — a summon before that would find them offline.
    let pending = outpost_tests::wait_for(ONLINE, "two pending, connected devices", || {
        let list = hub.admin_json(&["list", "--json", "--status", "pending"]);
        let connected = list["items"]
            .as_array()
            .is_some_and(|items| items.iter().all(|item| !item["wire"].is_null()));
        (list["total"] == 2 && connected).then_some(list)
    });
    let first = pending["items"][0]["id"].as_u64().unwrap();
    let second = pending["items"][1]["id"].as_u64().unwrap();

    let out = hub.admin(&["summon", &first.to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pending approval"));

    let out = hub.admin(&["approve", &first.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hub.wait_status(first, "standby", ONLINE);
    assert_eq!(hub.show(second)["status"], "pending");
    let out = hub.admin(&["summon", &first.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
