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
use outpost_protocol::token::JoinToken;
use outpost_tests::Hub;
use outpost_transport::profile;
use serde_json::Value;

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

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    fn new(hub: &Hub) -> Self {
        let ca = std::fs::read(hub.data_dir.join("ca.pem")).unwrap();
        let token = std::fs::read_to_string(hub.data_dir.join("admin.token")).unwrap();
        Self {
            base: format!("https://{}", hub.api_addr),
            token: token.trim().to_owned(),
            client: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .build()
                .unwrap(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    /// A GET that may fail (the hub is restarting).
    async fn try_call(&self, path: &str) -> Option<Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn all_endpoints(&self) -> Vec<Value> {
        let mut items = Vec::new();
        for page in 1.. {
            let got = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/endpoints?page={page}&per_page=1000"),
                    None,
                )
                .await;
            let batch = got["items"].as_array().cloned().unwrap_or_default();
            let done = batch.len() < 1000;
            items.extend(batch);
            if done {
                break;
            }
        }
        items
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (1-based) are utime and stime; after the name we start at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz: f64 = String::from_utf8(
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    ticks as f64 / hz
}

#[derive(Default, Clone, Copy)]
struct Wire {
    bytes: u64,
    datagrams: u64,
}

fn wire_total(endpoints: &[Value]) -> Wire {
    let mut total = Wire::default();
    for e in endpoints {
        let w = &e["wire"];
        total.bytes += w["tx_bytes"].as_u64().unwrap_or(0) + w["rx_bytes"].as_u64().unwrap_or(0);
        total.datagrams +=
            w["tx_datagrams"].as_u64().unwrap_or(0) + w["rx_datagrams"].as_u64().unwrap_or(0);
    }
    total
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
    let rss_empty = rss_kib(pid);
    runtime.block_on(measure(&options, &mut hub, &flags, tmp.path(), rss_empty));
}

/// Poll the API until `n` endpoints are in standby, within `limit`.
async fn all_in_standby(api: &Api, n: usize, limit: Duration) {
    let online = async {
        loop {
            if let Some(list) = api
                .try_call("/api/endpoints?status=standby&per_page=1")
                .await
            {
                if list["total"].as_u64() == Some(n as u64) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(limit, online)
        .await
        .expect("all agents online");
}

/// Restart the hub and time how long until every agent is back.
async fn restart(hub: &mut Hub, flags: &[&str], api: &Api, n: usize) -> Duration {
    tokio::task::block_in_place(|| hub.stop());
    let started = Instant::now();
    tokio::task::block_in_place(|| hub.restart_with(flags));
    all_in_standby(api, n, Duration::from_secs(300)).await;
    started.elapsed()
}

async fn measure(options: &Options, hub: &mut Hub, flags: &[&str], tmp: &Path, rss_empty: u64) {
    let api = Api::new(hub);
    let pid = hub.pid();
    let n = options.agents;
    let enrol_started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let created = api
            .call(
                reqwest::Method::POST,
                "/api/endpoints",
                Some(serde_json::json!({ "name": format!("idle-{i}") })),
            )
            .await;
        let config = agent_config(
            &tmp.join(format!("agent-{i}")),
            created["edge_key"].as_str().unwrap(),
        );
        tasks.push(tokio::spawn(run(config)));
    }
    all_in_standby(&api, n, Duration::from_secs(120 + n as u64 / 10)).await;
    let enrol_time = enrol_started.elapsed();
    // Let connection start-up (handshake, path MTU probes: ~15 KB per agent) finish before measuring.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let before = wire_total(&api.all_endpoints().await);
    let cpu_before = cpu_seconds(pid);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let cpu = (cpu_seconds(pid) - cpu_before) / window.elapsed().as_secs_f64();
    let after_list = api.all_endpoints().await;
    let after = wire_total(&after_list);
    let secs = window.elapsed().as_secs_f64();
    let rss = rss_kib(pid);

    let mut client_side = Histogram::<u64>::new(3).unwrap();
    let mut hub_side = Histogram::<u64>::new(3).unwrap();
    let endpoints = api.all_endpoints().await;
    let step = (endpoints.len() / options.summons.max(1)).max(1);
    for endpoint in endpoints.iter().step_by(step).take(options.summons) {
        let id = endpoint["id"].as_u64().unwrap();
        let started = Instant::now();
        let answer = api
            .call(
                reqwest::Method::POST,
                &format!("/api/endpoints/{id}/summon"),
                None,
            )
            .await;
        client_side
            .record(started.elapsed().as_micros() as u64)
            .unwrap();
        hub_side
            .record((answer["ready_ms"].as_f64().unwrap() * 1000.0) as u64)
            .unwrap();
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
