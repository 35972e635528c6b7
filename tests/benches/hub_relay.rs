//! What the hub-to-hub link (`hub/src/peers.rs`) adds: two hubs on one PostgreSQL store, a device
//! held by hub B, the same Docker API calls through B and through A (which forwards them to B
//! over mutual TLS, a new connection per request), on loopback without impairment. Prints a
//! table; run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench hub_relay -- --calls 300 --image-mb 64
//! ```
//!
//! The client keeps one HTTPS connection to each hub, so the difference between the rows is the
//! extra hop: A's TLS handshake with B, and every byte crossing A.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // wall-clock measurement; bench code

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use outpost_tests::bench_store::{BenchStore, StoreKind};
use outpost_tests::docker::{direct, require_engine, unique, TEST_IMAGE};
use outpost_tests::{wait_for, Agent, Hub};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn start_hub(db: &BenchStore, name: &str) -> Hub {
    let mut flags = db.serve_flags();
    flags.extend(
        [
            "--hub-name",
            name,
            "--standby-after",
            "10m",
            "--transport",
            "lan",
        ]
        .map(str::to_owned),
    );
    Hub::start_with_flags(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Docker API calls for one device through one hub, on one kept-alive HTTPS connection.
struct Through {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Through {
    fn new(hub: &Hub, id: u64, token: &str) -> Self {
        let ca = std::fs::read(hub.data_dir.join("ca.pem")).unwrap();
        Self {
            client: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .build()
                .unwrap(),
            base: format!("https://{}/api/endpoints/{id}/docker", hub.api_addr),
            token: token.to_owned(),
        }
    }

    /// `GET path`, which must answer 200; the body's length.
    async fn get(&self, path: &str) -> u64 {
        let mut response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{path}");
        let mut total = 0;
        while let Some(chunk) = response.chunk().await.unwrap() {
            total += chunk.len() as u64;
        }
        total
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn main() {
    require_engine();
    let calls = arg("--calls", 300);
    let image_mb = arg("--image-mb", 64);
    let dir = tempfile::tempdir().unwrap();
    let db = BenchStore::create(StoreKind::Postgres, dir.path());
    let a = start_hub(&db, "hub-a");
    let b = start_hub(&db, "hub-b");
    let token_file = a.data_dir.join("admin.token");
    std::fs::copy(&token_file, b.data_dir.join("admin.token")).unwrap();
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let (id, key) = b.create_endpoint("bench", &[]);
    let _agent = Agent::start(
        &b.data_dir.parent().unwrap().join("agent"),
        &[("EDGE_KEY", &key)],
    );
    b.wait_status(id, "standby", Duration::from_secs(20));
    wait_for(
        Duration::from_secs(15),
        "hub-a to see hub-b hold the device",
        || (a.show(id)["hub"] == "hub-b").then_some(()),
    );

    let tag = format!("{}:relay", unique("save"));
    let ctx = tempfile::tempdir().unwrap();
    let blob = ctx.path().join("blob");
    let status = std::process::Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={}", blob.display()),
            "bs=1M",
            &format!("count={image_mb}"),
            "status=none",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\nCOPY blob /blob\n"),
    )
    .unwrap();
    assert!(
        direct(&["build", "-q", "-t", &tag, ctx.path().to_str().unwrap()])
            .status
            .success()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (holder, relayed, save) = runtime.block_on(async {
        let via_b = Through::new(&b, id, &token);
        let via_a = Through::new(&a, id, &token);
        for _ in 0..20 {
            via_b.get("/containers/json?all=1").await;
            via_a.get("/containers/json?all=1").await;
        }
        let mut holder = Histogram::<u64>::new(3).unwrap();
        let mut relayed = Histogram::<u64>::new(3).unwrap();
        for _ in 0..calls {
            let t = Instant::now();
            via_b.get("/containers/json?all=1").await;
            holder.record(t.elapsed().as_micros() as u64).unwrap();
            let t = Instant::now();
            via_a.get("/containers/json?all=1").await;
            relayed.record(t.elapsed().as_micros() as u64).unwrap();
        }
        let path = format!(
            "/images/{}/get",
            tag.replace('/', "%2F").replace(':', "%3A")
        );
        let mut save = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let bytes = via_b.get(&path).await;
            let holder_rate = bytes as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            let through = via_a.get(&path).await;
            let relayed_rate = through as f64 / t.elapsed().as_secs_f64();
            assert_eq!(bytes, through);
            save.push((bytes, holder_rate, relayed_rate));
        }
        (holder, relayed, save)
    });
    let _ = direct(&["rmi", "-f", &tag]);

    println!(
        "Hub-to-hub forwarding on loopback, no impairment ({calls} calls of GET /containers/json?all=1 each way)\n"
    );
    println!("| path | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    for (path, h) in [
        ("through hub B, which holds the device", &holder),
        ("through hub A, forwarded to B", &relayed),
    ] {
        println!(
            "| {path} | {:.3} ms | {:.3} ms | {:.3} ms |",
            ms(h, 0.5),
            ms(h, 0.99),
            h.max() as f64 / 1000.0
        );
    }
    println!(
        "| added by the extra hop | {:.3} ms | {:.3} ms | |",
        ms(&relayed, 0.5) - ms(&holder, 0.5),
        ms(&relayed, 0.99) - ms(&holder, 0.99)
    );
    println!("\n`docker save` of a {image_mb} MiB image (GET /images/…/get), 3 runs each way\n");
    println!("| run | bytes | through B MB/s | through A MB/s | A / B |");
    println!("|---:|---:|---:|---:|---:|");
    for (i, (bytes, b_rate, a_rate)) in save.iter().enumerate() {
        println!(
            "| {} | {bytes} | {:.1} | {:.1} | {:.2} |",
            i + 1,
            b_rate / 1e6,
            a_rate / 1e6,
            a_rate / b_rate
        );
    }
}
