//! The audit trail end to end (issue #17 item 2): a thousand state-changing Docker calls through
//! the hub give exactly a thousand records with the right credential, device, method, path and
//! status; a hijacked `exec` is recorded with its whole duration; reads are not recorded; a
//! `docker login`'s password appears in no record and no log line; bad filters are refused.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_tests::docker::{require_engine, Credential, DockerCli};
use outpost_tests::{wait_for, Agent, Hub};
use serde_json::Value;

const CALLS: usize = 1_000;

fn operator_token(hub: &Hub) -> String {
    let out = hub.cli(&["token", "create", "deployer", "--role", "operator"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `/api/audit?QUERY` as the admin: the page.
fn audit(hub: &Hub, query: &str) -> Value {
    let answer = hub.api_call("GET", &format!("/api/audit?{query}"), None);
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    serde_json::from_slice(&answer.body).unwrap()
}

/// Send `CALLS` `POST …/kill?signal=SIGWINCH` (the container ignores it) through the hub, 16 at
/// a time; every answer must be 204.
fn kill_calls(hub: &Hub, token: &str, path: &str) {
    let read = |name: &str| std::fs::read(hub.data_dir.join(name)).unwrap();
    let ca = reqwest::Certificate::from_pem(&read("ca.pem")).unwrap();
    let url = format!("https://{}{path}", hub.api_addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let mut callers = tokio::task::JoinSet::new();
        for caller in 0..16 {
            let (client, url, token) = (client.clone(), url.clone(), token.to_owned());
            callers.spawn(async move {
                let mut statuses = Vec::new();
                for _ in (caller..CALLS).step_by(16) {
                    let answer = client.post(&url).bearer_auth(&token).send().await;
                    statuses.push(answer.unwrap().status().as_u16());
                }
                statuses
            });
        }
        let statuses: Vec<u16> = callers.join_all().await.concat();
        assert_eq!(statuses.len(), CALLS);
        assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    });
}

#[test]
fn every_state_changing_call_is_recorded_once_and_secrets_never() {
    require_engine();
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("till-1", &[]);
    let dir = hub.data_dir.parent().unwrap().join("till-1");
    let socket = "unix:///var/run/docker.sock";
    let _agent = Agent::start(&dir, &[("EDGE_KEY", &key), ("DOCKER_HOST", socket)]);
    hub.wait_status(id, "standby", Duration::from_secs(20));
    let token = operator_token(&hub);
    let docker = DockerCli::with_credential(&hub, id, Credential::Bearer(token.clone()));
    let sleeper = docker.start("audited", &["sleep", "600"]);
    docker.ok(&["ps"]);

    let path = format!(
        "/api/endpoints/{id}/docker/v1.41/containers/{}/kill?signal=SIGWINCH",
        sleeper.name
    );
    kill_calls(&hub, &token, &path);
    let kills = format!("who=deployer&endpoint={id}&per_page=1000");
    wait_for(Duration::from_secs(10), "the records to be written", || {
        let page = audit(&hub, &kills);
        (page["total"].as_u64().unwrap() >= 1_000 + 2).then_some(())
    });

    let deployer = audit(&hub, "who=deployer&per_page=1000");
    let total = deployer["total"].as_u64().unwrap();
    let mut records = deployer["items"].as_array().unwrap().clone();
    records.extend(
        audit(&hub, "who=deployer&per_page=1000&page=2")["items"]
            .as_array()
            .unwrap()
            .iter()
            .cloned(),
    );
    assert_eq!(records.len() as u64, total);
    let killed: Vec<&Value> = records.iter().filter(|r| r["path"] == path).collect();
    assert_eq!(killed.len(), CALLS, "exactly one record per call");
    for record in &killed {
        assert_eq!(record["method"], "POST");
        assert_eq!(record["status"], 204);
        assert_eq!(record["endpoint"], id);
        assert_eq!(record["hijacked"], false);
    }
    // `docker run -d` is a create and a start (plus the CLI's pings and inspects, which read).
    let others: Vec<String> = records
        .iter()
        .filter(|r| r["path"] != path)
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect();
    assert!(others.iter().all(|o| o.starts_with("POST ")), "{others:?}");
    assert!(
        others.iter().any(|o| o.contains("/containers/create")),
        "{others:?}"
    );
    assert!(others.iter().any(|o| o.ends_with("/start")), "{others:?}");
    assert!(
        !others.iter().any(|o| o.contains("/containers/json")),
        "reads are not recorded"
    );

    // A hijacked exec: recorded once the session closes, with its duration.
    let said = docker.ok(&["exec", &sleeper.name, "sh", "-c", "sleep 1; echo done"]);
    assert_eq!(said.trim(), "done");
    let session = wait_for(Duration::from_secs(10), "the exec session's record", || {
        let page = audit(&hub, "who=deployer&per_page=5");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["hijacked"] == true)
            .cloned()
    });
    assert!(
        session["path"].as_str().unwrap().contains("/exec/"),
        "{session}"
    );
    assert!(
        session["duration_ms"].as_u64().unwrap() >= 1_000,
        "{session}"
    );
    assert!(session["bytes_out"].as_u64().unwrap() > 0, "{session}");

    // `docker login` sends the password to the engine's /auth: the call is recorded, the secret
    // is nowhere.
    let secret = "Sup3r-Secret-Pa55word";
    let login = docker.run(&["login", "-u", "alice", "-p", secret, "127.0.0.1:9"]);
    assert!(!login.status.success(), "no registry answers on port 9");
    let logged_in = wait_for(Duration::from_secs(10), "the login's record", || {
        let page = audit(&hub, "who=deployer&per_page=5");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"].as_str().unwrap().ends_with("/auth"))
            .cloned()
    });
    assert_eq!(logged_in["method"], "POST");
    let export = hub.cli(&["audit", "export"]);
    assert!(export.status.success());
    let lines = String::from_utf8(export.stdout).unwrap();
    assert!(lines.lines().count() as u64 >= total + 2);
    assert!(lines
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    assert!(
        !lines.contains(secret),
        "the password is in the audit trail"
    );
    assert!(
        !hub.log().contains(secret),
        "the password is in the hub's log"
    );
    let table = hub.cli(&["audit", "list", "--who", "deployer", "--since", "1h"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("deployer"));
}

#[test]
fn bad_audit_filters_are_refused_and_admin_writes_are_recorded() {
    let hub = Hub::start();
    let (id, _) = hub.create_endpoint("till-1", &[]);
    for (query, expect) in [
        ("endpoint=x", "endpoint is an endpoint id, got \"x\""),
        ("since=yesterday", "since is a time in Unix milliseconds"),
        (
            "per_page=0",
            "per_page must be a whole number from 1 to 1000",
        ),
    ] {
        let answer = hub.api_call("GET", &format!("/api/audit?{query}"), None);
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(answer.status, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(expect),
            "{query}: {body}"
        );
    }
    let tagged = hub.api_call(
        "POST",
        &format!("/api/endpoints/{id}/tags"),
        Some(serde_json::json!({"tag": "pos"})),
    );
    assert_eq!(
        tagged.status,
        200,
        "{}",
        String::from_utf8_lossy(&tagged.body)
    );
    let viewer = hub.cli(&["token", "create", "watcher", "--role", "viewer"]);
    let viewer = String::from_utf8(viewer.stdout).unwrap().trim().to_owned();
    let refused = hub.api_call_as(&viewer, "DELETE", &format!("/api/endpoints/{id}"), None);
    assert_eq!(refused.status, 403);
    let seen = wait_for(Duration::from_secs(10), "the records", || {
        let page = audit(&hub, "");
        (page["total"].as_u64().unwrap() >= 4).then_some(page)
    });
    let calls: Vec<String> = seen["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {} {}", r["who"], r["method"], r["path"], r["status"]))
        .collect();
    let expected = [
        format!("\"watcher\" \"DELETE\" \"/api/endpoints/{id}\" 403"),
        "\"admin\" \"POST\" \"/api/tokens\" 201".to_owned(),
        format!("\"admin\" \"POST\" \"/api/endpoints/{id}/tags\" 200"),
        "\"admin\" \"POST\" \"/api/endpoints\" 201".to_owned(),
    ];
    assert_eq!(calls, expected, "newest first; the refusal recorded too");
}
