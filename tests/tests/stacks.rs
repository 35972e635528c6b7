//! Stacks through the real CLI and API (issue #15): a Compose file becomes version 1, an
//! unchanged file stores nothing, a changed one becomes version 2, and every refusal — an
//! unsupported key, malformed YAML, an unset variable, a bad name, a missing env file — is a 400
//! (or a clear CLI error) naming the problem, with nothing stored and the hub still serving. A
//! deploy that names an unknown group, tag, endpoint or version, a plan that does not parse, or
//! no devices at all starts no rollout and says why.
#![allow(clippy::unwrap_used)] // test code

use std::path::Path;
use std::process::{Command, Output};

use outpost_api::{RolloutPage, RolloutSummary, StackDetail, StackPage, StackVersionSaved};
use outpost_tests::{bin_dir, Hub};
use serde_json::json;

const V1: &str = "services:
  web:
    image: outpost-test/busybox:${TAG}
    command: httpd -f -p 80
    env_file: site.env
    ports: [\"127.0.0.1:18080:80\"]
    volumes: [\"data:/data\"]
    healthcheck:
      test: wget -q -O- http://127.0.0.1/
      interval: 5s
  db:
    image: outpost-test/busybox:latest
    command: [sleep, \"3600\"]
volumes:
  data: {}
";

fn stack(hub: &Hub, args: &[&str]) -> Output {
    Command::new(bin_dir().join("outpost-hub"))
        .arg("stack")
        .args(args)
        .arg("--data-dir")
        .arg(&hub.data_dir)
        .output()
        .unwrap()
}

fn stack_json<T: serde::de::DeserializeOwned>(hub: &Hub, args: &[&str]) -> T {
    let out = stack(hub, args);
    assert!(
        out.status.success(),
        "stack {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write_files(dir: &Path, compose: &str) -> (String, String) {
    std::fs::write(dir.join("compose.yml"), compose).unwrap();
    std::fs::write(dir.join("site.env"), "SITE=berlin-7\n").unwrap();
    std::fs::write(dir.join("vars.env"), "TAG=latest\n").unwrap();
    (
        dir.join("compose.yml").display().to_string(),
        dir.join("vars.env").display().to_string(),
    )
}

/// `stack create pos` from `file` and `vars`.
fn create_pos(hub: &Hub, file: &str, vars: &str) -> StackVersionSaved {
    stack_json(
        hub,
        &[
            "create",
            "pos",
            "--file",
            file,
            "--env-file",
            vars,
            "--json",
        ],
    )
}

fn stack_count(hub: &Hub) -> u64 {
    stack_json::<StackPage>(hub, &["list", "--json"]).total
}

#[test]
fn versions_are_stored_once_and_shown() {
    let hub = Hub::start();
    let dir = tempfile::tempdir().unwrap();
    let (file, vars) = write_files(dir.path(), V1);
    let create = [
        "create",
        "pos",
        "--file",
        &file,
        "--env-file",
        &vars,
        "--json",
    ];

    let v1: StackVersionSaved = stack_json(&hub, &create);
    assert_eq!((v1.version, v1.created), (1, true));
    assert_eq!(v1.services, ["web", "db"]);
    let again: StackVersionSaved = stack_json(&hub, &create);
    assert_eq!(
        (again.version, again.created),
        (1, false),
        "same file, no new version"
    );
    assert_eq!(again.digest, v1.digest);

    write_files(dir.path(), &V1.replace("interval: 5s", "interval: 10s"));
    let v2: StackVersionSaved = stack_json(&hub, &create);
    assert_eq!((v2.version, v2.created), (2, true));
    assert_ne!(v2.digest, v1.digest);

    let shown: StackDetail = stack_json(&hub, &["show", "pos", "--version", "1", "--json"]);
    assert_eq!(shown.version, 1);
    assert_eq!(shown.versions.len(), 2);
    assert_eq!(shown.compose, V1, "the file is kept as sent");
    let web = shown
        .spec
        .services
        .iter()
        .find(|s| s.name == "web")
        .unwrap();
    assert_eq!(
        web.image, "outpost-test/busybox:latest",
        "interpolated from --env-file"
    );
    assert_eq!(
        web.environment,
        [("SITE".to_owned(), "berlin-7".to_owned())],
        "env_file inlined"
    );
    let human = stack(&hub, &["show", "pos"]);
    let human = String::from_utf8(human.stdout).unwrap();
    assert!(
        human.contains("interval: 10s"),
        "the newest version by default:\n{human}"
    );

    let list = hub.api_call("GET", "/api/stacks?per_page=1", None);
    assert_eq!(list.status, 200);
    assert_eq!(list.headers["x-total-count"], "1");

    let out = stack(&hub, &["rm", "pos"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed with 2 versions"));
    assert_eq!(stack_count(&hub), 0);
    let gone = stack(&hub, &["show", "pos"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no stack named \"pos\" (404"));
}

#[test]
fn refusals_name_the_problem_and_store_nothing() {
    let hub = Hub::start();
    let dir = tempfile::tempdir().unwrap();
    let with_deploy = V1.replace("  db:\n", "  db:\n    deploy:\n      replicas: 2\n");
    let cases: [(&str, String, &str); 5] = [
        (
            "pos",
            with_deploy,
            "line 12: `services.db.deploy`: not supported",
        ),
        (
            "pos",
            "services:\n  web: [unclosed\n".into(),
            "not valid YAML",
        ),
        (
            "pos",
            V1.replace("${TAG}", "${UNSET}"),
            "variable UNSET is not set",
        ),
        (
            "pos",
            V1.replace("data: {}", "data:\n    driver: nfs"),
            "`volumes.data.driver`: not supported",
        ),
        (
            "Bad/Name",
            V1.to_owned(),
            "stack project name \"Bad/Name\" is not allowed",
        ),
    ];
    for (name, compose, expected) in cases {
        let (file, vars) = write_files(dir.path(), &compose);
        let out = stack(
            &hub,
            &["create", name, "--file", &file, "--env-file", &vars],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expected}: accepted");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert!(stderr.contains("(400 Bad Request)"), "{stderr}");
    }
    assert_eq!(stack_count(&hub), 0, "nothing stored");

    // A service env_file that is not beside the Compose file stops the CLI before it sends.
    let (file, vars) = write_files(dir.path(), V1);
    std::fs::remove_file(dir.path().join("site.env")).unwrap();
    let out = stack(
        &hub,
        &["create", "pos", "--file", &file, "--env-file", &vars],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("names env_file site.env"));
    // Through the API alone the hub names the missing file.
    let answer = hub.api_call(
        "POST",
        "/api/stacks",
        Some(json!({"name": "pos", "compose": V1, "env_file": "TAG=1"})),
    );
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("site.env was not sent"));
    assert_eq!(stack_count(&hub), 0);

    // The hub still serves: a good file is stored.
    std::fs::write(dir.path().join("site.env"), "SITE=x\n").unwrap();
    let saved = create_pos(&hub, &file, &vars);
    assert_eq!(saved.version, 1);
}

#[test]
fn deploy_refusals_name_the_problem_and_start_no_rollout() {
    let hub = Hub::start();
    let dir = tempfile::tempdir().unwrap();
    let (file, vars) = write_files(dir.path(), V1);
    create_pos(&hub, &file, &vars);
    let (kiosk, _) = hub.create_endpoint("kiosk", &[]);
    let kiosk = kiosk.to_string();
    let cases: [(&[&str], &str); 8] = [
        (&["--group", "stores-xx"], "no such group \"stores-xx\""),
        (&["--tag", "nowhere"], "no such tag \"nowhere\""),
        (&["--endpoint", "999"], "no such endpoint 999"),
        (&[], "say which devices"),
        (&["--endpoint", &kiosk, "--waves", "10%"], "end with 100%"),
        (
            &["--endpoint", &kiosk, "--max-failures", "x"],
            "max_failures",
        ),
        (&["--endpoint", &kiosk, "--soak", "soon"], "soak"),
        (
            &["--endpoint", &kiosk, "--on-drift", "ignore"],
            "on-drift \"ignore\": use reapply or report",
        ),
    ];
    for (selection, expected) in cases {
        let mut args = vec!["deploy", "pos"];
        args.extend_from_slice(selection);
        let out = stack(&hub, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{selection:?}: accepted");
        assert!(stderr.contains("(400 Bad Request)"), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
    }
    let out = stack(&hub, &["deploy", "pos:7", "--endpoint", &kiosk]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stack \"pos\" has no version 7"),
        "{stderr}"
    );
    let rollouts = Command::new(bin_dir().join("outpost-hub"))
        .args(["rollout", "list", "--json", "--data-dir"])
        .arg(&hub.data_dir)
        .output()
        .unwrap();
    let page: RolloutPage = serde_json::from_slice(&rollouts.stdout).unwrap();
    assert_eq!(page.total, 0, "no rollout started");

    // The hub still serves: a good deploy starts one.
    let started: RolloutSummary = stack_json(
        &hub,
        &[
            "deploy",
            "pos",
            "--endpoint",
            &kiosk,
            "--on-drift",
            "report",
            "--json",
        ],
    );
    assert!(started.plan.contains("on-drift report"), "{started:?}");
}
