//! Compose's names and labels. They are the contract with the Compose tools on the device:
//! `docker compose ls` and `docker-compose ps` find a project by these labels, and a container,
//! network or volume named and labelled this way is one Compose itself would recognise as its own.
//! They are also how the agent finds its stacks on the engine after a restart or a lost state
//! directory: the engine's labels, not the agent's files, say what is running.

use std::collections::HashMap;

/// `com.docker.compose.project`: the project (stack) a resource belongs to.
pub const PROJECT: &str = "com.docker.compose.project";
/// `com.docker.compose.service`: the service a container runs.
pub const SERVICE: &str = "com.docker.compose.service";
/// `com.docker.compose.config-hash`: [`ServiceSpec::config_hash`] of the container's service.
///
/// [`ServiceSpec::config_hash`]: outpost_protocol::stack::ServiceSpec::config_hash
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
/// `com.docker.compose.container-number`: always 1 (no scaling).
pub const CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
/// `com.docker.compose.oneoff`: `False` (not a `compose run` container).
pub const ONEOFF: &str = "com.docker.compose.oneoff";
/// `com.docker.compose.project.working_dir`: the agent's state directory.
pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
/// `com.docker.compose.version`: the Compose version whose labels these are.
pub const VERSION: &str = "com.docker.compose.version";
/// `com.docker.compose.network`: a network's name inside its project.
pub const NETWORK: &str = "com.docker.compose.network";
/// `com.docker.compose.volume`: a volume's name inside its project.
pub const VOLUME: &str = "com.docker.compose.volume";

/// The Compose release whose label set the agent writes (1.29.2, what Debian ships with 20.10).
pub const COMPOSE_VERSION: &str = "1.29.2";

/// What a set-aside container's name gains, before the old container's short id.
const ASIDE_MARK: &str = "-outpost-previous-";

/// Characters of a container id that make a set-aside name unique.
const SHORT_ID: usize = 12;

/// The engine's name of a service's container: `{project}-{service}-1`, as Compose v2 names it.
pub fn container_name(project: &str, service: &str) -> String {
    format!("{project}-{service}-1")
}

/// The project's default network: `{project}_default`, as Compose names it.
pub fn network_name(project: &str) -> String {
    format!("{project}_default")
}

/// The name an old container is renamed to while its replacement is tried, so the service's
/// name is free. The old id makes it unique even next to a leftover of an earlier apply.
pub(crate) fn aside_name(original: &str, id: &str) -> String {
    let short: String = id.chars().take(SHORT_ID).collect();
    format!("{original}{ASIDE_MARK}{short}")
}

/// An engine list filter for everything labelled with `project`.
pub(crate) fn project_filter(project: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("{PROJECT}={project}")])])
}

/// The labels every resource of `project` carries, plus `extra`.
pub(crate) fn project_labels(
    project: &str,
    extra: impl IntoIterator<Item = (&'static str, String)>,
) -> HashMap<String, String> {
    [
        (PROJECT, project.to_owned()),
        (VERSION, COMPOSE_VERSION.to_owned()),
    ]
    .into_iter()
    .chain(extra)
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A container name as the engine lists it (`/pos-web-1`), without the leading slash.
pub(crate) fn bare(name: &str) -> &str {
    name.strip_prefix('/').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_compose() {
        assert_eq!(container_name("pos", "web"), "pos-web-1");
        assert_eq!(network_name("pos"), "pos_default");
        assert_eq!(
            aside_name("pos-web-1", "0123456789abcdef"),
            "pos-web-1-outpost-previous-0123456789ab"
        );
        assert_eq!(bare("/pos-web-1"), "pos-web-1");
    }

    #[test]
    fn project_labels_carry_the_project_and_the_compose_version() {
        let labels = project_labels("pos", [(VOLUME, "data".to_owned())]);
        assert_eq!(labels[PROJECT], "pos");
        assert_eq!(labels[VERSION], COMPOSE_VERSION);
        assert_eq!(labels[VOLUME], "data");
        assert_eq!(labels.len(), 3);
    }
}
