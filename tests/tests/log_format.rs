//! `--log-format json`: a hub and an agent run with it write nothing to stderr but JSON objects,
//! one a line, each with a timestamp, a level and a message (a log shipper parses every line),
//! through start-up, a device enrolling and connecting, and a clean stop.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_tests::{Agent, Hub};
use serde_json::Value;

/// Every line of `log` as JSON with the fields a shipper reads; returns the messages.
fn json_lines(what: &str, log: &str) -> Vec<String> {
    assert!(!log.trim().is_empty(), "the {what} logged nothing");
    log.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what} stderr line is not JSON ({e}): {line}"));
            assert!(value["timestamp"].is_string(), "{what}: {line}");
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .contains(&value["level"].as_str().unwrap_or("")),
                "{what}: {line}"
            );
            value["fields"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("{what} line without fields.message: {line}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn hub_and_agent_with_json_logs_write_only_json_lines_to_stderr() {
    let mut hub = Hub::start_with_flags(&["--log-format", "json"]);
    let (id, key) = hub.create_endpoint("logged", &[]);
    let dir = hub.data_dir.parent().unwrap().join("agent");
    let mut agent = Agent::start(
        &dir,
        &[
            ("EDGE_KEY", key.as_str()),
            ("OUTPOST_LOG_FORMAT", "json"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    );
    hub.wait_status(id, "standby", Duration::from_secs(20));
    agent.kill();
    assert!(hub.stop().success());

    let hub_messages = json_lines("hub", &hub.log());
    assert!(
        hub_messages.iter().any(|m| m.starts_with("agents on udp")),
        "{hub_messages:?}"
    );
    assert!(
        hub_messages.iter().any(|m| m == "shutting down"),
        "{hub_messages:?}"
    );
    let agent_messages = json_lines("agent", &agent.log());
    assert!(
        agent_messages
            .iter()
            .any(|m| m.contains("session established")),
        "{agent_messages:?}"
    );
}
