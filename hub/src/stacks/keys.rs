//! The Compose keys a stack may use. Anything else is refused at `stack create` with its path and
//! line — never silently ignored: a key Outpost dropped would make the devices run something
//! other than what the file says (`deploy.resources` limits, `networks`, `secrets`…).
//!
//! Checked on the YAML after merge keys are applied, so `<<: *defaults` cannot smuggle a key in.

use serde_yaml::{Mapping, Value};

use super::locate::KeyLines;
use super::ComposeError;

/// Top-level keys. `version` is obsolete and ignored, as Compose does.
const TOP: &[&str] = &["version", "name", "services", "volumes"];

/// Service keys.
pub(super) const SERVICE: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "restart",
    "healthcheck",
    "labels",
    "depends_on",
    "user",
    "working_dir",
    "devices",
    "privileged",
    "logging",
];

const HEALTHCHECK: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "disable",
];
const LOGGING: &[&str] = &["driver", "options"];
const PORT: &[&str] = &["target", "published", "host_ip", "protocol", "mode"];
const MOUNT: &[&str] = &["type", "source", "target", "read_only"];
const DEPENDENCY: &[&str] = &["condition"];
/// A top-level volume is the engine's default local volume; driver options are not carried.
const VOLUME: &[&str] = &[];

/// Refuse the first key outside the lists above.
pub(super) fn check(doc: &Value, lines: &KeyLines) -> Result<(), ComposeError> {
    let top = doc
        .as_mapping()
        .ok_or_else(|| ComposeError::at(None, Some(1), "a Compose file is a mapping"))?;
    allow(top, "", TOP, lines)?;
    for (name, service) in entries(top.get("services")) {
        let path = format!("services.{name}");
        let Some(service) = service.as_mapping() else {
            continue;
        };
        allow(service, &path, SERVICE, lines)?;
        nested(service, &path, "healthcheck", HEALTHCHECK, lines)?;
        nested(service, &path, "logging", LOGGING, lines)?;
        items(service, &path, "ports", PORT, lines)?;
        items(service, &path, "volumes", MOUNT, lines)?;
        for (dependency, condition) in entries(service.get("depends_on")) {
            if let Some(condition) = condition.as_mapping() {
                let path = format!("{path}.depends_on.{dependency}");
                allow(condition, &path, DEPENDENCY, lines)?;
            }
        }
    }
    for (name, volume) in entries(top.get("volumes")) {
        if let Some(volume) = volume.as_mapping() {
            allow(volume, &format!("volumes.{name}"), VOLUME, lines)?;
        }
    }
    Ok(())
}

/// Name and value of each entry of an optional mapping.
fn entries(value: Option<&Value>) -> impl Iterator<Item = (String, &Value)> {
    value
        .and_then(Value::as_mapping)
        .into_iter()
        .flat_map(Mapping::iter)
        .map(|(k, v)| (key_text(k), v))
}

fn nested(
    parent: &Mapping,
    path: &str,
    key: &str,
    allowed: &[&str],
    lines: &KeyLines,
) -> Result<(), ComposeError> {
    match parent.get(key).and_then(Value::as_mapping) {
        Some(map) => allow(map, &format!("{path}.{key}"), allowed, lines),
        None => Ok(()),
    }
}

/// The mapping items of a sequence (the long syntax of ports and volumes).
fn items(
    parent: &Mapping,
    path: &str,
    key: &str,
    allowed: &[&str],
    lines: &KeyLines,
) -> Result<(), ComposeError> {
    let sequence = parent.get(key).and_then(Value::as_sequence);
    for (index, item) in sequence.into_iter().flatten().enumerate() {
        if let Some(map) = item.as_mapping() {
            allow(map, &format!("{path}.{key}.{index}"), allowed, lines)?;
        }
    }
    Ok(())
}

fn allow(
    map: &Mapping,
    path: &str,
    allowed: &[&str],
    lines: &KeyLines,
) -> Result<(), ComposeError> {
    for key in map.keys().map(key_text) {
        if allowed.contains(&key.as_str()) || key.starts_with("x-") {
            continue;
        }
        let full = if path.is_empty() {
            key
        } else {
            format!("{path}.{key}")
        };
        let line = lines.nearest(&full);
        let supported = if allowed.is_empty() {
            "nothing here".to_owned()
        } else {
            allowed.join(", ")
        };
        return Err(ComposeError::at(
            Some(full),
            line,
            format!("not supported by Outpost stacks (supported: {supported}; extensions start with x-)"),
        ));
    }
    Ok(())
}

/// A mapping key as text (YAML allows numbers and booleans as keys).
pub(super) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}
