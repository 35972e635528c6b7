//! What a Prometheus scrape of the hub costs at fleet scale: the release hub with
//! `--metrics-listen`, `outpost-swarm` agents all online, then scrapes one after another on one
//! kept connection, as a scraper makes them. Run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench metrics_scrape -- --agents 2000,25000
//! ```
//!
//! Per N: start a hub and the swarm (no summons); once all are online, let start-up traffic
//! settle; check the scrape counts every device online; then time `--scrapes` scrapes of the
//! metrics listener (plain HTTP) and as many of the admin API's `/metrics` (TLS, bearer token),
//! and note the body's size. The target (issue #17): under 200 ms and 200 KB at 25,000 devices.
#![allow(clippy::disallowed_methods)] // wall-clock measurement of real processes
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use outpost_tests::swarm_child::SwarmChild;
use outpost_tests::{wait_for, Hub};

struct Options {
    agents: Vec<usize>,
    scrapes: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    };
    let agents = value("--agents").map_or_else(
        || vec![25_000],
        |v| {
            v.split(',')
                .map(|n| n.trim().parse().expect("--agents N[,N…]"))
                .collect()
        },
    );
    let scrapes = value("--scrapes").map_or(100, |v| v.parse().expect("--scrapes N"));
    Options { agents, scrapes }
}

/// One N's figures.
struct Row {
    agents: usize,
    online: f64,
    listener: Timings,
    admin: Timings,
    body_bytes: usize,
}

/// Scrape times in milliseconds.
struct Timings {
    p50: f64,
    p99: f64,
    max: f64,
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows: Vec<Row> = options
        .agents
        .iter()
        .map(|&n| measure(&runtime, n, options.scrapes))
        .collect();
    println!("\nMetrics scrape: one hub, outpost-swarm agents all online, {} scrapes each way, one after another\n", options.scrapes);
    println!("| agents | online in the scrape | metrics listener p50 / p99 / max | admin API p50 / p99 / max | body |");
    println!("|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} / {:.2} / {:.2} ms | {:.2} / {:.2} / {:.2} ms | {:.1} KB |",
            r.agents,
            r.online,
            r.listener.p50,
            r.listener.p99,
            r.listener.max,
            r.admin.p50,
            r.admin.p99,
            r.admin.max,
            r.body_bytes as f64 / 1000.0
        );
    }
}

fn measure(runtime: &tokio::runtime::Runtime, n: usize, scrapes: usize) -> Row {
    eprintln!("== {n} agents");
    let tmp = tempfile::tempdir().unwrap();
    let flags = [
        "--checkin-interval",
        "25s",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let hub = Hub::start_with(tmp.path().join("hub"), "127.0.0.1:0", "127.0.0.1:0", &flags);
    let listener = format!("http://{}/metrics", metrics_addr(&hub));
    let swarm = SwarmChild::start(&hub, &tmp.path().join("swarm"), n, &["--summons", "0"]);
    swarm.wait_for("phase online");
    // Let connection start-up (handshakes, the first liveness flushes) finish before measuring.
    std::thread::sleep(Duration::from_secs(10));

    let plain = reqwest::Client::new();
    let body = runtime.block_on(scrape(&plain.get(&listener)));
    let online = sample(&body, "outpost_hub_devices{status=\"standby\"}")
        + sample(&body, "outpost_hub_devices{status=\"active\"}");
    let listener = runtime.block_on(time(scrapes, || plain.get(&listener)));
    let (admin_client, admin_url, token) = admin(&hub);
    let admin = runtime.block_on(time(scrapes, || {
        admin_client.get(&admin_url).bearer_auth(&token)
    }));
    let _ = swarm.finish();
    Row {
        agents: n,
        online,
        listener,
        admin,
        body_bytes: body.len(),
    }
}

/// The metrics listener's address, as the hub's log announces it.
fn metrics_addr(hub: &Hub) -> String {
    wait_for(Duration::from_secs(10), "the metrics address", || {
        let log = hub.log();
        let line = log.lines().find(|l| l.contains("metrics on http://"))?;
        let rest = line.split("http://").nth(1)?;
        Some(rest.trim_end_matches("/metrics").trim().to_owned())
    })
}

/// A client that trusts the hub's CA, the admin API's `/metrics` URL and the admin token.
fn admin(hub: &Hub) -> (reqwest::Client, String, String) {
    let read = |name: &str| std::fs::read_to_string(hub.data_dir.join(name)).unwrap();
    let ca = reqwest::Certificate::from_pem(read("ca.pem").as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("{}/metrics", read("api.url").trim());
    (client, url, read("admin.token").trim().to_owned())
}

async fn scrape(request: &reqwest::RequestBuilder) -> String {
    let response = request.try_clone().unwrap().send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// `count` scrapes one after another, each timed from the request to the body's last byte.
async fn time(count: usize, request: impl Fn() -> reqwest::RequestBuilder) -> Timings {
    let mut took = Histogram::<u64>::new(3).unwrap();
    for _ in 0..count {
        let started = Instant::now();
        scrape(&request()).await;
        took.record(started.elapsed().as_micros() as u64).unwrap();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Timings {
        p50: ms(took.value_at_quantile(0.5)),
        p99: ms(took.value_at_quantile(0.99)),
        max: ms(took.max()),
    }
}

/// The value of the sample `series` in an exposition.
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in the scrape:\n{body}"))
}
