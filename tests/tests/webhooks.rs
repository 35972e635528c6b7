//! Alerts by webhook, end to end: a real hub, real agents over QUIC behind the netem relay, and a
//! webhook receiver in the test that checks every POST's HMAC with its own code.
//!
//! - A device the hub shows offline for less than its group's threshold (30 s here) raises
//!   nothing; cut off for longer, it raises exactly one signed `offline`, then `online` when it
//!   returns.
//! - Meanwhile a device behind `flaky-cellular` (a 5 s outage a minute) raises nothing in three
//!   minutes with the same threshold.
//! - A receiver that is not listening when the `offline` is raised gets it once it comes up: the
//!   delivery is retried, and `webhook deliveries` shows the failed attempts; a delivery queued
//!   before a hub restart is still delivered after it (the queue is in the store).
//! - A paused rollout and a finished job reach the webhook subscribed to them, and no other.
//! - A device certificate expiring within 30 days is told once, not again after a restart.
//! - Bad input is refused with a 400 that names the problem.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use outpost_api::{WebhookCreated, WebhookDelivery};
use outpost_netem::control::Controllable;
use outpost_netem::Profile;
use outpost_tests::link::{DeviceOptions, RelayedDevice};
use outpost_tests::Hub;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The offline threshold the devices are given.
const THRESHOLD: &str = "30s";
/// How long the flapping device is watched.
const WATCH: Duration = Duration::from_secs(180);

/// One POST the receiver took.
#[derive(Clone, Debug)]
struct Received {
    /// The webhook's name (the URL's path).
    name: String,
    body: Value,
    /// The signature matched the webhook's secret and the timestamp was fresh.
    verified: bool,
}

/// Webhook receivers on loopback, one path per webhook, each with the secret it was given.
#[derive(Clone, Debug, Default)]
struct Receiver {
    secrets: Arc<Mutex<HashMap<String, String>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Serve on `listener` (several listeners share what they receive).
    fn serve(&self, listener: TcpListener) {
        let app = axum::Router::new()
            .route("/{name}", post(take))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    /// Every event the webhook `name` received.
    fn events(&self, name: &str) -> Vec<Received> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|r| r.name == name).cloned().collect()
    }

    /// Wait until webhook `name` has received an `event`, and return it.
    async fn wait(&self, name: &str, event: &str, within: Duration) -> Received {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .events(name)
                .into_iter()
                .find(|r| r.body["event"] == event);
            if let Some(found) = found {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} reached webhook {name} within {within:?}; it got {:?}",
                self.events(name)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The receiver's handler: check the signature as a receiver would, then keep the event.
async fn take(
    State(receiver): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp = header("x-outpost-timestamp");
    let secret = receiver.secrets.lock().unwrap().get(&name).cloned();
    let verified = secret.is_some_and(|secret| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(&body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let fresh = timestamp
            .parse::<i64>()
            .is_ok_and(|t| (now - t).abs() < 300);
        header("x-outpost-signature") == format!("sha256={hex}") && fresh
    });
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    receiver.got.lock().unwrap().push(Received {
        name,
        body,
        verified,
    });
    StatusCode::NO_CONTENT
}

/// `outpost-hub webhook add URL --events EVENTS`, the secret handed to the receiver's `name`.
fn subscribe(hub: &Hub, receiver: &Receiver, url: &str, name: &str, events: &str) -> i64 {
    let created: WebhookCreated =
        hub.cli_json(&["webhook", "add", url, "--events", events, "--json"]);
    assert_eq!(created.secret.len(), 64, "{created:?}");
    receiver
        .secrets
        .lock()
        .unwrap()
        .insert(name.to_owned(), created.secret);
    created.webhook.id
}

/// `outpost-hub ARGS…` that must succeed.
fn ok(hub: &Hub, args: &[&str]) -> String {
    let out = hub.cli(args);
    assert!(
        out.status.success(),
        "outpost-hub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cut_off_past_its_threshold_alerts_once_and_a_flapping_one_never() {
    let receiver = Receiver::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    receiver.serve(listener);
    // The late receiver's port, taken and given back: nothing listens there until later.
    let late_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let flaky_link = DeviceOptions {
        profile: Profile::load("flaky-cellular").unwrap(),
        transport: "cellular",
        ready_within: Duration::from_secs(90),
        ..DeviceOptions::default()
    };
    let (cut, flaky) = tokio::join!(
        RelayedDevice::start("cut", DeviceOptions::default()),
        RelayedDevice::start("flaky", flaky_link)
    );
    tokio::task::block_in_place(|| {
        ok(
            &cut.hub,
            &["endpoint", "group", &cut.id.to_string(), "kiosks"],
        );
        ok(
            &cut.hub,
            &["webhook", "threshold", "--group", "kiosks", THRESHOLD],
        );
        subscribe(
            &cut.hub,
            &receiver,
            &format!("{base}/cut"),
            "cut",
            "offline,online",
        );
        subscribe(
            &cut.hub,
            &receiver,
            &format!("http://{late_addr}/late"),
            "late",
            "offline",
        );
        // The flapping device's hub uses the default threshold, set to the same.
        ok(&flaky.hub, &["webhook", "threshold", THRESHOLD]);
        subscribe(
            &flaky.hub,
            &receiver,
            &format!("{base}/flaky"),
            "flaky",
            "offline,online",
        );
    });
    let watching = Instant::now();

    // A 25 s cut: the hub shows the device offline (no check-in for 12 s at the test's 1 s
    // check-ins) for less than the threshold, then back: no alert.
    cut.link.outage(Duration::from_secs(25));
    tokio::task::block_in_place(|| {
        cut.hub
            .wait_status(cut.id, "offline", Duration::from_secs(25));
        cut.hub
            .wait_status(cut.id, "standby", Duration::from_secs(60));
    });
    assert!(receiver.events("cut").is_empty(), "a short outage alerted");

    // Cut off for 60 s: offline after 12 s, written within the 5 s flush, then 30 s of
    // threshold.
    let cut_at = Instant::now();
    cut.link.outage(Duration::from_secs(60));
    let offline = receiver
        .wait("cut", "offline", Duration::from_secs(70))
        .await;
    assert!(offline.verified, "{offline:?}");
    assert_eq!(
        offline.body["endpoint"],
        json!({ "id": cut.id, "name": "cut" })
    );
    assert!(offline.body["id"].is_string() && offline.body["at"].is_string());
    let raised_after = cut_at.elapsed();
    assert!(
        raised_after >= Duration::from_secs(30),
        "offline raised {raised_after:?} after the cut, before the threshold"
    );

    // The late receiver comes up 15 s later: the delivery failed a few times meanwhile.
    tokio::time::sleep(Duration::from_secs(15)).await;
    receiver.serve(TcpListener::bind(late_addr).await.unwrap());
    let late = receiver
        .wait("late", "offline", Duration::from_secs(60))
        .await;
    assert!(late.verified, "{late:?}");
    assert_eq!(late.body["id"], offline.body["id"], "the same event");

    let online = receiver
        .wait("cut", "online", Duration::from_secs(150))
        .await;
    assert!(online.verified, "{online:?}");
    assert_eq!(online.body["endpoint"]["id"], json!(cut.id));
    assert_eq!(online.body["offline_since"], offline.body["offline_since"]);

    tokio::time::sleep_until(watching + WATCH).await;
    let names = |name: &str| -> Vec<Value> {
        receiver
            .events(name)
            .into_iter()
            .map(|r| r.body["event"].clone())
            .collect()
    };
    assert_eq!(names("cut"), vec![json!("offline"), json!("online")]);
    assert_eq!(names("late"), vec![json!("offline")]);
    assert_eq!(
        names("flaky"),
        Vec::<Value>::new(),
        "the flapping device raised alerts"
    );
    let flapped = flaky.link.counters().up.dropped_outage;
    assert!(flapped > 0, "the flaky link had no outage while watched");

    let deliveries: Vec<WebhookDelivery> =
        tokio::task::block_in_place(|| cut.hub.cli_json(&["webhook", "deliveries", "2", "--json"]));
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let late = &deliveries[0];
    assert_eq!(
        (late.state.as_str(), late.last_status),
        ("delivered", Some(204))
    );
    assert!(late.attempts >= 3, "{late:?}");
}

#[test]
fn bad_webhook_input_is_refused_naming_the_problem() {
    let hub = Hub::start();
    let refused = |args: &[&str], needle: &str| {
        let out = hub.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(needle) && stderr.contains("400"),
            "{args:?}: {stderr}"
        );
    };
    refused(
        &[
            "webhook",
            "add",
            "ftp://alerts.example/x",
            "--events",
            "offline",
        ],
        "not http(s)",
    );
    refused(
        &[
            "webhook",
            "add",
            "http://127.0.0.1:9/x",
            "--events",
            "offline,reboot",
        ],
        "unknown event \"reboot\"",
    );
    refused(&["webhook", "threshold", "soon"], "not a duration");
    refused(
        &["webhook", "threshold", "--group", "g", "0s"],
        "out of range",
    );
    let answer = hub.api_call(
        "POST",
        "/api/webhooks",
        Some(json!({ "url": "http://127.0.0.1:9/x", "events": [] })),
    );
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("no events"));
    let listed = ok(&hub, &["webhook", "list", "--json"]);
    assert_eq!(listed.trim(), "[]", "nothing was added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_rollout_and_a_finished_job_are_told_to_their_webhooks_only() {
    let receiver = Receiver::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    receiver.serve(listener);
    let hub = tokio::task::spawn_blocking(Hub::start).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (rollout, job) = tokio::task::block_in_place(|| {
        subscribe(
            &hub,
            &receiver,
            &format!("{base}/ops"),
            "ops",
            "rollout,job",
        );
        subscribe(&hub, &receiver, &format!("{base}/down"), "down", "offline");
        let (id, _) = hub.create_endpoint("kiosk", &[]);
        let id = id.to_string();
        outpost_tests::stacks::save(
            &hub,
            tmp.path(),
            "web",
            "services:\n  web:\n    image: busybox\n",
        );
        let rollout = outpost_tests::stacks::deploy(&hub, "web", &["--endpoint", &id]);
        ok(
            &hub,
            &["rollout", "pause", &rollout.to_string(), "--note", "lunch"],
        );
        let job: outpost_api::JobSummary = hub.cli_json(&[
            "job",
            "run",
            "--endpoint",
            &id,
            "--json",
            "--",
            "GET",
            "/info",
        ]);
        ok(&hub, &["job", "cancel", &job.id.to_string()]);
        (rollout, job.id)
    });

    let paused = receiver
        .wait("ops", "rollout", Duration::from_secs(20))
        .await;
    assert!(paused.verified, "{paused:?}");
    assert_eq!(paused.body["rollout"], json!(rollout));
    assert_eq!(
        (&paused.body["stack"], &paused.body["state"]),
        (&json!("web"), &json!("paused"))
    );
    assert!(
        paused.body["reason"].as_str().unwrap().contains("lunch"),
        "{paused:?}"
    );
    let finished = receiver.wait("ops", "job", Duration::from_secs(20)).await;
    assert!(finished.verified, "{finished:?}");
    assert_eq!(finished.body["job"], json!(job));
    assert!(
        receiver.events("down").is_empty(),
        "offline has no subscriber here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_queued_while_the_receiver_is_down_survives_a_hub_restart() {
    let receiver = Receiver::default();
    // The receiver's port, taken and given back: nothing listens there until after the restart.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut hub = tokio::task::spawn_blocking(Hub::start).await.unwrap();
    let job = tokio::task::block_in_place(|| {
        let webhook = subscribe(&hub, &receiver, &format!("http://{addr}/ops"), "ops", "job");
        let (id, _) = hub.create_endpoint("kiosk", &[]);
        let job: outpost_api::JobSummary = hub.cli_json(&[
            "job",
            "run",
            "--endpoint",
            &id.to_string(),
            "--json",
            "--",
            "GET",
            "/info",
        ]);
        ok(&hub, &["job", "cancel", &job.id.to_string()]);
        // Tried and failed at least once before the restart.
        outpost_tests::wait_for(Duration::from_secs(20), "a failed attempt", || {
            let deliveries: Vec<WebhookDelivery> =
                hub.cli_json(&["webhook", "deliveries", &webhook.to_string(), "--json"]);
            deliveries
                .first()
                .filter(|d| d.attempts >= 1 && d.state == "pending")
                .map(|d| assert!(d.last_error.is_some(), "{d:?}"))
        });
        hub.restart();
        job.id
    });
    receiver.serve(TcpListener::bind(addr).await.unwrap());
    let finished = receiver.wait("ops", "job", Duration::from_secs(60)).await;
    assert!(finished.verified, "{finished:?}");
    assert_eq!(finished.body["job"], json!(job));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.events("ops").len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_certificate_expiring_within_a_month_is_told_once() {
    let receiver = Receiver::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    receiver.serve(listener);
    let short_lived = ["--agent-cert-validity", "10d"];
    let mut hub = tokio::task::spawn_blocking(move || Hub::start_with_flags(&short_lived))
        .await
        .unwrap();
    let id = tokio::task::block_in_place(|| {
        subscribe(
            &hub,
            &receiver,
            &format!("{base}/certs"),
            "certs",
            "cert-expiring",
        );
        let (id, key) = hub.create_endpoint("kiosk", &[]);
        let dir = hub.data_dir.parent().unwrap().join("agent");
        let agent = outpost_tests::Agent::start(
            &dir,
            &[
                ("EDGE_KEY", key.as_str()),
                ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
            ],
        );
        hub.wait_status(id, "standby", Duration::from_secs(20));
        drop(agent);
        // The check runs at start and hourly: a restart runs it now.
        hub.restart_with(&short_lived);
        id
    });
    let expiring = receiver
        .wait("certs", "cert-expiring", Duration::from_secs(20))
        .await;
    assert!(expiring.verified, "{expiring:?}");
    assert_eq!(
        expiring.body["endpoint"],
        json!({ "id": id, "name": "kiosk" })
    );
    assert!(expiring.body["not_after"].is_string(), "{expiring:?}");
    tokio::task::block_in_place(|| hub.restart_with(&short_lived));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.events("certs").len(), 1, "warned once per expiry");
}
