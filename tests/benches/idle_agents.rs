//! Idle agents on one hub: hub RSS per agent, hub CPU, bytes on the wire per agent per second, and
//! summon latency (admin request → agent ready). Prints a table; run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench idle_agents -- --agents 500 --seconds 60 --summons 100
//! ```
//!
//! The hub is the release `outpost-hub` binary in its own process (so /proc shows its own RSS and
//! CPU); the agents are the real agent library, many in this process, each with its own identity,
//! data directory and UDP socket, with the default 25 s check-in interval.
//!
//! With `--restart`, it then restarts the hub (SIGTERM, same directory and ports) and reports how
//! long until every agent is back in standby: the agents' backoff with full jitter against the
//! hub's admission limits.
#![allow(clippy::disallowed_methods)] // wall-clock measurement of real processes
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use outpost_agent::docker_host::DockerHost;
use outpost_agent::{run, AgentConfig};
use outpost_api::{ApiClient, ListQuery, NewEndpoint};
use outpost_protocol::token::JoinToken;
use outpost_tests::admin_api::{all_endpoints, WireSum};
use outpost_tests::proc_stats::ProcSample;
use outpost_tests::Hub;
use outpost_transport::profile;

struct Options {
    agents: usize,
    seconds: u64,
    summons: usize,
    checkin: String,
    restart: bool,
}

fn options() -> Options {
    let mut options = Options {
        agents: 200,
        seconds: 60,
        summons: 50,
        checkin: "25s".into(),
        restart: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--agents" => options.agents = value.parse().expect("--agents N"),
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--summons" => options.summons = value.parse().expect("--summons N"),
            "--checkin" => options.checkin = value,
            "--restart" => {
                options.restart = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    options
}

fn agent_config(dir: &Path, key: &str) -> AgentConfig {
    AgentConfig {
        data_dir: dir.to_owned(),
        edge_key: Some(JoinToken::decode(key).unwrap()),
        edge_id: None,
        transport: profile::LAN,
        choose_transport: false,
        docker: DockerHost::parse("unix:///var/run/docker.sock").unwrap(),
        standby_after: Duration::from_secs(60),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(30),
        stable_after: Duration::from_secs(60),
        registry_listen: None,
        metrics_listen: None,
        tcp: outpost_agent::tunnel::TcpRoute::quic_only(),
    }
}

fn main() {
    let options = options();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let flags = [
        "--checkin-interval",
        &options.checkin,
        "--standby-after",
        "2s",
    ];
    let mut hub = Hub::start_with(tmp.path().join("hub"), "127.0.0.1:0", "127.0.0.1:0", &flags);
    let pid = hub.pid();
    std::thread::sleep(Duration::from_secs(1));
    let rss_empty = ProcSample::take(pid).unwrap().rss_kib;
    runtime.block_on(measure(&options, &mut hub, &flags, tmp.path(), rss_empty));
}

/// Poll the API until `n` endpoints are in standby, within `limit`.
async fn all_in_standby(api: &ApiClient, n: usize, limit: Duration) {
    let online = async {
        loop {
            // Fails while the hub restarts.
            if api.count("standby").await.ok() == Some(n as u64) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(limit, online)
        .await
        .expect("all agents online");
}

/// Restart the hub and time how long until every agent is back.
async fn restart(hub: &mut Hub, flags: &[&str], api: &ApiClient, n: usize) -> Duration {
    tokio::task::block_in_place(|| hub.stop());
    let started = Instant::now();
    tokio::task::block_in_place(|| hub.restart_with(flags));
    all_in_standby(api, n, Duration::from_secs(300)).await;
    started.elapsed()
}

async fn measure(options: &Options, hub: &mut Hub, flags: &[&str], tmp: &Path, rss_empty: u64) {
    let api = hub.api();
    let all = || async { all_endpoints(&api, &ListQuery::default()).await.unwrap() };
    let pid = hub.pid();
    let n = options.agents;
    let enrol_started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let new = NewEndpoint::device(format!("idle-{i}"));
        let created = api.create_endpoint(&new).await.unwrap();
        let config = agent_config(&tmp.join(format!("agent-{i}")), &created.edge_key);
        tasks.push(tokio::spawn(run(config)));
    }
    all_in_standby(&api, n, Duration::from_secs(120 + n as u64 / 10)).await;
    let enrol_time = enrol_started.elapsed();
    // Let connection start-up (handshake, path MTU probes: ~15 KB per agent) finish before measuring.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let before = WireSum::of(&all().await);
    let cpu_before = ProcSample::take(pid).unwrap();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let cpu_after = ProcSample::take(pid).unwrap();
    let cpu = cpu_after.cpu_since(&cpu_before) / window.elapsed().as_secs_f64();
    let after = WireSum::of(&all().await);
    let secs = window.elapsed().as_secs_f64();
    let rss = ProcSample::take(pid).unwrap().rss_kib;

    let mut client_side = Histogram::<u64>::new(3).unwrap();
    let mut hub_side = Histogram::<u64>::new(3).unwrap();
    let endpoints = all().await;
    let step = (endpoints.len() / options.summons.max(1)).max(1);
    for endpoint in endpoints.iter().step_by(step).take(options.summons) {
        let started = Instant::now();
        let answer = api.summon(endpoint.id).await.unwrap();
        client_side
            .record(started.elapsed().as_micros() as u64)
            .unwrap();
        hub_side.record((answer.ready_ms * 1000.0) as u64).unwrap();
    }
    let restarted = if options.restart {
        Some(restart(hub, flags, &api, n).await)
    } else {
        None
    };
    for task in &tasks {
        task.abort();
    }

    let bytes = after.bytes.saturating_sub(before.bytes) as f64;
    let datagrams = after.datagrams.saturating_sub(before.datagrams) as f64;
    let per_agent = |v: f64| v / n as f64 / secs;
    println!(
        "Idle agents on one hub (loopback, check-in every {}, window {secs:.0} s)\n",
        options.checkin
    );
    println!("| agents | hub RSS | RSS/agent | hub CPU | wire B/s/agent (UDP payload) | wire B/s/agent (+IP/UDP headers) | datagrams/s/agent | summon p50 | summon p99 | summon max | enrol+online all |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {:.1} MiB | {:.1} KiB | {:.2} % of a core | {:.2} | {:.2} | {:.3} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} s |",
        rss as f64 / 1024.0,
        rss.saturating_sub(rss_empty) as f64 / n as f64,
        cpu * 100.0,
        per_agent(bytes),
        per_agent(bytes + 28.0 * datagrams),
        per_agent(datagrams),
        client_side.value_at_quantile(0.5) as f64 / 1000.0,
        client_side.value_at_quantile(0.99) as f64 / 1000.0,
        client_side.max() as f64 / 1000.0,
        enrol_time.as_secs_f64(),
    );
    println!(
        "\nsummon as the hub measures it (control message → Ready): p50 {:.2} ms, p99 {:.2} ms over {} summons; client-side figures include HTTPS to the API",
        hub_side.value_at_quantile(0.5) as f64 / 1000.0,
        hub_side.value_at_quantile(0.99) as f64 / 1000.0,
        client_side.len()
    );
    if let Some(took) = restarted {
        println!(
            "after a hub restart (SIGTERM, same ports): all {n} agents back in standby in {:.1} s",
            took.as_secs_f64()
        );
    }
}
