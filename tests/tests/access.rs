//! Roles and scopes end to end (issue #17 item 1): named tokens and admin certificates with a role
//! and a scope, through the stock docker CLI and the API, against a real hub with real agents and
//! the host's Docker engine. Each refusal is performed and its message checked, and the hub keeps
//! serving the credentials that may.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::Output;
use std::time::Duration;

use outpost_tests::docker::{require_engine, Credential, DockerCli, TEST_IMAGE};
use outpost_tests::{Agent, Hub};
use serde_json::{json, Value};

fn enrol(hub: &Hub, name: &str, extra: &[&str]) -> (u64, Agent) {
    let (id, key) = hub.create_endpoint(name, extra);
    let dir = hub.data_dir.parent().unwrap().join(name);
    let socket = "unix:///var/run/docker.sock";
    let agent = Agent::start(&dir, &[("EDGE_KEY", &key), ("DOCKER_HOST", socket)]);
    hub.wait_status(id, "standby", Duration::from_secs(20));
    (id, agent)
}

/// `outpost-hub token create NAME ARGS…`: the token it prints.
fn token(hub: &Hub, name: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "create", name];
    all.extend_from_slice(args);
    let out = hub.cli(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("opt_"), "{token}");
    token
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn message(body: &[u8]) -> String {
    let body: Value = serde_json::from_slice(body).unwrap();
    body["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_tag_scoped_operator_reaches_only_its_devices_and_a_viewer_only_reads() {
    require_engine();
    let hub = Hub::start();
    let (inside, _a) = enrol(&hub, "till-1", &["--group", "berlin", "--tag", "pos"]);
    let (outside, _b) = enrol(&hub, "sign-1", &["--group", "berlin"]);
    let operator = token(&hub, "ops-pos", &["--role", "operator", "--tag", "pos"]);
    let viewer = token(&hub, "watch", &["--role", "viewer"]);

    let ops_in = DockerCli::with_credential(&hub, inside, Credential::Bearer(operator.clone()));
    assert!(ops_in.ok(&["ps"]).contains("CONTAINER ID"));
    let created = ops_in.ok(&["create", TEST_IMAGE, "true"]);
    ops_in.ok(&["rm", created.trim()]);
    let ops_out = DockerCli::with_credential(&hub, outside, Credential::Bearer(operator.clone()));
    let refused = ops_out.run(&["ps"]);
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains(&format!(
            "endpoint {outside} is outside the scope of credential \"ops-pos\" (groups: none; tags: pos)"
        )),
        "{}",
        said(&refused)
    );

    let listed = hub.api_call_as(&operator, "GET", "/api/endpoints", None);
    assert_eq!(listed.status, 200);
    let page: Value = serde_json::from_slice(&listed.body).unwrap();
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!((names, page["total"].as_u64()), (vec!["till-1"], Some(1)));
    assert_eq!(listed.headers["x-total-count"], "1");
    let all = hub.api_call_as(&viewer, "GET", "/api/endpoints", None);
    let all: Value = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(all["total"], 2, "an unscoped viewer sees the fleet");

    let watch = DockerCli::with_credential(&hub, outside, Credential::Bearer(viewer.clone()));
    assert!(watch.ok(&["ps"]).contains("CONTAINER ID"), "a viewer reads");
    let started = watch.run(&["run", "-d", TEST_IMAGE, "sleep", "60"]);
    assert!(!started.status.success());
    assert!(
        said(&started).contains("credential \"watch\" has role viewer;")
            && said(&started).contains("needs operator"),
        "{}",
        said(&started)
    );

    // Fleet-wide and credential routes are out of a scoped operator's reach.
    let new_token = json!({"name": "mine", "role": "admin"});
    let answer = hub.api_call_as(&operator, "POST", "/api/tokens", Some(new_token));
    assert_eq!(answer.status, 403, "{}", message(&answer.body));
    assert!(message(&answer.body).contains("needs admin"));
    let answer = hub.api_call_as(&operator, "GET", "/metrics", None);
    assert_eq!(answer.status, 403);
    assert!(message(&answer.body).contains("reaches the whole fleet"));
    let answer = hub.api_call_as(
        &viewer,
        "POST",
        &format!("/api/endpoints/{inside}/summon"),
        None,
    );
    assert_eq!(answer.status, 403, "summoning is an operator's");
}

#[test]
fn a_scoped_operators_jobs_stay_inside_its_scope() {
    let hub = Hub::start();
    let (berlin, _) = hub.create_endpoint("till-1", &["--group", "berlin"]);
    let (paris, _) = hub.create_endpoint("till-2", &["--group", "paris", "--tag", "pos"]);
    let operator = token(
        &hub,
        "berlin-ops",
        &["--role", "operator", "--group", "berlin"],
    );
    let prune = json!({"kind": "engine", "method": "POST", "path": "/images/prune"});
    let job = |selection: Value| {
        let mut body = selection;
        body["what"] = prune.clone();
        hub.api_call_as(&operator, "POST", "/api/jobs", Some(body))
    };
    for (selection, outside) in [
        (json!({"groups": ["berlin", "paris"]}), "group \"paris\""),
        (json!({"tags": ["pos"]}), "tag \"pos\""),
        (
            json!({"endpoints": [berlin, paris]}),
            &*format!("endpoint {paris}"),
        ),
    ] {
        let answer = job(selection.clone());
        assert_eq!(answer.status, 403, "{selection}");
        let said = message(&answer.body);
        assert!(
            said.contains(&format!("the job reaches {outside}, outside the scope")),
            "{said}"
        );
    }
    let mine = job(json!({"groups": ["Berlin"]}));
    assert_eq!(mine.status, 201, "{}", message(&mine.body));
    let mine: Value = serde_json::from_slice(&mine.body).unwrap();
    let theirs = hub.api_call(
        "POST",
        "/api/jobs",
        Some(json!({"groups": ["paris"], "what": prune})),
    );
    assert_eq!(theirs.status, 201);
    let theirs: Value = serde_json::from_slice(&theirs.body).unwrap();

    let listed = hub.api_call_as(&operator, "GET", "/api/jobs", None);
    let listed: Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["id"], mine["id"]);
    let other = format!("/api/jobs/{}", theirs["id"]);
    assert_eq!(hub.api_call_as(&operator, "GET", &other, None).status, 403);
    let cancel = format!("{other}/cancel");
    assert_eq!(
        hub.api_call_as(&operator, "POST", &cancel, None).status,
        403
    );
    let everything = hub.api_call("GET", "/api/jobs", None);
    let everything: Value = serde_json::from_slice(&everything.body).unwrap();
    assert_eq!(everything["total"], 2, "the admin sees both");
}

#[test]
fn bad_credentials_and_bad_grants_are_refused_with_the_reason() {
    let hub = Hub::start();
    hub.create_endpoint("till-1", &["--group", "berlin", "--tag", "pos"]);
    for (bearer, expect) in [
        ("has space", "only letters, digits"),
        ("caf\u{e9}", "not printable ASCII"),
        (&*"x".repeat(200), "1 to 128 characters"),
    ] {
        let answer = hub.api_call_as(bearer, "GET", "/api/endpoints", None);
        assert_eq!(answer.status, 400, "{bearer:?}");
        assert!(
            message(&answer.body).contains(expect),
            "{}",
            message(&answer.body)
        );
    }
    let unknown = hub.api_call_as("opt_nope", "GET", "/api/endpoints", None);
    assert_eq!(unknown.status, 401);
    assert!(message(&unknown.body).contains("revoked, or never issued here"));

    let create = |body: Value| hub.api_call("POST", "/api/tokens", Some(body));
    for (body, expect) in [
        (
            json!({"name": "a", "role": "root"}),
            "unknown role \"root\"",
        ),
        (json!({"name": "a", "role": ""}), "unknown role \"\""),
        (
            json!({"name": "a", "role": "viewer", "scope": {"groups": ["rome"]}}),
            "scope: no group \"rome\" exists on this hub",
        ),
        (
            json!({"name": "a", "role": "viewer", "scope": {"tags": ["kiosk"]}}),
            "scope: no tag \"kiosk\" exists on this hub",
        ),
        (
            json!({"name": "a", "role": "viewer", "scope": {}}),
            "a scope needs at least one group or tag",
        ),
        (
            json!({"name": " ", "role": "viewer"}),
            "a credential name is 1 to 64",
        ),
        (json!({"role": "viewer"}), "missing field `name`"),
    ] {
        let answer = create(body.clone());
        assert_eq!(answer.status, 400, "{body}");
        assert!(
            message(&answer.body).contains(expect),
            "{body}: {}",
            message(&answer.body)
        );
    }
    let cert = hub.api_call(
        "POST",
        "/api/admin-certs",
        Some(json!({"name": "c", "role": "superuser"})),
    );
    assert_eq!(cert.status, 400);
    assert!(message(&cert.body).contains("unknown role \"superuser\""));

    let good = json!({"name": "ci", "role": "viewer", "scope": {"groups": ["BERLIN"]}});
    assert_eq!(create(good.clone()).status, 201);
    let again = create(good);
    assert_eq!(again.status, 409);
    assert!(message(&again.body).contains("a token named \"ci\" exists"));
    let gone = hub.api_call("DELETE", "/api/tokens/nobody", None);
    assert_eq!(gone.status, 404);
    let listed = hub.api_call("GET", "/api/tokens", None);
    let listed: Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "nothing refused was stored"
    );
    assert_eq!(listed[0]["scope"]["groups"][0], "BERLIN");
}

#[test]
fn a_scoped_viewer_certificate_reads_its_devices_only() {
    require_engine();
    let hub = Hub::start();
    let (inside, _a) = enrol(&hub, "till-1", &["--tag", "pos"]);
    let (outside, _b) = enrol(&hub, "sign-1", &[]);
    let dir = hub.data_dir.parent().unwrap().join("viewer-cert");
    let out = hub.cli(&[
        "admin-cert",
        "create",
        "--name",
        "auditor",
        "--role",
        "viewer",
        "--tag",
        "pos",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", said(&out));
    let reader = DockerCli::with_credential(&hub, inside, Credential::Certificate(dir.clone()));
    assert!(reader.ok(&["ps"]).contains("CONTAINER ID"));
    let writes = reader.run(&["create", TEST_IMAGE, "true"]);
    assert!(
        said(&writes).contains("credential \"auditor\" has role viewer"),
        "{}",
        said(&writes)
    );
    let elsewhere = DockerCli::with_credential(&hub, outside, Credential::Certificate(dir));
    let refused = elsewhere.run(&["ps"]);
    assert!(
        said(&refused).contains("outside the scope of credential \"auditor\""),
        "{}",
        said(&refused)
    );
    let listed = hub.cli(&["admin-cert", "list"]);
    let table = said(&listed);
    let row = table.lines().find(|l| l.contains("auditor")).unwrap();
    assert!(row.contains("viewer") && row.contains("tag:pos"), "{row}");
}
