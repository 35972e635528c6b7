//! Many devices on one hub: `outpost-swarm` (real agent sessions, many per UDP socket) against a
//! real hub process. Every agent must stay online the whole time, as the hub's endpoint list tells
//! it, and every summon must be answered.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use outpost_api::ListQuery;
use outpost_swarm::{HubAccess, Phase, Report, SwarmConfig};
use outpost_tests::Hub;
use outpost_transport::profile;
use tokio::sync::mpsc;

#[derive(Clone, Copy)]
struct Run {
    agents: usize,
    hold: Duration,
    summons: usize,
}

fn config(hub: &Hub, run: Run, data: &Path, reuse: bool) -> SwarmConfig {
    SwarmConfig {
        agents: run.agents,
        sockets: 4,
        hold: run.hold,
        data_dir: data.to_owned(),
        reuse,
        summons: run.summons,
        enrol_concurrency: 16,
        start_concurrency: 128,
        online_timeout: Duration::from_secs(120),
        stacks: outpost_agent::Stacks::Off,
        transport: profile::LAN,
        name_prefix: "swarm-".into(),
        hub: HubAccess::from_hub_dir(&hub.data_dir).unwrap(),
    }
}

/// Run the swarm against `hub`; while it holds, check the hub's list every second: every endpoint
/// online, none offline. Returns the swarm's report and how many times the list was checked.
async fn swarm_against(hub: &Hub, run: Run) -> (Report, u32) {
    let api = outpost_swarm::api::connect(
        &HubAccess::from_hub_dir(&hub.data_dir).unwrap(),
        Duration::from_secs(30),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = config(hub, run, data.path(), false);
    let (phase_tx, mut phases) = mpsc::unbounded_channel();
    let swarm = tokio::spawn(outpost_swarm::run(
        config,
        std::future::pending(),
        move |p| {
            let _ = phase_tx.send(p);
        },
    ));
    while let Some(phase) = phases.recv().await {
        if let Phase::SummonsDone { .. } = phase {
            break;
        }
    }
    let mut checks = 0;
    while !swarm.is_finished() {
        let offline = api.count("offline").await.unwrap();
        let online = api.count("standby").await.unwrap() + api.count("active").await.unwrap();
        if swarm.is_finished() {
            break;
        }
        assert_eq!(offline, 0, "endpoints offline while the swarm holds them");
        assert_eq!(online, run.agents as u64);
        checks += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let report = swarm.await.unwrap().unwrap();
    println!("{report}");
    (report, checks)
}

fn assert_held(report: &Report, run: &Run, checks: u32) {
    assert!(
        checks as u64 >= run.hold.as_secs() / 2,
        "the hub was checked only {checks} times"
    );
    assert_eq!(report.agents, run.agents);
    assert_eq!(report.enrolled, run.agents);
    assert!(report.all_online_seconds.is_some(), "{report}");
    assert_eq!(report.measured.online, run.agents, "{report}");
    assert_eq!(report.measured.sessions, run.agents as u64, "{report}");
    assert!(report.measured.errors.is_empty(), "{report}");
    assert_eq!(report.summons_failed, 0, "{report}");
    assert_eq!(
        report.measured.summon_ms.count, run.summons as u64,
        "{report}"
    );
    // The hub sets a 1 s check-in interval: every agent checked in (and was acked) through the
    // hold, give or take a few seconds of scheduling delay on a loaded machine.
    let acked_seconds = run.hold.as_secs().saturating_sub(3);
    assert!(
        report.measured.checkin_rtt_ms.count >= run.agents as u64 * acked_seconds,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_agents_stay_online_and_every_summon_is_answered() {
    let hub = Hub::start();
    let run = Run {
        agents: 200,
        hold: Duration::from_secs(15),
        summons: 40,
    };
    let (report, checks) = swarm_against(&hub, run).await;
    assert_held(&report, &run, checks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "2,000 agents for 30 s: run on purpose with --run-ignored only"]
async fn two_thousand_agents_stay_online_for_thirty_seconds() {
    let hub = Hub::start();
    let run = Run {
        agents: 2000,
        hold: Duration::from_secs(30),
        summons: 100,
    };
    let (report, checks) = swarm_against(&hub, run).await;
    assert_held(&report, &run, checks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_reuses_the_enrolled_identities() {
    let hub = Hub::start();
    let data = tempfile::tempdir().unwrap();
    let run = Run {
        agents: 20,
        hold: Duration::from_secs(1),
        summons: 2,
    };
    let first = outpost_swarm::run(config(&hub, run, data.path(), false), async {}, drop)
        .await
        .unwrap();
    assert_eq!((first.enrolled, first.reused), (20, 0), "{first}");

    let refused = outpost_swarm::run(config(&hub, run, data.path(), false), async {}, drop).await;
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("--reuse"), "{err}");

    let more = Run { agents: 25, ..run };
    let again = outpost_swarm::run(config(&hub, more, data.path(), true), async {}, drop)
        .await
        .unwrap();
    assert_eq!((again.enrolled, again.reused), (5, 20), "{again}");
    assert!(again.all_online_seconds.is_some(), "{again}");
    assert_eq!(again.summons_failed, 0, "{again}");
    let one_row = ListQuery {
        per_page: Some("1".into()),
        ..ListQuery::default()
    };
    let all = hub.api().list(&one_row).await.unwrap();
    assert_eq!(
        all.total, 25,
        "one endpoint per identity, none created twice"
    );
}
