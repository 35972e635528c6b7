//! Jobs through the real CLI and API, without agents (issue #15): every refusal — an empty job, a
//! streaming Engine path, a body that is not JSON, an unknown group, tag or endpoint, no selection,
//! an expiry or a concurrency out of range — is a 400 (or a CLI error before any request) naming
//! the problem, with nothing stored. A job for devices whose agents are not connected waits
//! queued, pages and filters by state, and `job cancel` settles it as cancelled; a second cancel
//! is a conflict, a missing job or device a 404, and the hub serves throughout.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::Output;
use std::time::Duration;

use outpost_api::{JobDetail, JobOutput, JobPage, JobSummary};
use outpost_tests::{wait_for, Hub};
use serde_json::{json, Value};

/// `outpost-hub job ARGS…` against `hub`.
fn job(hub: &Hub, args: &[&str]) -> Output {
    hub.cli(&[&["job"], args].concat())
}

fn job_json<T: serde::de::DeserializeOwned>(hub: &Hub, args: &[&str]) -> T {
    hub.cli_json(&[&["job"], args].concat())
}

/// The CLI failed, saying `expected`.
fn refused(hub: &Hub, args: &[&str], expected: &str) {
    let out = job(hub, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} accepted");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in {stderr}"
    );
}

fn job_count(hub: &Hub) -> u64 {
    job_json::<JobPage>(hub, &["list", "--json"]).total
}

fn message(body: &[u8]) -> String {
    let body: Value = serde_json::from_slice(body).unwrap();
    body["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn refusals_name_the_problem_and_store_nothing() {
    let hub = Hub::start();
    let (kiosk, _) = hub.create_endpoint("kiosk-1", &["--group", "lab", "--tag", "kiosk"]);
    let prune = json!({"kind": "engine", "method": "POST", "path": "/images/prune"});
    let mut cases: Vec<(Value, &str)> = vec![
        (
            json!({"endpoints": [kiosk], "what": {"kind": "exec", "container": "web"}}),
            "the job is empty: no command",
        ),
        (
            json!({"endpoints": [kiosk], "what": {"kind": "run", "cmd": ["true"]}}),
            "the job is empty: no image named",
        ),
        (
            json!({"endpoints": [kiosk], "what": {"kind": "engine", "method": "GET",
                "path": "/containers/x/attach"}}),
            "Engine API path \"/containers/x/attach\" is not allowed",
        ),
        (
            json!({"endpoints": [kiosk], "what": {"kind": "engine", "method": "PATCH",
                "path": "/info"}}),
            "method \"PATCH\" is not one of GET, POST, PUT or DELETE",
        ),
        (
            json!({"groups": ["lab", "nowhere"], "what": prune}),
            "no such group \"nowhere\"",
        ),
        (
            json!({"tags": ["nothing"], "what": prune}),
            "no such tag \"nothing\"",
        ),
        (
            json!({"endpoints": [kiosk, 999], "what": prune}),
            "no such endpoint 999",
        ),
        (json!({"what": prune}), "say which devices"),
        (
            json!({"endpoints": [kiosk], "what": prune, "concurrency": 0}),
            "concurrency: 0 is out of range (1 to 10000)",
        ),
        (
            json!({"endpoints": [kiosk], "what": prune, "timeout": "2d"}),
            "timeout: 2d is out of range (1s to 24h)",
        ),
        (
            json!({"endpoints": [kiosk], "what": {"kind": "shell", "cmd": "ls"}}),
            "unknown variant `shell`",
        ),
    ];
    for expires in ["0s", "40d"] {
        let body = json!({"endpoints": [kiosk], "what": prune, "expires": expires});
        cases.push((body, "is out of range (10s to 30d)"));
    }
    for (body, expected) in cases {
        let answer = hub.api_call("POST", "/api/jobs", Some(body.clone()));
        let said = message(&answer.body);
        assert_eq!(answer.status, 400, "{body}: {said}");
        assert!(said.contains(expected), "expected {expected:?} in {said:?}");
    }
    assert_eq!(job_count(&hub), 0, "nothing stored");

    // The CLI: a body that is not JSON, or a job it cannot read, is refused before any request;
    // the hub's refusals come back with their status.
    let run = ["run", "--group", "lab", "--"];
    let cli_cases: [(&[&str], &str); 5] = [
        (
            &["POST", "/images/prune", "{not json"],
            "the Engine API body is not JSON",
        ),
        (&["exec", "web"], "the job is empty: no command"),
        (&["prune", "/images"], "\"prune\" is neither exec, run nor"),
        (&["run"], "<IMAGE>"),
        (&["GET", "/events"], "is not allowed"),
    ];
    for (what, expected) in cli_cases {
        refused(&hub, &[&run[..], what].concat(), expected);
    }
    for expires in ["0s", "40d"] {
        let args = [
            "run",
            "--group",
            "lab",
            "--expires",
            expires,
            "--",
            "GET",
            "/info",
        ];
        refused(&hub, &args, "(400 Bad Request)");
    }
    let args = ["run", "--tag", "nothing", "--", "GET", "/info"];
    refused(&hub, &args, "no such tag \"nothing\" (400 Bad Request)");
    assert_eq!(job_count(&hub), 0, "nothing stored");

    // The hub still serves: a good job is stored, for the one device the tag selects.
    let args = [
        "run", "--tag", "kiosk", "--json", "--", "run", "--rm", "busybox", "true",
    ];
    let created: JobSummary = job_json(&hub, &args);
    assert_eq!(created.what, "run --rm busybox true");
    assert_eq!((created.counts["total"], created.counts["queued"]), (1, 1));
    assert_eq!(
        (created.concurrency, created.timeout.as_str()),
        (500, "10m")
    );
    assert_eq!(created.expires_at - created.created_at, 24 * 3600);
    assert_eq!(job_count(&hub), 1);
}

#[test]
fn a_job_waits_for_its_devices_pages_and_is_cancelled() {
    let hub = Hub::start();
    let endpoints: Vec<u64> = (1..=3)
        .map(|n| {
            hub.create_endpoint(&format!("store-{n}"), &["--group", "stores"])
                .0
        })
        .collect();
    let args = [
        "run",
        "--group",
        "stores",
        "--expires",
        "2h",
        "--concurrency",
        "2",
        "--json",
        "--",
        "POST",
        "/images/prune",
        r#"{"filters":{"dangling":["true"]}}"#,
    ];
    let created: JobSummary = job_json(&hub, &args);
    let id = created.id.to_string();
    assert_eq!(
        (created.state.as_str(), created.what.as_str()),
        ("running", "POST /images/prune")
    );
    assert_eq!(created.groups, ["stores"]);
    assert_eq!(created.expires_at - created.created_at, 2 * 3600);
    assert_eq!(created.counts.len(), 9, "every state and the total");

    // No agent is connected: after a few ticks every device still waits.
    std::thread::sleep(Duration::from_millis(2500));
    let shown: JobDetail = job_json(&hub, &["show", &id, "--per-page", "2", "--json"]);
    assert_eq!(
        (
            shown.summary.counts["queued"],
            shown.summary.counts["total"]
        ),
        (3, 3)
    );
    let paged: Vec<u64> = shown.devices.iter().map(|d| d.endpoint).collect();
    assert_eq!(paged, endpoints[..2]);
    assert_eq!(shown.devices[0].name.as_deref(), Some("store-1"));
    assert_eq!(shown.devices[0].outcome, None);

    let page2 = hub.api_call("GET", &format!("/api/jobs/{id}?per_page=2&page=2"), None);
    assert_eq!(page2.status, 200);
    assert_eq!(page2.headers["x-total-count"], "3");
    let page2: JobDetail = serde_json::from_slice(&page2.body).unwrap();
    assert_eq!(page2.devices.len(), 1);
    let failed = hub.api_call("GET", &format!("/api/jobs/{id}?state=failed"), None);
    assert_eq!(failed.headers["x-total-count"], "0");
    assert!(serde_json::from_slice::<JobDetail>(&failed.body)
        .unwrap()
        .devices
        .is_empty());
    let bogus = hub.api_call("GET", &format!("/api/jobs/{id}?state=done"), None);
    assert_eq!(bogus.status, 400);
    assert!(message(&bogus.body).contains("use one of queued, sent, running, succeeded"));
    let listed = hub.api_call("GET", "/api/jobs", None);
    assert_eq!(listed.headers["x-total-count"], "1");

    let human = job(&hub, &["show", &id]);
    let human = String::from_utf8(human.stdout).unwrap();
    assert!(
        human.contains(&format!(
            "job {id} running: POST /images/prune; 3 devices: queued 3"
        )),
        "{human}"
    );
    assert!(human.contains("store-3"), "{human}");
    let table = String::from_utf8(job(&hub, &["list"]).stdout).unwrap();
    assert!(
        table.contains("POST /images/prune") && table.contains("(1 in all)"),
        "{table}"
    );

    // One device's row, with no output yet; a device the job does not have, and a job that does
    // not exist, are 404.
    let device = endpoints[1].to_string();
    let output: JobOutput = job_json(&hub, &["show", &id, "--device", &device, "--json"]);
    assert_eq!(
        (output.device.state.as_str(), output.output_bytes),
        ("queued", 0)
    );
    assert_eq!((output.head.as_str(), output.omitted), ("", 0));
    let missing = hub.api_call("GET", &format!("/api/jobs/{id}/devices/999"), None);
    assert_eq!(missing.status, 404);
    assert!(message(&missing.body).contains("has no device 999"));
    refused(&hub, &["show", "999"], "no job 999 (404 Not Found)");
    refused(&hub, &["cancel", "999"], "no job 999 (404 Not Found)");

    // Cancel: every device that had not started it is cancelled, and the job finishes.
    let cancelled: JobSummary = job_json(&hub, &["cancel", &id, "--json"]);
    assert_eq!(cancelled.state, "cancelled");
    assert_eq!(
        (cancelled.counts["cancelled"], cancelled.counts["queued"]),
        (3, 0)
    );
    let finished = wait_for(Duration::from_secs(10), "the job to finish", || {
        let shown: JobDetail = job_json(&hub, &["show", &id, "--state", "cancelled", "--json"]);
        shown.summary.finished_at.is_some().then_some(shown)
    });
    assert_eq!(finished.devices.len(), 3, "every row says cancelled");
    assert_eq!(finished.summary.state, "cancelled");

    // Following a finished job prints its summary line and ends.
    let followed = job(&hub, &["show", &id, "--follow"]);
    let printed = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.status.success(), "{printed}");
    assert!(
        printed.trim_end().ends_with("3 devices: cancelled 3"),
        "{printed}"
    );

    refused(&hub, &["cancel", &id], "has finished (409 Conflict)");

    // The hub still serves.
    let args = [
        "run",
        "--endpoint",
        &device,
        "--json",
        "--",
        "exec",
        "web",
        "df",
        "-h",
    ];
    let again: JobSummary = job_json(&hub, &args);
    assert_eq!(
        (again.what.as_str(), again.counts["queued"]),
        ("exec web df -h", 1)
    );
    assert_eq!(job_count(&hub), 2);
}
