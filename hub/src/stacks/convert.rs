//! docker-compose-types' model to the [`StackSpec`] devices receive: every short syntax
//! expanded, every relative reference resolved, services in start order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use docker_compose_types::{
    Command, Compose, DependsOnOptions, Entrypoint, Environment, Healthcheck as ComposeHealth,
    HealthcheckTest, Labels, LoggingParameters, Port, Service, StringOrList, Volumes,
};
use outpost_protocol::stack::{
    DeviceMapping, Healthcheck, Logging, Mount, MountSource, PortBinding, RestartPolicy,
    ServiceSpec, StackSpec,
};

use super::locate::KeyLines;
use super::{envfile, ports, ComposeError, ComposeInput};

/// What converting one file needs besides the model.
struct Context<'a> {
    input: &'a ComposeInput<'a>,
    variables: &'a HashMap<String, String>,
    ports: &'a HashMap<String, serde_yaml::Value>,
    lines: &'a KeyLines,
    volumes: Vec<String>,
}

impl Context<'_> {
    /// An error at `services.{service}.{key}` (or the service itself when `key` is empty).
    fn error(&self, service: &str, key: &str, problem: impl Into<String>) -> ComposeError {
        let path = match key {
            "" => format!("services.{service}"),
            _ => format!("services.{service}.{key}"),
        };
        let line = self.lines.nearest(&path);
        ComposeError::at(Some(path), line, problem)
    }
}

/// The whole stack.
pub(super) fn stack(
    input: &ComposeInput<'_>,
    compose: Compose,
    ports: &HashMap<String, serde_yaml::Value>,
    variables: &HashMap<String, String>,
    lines: &KeyLines,
) -> Result<StackSpec, ComposeError> {
    if let Some(name) = compose.name.as_deref().filter(|n| *n != input.project) {
        return Err(ComposeError::at(
            Some("name".to_owned()),
            lines.nearest("name"),
            format!("the file names project {name:?} but the stack is {:?}; remove `name:` or make them agree", input.project),
        ));
    }
    let context = Context {
        input,
        variables,
        ports,
        lines,
        volumes: compose.volumes.0.keys().cloned().collect(),
    };
    let mut services = Vec::with_capacity(compose.services.0.len());
    for (name, service) in &compose.services.0 {
        let service = service
            .as_ref()
            .ok_or_else(|| context.error(name, "", "a service needs at least an `image`"))?;
        services.push(convert_service(&context, name, service)?);
    }
    let spec = StackSpec {
        project: input.project.to_owned(),
        version: input.version,
        services: start_order(&context, services)?,
        volumes: context.volumes,
    };
    spec.check()
        .map_err(|e| ComposeError::at(None, None, e.to_string()))?;
    Ok(spec)
}

fn convert_service(
    context: &Context<'_>,
    name: &str,
    service: &Service,
) -> Result<ServiceSpec, ComposeError> {
    let error = |key: &str, problem: String| context.error(name, key, problem);
    let image = service
        .image
        .clone()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| {
            error(
                "image",
                "a service needs an `image` (stacks do not build)".to_owned(),
            )
        })?;
    Ok(ServiceSpec {
        name: name.to_owned(),
        image,
        command: service
            .command
            .as_ref()
            .map(|c| match c {
                Command::Simple(text) => split_words(text),
                Command::Args(args) => Ok(args.clone()),
            })
            .transpose()
            .map_err(|e| error("command", e))?,
        entrypoint: service
            .entrypoint
            .as_ref()
            .map(|e| match e {
                Entrypoint::Simple(text) => split_words(text),
                Entrypoint::List(args) => Ok(args.clone()),
            })
            .transpose()
            .map_err(|e| error("entrypoint", e))?,
        environment: environment(context, name, service)?,
        ports: service_ports(context.ports.get(name)).map_err(|e| error("ports", e))?,
        mounts: mounts(context, &service.volumes).map_err(|e| error("volumes", e))?,
        restart: restart(service.restart.as_deref()).map_err(|e| error("restart", e))?,
        healthcheck: service
            .healthcheck
            .as_ref()
            .map(healthcheck)
            .transpose()
            .map_err(|e| error("healthcheck", e))?,
        labels: labels(&service.labels),
        depends_on: depends_on(&service.depends_on).map_err(|e| error("depends_on", e))?,
        user: service.user.clone(),
        working_dir: service.working_dir.clone(),
        devices: service
            .devices
            .iter()
            .map(|d| device(d))
            .collect::<Result<_, _>>()
            .map_err(|e| error("devices", e))?,
        privileged: service.privileged,
        logging: service.logging.as_ref().map(logging),
    })
}

fn split_words(text: &str) -> Result<Vec<String>, String> {
    shlex::split(text).ok_or_else(|| format!("{text:?} has an unclosed quote"))
}

/// `env_file` entries first, then `environment` over them, sorted by name.
fn environment(
    context: &Context<'_>,
    name: &str,
    service: &Service,
) -> Result<Vec<(String, String)>, ComposeError> {
    let mut env = BTreeMap::new();
    let files = match &service.env_file {
        None => vec![],
        Some(StringOrList::Simple(path)) => vec![path.clone()],
        Some(StringOrList::List(paths)) => paths.clone(),
    };
    for path in files {
        let text = context.input.env_files.get(&path).ok_or_else(|| {
            context.error(
                name,
                "env_file",
                format!("{path} was not sent with the file (`outpost-hub stack create` reads it beside the Compose file)"),
            )
        })?;
        env.extend(envfile::pairs(&path, text)?);
    }
    let from_variables = |key: &str| {
        context.variables.get(key).cloned().ok_or_else(|| {
            context.error(
                name,
                "environment",
                format!("{key} has no value here and none in --env-file"),
            )
        })
    };
    match &service.environment {
        Environment::List(items) => {
            for item in items {
                let (key, value) = match item.split_once('=') {
                    Some((key, value)) => (key.to_owned(), value.to_owned()),
                    None => (item.clone(), from_variables(item)?),
                };
                env.insert(key, value);
            }
        }
        Environment::KvPair(pairs) => {
            for (key, value) in pairs {
                let value = match value {
                    Some(value) => value.to_string(),
                    None => from_variables(key)?,
                };
                env.insert(key.clone(), value);
            }
        }
    }
    Ok(env.into_iter().collect())
}

/// A `ports` list whose items may mix the short and the long syntax.
fn service_ports(declared: Option<&serde_yaml::Value>) -> Result<Vec<PortBinding>, String> {
    let Some(declared) = declared else {
        return Ok(vec![]);
    };
    let items = declared.as_sequence().ok_or("`ports` is a list")?;
    let mut bindings = Vec::new();
    for item in items {
        let more = match item {
            serde_yaml::Value::String(text) => ports::short(text)?,
            serde_yaml::Value::Number(number) => ports::short(&number.to_string())?,
            long => {
                let port: Port = serde_yaml::from_value(long.clone())
                    .map_err(|e| format!("a port entry: {e}"))?;
                ports::long(&port)?
            }
        };
        bindings.extend(more);
        if bindings.len() > ports::MAX_PORTS {
            return Err(format!(
                "a service publishes at most {} ports",
                ports::MAX_PORTS
            ));
        }
    }
    Ok(bindings)
}

fn mounts(context: &Context<'_>, volumes: &[Volumes]) -> Result<Vec<Mount>, String> {
    volumes.iter().map(|v| mount(context, v)).collect()
}

fn mount(context: &Context<'_>, volume: &Volumes) -> Result<Mount, String> {
    let (source, target, read_only) = match volume {
        Volumes::Simple(text) => short_mount(text)?,
        Volumes::Advanced(long) => {
            let source = match (long._type.as_str(), &long.source) {
                ("volume", None) => None,
                ("volume" | "bind", Some(source)) => Some(source.clone()),
                ("bind", None) => return Err("a bind mount needs a `source`".to_owned()),
                (other, _) => {
                    return Err(format!(
                        "mount type {other:?} is not supported (volume or bind)"
                    ))
                }
            };
            (source, long.target.clone(), long.read_only)
        }
    };
    if !target.starts_with('/') {
        return Err(format!("mount target {target:?} must be an absolute path"));
    }
    let source = match source {
        None => MountSource::Anonymous,
        Some(path) if path.starts_with('/') => MountSource::Bind(path),
        Some(path) if path.starts_with('.') || path.starts_with('~') => {
            return Err(format!(
            "bind source {path:?} is relative; on a device only absolute host paths mean something"
        ))
        }
        Some(name) if context.volumes.contains(&name) => MountSource::Volume(name),
        Some(name) => {
            return Err(format!(
                "volume {name:?} is not declared under the top-level `volumes:`"
            ))
        }
    };
    Ok(Mount {
        source,
        target,
        read_only,
    })
}

/// `target`, `source:target` or `source:target:ro|rw`.
fn short_mount(text: &str) -> Result<(Option<String>, String, bool), String> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [target] => Ok((None, (*target).to_owned(), false)),
        [source, target] => Ok((Some((*source).to_owned()), (*target).to_owned(), false)),
        [source, target, mode @ ("ro" | "rw")] => Ok((
            Some((*source).to_owned()),
            (*target).to_owned(),
            *mode == "ro",
        )),
        [_, _, mode] => Err(format!("mount mode {mode:?} is not supported (ro or rw)")),
        _ => Err(format!("{text:?} is not [source:]target[:ro|rw]")),
    }
}

fn restart(text: Option<&str>) -> Result<RestartPolicy, String> {
    match text {
        None | Some("no") => Ok(RestartPolicy::No),
        Some("always") => Ok(RestartPolicy::Always),
        Some("unless-stopped") => Ok(RestartPolicy::UnlessStopped),
        Some("on-failure") => Ok(RestartPolicy::OnFailure { max_retries: 0 }),
        Some(other) => other
            .strip_prefix("on-failure:")
            .and_then(|n| n.parse().ok())
            .map(|max_retries| RestartPolicy::OnFailure { max_retries })
            .ok_or_else(|| {
                format!("{other:?} is not a restart policy (no, always, on-failure[:N], unless-stopped)")
            }),
    }
}

fn healthcheck(check: &ComposeHealth) -> Result<Healthcheck, String> {
    let test = match (&check.test, check.disable) {
        (_, true) => vec!["NONE".to_owned()],
        (None, false) => return Err("a healthcheck needs a `test` (or `disable: true`)".to_owned()),
        (Some(HealthcheckTest::Single(shell)), false) => {
            vec!["CMD-SHELL".to_owned(), shell.clone()]
        }
        (Some(HealthcheckTest::Multiple(test)), false) => match test.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL" | "NONE") => test.clone(),
            _ => {
                return Err("a healthcheck test list starts with CMD, CMD-SHELL or NONE".to_owned())
            }
        },
    };
    let retries = u32::try_from(check.retries)
        .map_err(|_| format!("retries {} is out of range", check.retries))?;
    Ok(Healthcheck {
        test,
        interval_ms: millis(check.interval.as_deref(), "interval")?,
        timeout_ms: millis(check.timeout.as_deref(), "timeout")?,
        start_period_ms: millis(check.start_period.as_deref(), "start_period")?,
        retries: (retries > 0).then_some(retries),
    })
}

/// A Compose duration (`30s`, `1m30s`, `500ms`) in milliseconds.
fn millis(text: Option<&str>, what: &str) -> Result<Option<u64>, String> {
    text.map(|t| {
        humantime::parse_duration(t)
            .map(|d: Duration| d.as_millis() as u64)
            .map_err(|e| format!("{what} {t:?} is not a duration: {e}"))
    })
    .transpose()
}

fn labels(labels: &Labels) -> Vec<(String, String)> {
    let sorted: BTreeMap<String, String> = match labels {
        Labels::List(items) => items
            .iter()
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (item.clone(), String::new()),
            })
            .collect(),
        Labels::Map(map) => map.clone().into_iter().collect(),
    };
    sorted.into_iter().collect()
}

fn depends_on(declared: &DependsOnOptions) -> Result<Vec<String>, String> {
    match declared {
        DependsOnOptions::Simple(names) => Ok(names.clone()),
        DependsOnOptions::Conditional(map) => map
            .iter()
            .map(|(name, condition)| match condition.condition.as_str() {
                "service_started" => Ok(name.clone()),
                other => Err(format!(
                    "condition {other:?} on {name:?} is not supported; stacks order start-up only (service_started)"
                )),
            })
            .collect(),
    }
}

/// `host[:container[:permissions]]`.
fn device(text: &str) -> Result<DeviceMapping, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, container] => (*host, *container, "rwm"),
        [host, container, permissions] => (*host, *container, *permissions),
        _ => return Err(format!("{text:?} is not host[:container[:permissions]]")),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(format!("device {text:?} needs absolute paths"));
    }
    if permissions.is_empty() || !permissions.chars().all(|c| "rwm".contains(c)) {
        return Err(format!(
            "device permissions {permissions:?} are not a subset of rwm"
        ));
    }
    Ok(DeviceMapping {
        host: host.to_owned(),
        container: container.to_owned(),
        permissions: permissions.to_owned(),
    })
}

fn logging(logging: &LoggingParameters) -> Logging {
    let options: BTreeMap<String, String> = logging
        .options
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    Logging {
        driver: logging
            .driver
            .clone()
            .unwrap_or_else(|| "json-file".to_owned()),
        options: options.into_iter().collect(),
    }
}

/// Services ordered so each comes after what it depends on, otherwise in file order.
fn start_order(
    context: &Context<'_>,
    mut pending: Vec<ServiceSpec>,
) -> Result<Vec<ServiceSpec>, ComposeError> {
    for service in &pending {
        if let Some(missing) = service
            .depends_on
            .iter()
            .find(|d| !pending.iter().any(|s| &s.name == *d))
        {
            return Err(context.error(
                &service.name,
                "depends_on",
                format!("{missing:?} is not a service of this stack"),
            ));
        }
    }
    let mut ordered: Vec<ServiceSpec> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|s| {
            s.depends_on
                .iter()
                .all(|d| ordered.iter().any(|o| &o.name == d))
        });
        match ready {
            Some(index) => ordered.push(pending.remove(index)),
            None => {
                let names: Vec<&str> = pending.iter().map(|s| s.name.as_str()).collect();
                return Err(context.error(
                    &pending[0].name,
                    "depends_on",
                    format!(
                        "services {} depend on each other in a cycle",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(ordered)
}
