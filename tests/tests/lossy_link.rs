//! Management on the worst link we design for: 2G EDGE (`netem/profiles/edge-2g.toml`) with 30 %
//! random loss in each direction on top of its own 1 %. `docker ps`, `docker logs --tail 100` and
//! `docker exec … echo` each complete within a bound derived from the link below.
//!
//! # The bounds
//! - Round trip: 400 ms each way with 40 ms (normal) jitter → RTT ≈ 0.8 s, 0.9 s allowing for
//!   jitter. Serialisation of a full 1200-byte packet: 48 ms at 200 kbit/s up, 40 ms at 240 kbit/s
//!   down; every answer here is a few kilobytes, so the rate adds well under a second and round trips
//!   dominate.
//! - Loss: a packet crosses with p = 0.7 × 0.99 ≈ 0.69, so one exchange (a packet and its answer)
//!   succeeds at the first try with p ≈ 0.48 and needs on average about two tries.
//! - A lost packet is resent after QUIC's probe timeout, PTO ≈ smoothed RTT + 4 × RTT variance +
//!   max ACK delay ≈ 1.5 s here, and the PTO doubles while a retransmission is lost too.
//! - Budget per exchange: one RTT plus three losses in a row, the PTO doubling each time:
//!   0.9 + 1.5 + 3 + 6 = 11.4 s. Three losses in a row happen to one exchange in 0.52³ ≈ 14 % of
//!   cases; summed over a command's exchanges the budget also absorbs the rarer longer runs.
//! - Exchanges per command: every HTTP request costs two (the stream preface and the agent's
//!   `Ready`, then the request and its response); the first command also summons the device from
//!   standby (the `Summon` on the control stream and its `Ready`). The hub keeps the device active
//!   for its production default of 60 s after a command, as an admin's session of commands finds it.
//! - The docker CLI gives its first `/_ping` only 2 s (the hub logs the client closing 2.0 s into
//!   each command) and then pings again, so each command pays 2 s and a second ping on top.
//!   - `docker ps`: summon + ping + ping + `/containers/json` = 7 exchanges → 2 + 79.8 = 81.8 s.
//!   - `docker logs --tail 100`: ping + ping + logs = 6 → 2 + 68.4 = 70.4 s.
//!   - `docker exec c echo`: ping + ping + exec create + exec start (upgraded; its output and the
//!     end of stream ride on the same exchange) + exec inspect = 10 → 2 + 114 = 116 s.
//!
//! The hub's summon timeout is raised to 30 s here (its default, 15 s, is under three PTO-doubled
//! retries on this link).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_netem::control::Controllable;
use outpost_netem::Profile;
use outpost_tests::docker::{direct, require_engine, unique, Container, DockerCli, TEST_IMAGE};
use outpost_tests::link::{DeviceOptions, RelayedDevice};
use tokio::time::Instant;

/// Budget per exchange: one RTT (0.9 s) plus three probe timeouts, doubling (1.5 + 3 + 6 s).
const EXCHANGE: Duration = Duration::from_millis(900 + 1500 + 3000 + 6000);
/// How long the docker CLI waits for its first ping before it gives up on it and pings again.
const CLI_FIRST_PING: Duration = Duration::from_secs(2);

/// A command's bound: the CLI's abandoned first ping plus its exchanges.
fn bound(exchanges: u32) -> Duration {
    CLI_FIRST_PING + EXCHANGE * exchanges
}

fn edge_with_heavy_loss() -> Profile {
    let mut profile = Profile::load("edge-2g").unwrap();
    profile.up.loss.random = 0.3;
    profile.down.loss.random = 0.3;
    profile
}

/// Run one command through the hub; returns its stdout and how long it took.
fn timed(docker: &DockerCli, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = docker.ok(args);
    (out, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_2g_with_30_percent_loss_still_serves_ps_logs_and_exec() {
    require_engine();
    // Enrol on the plain EDGE link (its own 1 % loss), then make it worse.
    let options = DeviceOptions {
        profile: Profile::load("edge-2g").unwrap(),
        seed: 7,
        transport: "cellular",
        hub_flags: ["--summon-timeout", "30s", "--standby-after", "60s"]
            .map(String::from)
            .to_vec(),
        ready_within: Duration::from_secs(90),
        ..DeviceOptions::default()
    };
    let d = RelayedDevice::start("edge", options).await;
    let script = "i=0; while [ $i -lt 300 ]; do echo log line $i; i=$((i+1)); done; sleep 600";
    // Started on the engine directly, so that the device is still in standby for the first command.
    let container = Container {
        name: unique("edge"),
    };
    let started = direct(&[
        "run",
        "-d",
        "--name",
        &container.name,
        TEST_IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert!(started.status.success(), "{started:?}");
    d.link.set_profile(edge_with_heavy_loss());

    let report = tokio::task::block_in_place(|| {
        let (ps, ps_took) = timed(&d.docker, &["ps", "--format", "{{.Names}}"]);
        assert!(ps.contains(&container.name), "{ps}");
        let (logs, logs_took) = timed(&d.docker, &["logs", "--tail", "100", &container.name]);
        let expected: Vec<String> = (200..300).map(|i| format!("log line {i}")).collect();
        assert_eq!(logs.lines().collect::<Vec<_>>(), expected);
        let (echo, exec_took) = timed(&d.docker, &["exec", &container.name, "echo", "over edge"]);
        assert_eq!(echo, "over edge\n");
        [
            ("ps", ps_took, 7),
            ("logs --tail 100", logs_took, 6),
            ("exec echo", exec_took, 10),
        ]
    });
    let counters = d.link.counters();
    println!("{counters}");
    assert!(
        counters.up.dropped_loss + counters.down.dropped_loss > 10,
        "the link dropped too little to mean anything: {counters}"
    );
    let over = report
        .iter()
        .any(|(_, took, exchanges)| *took > bound(*exchanges));
    if over {
        println!("hub log:\n{}\nagent log:\n{}", d.hub.log(), d.agent.log());
    }
    for (command, took, exchanges) in report {
        let bound = bound(exchanges);
        println!("docker {command}: {took:?} (bound {bound:?}, {exchanges} exchanges)");
        assert!(
            took <= bound,
            "docker {command} took {took:?}, over its bound {bound:?}"
        );
    }
}
