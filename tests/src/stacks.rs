//! Stacks through the real hub's CLI, and what an engine runs of them: the pieces every stack
//! test repeats (store a version, deploy it, follow its rollout, list a project's containers).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outpost_api::{RolloutDetail, RolloutSummary, StackDetail, StackVersionSaved};

use crate::{wait_for_result, Hub};

/// The label Compose (and the agent) puts on a project's containers.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

/// Removes a Compose project (containers, default network, `data` volume) from the local engine
/// when dropped, whatever happens to the test.
#[derive(Debug)]
pub struct ProjectCleanup(pub String);

impl Drop for ProjectCleanup {
    fn drop(&mut self) {
        let filter = format!("label={PROJECT_LABEL}={}", self.0);
        let out = crate::docker::direct(&["ps", "-aq", "--filter", &filter]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = crate::docker::direct(&["rm", "-f", id]);
        }
        let _ = crate::docker::direct(&["network", "rm", &format!("{}_default", self.0)]);
        let _ = crate::docker::direct(&["volume", "rm", &format!("{}_data", self.0)]);
    }
}

/// `stack create NAME --file DIR/compose.yml` with `compose` written there.
pub fn save(hub: &Hub, dir: &Path, name: &str, compose: &str) -> StackVersionSaved {
    let file = dir.join("compose.yml");
    std::fs::write(&file, compose).expect("write compose.yml");
    let file = file.display().to_string();
    hub.cli_json(&["stack", "create", name, "--file", &file, "--json"])
}

/// `stack deploy STACK ARGS… --json`: the rollout's id.
pub fn deploy(hub: &Hub, stack: &str, args: &[&str]) -> i64 {
    let mut all = vec!["stack", "deploy", stack];
    all.extend_from_slice(args);
    all.push("--json");
    hub.cli_json::<RolloutSummary>(&all).id
}

/// `rollout show ID`.
pub fn rollout(hub: &Hub, id: i64) -> RolloutDetail {
    hub.cli_json(&["rollout", "show", &id.to_string(), "--json"])
}

/// Wait up to `within` until `done` says so of rollout `id`; panics with its last view if it
/// never does.
pub fn wait_rollout(
    hub: &Hub,
    id: i64,
    within: Duration,
    mut done: impl FnMut(&RolloutDetail) -> bool,
) -> RolloutDetail {
    let mut last = None;
    let found = wait_for_result(within, || {
        let detail = rollout(hub, id);
        let finished = done(&detail);
        last = Some(detail.clone());
        finished.then_some(detail)
    });
    found.unwrap_or_else(|| panic!("rollout {id} not as awaited within {within:?}: {last:#?}"))
}

/// Wait up to `within` for rollout `id` to be in `state`.
pub fn wait_rollout_state(hub: &Hub, id: i64, state: &str, within: Duration) -> RolloutDetail {
    wait_rollout(hub, id, within, |d| d.summary.state == state)
}

/// Each service's `com.docker.compose.config-hash` in version `version` of `stack`, from the
/// hub's own record: what an engine runs is matched against the hub, not against itself.
pub fn config_hashes(hub: &Hub, stack: &str, version: u32) -> BTreeMap<String, String> {
    let version = version.to_string();
    let detail: StackDetail =
        hub.cli_json(&["stack", "show", stack, "--version", &version, "--json"]);
    let services = detail.spec.services.iter();
    services
        .map(|s| (s.name.clone(), s.config_hash()))
        .collect()
}

/// One of a project's containers as the engine lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectRow {
    /// The full container id.
    pub id: String,
    /// Its name (`pos-web-1`).
    pub name: String,
    /// Its Compose service.
    pub service: String,
    /// Its `com.docker.compose.config-hash`.
    pub hash: String,
    /// Its image, as the engine names it.
    pub image: String,
    /// `running`, `exited`, `created`…
    pub state: String,
    /// `Up 3 seconds (healthy)`…
    pub status: String,
}

/// Every container of `project` on the engine at `docker_host` (`unix:///…`), stopped ones
/// too, by service then name; `None` if the engine does not answer.
pub fn project_rows(docker_host: &str, project: &str) -> Option<Vec<ProjectRow>> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let format = "{{.ID}}\t{{.Names}}\t{{.Label \"com.docker.compose.service\"}}\t\
                  {{.Label \"com.docker.compose.config-hash\"}}\t{{.Image}}\t{{.State}}\t\
                  {{.Status}}";
    let out = Command::new("docker")
        .args([
            "-H",
            docker_host,
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &filter,
        ])
        .args(["--format", format])
        .env_remove("DOCKER_CONTEXT")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut rows: Vec<ProjectRow> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| parse_row(line).unwrap_or_else(|| panic!("a `docker ps` row: {line}")))
        .collect();
    rows.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
    Some(rows)
}

fn parse_row(line: &str) -> Option<ProjectRow> {
    let mut fields = line.split('\t').map(str::to_owned);
    let mut next = || fields.next();
    Some(ProjectRow {
        id: next()?,
        name: next()?,
        service: next()?,
        hash: next()?,
        image: next()?,
        state: next()?,
        status: next()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_has_seven_fields() {
        let row = parse_row("abc\tpos-web-1\tweb\tf00\tbusybox\trunning\tUp 3 seconds").unwrap();
        assert_eq!(
            (row.service.as_str(), row.status.as_str()),
            ("web", "Up 3 seconds")
        );
        assert_eq!(parse_row("abc\tpos-web-1"), None);
    }
}
