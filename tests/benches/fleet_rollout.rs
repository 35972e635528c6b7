//! A rollout at fleet scale: the release hub and `outpost-swarm` agents whose stacks are a
//! **stand-in** (`--stacks stand-in`: every desired state is reported healthy at once, no engine
//! is touched — the engine's own time is measured by the real-engine tests, this is the hub's and
//! the wire's side). Run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench fleet_rollout -- --agents 10000
//! ```
//!
//! Per N: start a hub and the swarm; once all are online and settled, store a stack (v1) and roll
//! it out to every device (`--waves 100% --soak 0s`), then a Compose-only change (v2, one
//! environment value). For each rollout: the time from start until every device is healthy, and
//! the UDP bytes per device in that time (both directions, check-ins included). Then the time
//! `rollout show` takes (first and last page of 100 devices) and the idle wire cost per agent with
//! version-3 check-ins, over a window of four check-in intervals.
#![allow(clippy::disallowed_methods)] // wall-clock measurement of real processes
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use outpost_api::{ApiClient, ListQuery, NewRollout, NewStackVersion, StackListQuery};
use outpost_swarm::HubAccess;
use outpost_tests::admin_api::{all_endpoints, WireSum};
use outpost_tests::swarm_child::SwarmChild;
use outpost_tests::Hub;

const CHECKIN: &str = "25s";
const IDLE_WINDOW: Duration = Duration::from_secs(100);

fn agents() -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--agents")
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().parse().expect("--agents N[,N…]"))
                .collect()
        })
        .unwrap_or_else(|| vec![1000])
}

fn compose(mode: &str) -> String {
    format!(
        "services:\n  app:\n    image: registry.example/pos:42\n    environment:\n      MODE: {mode}\n    ports: [\"8080:80\"]\n    restart: unless-stopped\n  db:\n    image: registry.example/db:7\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {{}}\n"
    )
}

struct Rolled {
    seconds: f64,
    bytes_per_device: f64,
}

struct Row {
    agents: usize,
    first: Rolled,
    change: Rolled,
    show_first_ms: (f64, f64),
    show_last_ms: (f64, f64),
    idle: f64,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows: Vec<Row> = agents().into_iter().map(|n| measure(&runtime, n)).collect();
    println!("\nFleet rollout: one hub, outpost-swarm with stand-in stacks (no engine), check-in every {CHECKIN}\n");
    println!("| agents | first deploy: all healthy | bytes/device | Compose-only change: all healthy | bytes/device | rollout show p50 / p99 (first page) | (last page) | idle B/s/agent (UDP payload) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} s | {:.0} B | {:.1} s | {:.0} B | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.2} |",
            r.agents,
            r.first.seconds,
            r.first.bytes_per_device,
            r.change.seconds,
            r.change.bytes_per_device,
            r.show_first_ms.0,
            r.show_first_ms.1,
            r.show_last_ms.0,
            r.show_last_ms.1,
            r.idle
        );
    }
}

fn measure(runtime: &tokio::runtime::Runtime, n: usize) -> Row {
    eprintln!("== {n} agents");
    let tmp = tempfile::tempdir().unwrap();
    let flags = ["--checkin-interval", CHECKIN, "--summon-timeout", "15s"];
    let hub = Hub::start_with(tmp.path().join("hub"), "127.0.0.1:0", "127.0.0.1:0", &flags);
    let api = outpost_swarm::api::connect(
        &HubAccess::from_hub_dir(&hub.data_dir).unwrap(),
        Duration::from_secs(60),
    )
    .unwrap();
    let swarm = SwarmChild::start(
        &hub,
        &tmp.path().join("swarm"),
        n,
        &["--summons", "0", "--stacks", "stand-in"],
    );
    swarm.wait_for("phase online");
    std::thread::sleep(Duration::from_secs(10));
    let ids: Vec<u64> = runtime
        .block_on(all_endpoints(&api, &ListQuery::default()))
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids.len(), n);

    let first = runtime.block_on(roll(&api, &ids, "one"));
    let change = runtime.block_on(roll(&api, &ids, "two"));
    let id = runtime
        .block_on(api.rollouts(&StackListQuery::default()))
        .unwrap()
        .items[0]
        .id;
    let last_page = n.div_ceil(100).to_string();
    let show_first_ms = runtime.block_on(show_latency(&api, id, "1"));
    let show_last_ms = runtime.block_on(show_latency(&api, id, &last_page));

    let before = runtime.block_on(wire(&api));
    let window = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let after = runtime.block_on(wire(&api));
    let idle = (after.bytes - before.bytes) as f64 / n as f64 / window.elapsed().as_secs_f64();
    swarm.finish();
    Row {
        agents: n,
        first,
        change,
        show_first_ms,
        show_last_ms,
        idle,
    }
}

async fn wire(api: &ApiClient) -> WireSum {
    WireSum::of(&all_endpoints(api, &ListQuery::default()).await.unwrap())
}

/// Store a version with `mode`, roll it out to `ids`, and wait until every device is healthy.
async fn roll(api: &ApiClient, ids: &[u64], mode: &str) -> Rolled {
    let saved = api
        .save_stack(&NewStackVersion {
            name: "pos".into(),
            compose: compose(mode),
            ..NewStackVersion::default()
        })
        .await
        .unwrap();
    let before = wire(api).await;
    let started = Instant::now();
    let rollout = api
        .start_rollout(&NewRollout {
            stack: "pos".into(),
            version: Some(saved.version),
            endpoints: ids.to_vec(),
            waves: Some("100%".into()),
            max_failures: Some("0".into()),
            soak: Some("0s".into()),
            ..NewRollout::default()
        })
        .await
        .unwrap();
    let one = StackListQuery {
        page: None,
        per_page: Some("1".into()),
    };
    loop {
        let shown = api.rollout(rollout.id, &one).await.unwrap();
        if shown.summary.counts["healthy"] as usize == ids.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the rollout did not converge: {:?}",
            shown.summary
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = wire(api).await;
    eprintln!(
        "  v{} healthy everywhere after {seconds:.1} s",
        saved.version
    );
    Rolled {
        seconds,
        bytes_per_device: (after.bytes - before.bytes) as f64 / ids.len() as f64,
    }
}

/// p50 and p99 of `GET /api/rollouts/{id}?page=…&per_page=100`, in milliseconds.
async fn show_latency(api: &ApiClient, id: i64, page: &str) -> (f64, f64) {
    let query = StackListQuery {
        page: Some(page.into()),
        per_page: Some("100".into()),
    };
    let mut took = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for _ in 0..50 {
        let started = Instant::now();
        api.rollout(id, &query).await.unwrap();
        took.record(started.elapsed().as_micros() as u64).unwrap();
    }
    let ms = |q| took.value_at_quantile(q) as f64 / 1000.0;
    (ms(0.5), ms(0.99))
}
