//! Stacks: Compose files stored as immutable versions for devices to run (issue #15).
//!
//! [`compile`] reads a Compose file once, at `stack create`, into the normalised
//! [`StackSpec`] every device receives: parsed by `docker-compose-types` (the typed model) over
//! `serde_yaml` (merge keys applied), interpolated from the stack's `--env-file` only, with each
//! service's `env_file` entries inlined from what the client sent, and checked against the keys
//! Outpost carries ([`keys`]). Anything refused names its key path and line, and nothing is stored.

mod convert;
mod envfile;
mod interpolate;
mod keys;
mod locate;
mod ports;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use outpost_protocol::stack::StackSpec;
use serde_yaml::Value;

use locate::KeyLines;

/// Largest Compose file accepted (a fleet's stack is a few KB).
pub const MAX_COMPOSE_BYTES: usize = 256 * 1024;

/// What `stack create` sends.
#[derive(Debug)]
pub struct ComposeInput<'a> {
    /// The stack's name, which is the Compose project name on every device.
    pub project: &'a str,
    /// The version this will be.
    pub version: u32,
    /// The Compose file.
    pub compose: &'a str,
    /// The stack's `--env-file`: variables for `${…}` in the file.
    pub variables: Option<&'a str>,
    /// Each service `env_file` the file names, by the path as written, with its content.
    pub env_files: &'a BTreeMap<String, String>,
}

/// Why a Compose file was refused: the problem, and where when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeError {
    /// Dotted key path (`services.web.deploy`).
    pub key: Option<String>,
    /// 1-based line in the file.
    pub line: Option<usize>,
    /// What is wrong, with what to do where it helps.
    pub problem: String,
}

impl ComposeError {
    fn at(key: Option<String>, line: Option<usize>, problem: impl Into<String>) -> Self {
        Self {
            key,
            line,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for ComposeError {}

/// Read, check and normalise a Compose file into the version devices receive.
pub fn compile(input: &ComposeInput<'_>) -> Result<StackSpec, ComposeError> {
    if input.compose.len() > MAX_COMPOSE_BYTES {
        return Err(ComposeError::at(
            None,
            None,
            format!("the Compose file is larger than {MAX_COMPOSE_BYTES} bytes"),
        ));
    }
    let lines = KeyLines::scan(input.compose)?;
    let mut doc: Value = serde_yaml::from_str(input.compose).map_err(|e| {
        ComposeError::at(
            None,
            e.location().map(|l| l.line()),
            format!("not a Compose file: {e}"),
        )
    })?;
    doc.apply_merge()
        .map_err(|e| ComposeError::at(None, None, e.to_string()))?;
    keys::check(&doc, &lines)?;
    let variables = env_file("--env-file", input.variables.unwrap_or_default())?;
    interpolate_values(&mut doc, &variables, "", &lines)?;
    let ports = take_ports(&mut doc);
    let compose: docker_compose_types::Compose =
        serde_path_to_error::deserialize(doc).map_err(|e| {
            let key = e.path().to_string();
            ComposeError::at(
                Some(key.clone()),
                lines.nearest(&key),
                e.inner().to_string(),
            )
        })?;
    convert::stack(input, compose, &ports, &variables, &lines)
}

/// Each service's `ports` list, taken out of the document: Compose lets one list mix the short
/// and long syntax, which docker-compose-types' `Ports` (one or the other) cannot hold, so
/// [`ports`] reads the items one by one.
fn take_ports(doc: &mut Value) -> HashMap<String, Value> {
    let services = doc.get_mut("services").and_then(Value::as_mapping_mut);
    services
        .into_iter()
        .flat_map(|services| services.iter_mut())
        .filter_map(|(name, service)| {
            let ports = service.as_mapping_mut()?.remove("ports")?;
            Some((keys::key_text(name), ports))
        })
        .collect()
}

/// Replace `${…}` in every string value (not in keys, as Compose does).
fn interpolate_values(
    value: &mut Value,
    variables: &HashMap<String, String>,
    path: &str,
    lines: &KeyLines,
) -> Result<(), ComposeError> {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(text) => {
            *text = interpolate::substitute(text, variables).map_err(|e| {
                ComposeError::at(Some(path.to_owned()), lines.nearest(path), e.to_string())
            })?;
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate_values(item, variables, &child(&index.to_string()), lines)?;
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = keys::key_text(key);
                if !key.starts_with("x-") {
                    interpolate_values(item, variables, &child(&key), lines)?;
                }
            }
        }
        Value::Tagged(tagged) => interpolate_values(&mut tagged.value, variables, path, lines)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Variables of a `.env`-style file, later lines over earlier ones.
fn env_file(name: &str, text: &str) -> Result<HashMap<String, String>, ComposeError> {
    envfile::pairs(name, text).map(|pairs| pairs.into_iter().collect())
}

#[cfg(test)]
mod tests;
