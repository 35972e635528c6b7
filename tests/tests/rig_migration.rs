//! The device's own IP address changes mid-transfer (a modem reconnecting and getting a new address
//! from the carrier), in the netns rig: the hub in one namespace, the agent in another, the
//! emulated link between them (`netem/rig.sh`). `netem/rig-ip-change.sh` moves the agent from
//! 198.18.1.1 to 198.18.1.2 (and back) during a `docker save` and during a `docker logs -f`.
//!
//! The agent's socket is bound to the wildcard address and quinn leaves the client's source address
//! to the kernel, so its next packets leave from the new address without the agent doing anything;
//! the hub sees a new path, validates it, and the streams carry on. The test proves the bytes are
//! the engine's (SHA-256) and that the hub saw the device move.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_tests::docker::{
    chatter, direct_logs, numbered_lines, require_engine, sha256_bytes, sha256_of, DockerCli,
    Image, DOCKER_SOCKET,
};
use outpost_tests::rig::{Rig, HUB_IP};
use outpost_tests::{wait_for, Agent, AgentOptions, Hub};
use tokio::time::Instant;

/// The link in the rig: 10 Mbit/s up (agent → hub), 5 ms each way, so an 8 MB save takes about
/// 6.5 s and the address can change in the middle of it.
const PROFILE: &str = "description = \"rig migration test\"\n[both]\ndelay = \"5ms\"\n[up]\nrate = \"10mbit\"\nqueue = \"256KB\"\n";

/// Hub in the rig's hub namespace, agent in its agent namespace, the device enrolled and in
/// standby. Fields drop in order: processes first, then the rig, then the directory.
struct RigDevice {
    docker: DockerCli,
    agent: Agent,
    hub: Hub,
    id: u64,
    rig: Rig,
    tmp: tempfile::TempDir,
}

impl RigDevice {
    fn start(name: &str, hub_flags: &[&str]) -> Self {
        require_engine();
        let tmp = tempfile::tempdir().unwrap();
        let profile = tmp.path().join("rig-migration.toml");
        std::fs::write(&profile, PROFILE).unwrap();
        let prefix = format!("ofl{}{name}", std::process::id() % 100_000);
        let rig = Rig::up(&prefix, profile.to_str().unwrap());
        // Fixed ports are safe in a namespace this test just made.
        let agent_addr = format!("{HUB_IP}:4433");
        let mut flags = vec!["--public-addr", agent_addr.as_str()];
        flags.extend_from_slice(hub_flags);
        let hub = Hub::start_in_netns(
            &rig.netns("hub"),
            tmp.path().join("hub"),
            &agent_addr,
            &format!("{HUB_IP}:9443"),
            &flags,
        );
        let (id, key) = hub.create_endpoint(name, &[]);
        let agent_options = AgentOptions {
            netns: Some(rig.netns("agent")),
            transport: "lan",
        };
        let socket = format!("unix://{DOCKER_SOCKET}");
        let agent = Agent::start_with(
            &tmp.path().join("agent"),
            &agent_options,
            &[("EDGE_KEY", &key), ("DOCKER_HOST", &socket)],
        );
        hub.wait_status(id, "standby", Duration::from_secs(30));
        let docker = DockerCli::for_endpoint(&hub, id);
        Self {
            docker,
            agent,
            hub,
            id,
            rig,
            tmp,
        }
    }

    /// Wait until the hub sees the device at `ip`; returns the endpoint as shown then.
    fn wait_remote_ip(&self, ip: &str) -> serde_json::Value {
        let prefix = format!("{ip}:");
        wait_for(
            Duration::from_secs(10),
            &format!("the hub to see {ip}"),
            || {
                let shown = self.hub.show(self.id);
                let addr = shown["remote_addr"].as_str().unwrap_or_default().to_owned();
                addr.starts_with(&prefix).then_some(shown)
            },
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_ip_change_mid_transfer_keeps_save_and_logs_intact() {
    let d = tokio::task::block_in_place(|| RigDevice::start("moving", &[]));
    let (hub, docker, rig, tmp, id) = (&d.hub, &d.docker, &d.rig, &d.tmp, d.id);
    tokio::task::block_in_place(|| d.wait_remote_ip("198.18.1.1"));

    // A multi-megabyte save with the address changing in the middle.
    let image = tokio::task::block_in_place(|| Image::random("rig-save", 8_000_000, 21));
    let expected = tokio::task::block_in_place(|| image.direct_save_sha256(tmp.path()));
    let archive = tmp.path().join("through-hub.tar");
    let started = Instant::now();
    let mut save = docker.follow(&["save", "-o", archive.to_str().unwrap(), &image.tag]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !save.has_exited(),
        "the save ended before the address change"
    );
    let changed = tokio::task::block_in_place(|| rig.change_agent_ip());
    println!("{changed} at {:?} into the save", started.elapsed());
    let saved = tokio::task::block_in_place(|| save.finish(Duration::from_secs(120)));
    println!("save took {:?}", started.elapsed());
    assert!(saved.status.success(), "docker save: {}", saved.stderr);
    assert_eq!(
        sha256_of(&archive),
        expected,
        "the archive received across the address change differs from the engine's"
    );
    let moved = tokio::task::block_in_place(|| {
        wait_for(
            Duration::from_secs(10),
            "the hub to see the new address",
            || {
                let shown = hub.show(id);
                let addr = shown["remote_addr"].as_str().unwrap_or_default().to_owned();
                addr.starts_with("198.18.1.2:").then_some(shown)
            },
        )
    });
    assert!(moved["migrations"].as_u64().unwrap() >= 1, "{moved}");

    // A followed log with the address changing back in the middle.
    let script = chatter(50, 2000, "0.1");
    let container =
        tokio::task::block_in_place(|| docker.start("rig-logs", &["sh", "-c", &script]));
    let mut follower = docker.follow(&["logs", "-f", &container.name]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !follower.has_exited(),
        "logs -f ended before the address change"
    );
    let changed = tokio::task::block_in_place(|| rig.change_agent_ip());
    println!("{changed} during logs -f");
    let followed = tokio::task::block_in_place(|| follower.finish(Duration::from_secs(60)));
    assert!(followed.status.success(), "logs -f: {}", followed.stderr);
    let numbered: Vec<String> = followed
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(numbered, numbered_lines(50));
    let engine = tokio::task::block_in_place(|| direct_logs(&container.name));
    assert_eq!(sha256_bytes(&followed.stdout), sha256_bytes(&engine));
    let back = tokio::task::block_in_place(|| {
        wait_for(
            Duration::from_secs(10),
            "the hub to see the old address again",
            || {
                let shown = hub.show(id);
                let addr = shown["remote_addr"].as_str().unwrap_or_default().to_owned();
                addr.starts_with("198.18.1.1:").then_some(shown)
            },
        )
    });
    assert!(back["migrations"].as_u64().unwrap() >= 2, "{back}");
    assert!(
        !d.agent.log().contains("reconnecting after backoff"),
        "the agent reconnected instead of migrating:\n{}",
        d.agent.log()
    );
    println!("{}", rig.ctl(&["counters"]));
}

/// Runs `ip -n NETNS ARGS…`, which must succeed.
fn ip_in(netns: &str, args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(["-n", netns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Like a modem that drops its lease and gets another one a few seconds later: the address goes
/// first (sends fail meanwhile: no source address, no route), then a different one arrives. The
/// agent's socket, bound to the wildcard address, survives the failed sends and carries on from
/// the new address; the followed log loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_without_an_address_for_seconds_then_a_new_one_keeps_logs_intact() {
    let d = tokio::task::block_in_place(|| RigDevice::start("lease", &[]));
    let ns = d.rig.netns("agent");
    let script = chatter(80, 1000, "0.1");
    let container =
        tokio::task::block_in_place(|| d.docker.start("rig-lease", &["sh", "-c", &script]));
    let mut follower = d.docker.follow(&["logs", "-f", &container.name]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !follower.has_exited(),
        "logs -f ended before the address went"
    );
    ip_in(&ns, &["addr", "del", "198.18.1.1/24", "dev", "eth0"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    ip_in(&ns, &["addr", "add", "198.18.1.3/24", "dev", "eth0"]);
    ip_in(
        &ns,
        &[
            "route",
            "replace",
            "198.18.0.0/15",
            "via",
            "198.18.1.254",
            "src",
            "198.18.1.3",
        ],
    );
    let back = Instant::now();
    let followed = tokio::task::block_in_place(|| follower.finish(Duration::from_secs(60)));
    println!(
        "logs -f ended {:?} after the new address came",
        back.elapsed()
    );
    assert!(followed.status.success(), "logs -f: {}", followed.stderr);
    let numbered: Vec<String> = followed
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(numbered, numbered_lines(80));
    let engine = tokio::task::block_in_place(|| direct_logs(&container.name));
    assert_eq!(sha256_bytes(&followed.stdout), sha256_bytes(&engine));
    let shown = tokio::task::block_in_place(|| d.wait_remote_ip("198.18.1.3"));
    assert!(shown["migrations"].as_u64().unwrap() >= 1, "{shown}");
    assert!(
        !d.agent.log().contains("reconnecting after backoff"),
        "the agent reconnected instead of migrating:\n{}",
        d.agent.log()
    );
}

/// An idle device changes address between two check-ins, with the production timing (check-ins
/// every 25 s, summons wait 15 s). Nothing crosses the link until the agent's next check-in, so the
/// hub keeps answering to the old address, and an admin's `docker ps` right after the change waits
/// for that check-in or fails. The agent notices that its route to the hub now leaves from
/// another address (`agent::route`, every 2 s) and checks in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_agent_announces_a_new_address_at_once() {
    let d = tokio::task::block_in_place(|| {
        RigDevice::start(
            "idle",
            &["--checkin-interval", "25s", "--summon-timeout", "15s"],
        )
    });
    // Let the session's start-up traffic (snapshot, first check-in) settle, then change the address
    // just after a check-in, so that the next one is a whole interval away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = tokio::task::block_in_place(|| d.hub.show(d.id))["last_checkin"].clone();
    tokio::task::block_in_place(|| {
        wait_for(Duration::from_secs(40), "a fresh check-in", || {
            (d.hub.show(d.id)["last_checkin"] != first).then_some(())
        })
    });
    let changed = tokio::task::block_in_place(|| d.rig.change_agent_ip());
    let asked = Instant::now();
    let ps = tokio::task::block_in_place(|| d.docker.run(&["ps"]));
    let took = asked.elapsed();
    println!(
        "{changed}; docker ps right after: {took:?}, success {}: {}",
        ps.status.success(),
        String::from_utf8_lossy(&ps.stderr).trim()
    );
    assert!(
        ps.status.success(),
        "docker ps failed after the address change"
    );
    assert!(
        took < Duration::from_secs(5),
        "docker ps took {took:?} after an idle address change"
    );
}
