//! Who may reach a device's engine through the hub, and what happens when the device is asleep,
//! gone, or busy: every case answers at once with a Docker-style message, never a hang.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // wall-clock timing of real processes; test code

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use outpost_tests::docker::{
    direct, require_engine, unique, Cleanup, Credential, DockerCli, TEST_IMAGE,
};
use outpost_tests::{wait_for, wait_for_result, Agent, Hub};
use serde_json::Value;

fn enrol(hub: &Hub, name: &str) -> (u64, Agent) {
    require_engine();
    let (id, key) = hub.create_endpoint(name, &[]);
    let dir = hub.data_dir.parent().unwrap().join(name);
    let agent = Agent::start(
        &dir,
        &[
            ("EDGE_KEY", &key),
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
        ],
    );
    hub.wait_status(id, "standby", Duration::from_secs(20));
    (id, agent)
}

fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bearer_token_and_admin_certificate_work_and_anything_else_is_refused() {
    let hub = Hub::start();
    let (id, _agent) = enrol(&hub, "auth");
    assert!(DockerCli::for_endpoint(&hub, id)
        .ok(&["ps"])
        .contains("CONTAINER ID"));

    let certs = hub.data_dir.parent().unwrap().join("admin-cert");
    hub.admin_cert(&certs);
    let by_cert = DockerCli::with_credential(&hub, id, Credential::Certificate(certs));
    assert!(by_cert.ok(&["ps"]).contains("CONTAINER ID"));

    let anonymous = DockerCli::with_credential(&hub, id, Credential::None).run(&["ps"]);
    assert!(!anonymous.status.success());
    assert!(
        output(&anonymous).contains("authentication required"),
        "{}",
        output(&anonymous)
    );

    let forged = DockerCli::with_credential(&hub, id, Credential::Bearer("forged-token".into()))
        .run(&["ps"]);
    assert!(!forged.status.success());
    assert!(
        output(&forged).contains("not valid for this hub"),
        "{}",
        output(&forged)
    );

    // A certificate from another hub's CA is no credential here: the hub asks for certificates of its
    // own CA, so the client offers none (or the handshake fails), and the request is refused.
    let other = Hub::start();
    let other_certs = other.data_dir.parent().unwrap().join("foreign-cert");
    other.admin_cert(&other_certs);
    std::fs::copy(hub.data_dir.join("ca.pem"), other_certs.join("ca.pem")).unwrap();
    let foreign =
        DockerCli::with_credential(&hub, id, Credential::Certificate(other_certs)).run(&["ps"]);
    assert!(!foreign.status.success(), "{}", output(&foreign));
    let refusal = output(&foreign);
    assert!(
        refusal.contains("authentication required") || refusal.contains("tls"),
        "{refusal}"
    );
}

#[test]
fn a_device_in_standby_is_summoned_by_the_first_request() {
    let hub = Hub::start();
    let (id, _agent) = enrol(&hub, "sleepy");
    assert_eq!(hub.show(id)["status"], "standby");
    let started = Instant::now();
    let out = DockerCli::for_endpoint(&hub, id).ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!out.trim().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hub.show(id)["status"], "active");
    // With nothing more to do, it goes back to standby (3 s in tests).
    hub.wait_status(id, "standby", Duration::from_secs(15));
}

#[test]
fn an_offline_device_fails_fast_with_a_clear_message() {
    let hub = Hub::start();
    let (id, mut agent) = enrol(&hub, "unplugged");
    // Power cut: no goodbye on the wire; the hub notices the missing check-ins.
    agent.kill();
    hub.wait_status(id, "offline", Duration::from_secs(30));
    let started = Instant::now();
    let out = DockerCli::for_endpoint(&hub, id).run(&["ps"]);
    let took = started.elapsed();
    assert!(!out.status.success());
    assert!(output(&out).contains("is offline"), "{}", output(&out));
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // A device that never connected answers the same way, and a missing one says so.
    let (never, _) = hub.create_endpoint("never-seen", &[]);
    let out = DockerCli::for_endpoint(&hub, never).run(&["ps"]);
    assert!(output(&out).contains("is offline"), "{}", output(&out));
    let out = DockerCli::for_endpoint(&hub, 9999).run(&["ps"]);
    assert!(output(&out).contains("does not exist"), "{}", output(&out));
}

#[test]
fn the_hub_shows_an_engine_snapshot_from_enrolment_on_and_refreshes_it_at_standby() {
    let hub = Hub::start();
    let (id, _agent) = enrol(&hub, "inventory");
    let version =
        String::from_utf8_lossy(&direct(&["version", "--format", "{{.Server.Version}}"]).stdout)
            .trim()
            .to_owned();
    let first = wait_for(Duration::from_secs(20), "the first snapshot", || {
        let shown = hub.show(id);
        shown["snapshot"].is_object().then_some(shown)
    });
    assert_eq!(first["snapshot"]["engine_version"], version);
    assert!(first["snapshot"]["error"].is_null(), "{first}");

    let name = unique("snap");
    let mut cleanup = Cleanup::default();
    cleanup.add(&name);
    DockerCli::for_endpoint(&hub, id)
        .ok(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "300"]);
    let refreshed = wait_for(
        Duration::from_secs(30),
        "a snapshot listing the new container",
        || {
            let shown = hub.show(id);
            let listed = shown["snapshot"]["containers"]
                .as_array()
                .is_some_and(|list| {
                    list.iter()
                        .any(|c| c["names"][0] == name.as_str() && c["state"] == "running")
                });
            listed.then_some(shown)
        },
    );
    assert!(
        refreshed["snapshot"]["containers_running"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(refreshed["status"], "standby");
}

#[test]
fn the_hub_wide_stream_limit_refuses_with_a_clear_error_and_frees_up() {
    let hub = Hub::start_with_flags(&["--max-proxy-streams", "2"]);
    let (id, _agent) = enrol(&hub, "busy");
    let docker = DockerCli::for_endpoint(&hub, id);
    let container = docker.start(
        "limit",
        &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
    );
    let name = container.name.clone();
    let mut followers: Vec<_> = (0..2)
        .map(|_| docker.spawn(&["logs", "-f", &name]))
        .collect();
    for follower in &mut followers {
        let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "tick");
    }
    let refused = docker.run(&["ps"]);
    assert!(!refused.status.success());
    assert!(
        output(&refused).contains("maximum of 2 proxied Docker requests"),
        "{}",
        output(&refused)
    );
    for mut follower in followers {
        follower.kill().unwrap();
        follower.wait().unwrap();
    }
    wait_for(
        Duration::from_secs(10),
        "the streams to be released",
        || (hub.show(id)["proxy_streams"] == 0).then_some(()),
    );
    assert!(docker.ok(&["ps"]).contains("CONTAINER ID"));
}

#[test]
fn back_to_back_requests_fit_a_limit_of_one() {
    // Each `docker ps` is `/_ping` then `/containers/json`, the second sent as soon as the first
    // answer ends: a finished request must not still hold the hub's only slot.
    let hub = Hub::start_with_flags(&["--max-proxy-streams", "1"]);
    let (id, _agent) = enrol(&hub, "one-at-a-time");
    let docker = DockerCli::for_endpoint(&hub, id);
    for _ in 0..20 {
        assert!(docker.ok(&["ps"]).contains("CONTAINER ID"));
    }
}

/// Start `outpost-demo` with `extra` flags; returns the process and a docker CLI command
/// with the environment the demo printed.
fn start_demo(dir: &std::path::Path, extra: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut demo = std::process::Command::new(outpost_tests::bin_dir().join("outpost-demo"))
        .args(["--data-dir", dir.join("demo").to_str().unwrap()])
        .args([
            "--agent-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("DOCKER_HOST", "unix:///var/run/docker.sock")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("Ctrl-C stops the demo");
        printed.push(line);
        if done {
            break;
        }
    }
    (demo, printed)
}

fn demo_docker(printed: &[String]) -> std::process::Command {
    let export = printed
        .iter()
        .find(|l| l.contains("export DOCKER_HOST="))
        .expect("the demo prints the DOCKER_HOST to export");
    let mut command = std::process::Command::new("docker");
    for assignment in export
        .trim()
        .trim_start_matches("export ")
        .split_whitespace()
    {
        let (key, value) = assignment.split_once('=').unwrap();
        command.env(key, value);
    }
    command
}

#[test]
fn the_demo_command_prints_a_docker_host_that_works() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let (mut demo, printed) = start_demo(dir.path(), &[]);
    let out = demo_docker(&printed)
        .args(["run", "--rm", TEST_IMAGE, "echo", "demo device"])
        .output()
        .unwrap();
    let _ = demo.kill();
    let _ = demo.wait();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "demo device\n",
        "{}",
        output(&out)
    );
}

#[test]
fn the_demo_with_a_satellite_link_puts_the_device_behind_the_emulator() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let relay_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{relay_port}");
    let (mut demo, printed) = start_demo(
        dir.path(),
        &["--link", "geo-satellite", "--link-listen", &listen],
    );
    let started = Instant::now();
    let out = demo_docker(&printed).args(["ps", "-q"]).output().unwrap();
    let elapsed = started.elapsed();
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        printed
            .iter()
            .any(|l| l.contains("emulated geo-satellite link") && l.contains(&listen)),
        "{printed:#?}"
    );
    // `docker ps` is two requests (/_ping, /containers/json), each at least one 600 ms round
    // trip across the emulated GEO link; straight over loopback it takes a few milliseconds.
    assert!(
        elapsed >= Duration::from_millis(1200),
        "docker ps took {elapsed:?}: not through the emulated link"
    );
}

/// The headers of `GET /_ping` on endpoint `id`'s engine through the hub, with the admin token.
fn ping_headers(hub: &Hub, id: u64) -> reqwest::header::HeaderMap {
    let answer = hub.api_call("GET", &format!("/api/endpoints/{id}/docker/_ping"), None);
    assert_eq!(
        answer.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.headers
}

#[test]
fn after_the_first_command_the_hub_answers_the_clis_ping_with_the_engines_headers() {
    let hub = Hub::start();
    let (id, _agent) = enrol(&hub, "pinged");
    let first = ping_headers(&hub, id);
    assert!(
        !first.contains_key("outpost-ping"),
        "the first ping of a session goes to the engine: {first:?}"
    );
    assert!(DockerCli::for_endpoint(&hub, id)
        .run(&["ps"])
        .status
        .success());
    let cached = ping_headers(&hub, id);
    assert_eq!(cached["outpost-ping"], "hub", "{cached:?}");
    let engine = direct(&["version", "--format", "{{.Server.APIVersion}}"]);
    let engine_api = String::from_utf8_lossy(&engine.stdout).trim().to_owned();
    assert_eq!(cached["api-version"], engine_api.as_str());
    assert_eq!(cached["ostype"], first["ostype"]);
}

#[test]
fn a_reconnected_device_of_the_same_engine_has_its_first_ping_answered_by_the_hub() {
    let hub = Hub::start();
    let (id, mut agent) = enrol(&hub, "carried");
    assert!(DockerCli::for_endpoint(&hub, id)
        .run(&["ps"])
        .status
        .success());
    let first_snapshot = |shown: &Value| shown["snapshot"]["taken_at"].as_i64();
    let before = wait_for(Duration::from_secs(20), "the first snapshot", || {
        first_snapshot(&hub.show(id))
    });

    // A power cut: the hub still holds the old session until the device's new one replaces it.
    agent.kill();
    std::thread::sleep(Duration::from_millis(1100));
    let dir = hub.data_dir.parent().unwrap().join("carried");
    let _agent = Agent::start(&dir, &[("DOCKER_HOST", "unix:///var/run/docker.sock")]);
    wait_for(
        Duration::from_secs(30),
        "the new session's snapshot",
        || first_snapshot(&hub.show(id)).filter(|taken| *taken > before),
    );
    let carried = ping_headers(&hub, id);
    assert_eq!(
        carried["outpost-ping"], "hub",
        "the first ping of the new session skips the link: {carried:?}"
    );
    let engine = direct(&["version", "--format", "{{.Server.APIVersion}}"]);
    let engine_api = String::from_utf8_lossy(&engine.stdout).trim().to_owned();
    assert_eq!(carried["api-version"], engine_api.as_str());
}

/// Proxy streams the agent has served so far (each logs its close).
fn streams_served(agent: &Agent) -> usize {
    agent.log().matches("proxy stream closed").count()
}

/// Run `docker ps` through the hub and assert the proxy streams it cost the agent (their closes
/// logged): once `expected` have closed, and half a second more for any beyond them.
fn assert_docker_ps_costs(hub: &Hub, id: u64, agent: &Agent, expected: usize, why: &str) {
    let before = streams_served(agent);
    assert!(DockerCli::for_endpoint(hub, id)
        .run(&["ps"])
        .status
        .success());
    let closed = || streams_served(agent) - before;
    let _ = wait_for_result(Duration::from_secs(10), || {
        (closed() >= expected).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(closed(), expected, "{why}");
}

#[test]
fn a_ping_answer_past_a_minute_is_refreshed_beside_the_next_commands_request() {
    let hub = Hub::start();
    let (id, agent) = enrol(&hub, "refreshed");
    let first = "the session's first ping goes to the engine, then the request";
    assert_docker_ps_costs(&hub, id, &agent, 2, first);
    assert_docker_ps_costs(&hub, id, &agent, 1, "a young answer: the ping is the hub's");
    std::thread::sleep(Duration::from_secs(61));
    let aged = ping_headers(&hub, id);
    assert_eq!(aged["outpost-ping"], "hub", "still given: {aged:?}");
    let refreshed = "the request, and the hub's own ping beside it";
    assert_docker_ps_costs(&hub, id, &agent, 2, refreshed);
    let young_again = "one refresh: the answer is young again";
    assert_docker_ps_costs(&hub, id, &agent, 1, young_again);
}

/// With no engine at its socket the demo used to start, and the pasted `docker ps` then failed:
/// now it refuses at start and says how to fix it.
#[test]
fn the_demo_without_an_engine_says_so_and_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(outpost_tests::bin_dir().join("outpost-demo"))
        .args(["--data-dir", dir.path().join("demo").to_str().unwrap()])
        .args([
            "--agent-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .args(["--docker-host", "unix:///nonexistent/docker.sock"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no Docker engine answers at unix:///nonexistent/docker.sock")
            && stderr.contains("scripts/docker-setup.sh")
            && stderr.contains("--docker-host"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing to paste without an engine");
}
