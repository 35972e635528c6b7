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
//!   max ACK delay ≈ 1.5 s here. Check-ins cross every second and their ACKs keep resetting the PTO
//!   backoff, so retries stay about one PTO apart instead of doubling.
//! - Budget per exchange: one RTT plus three PTOs = 0.9 + 3 × 1.5 = 5.4 s: three losses in a row
//!   (0.52³ ≈ 14 % for one exchange) are paid for in full, and the commands' several exchanges
//!   average out the rarer longer runs.
//! - Exchanges per command (the device falls back to standby 3 s after each command, so each starts
//!   with a summon: the `Summon` on the control stream and its `Ready`): every HTTP request costs
//!   two, the stream preface and its `Ready` reply, then the request and its response.
//!   - `docker ps`: summon + `/_ping` + `/containers/json` = 5 exchanges → 27 s.
//!   - `docker logs --tail 100`: summon + ping + inspect + logs = 7 → 37.8 s.
//!   - `docker exec c echo`: summon + ping + exec create + exec start (upgraded; its output and
//!     the end of stream ride on the same exchange) + exec inspect = 9 → 48.6 s.
//!
//! The hub's summon timeout is raised to 30 s here (its default, 15 s, is under three PTO-doubled
//! retries on this link).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_netem::control::Controllable;
use outpost_netem::Profile;
use outpost_tests::docker::{require_engine, DockerCli};
use outpost_tests::link::{DeviceOptions, RelayedDevice};
use tokio::time::Instant;

/// Budget per exchange: one RTT (0.9 s) plus three probe timeouts (3 × 1.5 s).
const EXCHANGE: Duration = Duration::from_millis(900 + 3 * 1500);

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
        hub_flags: vec!["--summon-timeout".into(), "30s".into()],
        ready_within: Duration::from_secs(90),
    };
    let d = RelayedDevice::start("edge", options).await;
    let script = "i=0; while [ $i -lt 300 ]; do echo log line $i; i=$((i+1)); done; sleep 600";
    let container = tokio::task::block_in_place(|| d.docker.start("edge", &["sh", "-c", script]));
    tokio::task::block_in_place(|| d.hub.wait_status(d.id, "standby", Duration::from_secs(30)));
    d.link.set_profile(edge_with_heavy_loss());

    let report = tokio::task::block_in_place(|| {
        let (ps, ps_took) = timed(&d.docker, &["ps", "--format", "{{.Names}}"]);
        assert!(ps.contains(&container.name), "{ps}");
        wait_standby(&d);
        let (logs, logs_took) = timed(&d.docker, &["logs", "--tail", "100", &container.name]);
        let expected: Vec<String> = (200..300).map(|i| format!("log line {i}")).collect();
        assert_eq!(logs.lines().collect::<Vec<_>>(), expected);
        wait_standby(&d);
        let (echo, exec_took) = timed(&d.docker, &["exec", &container.name, "echo", "over edge"]);
        assert_eq!(echo, "over edge\n");
        [
            ("ps", ps_took, 5),
            ("logs --tail 100", logs_took, 7),
            ("exec echo", exec_took, 9),
        ]
    });
    let counters = d.link.counters();
    println!("{counters}");
    assert!(
        counters.up.dropped_loss + counters.down.dropped_loss > 10,
        "the link dropped too little to mean anything: {counters}"
    );
    for (command, took, exchanges) in report {
        let bound = EXCHANGE * exchanges;
        println!("docker {command}: {took:?} (bound {bound:?}, {exchanges} exchanges)");
        assert!(
            took <= bound,
            "docker {command} took {took:?}, over its bound {bound:?}"
        );
    }
}

/// Each command starts from standby, as an admin's occasional command would.
fn wait_standby(d: &RelayedDevice) {
    d.hub.wait_status(d.id, "standby", Duration::from_secs(30));
}
