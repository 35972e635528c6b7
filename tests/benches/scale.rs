//! One hub, many devices: `outpost-swarm` (real agent sessions, many per UDP socket) against the
//! release hub, at each N given. Prints a table; run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench scale -- --agents 5000,25000
//! cargo bench -p outpost-tests --bench scale -- --agents 10000 --store both
//! cargo bench -p outpost-tests --bench scale -- --agents 20000 --tickets both --reconnect-rate 100000
//! ```
//!
//! Hub and swarm are separate processes (the release `outpost-hub` and `outpost-swarm` binaries),
//! so /proc shows each one's own RSS and CPU. Per N: start a fresh hub; run the swarm (enrol all,
//! wait until all are online, summon a sample); let start-up traffic settle; measure hub RSS, hub
//! and swarm CPU and the hub's wire counters over a window; time the first page of the endpoint
//! list; restart the hub and time until every agent is back online; stop the swarm and read its
//! report (check-in RTT, summon latency, errors by kind). `--store sqlite` (default), `postgres` (a
//! fresh database on the test cluster, `outpost_tests::bench_store`) or `both` runs each N on each;
//! on PostgreSQL the server's CPU over the window is reported beside the hub's.
//!
//! The restart: `--tickets store` (default), `process` or `both` starts the hub with its TLS ticket
//! keys in the store (agents resume across the restart) or in the process (full handshakes after
//! it), each a row. `--reconnect-rate R` makes the stopping hub's restart notice assume R set-ups a
//! second for every agent: a rate far above the hub's (100000: the 5 s minimum spread) sends them
//! all back at once, so the set-up rate measured (agents back between 10 % and 90 %, over the time
//! between) is the hub's own. Per restart: the new hub's and the swarm's CPU per 1,000 set-ups
//! (the hub's includes its start), and the tickets the new hub opened and refused.
#![allow(clippy::disallowed_methods)] // wall-clock measurement of real processes
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use outpost_api::{ApiClient, ListQuery};
use outpost_swarm::HubAccess;
use outpost_tests::admin_api::{all_endpoints, WireSum};
use outpost_tests::bench_store::{parse_stores, postgres_cpu_seconds, BenchStore, StoreKind};
use outpost_tests::proc_stats::ProcSample;
use outpost_tests::swarm_child::SwarmChild;
use outpost_tests::Hub;
use serde_json::Value;

struct Options {
    agents: Vec<usize>,
    seconds: u64,
    summons: usize,
    lists: usize,
    sockets: usize,
    checkin: String,
    stores: Vec<StoreKind>,
    tickets: Vec<&'static str>,
    reconnect_rate: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        agents: vec![5000],
        // Four check-in intervals: the agents' check-ins are bunched by their start, so a window
        // that is not a multiple of the interval over- or under-counts them.
        seconds: 100,
        summons: 100,
        lists: 100,
        sockets: 8,
        checkin: "25s".into(),
        stores: vec![StoreKind::Sqlite],
        tickets: vec!["store"],
        reconnect_rate: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--agents" => {
                options.agents = value
                    .split(',')
                    .map(|n| n.trim().parse().expect("--agents N[,N…]"))
                    .collect()
            }
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--summons" => options.summons = value.parse().expect("--summons N"),
            "--lists" => options.lists = value.parse().expect("--lists N"),
            "--sockets" => options.sockets = value.parse().expect("--sockets N"),
            "--checkin" => options.checkin = value,
            "--store" => options.stores = parse_stores(&value),
            "--tickets" => {
                options.tickets = match value.as_str() {
                    "store" => vec!["store"],
                    "process" => vec!["process"],
                    "both" => vec!["process", "store"],
                    _ => panic!("--tickets store|process|both"),
                }
            }
            "--reconnect-rate" => options.reconnect_rate = Some(value),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    options
}

async fn wire_total(api: &ApiClient) -> WireSum {
    WireSum::of(&all_endpoints(api, &ListQuery::default()).await.unwrap())
}

struct Row {
    store: StoreKind,
    tickets: &'static str,
    restart: Restart,
    agents: usize,
    rss_kib: u64,
    rss_per_agent_kib: f64,
    hub_cpu: f64,
    postgres_cpu: f64,
    swarm_cpu: f64,
    wire_payload: f64,
    wire_ip: f64,
    list_p99_ms: f64,
    reconnect_s: f64,
    stop_s: f64,
    up_s: f64,
    enrol_online_s: f64,
    report: Value,
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let runs: Vec<(usize, StoreKind, &'static str)> = options
        .agents
        .iter()
        .flat_map(|&n| options.stores.iter().map(move |&store| (n, store)))
        .flat_map(|(n, store)| options.tickets.iter().map(move |&t| (n, store, t)))
        .collect();
    let rows: Vec<Row> = runs
        .into_iter()
        .map(|(n, store, tickets)| measure(&runtime, &options, n, store, tickets))
        .collect();
    print_table(&options, &rows);
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    options: &Options,
    n: usize,
    store: StoreKind,
    tickets: &'static str,
) -> Row {
    eprintln!("== {n} agents, {store}, ticket keys in the {tickets}");
    let tmp = tempfile::tempdir().unwrap();
    let hub_dir = tmp.path().join("hub");
    let place = BenchStore::create(store, &hub_dir);
    let on_store = place.serve_flags();
    let mut flags = vec![
        "--checkin-interval",
        &options.checkin,
        "--standby-after",
        "5s",
        "--summon-timeout",
        "15s",
    ];
    flags.extend(on_store.iter().map(String::as_str));
    let metrics_addr = free_local_port();
    flags.extend(["--ticket-keys", tickets, "--metrics-listen", &metrics_addr]);
    if let Some(rate) = &options.reconnect_rate {
        flags.extend(["--reconnect-rate", rate.as_str()]);
    }
    let mut hub = Hub::start_with(hub_dir, "127.0.0.1:0", "127.0.0.1:0", &flags);
    std::thread::sleep(Duration::from_secs(1));
    let rss_empty = ProcSample::take(hub.pid()).unwrap().rss_kib;
    let api = outpost_swarm::api::connect(
        &HubAccess::from_hub_dir(&hub.data_dir).unwrap(),
        Duration::from_secs(60),
    )
    .unwrap();
    let started = Instant::now();
    let (sockets, summons) = (options.sockets.to_string(), options.summons.to_string());
    let swarm_flags = ["--sockets", &sockets, "--summons", &summons];
    let swarm = SwarmChild::start(&hub, &tmp.path().join("swarm"), n, &swarm_flags);
    swarm.wait_for("phase online");
    let enrol_online_s = started.elapsed().as_secs_f64();
    swarm.wait_for("phase summons-done");
    // Let connection start-up (handshakes, path MTU probes) finish before measuring.
    std::thread::sleep(Duration::from_secs(10));

    let before = runtime.block_on(wire_total(&api));
    let (hub_pid, swarm_pid) = (hub.pid(), swarm.child.id());
    let sample = |pid| ProcSample::take(pid).unwrap();
    let (hub0, swarm0, postgres0) = (sample(hub_pid), sample(swarm_pid), postgres_cpu_seconds());
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(options.seconds));
    let secs = window.elapsed().as_secs_f64();
    let (hub1, swarm1, postgres1) = (sample(hub_pid), sample(swarm_pid), postgres_cpu_seconds());
    let hub_cpu = hub1.cpu_since(&hub0) / secs;
    let postgres_cpu = (postgres1 - postgres0) / secs;
    let swarm_cpu = swarm1.cpu_since(&swarm0) / secs;
    let rss = hub1.rss_kib;
    let after = runtime.block_on(wire_total(&api));
    let list_p99_ms = runtime.block_on(list_p99(&api, options.lists));

    let restarted = Instant::now();
    hub.stop();
    let stop_s = restarted.elapsed().as_secs_f64();
    let swarm_before = sample(swarm_pid);
    hub.restart_with(&flags);
    let up_s = restarted.elapsed().as_secs_f64();
    let back = runtime.block_on(all_online(&api, n));
    let reconnect_s = restarted.elapsed().as_secs_f64();
    let restart = Restart {
        setups_per_s: back.rate_between(0.1, 0.9),
        hub_cpu_per_1000: sample(hub.pid()).cpu_seconds * 1000.0 / n as f64,
        swarm_cpu_per_1000: sample(swarm_pid).cpu_since(&swarm_before) * 1000.0 / n as f64,
        tickets: tls_tickets(&metrics_addr),
    };
    let report = swarm.finish();

    let bytes = after.bytes.saturating_sub(before.bytes) as f64;
    let datagrams = after.datagrams.saturating_sub(before.datagrams) as f64;
    let per_agent = |v: f64| v / n as f64 / secs;
    Row {
        store,
        tickets,
        restart,
        agents: n,
        rss_kib: rss,
        rss_per_agent_kib: rss.saturating_sub(rss_empty) as f64 / n as f64,
        hub_cpu,
        postgres_cpu,
        swarm_cpu,
        wire_payload: per_agent(bytes),
        wire_ip: per_agent(bytes + 28.0 * datagrams),
        list_p99_ms,
        reconnect_s,
        stop_s,
        up_s,
        enrol_online_s,
        report,
    }
}

/// p99 of `GET /api/endpoints` (the first page, default parameters), in milliseconds.
async fn list_p99(api: &ApiClient, samples: usize) -> f64 {
    let mut took = Histogram::<u64>::new(3).unwrap();
    for _ in 0..samples {
        let started = Instant::now();
        api.list(&ListQuery::default()).await.unwrap();
        took.record(started.elapsed().as_micros() as u64).unwrap();
    }
    took.value_at_quantile(0.99) as f64 / 1000.0
}

/// Wait until the hub lists all `n` endpoints as online (standby or active); how many were
/// online when.
async fn all_online(api: &ApiClient, n: usize) -> Arrivals {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut arrivals = Arrivals {
        n,
        seen: Vec::new(),
    };
    loop {
        let online =
            async { Some(api.count("standby").await.ok()? + api.count("active").await.ok()?) };
        if let Some(online) = online.await {
            arrivals
                .seen
                .push((started.elapsed().as_secs_f64(), online as usize));
            if online == n as u64 {
                return arrivals;
            }
        }
        assert!(Instant::now() < deadline, "agents did not all come back");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Online counts over time after a restart.
struct Arrivals {
    n: usize,
    seen: Vec<(f64, usize)>,
}

impl Arrivals {
    /// When at least `fraction` of the agents were first seen online.
    fn time_of(&self, fraction: f64) -> f64 {
        let target = (self.n as f64 * fraction).ceil() as usize;
        self.seen
            .iter()
            .find(|(_, online)| *online >= target)
            .map_or(f64::NAN, |(t, _)| *t)
    }

    /// Set-ups a second between `from` and `to` of the agents back.
    fn rate_between(&self, from: f64, to: f64) -> f64 {
        self.n as f64 * (to - from) / (self.time_of(to) - self.time_of(from))
    }
}

/// What a restart cost and how fast it went.
struct Restart {
    setups_per_s: f64,
    hub_cpu_per_1000: f64,
    swarm_cpu_per_1000: f64,
    /// Tickets the new hub opened and refused (`outpost_hub_tls_tickets`).
    tickets: (u64, u64),
}

/// A loopback address with a port free now, for a listener the hub binds.
fn free_local_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The hub's resumed and refused ticket counts, from its plain metrics listener at `addr`.
fn tls_tickets(addr: &str) -> (u64, u64) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    let value = |outcome: &str| {
        let series = format!("outpost_hub_tls_tickets_total{{outcome=\"{outcome}\"}} ");
        body.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (value("resumed"), value("refused"))
}

fn print_table(options: &Options, rows: &[Row]) {
    println!(
        "\nScale: one hub, outpost-swarm over {} UDP sockets (loopback, check-in every {}, window {} s)\n",
        options.sockets, options.checkin, options.seconds
    );
    println!("| store | agents | hub RSS | RSS/agent | hub CPU (of a core) | PostgreSQL CPU | swarm CPU | wire B/s/agent (UDP payload) | (+IP/UDP headers) | check-in RTT p50 / p99 | summon p50 / p99 | endpoint list p99 | all back after restart | enrol + all online |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let r = &row.report;
        let ms = |key: &str, q: &str| r[key][q].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {} | {:.1} MiB | {:.1} KiB | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.1} ms | {:.1} s | {:.1} s |",
            row.store,
            row.agents,
            row.rss_kib as f64 / 1024.0,
            row.rss_per_agent_kib,
            row.hub_cpu,
            row.postgres_cpu,
            row.swarm_cpu,
            row.wire_payload,
            row.wire_ip,
            ms("checkin_rtt_ms", "p50"),
            ms("checkin_rtt_ms", "p99"),
            ms("summon_ms", "p50"),
            ms("summon_ms", "p99"),
            row.list_p99_ms,
            row.reconnect_s,
            row.enrol_online_s,
        );
    }
    println!(
        "\nRestart: TLS ticket keys, set-up rate (10 % → 90 % of agents back), CPU per 1,000 set-ups (restart notice rate: {})\n",
        options.reconnect_rate.as_deref().unwrap_or("the hub's own")
    );
    println!("| store | agents | ticket keys | all back after restart | set-ups/s (10→90 %) | hub CPU s / 1000 (with its start) | swarm CPU s / 1000 | tickets resumed / refused |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let r = &row.restart;
        println!(
            "| {} | {} | {} | {:.1} s | {:.0} | {:.2} | {:.2} | {} / {} |",
            row.store,
            row.agents,
            row.tickets,
            row.reconnect_s,
            r.setups_per_s,
            r.hub_cpu_per_1000,
            r.swarm_cpu_per_1000,
            r.tickets.0,
            r.tickets.1,
        );
    }
    println!();
    for row in rows {
        let r = &row.report;
        println!(
            "{} agents on {}: restart: old hub stopped after {:.1} s, new one listening after {:.1} s; enrolment {:.0}/s; {} summons ({} failed); errors by kind: {}",
            row.agents,
            row.store,
            row.stop_s,
            row.up_s,
            r["enrol_per_second"].as_f64().unwrap_or(0.0),
            r["summon_ms"]["count"],
            r["summons_failed"],
            r["errors"]
        );
    }
}
