//! The admin API under attack: slow clients, a connection flood, a low open-file limit, withdrawn
//! credentials, headers meant for the hub, non-canonical ids and hostile names. Each test performs
//! the attack and shows the refusal or the bound, and that an admin is still served.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // wall-clock timing of real processes; test code

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use outpost_tests::docker::{require_engine, unique, Container, DockerCli, TEST_IMAGE};
use outpost_tests::fake_engine::recording_engine;
use outpost_tests::slow_clients::{connect, hold_half_open, open_file_limits, prlimit, tls_config};
use outpost_tests::{wait_for, Agent, Hub};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The hub's header-read timeout is 10 s; a connection it ends is seen closed well within this.
const HEADER_TIMEOUT_BOUND: Duration = Duration::from_secs(30);
/// A withdrawn credential's streams end within a second (issue #12).
const WITHDRAWAL_BOUND: Duration = Duration::from_secs(1);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn token(hub: &Hub) -> String {
    std::fs::read_to_string(hub.data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A keep-alive HTTP/1.1 connection to the API, optionally with an admin client certificate.
async fn keep_alive(hub: &Hub, cert: Option<&Path>) -> SendRequest<Empty<Bytes>> {
    let tls = connect(&hub.api_addr, tls_config(&hub.data_dir, cert))
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender
}

fn request(method: &str, path: &str, bearer: Option<&str>) -> hyper::http::request::Builder {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "hub");
    match bearer {
        Some(token) => builder.header("authorization", format!("Bearer {token}")),
        None => builder,
    }
}

async fn send(
    conn: &mut SendRequest<Empty<Bytes>>,
    builder: hyper::http::request::Builder,
) -> Response<Incoming> {
    conn.ready().await.unwrap();
    conn.send_request(builder.body(Empty::new()).unwrap())
        .await
        .unwrap()
}

/// Status of a request on `conn`, body read to the end.
async fn status(conn: &mut SendRequest<Empty<Bytes>>, path: &str, bearer: Option<&str>) -> u16 {
    let response = send(conn, request("GET", path, bearer)).await;
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

fn enrol(hub: &Hub, name: &str, docker_host: &str) -> (u64, Agent) {
    let (id, key) = hub.create_endpoint(name, &[]);
    let dir = hub.data_dir.parent().unwrap().join(name);
    let agent = Agent::start(&dir, &[("EDGE_KEY", &key), ("DOCKER_HOST", docker_host)]);
    hub.wait_status(id, "standby", Duration::from_secs(20));
    (id, agent)
}

fn engine_device(hub: &Hub) -> (u64, Agent) {
    require_engine();
    enrol(hub, "device", "unix:///var/run/docker.sock")
}

#[test]
fn slowloris_connections_are_closed_by_the_header_timeout_while_docker_answers() {
    let hub = Hub::start();
    let (id, _agent) = engine_device(&hub);
    let cli = DockerCli::for_endpoint(&hub, id);
    let quiet = cli.start("quiet", &["sleep", "600"]);
    // A stream that sends nothing for longer than the header timeout is not idle: it stays.
    let mut follow = cli.follow(&["logs", "-f", &quiet.name]);

    let started = Instant::now();
    let slow = hold_half_open(&hub.api_addr, &hub.data_dir, 100);
    assert_eq!(slow.opened(), 100, "every slow connection got in");
    assert!(cli.ok(&["ps"]).contains("CONTAINER ID"));

    wait_for(
        HEADER_TIMEOUT_BOUND,
        "the hub to close every half-sent head",
        || (slow.still_open() == 0).then_some(()),
    );
    let held = started.elapsed();
    assert!(
        held >= Duration::from_secs(9),
        "closed after {held:?}, before the timeout"
    );
    assert!(!follow.has_exited(), "a quiet logs -f was cut as idle");
    assert!(cli.ok(&["ps"]).contains(&quiet.name));
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let hub = Hub::start();
    let rt = runtime();
    let token = token(&hub);
    let mut conn = rt.block_on(keep_alive(&hub, None));
    assert_eq!(
        rt.block_on(status(&mut conn, "/api/endpoints", Some(&token))),
        200
    );
    wait_for(HEADER_TIMEOUT_BOUND, "the idle connection to close", || {
        conn.is_closed().then_some(())
    });
}

#[test]
fn the_connection_cap_sheds_unauthenticated_connections_first() {
    let hub = Hub::start_with_flags(&["--max-api-connections", "8"]);
    let rt = runtime();
    let token = token(&hub);
    let mut admins: Vec<_> = (0..2)
        .map(|_| rt.block_on(keep_alive(&hub, None)))
        .collect();
    for admin in &mut admins {
        assert_eq!(
            rt.block_on(status(admin, "/api/endpoints", Some(&token))),
            200
        );
    }

    let flood = hold_half_open(&hub.api_addr, &hub.data_dir, 20);
    wait_for(
        Duration::from_secs(10),
        "the flood to be cut to the cap",
        || (flood.still_open() <= 6).then_some(()),
    );
    for admin in &mut admins {
        assert!(!admin.is_closed(), "an authenticated connection was shed");
        assert_eq!(
            rt.block_on(status(admin, "/api/endpoints", Some(&token))),
            200
        );
    }
    assert_eq!(hub.api_call("GET", "/api/endpoints", None).status, 200);
}

#[test]
fn under_a_low_open_file_limit_300_half_open_connections_do_not_stop_an_admin() {
    // Started with a soft limit of 256 under a higher hard one, the hub takes the hard limit.
    let me = std::process::id();
    let (soft, hard) = open_file_limits(me);
    prlimit(me, "256:");
    let hub = Hub::start();
    prlimit(me, &format!("{soft}:"));
    assert_eq!(open_file_limits(hub.pid()), (hard, hard));
    assert!(hub.log().contains("open-file limit raised"));

    // A hard limit of 256 (`ulimit -n 256`), here set on the running hub.
    prlimit(hub.pid(), "256:256");
    let slow = hold_half_open(&hub.api_addr, &hub.data_dir, 300);
    // A shed connection's close reaches the client a moment after the newcomer was accepted.
    wait_for(
        Duration::from_secs(5),
        "at most 192 held under a limit of 256",
        || (slow.still_open() <= 192).then_some(()),
    );
    let answer = hub.api_call("GET", "/api/endpoints", None);
    assert_eq!(answer.status, 200);
}

/// A container that prints `ready` and then echoes its stdin.
fn echo_container(cli: &DockerCli) -> Container {
    let name = unique("echo");
    cli.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        &name,
        TEST_IMAGE,
        "sh",
        "-c",
        "echo ready; cat",
    ]);
    Container { name }
}

/// An admin's open streams on one credential: `logs -f` and a hijacked `attach`.
struct Streams {
    logs: Incoming,
    attach: TokioIo<hyper::upgrade::Upgraded>,
}

async fn open_streams(
    hub: &Hub,
    id: u64,
    container: &str,
    cert: Option<&Path>,
    bearer: Option<&str>,
) -> Streams {
    let base = format!("/api/endpoints/{id}/docker/containers/{container}");
    let mut conn = keep_alive(hub, cert).await;
    let logs = send(
        &mut conn,
        request("GET", &format!("{base}/logs?follow=1&stdout=1"), bearer),
    )
    .await;
    assert_eq!(logs.status(), 200);
    let mut logs = logs.into_body();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let frame = logs.frame().await.unwrap().unwrap();
        seen.extend_from_slice(frame.data_ref().unwrap());
    }

    let mut conn = keep_alive(hub, cert).await;
    let path = format!("{base}/attach?stream=1&stdin=1&stdout=1");
    let hijack = request("POST", &path, bearer)
        .header("connection", "Upgrade")
        .header("upgrade", "tcp");
    let answer = send(&mut conn, hijack).await;
    assert_eq!(answer.status(), 101);
    let mut attach = TokioIo::new(hyper::upgrade::on(answer).await.unwrap());
    attach.write_all(b"ping\n").await.unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("ping") {
        let mut buf = [0u8; 256];
        let n = attach.read(&mut buf).await.unwrap();
        assert!(n > 0, "attach closed before echoing");
        seen.extend_from_slice(&buf[..n]);
    }
    Streams { logs, attach }
}

impl Streams {
    /// Wait for both to end; panics if either outlasts `bound`.
    async fn ended_within(mut self, bound: Duration) {
        let logs = async { while let Some(Ok(_)) = self.logs.frame().await {} };
        let attach = async {
            let mut buf = [0u8; 256];
            while matches!(self.attach.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        tokio::time::timeout(bound, async { tokio::join!(logs, attach) })
            .await
            .expect("the withdrawn credential's streams still run");
    }
}

#[test]
fn a_revoked_admin_certificate_is_refused_on_open_connections_and_its_streams_end() {
    let hub = Hub::start();
    let (id, _agent) = engine_device(&hub);
    let cli = DockerCli::for_endpoint(&hub, id);
    let container = echo_container(&cli);
    let certs = hub.data_dir.parent().unwrap().join("revoked-cert");
    hub.admin_cert(&certs);
    let kept = hub.data_dir.parent().unwrap().join("kept-cert");
    let kept_dir = kept.to_str().unwrap();
    let issued = admin(
        &hub,
        &["admin-cert", "create", "--name", "kept", "--out", kept_dir],
    );
    assert!(issued.status.success(), "{issued:?}");
    let rt = runtime();

    let mut open = rt.block_on(keep_alive(&hub, Some(&certs)));
    let mut other = rt.block_on(keep_alive(&hub, Some(&kept)));
    assert_eq!(rt.block_on(status(&mut open, "/api/endpoints", None)), 200);
    let streams = rt.block_on(open_streams(&hub, id, &container.name, Some(&certs), None));

    let listed = admin(&hub, &["admin-cert", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let revoked_one = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "admin");
    let serial = revoked_one.unwrap()["serial"].as_str().unwrap().to_owned();
    let revoked = admin(&hub, &["admin-cert", "revoke", &serial]);
    assert!(revoked.status.success(), "{revoked:?}");
    rt.block_on(streams.ended_within(WITHDRAWAL_BOUND));

    assert_eq!(rt.block_on(status(&mut open, "/api/endpoints", None)), 401);
    assert_eq!(rt.block_on(status(&mut other, "/api/endpoints", None)), 200);
    let listed = admin(&hub, &["admin-cert", "list"]);
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    let row = table.lines().find(|l| l.contains(&serial)).unwrap();
    assert!(!row.trim_end().ends_with('-'), "not shown revoked: {row}");
    assert!(cli.ok(&["ps"]).contains(&container.name));
}

#[test]
fn a_revoked_named_token_is_refused_on_open_connections_and_its_streams_end() {
    let hub = Hub::start();
    let (id, _agent) = engine_device(&hub);
    let container = echo_container(&DockerCli::for_endpoint(&hub, id));
    let named = |name: &str| {
        let out = admin(&hub, &["token", "create", name, "--role", "operator"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (doomed, kept) = (named("doomed"), named("kept"));
    let rt = runtime();
    let mut open = rt.block_on(keep_alive(&hub, None));
    assert_eq!(
        rt.block_on(status(&mut open, "/api/endpoints", Some(&doomed))),
        200
    );
    let streams = rt.block_on(open_streams(&hub, id, &container.name, None, Some(&doomed)));

    let revoked = admin(&hub, &["token", "revoke", "doomed"]);
    assert!(revoked.status.success(), "{revoked:?}");
    rt.block_on(streams.ended_within(WITHDRAWAL_BOUND));

    assert_eq!(
        rt.block_on(status(&mut open, "/api/endpoints", Some(&doomed))),
        401
    );
    assert_eq!(
        rt.block_on(status(&mut open, "/api/endpoints", Some(&kept))),
        200,
        "the other token on the same connection still works"
    );
    let again = admin(&hub, &["token", "revoke", "doomed"]);
    assert!(!again.status.success(), "revoked twice");
    let listed = admin(&hub, &["token", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let revoked_at: Vec<bool> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["revoked_at"].is_number())
        .collect();
    assert_eq!(revoked_at, [true, false]);
    assert!(
        !listed.to_string().contains(&kept),
        "a token is never listed"
    );
}

#[test]
fn a_rotated_admin_token_is_refused_on_open_connections_and_its_streams_end() {
    let hub = Hub::start();
    let (id, _agent) = engine_device(&hub);
    let container = echo_container(&DockerCli::for_endpoint(&hub, id));
    let old = token(&hub);
    let rt = runtime();
    let mut open = rt.block_on(keep_alive(&hub, None));
    assert_eq!(
        rt.block_on(status(&mut open, "/api/endpoints", Some(&old))),
        200
    );
    let streams = rt.block_on(open_streams(&hub, id, &container.name, None, Some(&old)));

    let rotated = admin(&hub, &["admin-token", "rotate"]);
    assert!(rotated.status.success(), "{rotated:?}");
    rt.block_on(streams.ended_within(WITHDRAWAL_BOUND));

    let printed = String::from_utf8(rotated.stdout).unwrap().trim().to_owned();
    assert_eq!(printed, token(&hub), "the printed token is the one written");
    assert_ne!(printed, old);
    let mode = std::fs::metadata(hub.data_dir.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        rt.block_on(status(&mut open, "/api/endpoints", Some(&old))),
        401
    );
    let mut fresh = rt.block_on(keep_alive(&hub, None));
    assert_eq!(
        rt.block_on(status(&mut fresh, "/api/endpoints", Some(&printed))),
        200
    );
    assert!(DockerCli::for_endpoint(&hub, id)
        .ok(&["ps"])
        .contains(&container.name));
}

/// `outpost-hub ARGS --data-dir …`.
fn admin(hub: &Hub, args: &[&str]) -> std::process::Output {
    Command::new(outpost_tests::bin_dir().join("outpost-hub"))
        .args(args)
        .arg("--data-dir")
        .arg(&hub.data_dir)
        .output()
        .unwrap()
}

#[test]
fn hop_by_hop_and_credential_headers_do_not_reach_the_device() {
    let hub = Hub::start();
    let (engine, heads) = recording_engine(|_| "{}".to_owned());
    let (id, _agent) = enrol(&hub, "recorded", &format!("tcp://{engine}"));
    let token = token(&hub);
    let rt = runtime();
    let mut conn = rt.block_on(keep_alive(&hub, None));
    let probe = format!("/api/endpoints/{id}/docker/v1.43/containers/outpost-probe/json");
    let hostile = request("GET", &probe, Some(&token))
        .header("cookie", "session=admin-browser")
        .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
        .header("proxy-connection", "keep-alive")
        .header("connection", "keep-alive, x-hop-secret")
        .header("x-hop-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-registry-auth", "eyJ1c2VybmFtZSI6ImEifQ==");
    let answer = rt.block_on(send(&mut conn, hostile));
    assert_eq!(answer.status(), 200);

    let seen = heads.lock().unwrap().clone();
    let head = seen
        .iter()
        .find(|h| h.contains("outpost-probe"))
        .expect("the probe reached the engine")
        .to_ascii_lowercase();
    assert!(
        head.starts_with("get /v1.43/containers/outpost-probe/json "),
        "{head}"
    );
    for gone in [
        "authorization: bearer",
        "cookie:",
        "proxy-authorization:",
        "proxy-connection:",
        "x-hop-secret:",
        "keep-alive:",
        "\r\nte:",
        "connection: keep-alive",
    ] {
        assert!(!head.contains(gone), "{gone:?} reached the device:\n{head}");
    }
    assert!(
        head.contains("x-registry-auth: eyj1c2vybmftzsi6imeifq=="),
        "{head}"
    );
}

#[test]
fn non_canonical_endpoint_ids_are_not_found() {
    let hub = Hub::start();
    let (id, _) = hub.create_endpoint("one", &[]);
    assert_eq!(id, 1);
    assert_eq!(hub.api_call("GET", "/api/endpoints/1", None).status, 200);
    for path in [
        "/api/endpoints/01",
        "/api/endpoints/+1",
        "/api/endpoints/%31",
        "/api/endpoints/18446744073709551616",
        "/api/endpoints/01/docker/_ping",
        "/api/endpoints/%31/docker/_ping",
        "/api/endpoints/001/docker/v1.43/containers/json",
    ] {
        assert_eq!(hub.api_call("GET", path, None).status, 404, "{path}");
    }
    for (method, path) in [
        ("POST", "/api/endpoints/01/approve"),
        ("POST", "/api/endpoints/01/summon"),
        ("DELETE", "/api/endpoints/01/tags/x"),
        ("DELETE", "/api/endpoints/01"),
    ] {
        assert_eq!(
            hub.api_call(method, path, None).status,
            404,
            "{method} {path}"
        );
    }
    assert_eq!(hub.api_call("GET", "/api/endpoints/1", None).status, 200);
}

#[test]
fn cli_output_escapes_terminal_control_characters() {
    let hub = Hub::start();
    let hostile = "kiosk\u{1b}]0;owned\u{7}\u{1b}[2J\u{7f}\u{9b}31m\r";
    let created = hub.api_call(
        "POST",
        "/api/endpoints",
        Some(serde_json::json!({ "name": hostile })),
    );
    assert_eq!(created.status, 201);
    let raw = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let bad = text
            .chars()
            .find(|&c| c.is_control() && c != '\n' && c != '\t');
        (text, bad)
    };
    for args in [
        &["show", "1"][..],
        &["show", "1", "--json"],
        &["list"],
        &["list", "--json"],
    ] {
        let out = hub.admin(args);
        assert!(out.status.success(), "{args:?}");
        let (text, bad) = raw(&out.stdout);
        assert_eq!(
            bad, None,
            "raw control character in `endpoint {args:?}`: {text:?}"
        );
        assert!(text.contains("\\u001b]0;owned"), "{text}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&hub.admin(&["show", "1", "--json"]).stdout)
            .expect("escaped JSON is still JSON");
    assert_eq!(json["name"], hostile.trim());
}

/// An engine version a hostile device reports: an OSC title change, a screen clear, DEL and an
/// 8-bit CSI (C1), which serde_json leaves raw.
const HOSTILE_VERSION: &str = "24.0\u{1b}]0;owned\u{7}\u{1b}[2J\u{7f}\u{9b}31m";

#[test]
fn device_supplied_strings_reach_the_terminal_escaped() {
    let hub = Hub::start();
    let (engine, _) = recording_engine(|head| {
        let version = serde_json::json!({ "Version": HOSTILE_VERSION });
        let asks_version = head.starts_with("GET /version");
        if asks_version {
            version.to_string()
        } else {
            "{}".to_owned()
        }
    });
    let (id, _agent) = enrol(&hub, "hostile", &format!("tcp://{engine}"));
    let shown = wait_for(Duration::from_secs(20), "the device's snapshot", || {
        let shown = hub.show(id);
        (shown["snapshot"]["engine_version"] != serde_json::Value::Null).then_some(shown)
    });
    // The hub may clean what it stores; whatever it kept of the controls must print escaped.
    let stored = shown["snapshot"]["engine_version"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = id.to_string();
    for args in [&["show", &id][..], &["show", &id, "--json"]] {
        let out = hub.admin(args);
        let text = String::from_utf8_lossy(&out.stdout);
        let raw = text.chars().find(|&c| c.is_control() && c != '\n');
        assert_eq!(
            raw, None,
            "raw control character in `endpoint {args:?}`: {text:?}"
        );
        if stored.contains('\u{9b}') {
            assert!(text.contains("\\u009b31m"), "{text}");
        }
    }
}
