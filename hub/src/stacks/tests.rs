use std::collections::BTreeMap;

use outpost_protocol::stack::{MountSource, PortProtocol, RestartPolicy};

use super::*;

const POS: &str = r#"
x-common: &common
  restart: unless-stopped
  labels:
    com.example.team: retail
services:
  web:
    <<: *common
    image: "outpost-test/busybox:${TAG:-latest}"
    command: httpd -f -p 80 -h "/var/www html"
    environment:
      MODE: kiosk
      STORE: ${STORE}
    env_file: site.env
    ports:
      - "127.0.0.1:8080:80"
      - target: 443
        published: 8443
    volumes:
      - data:/data
      - /etc/pos:/etc/pos:ro
      - /cache
    depends_on: [db]
    healthcheck:
      test: wget -q -O- http://127.0.0.1/ || exit 1
      interval: 1m30s
      retries: 3
    logging:
      driver: local
      options:
        max-size: 10m
  db:
    image: outpost-test/busybox:latest
    entrypoint: ["sleep"]
    command: ["3600"]
    user: "1000:1000"
    working_dir: /srv
    devices: ["/dev/null:/dev/pos-null:r"]
    privileged: true
volumes:
  data:
"#;

fn env_files() -> BTreeMap<String, String> {
    [(
        "site.env".to_owned(),
        "MODE=default\nSITE=berlin-7\n".to_owned(),
    )]
    .into()
}

fn compile_pos(compose: &str, variables: Option<&str>) -> Result<StackSpec, ComposeError> {
    compile(&ComposeInput {
        project: "pos",
        version: 3,
        compose,
        variables,
        env_files: &env_files(),
    })
}

#[test]
fn a_full_stack_is_normalised() {
    let spec = compile_pos(POS, Some("STORE=0042\n")).unwrap();
    assert_eq!((spec.project.as_str(), spec.version), ("pos", 3));
    assert_eq!(spec.volumes, ["data"]);
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "web"], "db starts first: web depends on it");

    let web = &spec.services[1];
    assert_eq!(web.image, "outpost-test/busybox:latest");
    assert_eq!(
        web.command.as_deref().unwrap(),
        ["httpd", "-f", "-p", "80", "-h", "/var/www html"]
    );
    let env: Vec<(&str, &str)> = web
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("MODE", "kiosk"), ("SITE", "berlin-7"), ("STORE", "0042")]
    );
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        (web.ports[1].host_port, web.ports[1].container_port),
        (Some(8443), 443)
    );
    assert_eq!(web.ports[1].protocol, PortProtocol::Tcp);
    assert_eq!(web.mounts[0].source, MountSource::Volume("data".to_owned()));
    assert_eq!(
        web.mounts[1].source,
        MountSource::Bind("/etc/pos".to_owned())
    );
    assert!(web.mounts[1].read_only);
    assert_eq!(web.mounts[2].source, MountSource::Anonymous);
    assert_eq!(
        web.restart,
        RestartPolicy::UnlessStopped,
        "from the merge key"
    );
    assert_eq!(
        web.labels,
        [("com.example.team".to_owned(), "retail".to_owned())]
    );
    let health = web.healthcheck.as_ref().unwrap();
    assert_eq!(health.test[0], "CMD-SHELL");
    assert_eq!(
        (health.interval_ms, health.retries),
        (Some(90_000), Some(3))
    );
    let logging = web.logging.as_ref().unwrap();
    assert_eq!(logging.driver, "local");
    assert_eq!(logging.options, [("max-size".to_owned(), "10m".to_owned())]);

    let db = &spec.services[0];
    assert_eq!(db.entrypoint.as_deref().unwrap(), ["sleep"]);
    assert_eq!(db.user.as_deref(), Some("1000:1000"));
    assert_eq!(db.devices[0].container, "/dev/pos-null");
    assert!(db.privileged);
    assert_eq!(db.restart, RestartPolicy::No);
}

/// Compile `compose` and return the error, asserting it names `key` on `line`.
fn refused(compose: &str, key: &str, line: usize) -> ComposeError {
    let error = compile_pos(compose, Some("STORE=1")).unwrap_err();
    assert_eq!(error.key.as_deref(), Some(key), "{error}");
    assert_eq!(error.line, Some(line), "{error}");
    error
}

#[test]
fn an_unsupported_key_names_the_key_and_line() {
    let compose = "services:\n  web:\n    image: nginx\n    deploy:\n      replicas: 2\n";
    let error = refused(compose, "services.web.deploy", 4);
    assert!(error
        .to_string()
        .starts_with("line 4: `services.web.deploy`: not supported"));
    refused(
        "services:\n  web:\n    image: a\nnetworks:\n  front: {}\n",
        "networks",
        4,
    );
    refused(
        "services:\n  web:\n    image: a\n    healthcheck:\n      test: true\n      start_interval: 1s\n",
        "services.web.healthcheck.start_interval",
        6,
    );
    refused(
        "services:\n  web:\n    image: a\n    volumes:\n      - type: tmpfs\n        target: /t\n        tmpfs: {size: 1}\n",
        "services.web.volumes.0.tmpfs",
        7,
    );
    refused(
        "services:\n  web:\n    image: a\nvolumes:\n  data:\n    driver: nfs\n",
        "volumes.data.driver",
        6,
    );
}

#[test]
fn a_merged_key_is_checked_and_located_at_its_service() {
    let compose =
        "x-base: &base\n  container_name: fixed\nservices:\n  web:\n    <<: *base\n    image: a\n";
    refused(compose, "services.web.container_name", 4);
}

#[test]
fn bad_values_name_their_key() {
    let error = refused(
        "services:\n  web:\n    image: a\n    ports: [\"99999:80\"]\n",
        "services.web.ports",
        4,
    );
    assert!(error.problem.contains("not a port number"), "{error}");
    refused(
        "services:\n  web:\n    image: a\n    restart: sometimes\n",
        "services.web.restart",
        4,
    );
    refused(
        "services:\n  web:\n    command: [a]\n",
        "services.web.image",
        2,
    );
    refused(
        "services:\n  web:\n    image: a\n    volumes: [\"undeclared:/x\"]\n",
        "services.web.volumes",
        4,
    );
    refused(
        "services:\n  web:\n    image: a\n    volumes: [\"./here:/x\"]\n",
        "services.web.volumes",
        4,
    );
    refused(
        "services:\n  web:\n    image: a\n    depends_on: [ghost]\n",
        "services.web.depends_on",
        4,
    );
    refused(
        "services:\n  web:\n    image: a\n    depends_on:\n      db: {condition: service_healthy}\n  db:\n    image: b\n",
        "services.web.depends_on",
        4,
    );
    let error = refused(
        "services:\n  web:\n    image: a\n    privileged: sure\n",
        "services.web.privileged",
        4,
    );
    assert!(error.problem.contains("invalid"), "{error}");
}

#[test]
fn a_dependency_cycle_is_refused() {
    let compose = "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n";
    let error = compile_pos(compose, None).unwrap_err();
    assert!(error.problem.contains("cycle"), "{error}");
}

#[test]
fn interpolation_refuses_what_it_cannot_resolve() {
    let compose = "services:\n  web:\n    image: \"pos:${TAG}\"\n";
    let error = compile_pos(compose, None).unwrap_err();
    assert_eq!(error.key.as_deref(), Some("services.web.image"));
    assert_eq!(error.line, Some(3));
    assert!(error.problem.contains("TAG is not set"), "{error}");
    let spec = compile_pos(compose, Some("TAG=42")).unwrap();
    assert_eq!(spec.services[0].image, "pos:42");
}

#[test]
fn env_files_must_be_sent() {
    let compose = "services:\n  web:\n    image: a\n    env_file: [missing.env]\n";
    let error = refused(compose, "services.web.env_file", 4);
    assert!(
        error.problem.contains("missing.env was not sent"),
        "{error}"
    );
}

#[test]
fn malformed_files_are_refused_with_a_line() {
    let error = compile_pos("services:\n  web:\n    image: [unclosed\n", None).unwrap_err();
    assert!(error.line.is_some(), "{error}");
    assert!(error.problem.contains("not valid YAML"), "{error}");
    assert!(compile_pos("- a list\n", None).is_err());
    assert!(compile_pos("services: {}\n", None).is_err(), "no service");
    let error = compile_pos("name: other\nservices:\n  web:\n    image: a\n", None).unwrap_err();
    assert_eq!(error.key.as_deref(), Some("name"));
    let huge = format!(
        "services:\n  web:\n    image: a\n# {}\n",
        "x".repeat(MAX_COMPOSE_BYTES)
    );
    assert!(compile_pos(&huge, None).is_err());
}
