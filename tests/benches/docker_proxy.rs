//! The Docker proxy's own cost on loopback with no impairment: latency of `docker ps`'s API call
//! through the hub against the same call straight to the engine's socket, and throughput of a large
//! `docker save` both ways. Prints a table; run by hand:
//!
//! ```sh
//! cargo bench -p outpost-tests --bench docker_proxy -- --calls 500 --image-mb 64
//! ```
//!
//! Both paths use one kept-alive HTTP/1.1 connection from this process (HTTPS to the hub, plain
//! HTTP over the unix socket), so the difference is what hub → QUIC → agent adds. A second table
//! times the docker CLI itself both ways, process start included.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // wall-clock measurement; bench code

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use outpost_tests::docker::{direct, require_engine, unique, DockerCli, TEST_IMAGE};
use outpost_tests::{Agent, Hub};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// A minimal HTTP/1.1 client over the engine's unix socket (the baseline).
struct Direct {
    sender: hyper::client::conn::http1::SendRequest<String>,
}

impl Direct {
    async fn connect() -> Self {
        let stream = tokio::net::UnixStream::connect("/var/run/docker.sock")
            .await
            .unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    async fn get(&mut self, path: &str) -> u64 {
        self.call(hyper::Method::GET, path, hyper::StatusCode::OK)
            .await
    }

    /// `method path`, which must answer `expected`; the body's length.
    async fn call(
        &mut self,
        method: hyper::Method,
        path: &str,
        expected: hyper::StatusCode,
    ) -> u64 {
        use http_body_util::BodyExt as _;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "docker")
            .body(String::new())
            .unwrap();
        // After a body's end the connection task may not yet have taken the next request.
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), expected, "{path}");
        let mut body = response.into_body();
        let mut total = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                total += data.len() as u64;
            }
        }
        total
    }
}

struct ViaHub {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl ViaHub {
    async fn get(&self, path: &str) -> u64 {
        self.call(reqwest::Method::GET, path, reqwest::StatusCode::OK)
            .await
    }

    /// `method path` through the hub, which must answer `expected`; the body's length.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        expected: reqwest::StatusCode,
    ) -> u64 {
        let mut response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{path}");
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
    let calls = arg("--calls", 500);
    let image_mb = arg("--image-mb", 64);
    let cli_calls = arg("--cli-calls", 30);
    let hub = Hub::start_with_flags(&["--standby-after", "10m", "--transport", "lan"]);
    let (id, key) = hub.create_endpoint("bench", &[]);
    let _agent = Agent::start(
        &hub.data_dir.parent().unwrap().join("agent"),
        &[
            ("EDGE_KEY", &key),
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
        ],
    );
    hub.wait_status(id, "standby", Duration::from_secs(20));

    let tag = format!("{}:bench", unique("save"));
    let ctx = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={}", ctx.path().join("blob").display()),
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

    // A named token is looked up in the store on each request (the bootstrap token in memory).
    let created = hub.cli(&["token", "create", "bench", "--role", "operator"]);
    assert!(created.status.success(), "{created:?}");
    let named_token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (direct_ps, hub_ps, named_ps, direct_kill, hub_kill, save) = runtime.block_on(async {
        let ca = std::fs::read(hub.data_dir.join("ca.pem")).unwrap();
        let via = ViaHub {
            client: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .build()
                .unwrap(),
            base: format!("https://{}/api/endpoints/{id}/docker", hub.api_addr),
            token: std::fs::read_to_string(hub.data_dir.join("admin.token"))
                .unwrap()
                .trim()
                .to_owned(),
        };
        let named = ViaHub {
            client: via.client.clone(),
            base: via.base.clone(),
            token: named_token,
        };
        let mut straight = Direct::connect().await;
        // Warm up: summon, TLS session, connection pools.
        for _ in 0..20 {
            via.get("/containers/json?all=1").await;
            named.get("/containers/json?all=1").await;
            straight.get("/containers/json?all=1").await;
        }
        let mut direct_ps = Histogram::<u64>::new(3).unwrap();
        let mut hub_ps = Histogram::<u64>::new(3).unwrap();
        let mut named_ps = Histogram::<u64>::new(3).unwrap();
        for _ in 0..calls {
            let t = Instant::now();
            straight.get("/containers/json?all=1").await;
            direct_ps.record(t.elapsed().as_micros() as u64).unwrap();
            let t = Instant::now();
            via.get("/containers/json?all=1").await;
            hub_ps.record(t.elapsed().as_micros() as u64).unwrap();
            let t = Instant::now();
            named.get("/containers/json?all=1").await;
            named_ps.record(t.elapsed().as_micros() as u64).unwrap();
        }
        // A state-changing call the hub audits, which the engine answers at once (no such
        // container: 404), so the engine's own time does not hide the audit's.
        let kill = format!("/containers/{}/kill", unique("absent"));
        let mut direct_kill = Histogram::<u64>::new(3).unwrap();
        let mut hub_kill = Histogram::<u64>::new(3).unwrap();
        for _ in 0..calls {
            let t = Instant::now();
            straight
                .call(hyper::Method::POST, &kill, hyper::StatusCode::NOT_FOUND)
                .await;
            direct_kill.record(t.elapsed().as_micros() as u64).unwrap();
            let t = Instant::now();
            via.call(reqwest::Method::POST, &kill, reqwest::StatusCode::NOT_FOUND)
                .await;
            hub_kill.record(t.elapsed().as_micros() as u64).unwrap();
        }
        let path = format!(
            "/images/{}/get",
            tag.replace('/', "%2F").replace(':', "%3A")
        );
        let mut save = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let bytes = straight.get(&path).await;
            let direct_rate = bytes as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            let through = via.get(&path).await;
            let hub_rate = through as f64 / t.elapsed().as_secs_f64();
            assert_eq!(bytes, through);
            save.push((bytes, direct_rate, hub_rate));
        }
        (direct_ps, hub_ps, named_ps, direct_kill, hub_kill, save)
    });

    let cli = DockerCli::for_endpoint(&hub, id);
    let mut cli_direct = Histogram::<u64>::new(3).unwrap();
    let mut cli_hub = Histogram::<u64>::new(3).unwrap();
    for _ in 0..cli_calls {
        let t = Instant::now();
        assert!(direct(&["ps", "-a"]).status.success());
        cli_direct.record(t.elapsed().as_micros() as u64).unwrap();
        let t = Instant::now();
        cli.ok(&["ps", "-a"]);
        cli_hub.record(t.elapsed().as_micros() as u64).unwrap();
    }
    let _ = direct(&["rmi", "-f", &tag]);

    println!("Docker proxy on loopback, no impairment ({calls} calls of GET /containers/json?all=1 each way)\n");
    println!("| path | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    println!(
        "| straight to the socket | {:.3} ms | {:.3} ms | {:.3} ms |",
        ms(&direct_ps, 0.5),
        ms(&direct_ps, 0.99),
        direct_ps.max() as f64 / 1000.0
    );
    println!(
        "| through hub → QUIC → agent | {:.3} ms | {:.3} ms | {:.3} ms |",
        ms(&hub_ps, 0.5),
        ms(&hub_ps, 0.99),
        hub_ps.max() as f64 / 1000.0
    );
    println!(
        "| added by Outpost | {:.3} ms | {:.3} ms | |",
        ms(&hub_ps, 0.5) - ms(&direct_ps, 0.5),
        ms(&hub_ps, 0.99) - ms(&direct_ps, 0.99)
    );
    println!(
        "\nAudited against not, and the credential's cost: what the hub adds to a read (not \
         audited) with the bootstrap token and with a named one, and to a state-changing call \
         (audited: a record started, counted and queued), in the same run ({calls} calls each)\n"
    );
    println!("| call | direct p50 | through hub p50 | added p50 | added p99 |");
    println!("|---|---:|---:|---:|---:|");
    for (call, straight, through) in [
        (
            "GET /containers/json?all=1 (not audited)",
            &direct_ps,
            &hub_ps,
        ),
        (
            "GET /containers/json?all=1, a named token (looked up in the store)",
            &direct_ps,
            &named_ps,
        ),
        (
            "POST /containers/<absent>/kill (audited, 404)",
            &direct_kill,
            &hub_kill,
        ),
    ] {
        println!(
            "| {call} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
            ms(straight, 0.5),
            ms(through, 0.5),
            ms(through, 0.5) - ms(straight, 0.5),
            ms(through, 0.99) - ms(straight, 0.99)
        );
    }
    println!("\n`docker save` of a {image_mb} MiB image (GET /images/…/get), 3 runs each way\n");
    println!("| run | bytes | direct MB/s | through hub MB/s | hub / direct |");
    println!("|---:|---:|---:|---:|---:|");
    for (i, (bytes, d, h)) in save.iter().enumerate() {
        println!(
            "| {} | {bytes} | {:.1} | {:.1} | {:.2} |",
            i + 1,
            d / 1e6,
            h / 1e6,
            h / d
        );
    }
    println!("\nThe docker CLI itself, `docker ps -a`, process start included ({cli_calls} runs each way)\n");
    println!("| path | p50 | p99 |");
    println!("|---|---:|---:|");
    println!(
        "| straight to the socket | {:.1} ms | {:.1} ms |",
        ms(&cli_direct, 0.5),
        ms(&cli_direct, 0.99)
    );
    println!(
        "| through the hub | {:.1} ms | {:.1} ms |",
        ms(&cli_hub, 0.5),
        ms(&cli_hub, 0.99)
    );
}
