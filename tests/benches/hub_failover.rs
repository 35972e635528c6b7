//! Several hubs on one PostgreSQL store (issue #18), a swarm of agents on each: `kill -9` one hub
//! and time until every one of its agents is online on another. Prints a table; run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench hub_failover -- --agents 3000 --hubs 3
//! ```
//!
//! The hubs are release `outpost-hub` processes on loopback ports, on a fresh database of the test
//! cluster (`outpost_tests::bench_store`); each swarm (`outpost-swarm`, real agent sessions on a
//! few UDP sockets) enrols its agents through one hub, so each hub holds a third. Once every agent
//! is online and every hub's flush has written it, the first hub is killed. Every 250 ms the bench
//! reads `GET /api/hubs` on a surviving hub: the devices each hub holds (the store's `held_by`,
//! one hub per device by construction) and so how many are online on the survivors, and the most
//! ever shown connected at once (never more than the fleet: a device shown on two hubs would push
//! it over). It ends when the survivors hold the whole fleet, or after two minutes.
#![allow(clippy::disallowed_methods)] // wall-clock measurement of real processes
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::time::{Duration, Instant};

use outpost_swarm::HubAccess;
use outpost_tests::bench_store::{BenchStore, StoreKind};
use outpost_tests::swarm_child::SwarmChild;
use outpost_tests::Hub;

/// What issue #18 allows: every agent of a killed hub online on another within 60 s.
const TARGET: Duration = Duration::from_secs(60);
/// How long the bench waits for the survivors to hold the fleet.
const GIVE_UP: Duration = Duration::from_secs(120);
/// A hub's heartbeat period (`outpost_hub::hubs::HEARTBEAT`), waited out so every hub lists the
/// others in its tokens before the swarms enrol.
const HEARTBEAT: Duration = Duration::from_secs(5);

struct Options {
    agents: usize,
    hubs: usize,
    checkin: String,
}

fn options() -> Options {
    let mut options = Options {
        agents: 3000,
        hubs: 3,
        checkin: "25s".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--agents" => options.agents = pair[1].parse().expect("--agents N"),
            "--hubs" => options.hubs = pair[1].parse().expect("--hubs N (at least 2)"),
            "--checkin" => options.checkin.clone_from(&pair[1]),
            _ => {}
        }
    }
    assert!(options.hubs >= 2, "--hubs: a failover needs at least 2");
    options
}

/// What `GET /api/hubs` showed at one reading.
struct Reading {
    /// Devices held by the hubs still running.
    on_survivors: u64,
    /// Devices held by any hub, the killed one included.
    shown_connected: u64,
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = BenchStore::create(StoreKind::Postgres, &tmp.path().join("hub-0"));
    let mut hubs: Vec<Hub> = (0..options.hubs)
        .map(|i| start_hub(&store, tmp.path(), i, &options.checkin))
        .collect();
    for hub in &hubs[1..] {
        let token = hubs[0].data_dir.join("admin.token");
        std::fs::copy(token, hub.data_dir.join("admin.token")).unwrap();
    }
    std::thread::sleep(HEARTBEAT + Duration::from_secs(1));

    let per_hub = options.agents / options.hubs;
    let fleet = (per_hub * options.hubs) as u64;
    let started = Instant::now();
    let swarms: Vec<SwarmChild> = hubs
        .iter()
        .enumerate()
        .map(|(i, hub)| {
            let data = tmp.path().join(format!("swarm-{i}"));
            SwarmChild::start(hub, &data, per_hub, &["--sockets", "4", "--summons", "0"])
        })
        .collect();
    for swarm in &swarms {
        swarm.wait_for("phase online");
    }
    let enrolled_s = started.elapsed().as_secs_f64();
    let api = outpost_swarm::api::connect(
        &HubAccess::from_hub_dir(&hubs[1].data_dir).unwrap(),
        Duration::from_secs(60),
    )
    .unwrap();
    let read = || runtime.block_on(reading(&api, "hub-0"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let now = read();
        if now.shown_connected >= fleet {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the hubs never showed the whole fleet"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let on_killed = before.shown_connected - before.on_survivors;

    let killed = Instant::now();
    hubs[0].crash();
    let mut most_shown = 0;
    let mut all_moved = None;
    while killed.elapsed() < GIVE_UP {
        let now = read();
        most_shown = most_shown.max(now.shown_connected);
        if now.on_survivors == fleet {
            all_moved = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let reports: Vec<_> = swarms.into_iter().map(SwarmChild::finish).collect();
    // The swarm counts each session's interruption by kind beside its errors.
    let errors: Vec<String> = reports
        .iter()
        .flat_map(|r| r["errors"].as_object().cloned().unwrap_or_default())
        .map(|(kind, count)| format!("{kind}: {count}"))
        .collect();

    println!(
        "\nHub failover: {} hubs on one PostgreSQL database, {} swarm agents (a swarm per hub, \
         check-in every {}), kill -9 of the first hub\n",
        options.hubs, fleet, options.checkin
    );
    println!("| hubs | agents | enrol + all online | on the killed hub | all online on the others after | most shown connected | swarm's interruptions and errors |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {} | {} | {:.1} s | {} | {} | {} of {} | {} |",
        options.hubs,
        fleet,
        enrolled_s,
        on_killed,
        all_moved.map_or_else(
            || format!("not within {GIVE_UP:?}"),
            |t| format!("{:.1} s", t.as_secs_f64())
        ),
        most_shown,
        fleet,
        if errors.is_empty() {
            "none".into()
        } else {
            errors.join(", ")
        }
    );
    assert!(
        most_shown <= fleet,
        "a device was shown connected on two hubs"
    );
    let moved = all_moved.expect("every agent online on another hub");
    println!(
        "\nissue #18's bound: {:.0} s; {}",
        TARGET.as_secs_f64(),
        if moved <= TARGET { "met" } else { "NOT met" }
    );
}

fn start_hub(store: &BenchStore, dir: &std::path::Path, i: usize, checkin: &str) -> Hub {
    let name = format!("hub-{i}");
    let mut flags = vec![
        "--checkin-interval".to_owned(),
        checkin.to_owned(),
        "--hub-name".to_owned(),
        name.clone(),
    ];
    flags.extend(store.serve_flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Hub::start_with(dir.join(&name), "127.0.0.1:0", "127.0.0.1:0", &flags)
}

async fn reading(api: &outpost_api::ApiClient, killed: &str) -> Reading {
    let hubs = api.hubs().await.unwrap();
    Reading {
        on_survivors: hubs
            .iter()
            .filter(|h| h.name != killed)
            .map(|h| h.devices)
            .sum(),
        shown_connected: hubs.iter().map(|h| h.devices).sum(),
    }
}
