//! The engine snapshot: what runs on this device, read from its Docker engine.
//!
//! The hub shows each device's containers, images, volumes and networks without summoning it: a
//! summon costs the device's link (often satellite or metered cellular) and keeps it awake. So the
//! agent reads its engine when the hub's view would otherwise go stale — right after enrolment and
//! just before returning to standby — and sends the resulting [`EngineSnapshot`] on its session.
//!
//! Taking a snapshot never fails. An engine that is missing, stopped or wedged is itself what the hub
//! needs to show, so it becomes a snapshot with zero counts and [`EngineSnapshot::error`] naming the
//! `DOCKER_HOST` and the cause. Every snapshot is bounded: in time by the client's request timeout
//! ([`ENGINE_TIMEOUT`] unless changed with [`Docker::with_timeout`]), in size by
//! [`MAX_LISTED_CONTAINERS`], [`MAX_NAMES`] and [`MAX_TEXT_CHARS`], and as a whole by
//! [`SNAPSHOT_BUDGET`] encoded bytes, well under the control frame limit: a device with more
//! containers than fit sends the running ones first and as many others as fit
//! ([`EngineSnapshot::fit`]), never a frame the hub would refuse by closing the session. Control
//! characters are replaced before sending ([`EngineSnapshot::sanitize`]), as the hub would.
//!
//! API version: bollard 0.21 sends its requests without a `/vX.Y` prefix, so the engine answers in
//! its own default API version, and both old engines (20.10, API 1.41) and new ones work. We read
//! only fields that every version has. bollard's `negotiate_version` is not used: were the prefix
//! sent, it would ask a versioned `/version`, which an engine older than bollard's pinned API
//! version refuses ("client version … is too new"). The real-engine test below runs against a 1.41
//! engine and catches a bollard upgrade that changes this.

use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{self, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptions, ListNetworksOptions, ListVolumesOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use outpost_protocol::snapshot::{
    clip, ContainerSummary, EngineSnapshot, MAX_LISTED_CONTAINERS, MAX_NAMES, SNAPSHOT_BUDGET,
};
use thiserror::Error;

use crate::docker_host::DockerHost;

/// How long one snapshot may wait for the engine: a loaded single-board device answering a
/// container list with its disk busy can take seconds; a minute would hold up standby too long.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest text kept from the engine (image references, names, statuses, causes), in characters.
pub const MAX_TEXT_CHARS: usize = 256;

/// Longest [`EngineSnapshot::error`], in characters.
const MAX_ERROR_CHARS: usize = 4 * MAX_TEXT_CHARS;

/// Characters of a container id shown, as `docker ps` does.
const SHORT_ID_CHARS: usize = 12;

/// Why no engine client could be made for a `DOCKER_HOST`.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The unix socket does not exist: Docker is not installed or not started on this device, or
    /// `DOCKER_HOST` names the wrong path.
    #[error("DOCKER_HOST {host}: no socket at {} (is Docker installed and running?)", path.display())]
    SocketMissing {
        /// The address given.
        host: DockerHost,
        /// The socket path that was looked for.
        path: PathBuf,
    },
    /// The socket path is not UTF-8, which the client library cannot take: set `DOCKER_HOST` to a
    /// UTF-8 path (a symlink works).
    #[error("DOCKER_HOST {host}: the socket path is not UTF-8")]
    PathNotUtf8 {
        /// The address given.
        host: DockerHost,
    },
    /// The client library refused the address.
    #[error("DOCKER_HOST {host}: {source}")]
    Client {
        /// The address given.
        host: DockerHost,
        /// What the client library said.
        #[source]
        source: bollard::errors::Error,
    },
}

/// An engine client for `host`, with [`ENGINE_TIMEOUT`] on every request.
///
/// Makes no request: an engine that is down is found by [`take`]. A unix socket that does not
/// exist is refused here, so callers that must not fail use [`take_from`].
pub fn engine_client(host: &DockerHost) -> Result<Docker, SnapshotError> {
    let secs = ENGINE_TIMEOUT.as_secs();
    let made = match host {
        DockerHost::Unix(path) => {
            let path = path
                .to_str()
                .ok_or_else(|| SnapshotError::PathNotUtf8 { host: host.clone() })?;
            Docker::connect_with_unix(path, secs, API_DEFAULT_VERSION)
        }
        DockerHost::Tcp(addr) => {
            Docker::connect_with_http(&format!("http://{addr}"), secs, API_DEFAULT_VERSION)
        }
    };
    made.map_err(|source| match (source, host) {
        (bollard::errors::Error::SocketNotFoundError(_), DockerHost::Unix(path)) => {
            SnapshotError::SocketMissing {
                host: host.clone(),
                path: path.clone(),
            }
        }
        (source, _) => SnapshotError::Client {
            host: host.clone(),
            source,
        },
    })
}

/// Snapshot the engine at `host`, making the client first; never fails (see [`take`]).
pub async fn take_from(host: &DockerHost, now_unix: i64) -> EngineSnapshot {
    match engine_client(host) {
        Ok(docker) => take(&docker, host, now_unix).await,
        Err(err) => unreadable(now_unix, &cause(&err)),
    }
}

/// Snapshot the engine behind `docker` (which `host` names, for messages), at `now_unix`.
///
/// Never fails: reads the version and lists containers, images, volumes and networks concurrently,
/// all within `docker`'s timeout. What could not be read counts as zero and is explained in
/// [`EngineSnapshot::error`].
pub async fn take(docker: &Docker, host: &DockerHost, now_unix: i64) -> EngineSnapshot {
    let all = ListContainersOptionsBuilder::default().all(true).build();
    let reads = async {
        let (version, containers, images, volumes, networks) = tokio::join!(
            docker.version(),
            docker.list_containers(Some(all)),
            docker.list_images(None::<ListImagesOptions>),
            docker.list_volumes(None::<ListVolumesOptions>),
            docker.list_networks(None::<ListNetworksOptions>),
        );
        Reads {
            version,
            containers,
            images,
            volumes,
            networks,
        }
    };
    // bollard's timeout covers each response's head only; this bounds the bodies too.
    let timeout = docker.timeout();
    match tokio::time::timeout(timeout, reads).await {
        Ok(reads) => reads.into_snapshot(Failures::new(host, timeout), now_unix),
        Err(_) => unreadable(now_unix, &Failures::new(host, timeout).silent()),
    }
}

/// What the hub accepts: safe text, at most [`SNAPSHOT_BUDGET`] encoded bytes.
fn fit(mut snapshot: EngineSnapshot) -> EngineSnapshot {
    snapshot.sanitize();
    snapshot.fit(SNAPSHOT_BUDGET)
}

type Read<T> = Result<T, bollard::errors::Error>;

/// The five answers a snapshot is made of.
struct Reads {
    version: Read<models::SystemVersion>,
    containers: Read<Vec<models::ContainerSummary>>,
    images: Read<Vec<models::ImageSummary>>,
    volumes: Read<models::VolumeListResponse>,
    networks: Read<Vec<models::Network>>,
}

impl Reads {
    fn into_snapshot(self, mut failures: Failures<'_>, now_unix: i64) -> EngineSnapshot {
        let engine_version = match self.version {
            Ok(version) => clip_text(version.version.as_deref().unwrap_or_default()),
            Err(err) => failures.note("read the version", &err),
        };
        let containers = failures.ok("list containers", self.containers);
        let images = failures.ok("list images", self.images);
        let volumes = failures.ok("list volumes", self.volumes);
        let networks = failures.ok("list networks", self.networks);
        let mut snapshot = containers.map(summarize).unwrap_or_default();
        snapshot.taken_at = now_unix;
        snapshot.engine_version = engine_version;
        snapshot.images = count(images.map_or(0, |i| i.len()));
        snapshot.volumes = count(volumes.and_then(|v| v.volumes).map_or(0, |v| v.len()));
        snapshot.networks = count(networks.map_or(0, |n| n.len()));
        snapshot.error = failures.explain();
        fit(snapshot)
    }
}

/// What could not be read, said once in the snapshot's error.
struct Failures<'a> {
    host: &'a DockerHost,
    timeout: Duration,
    noted: Vec<(&'static str, String)>,
}

impl<'a> Failures<'a> {
    fn new(host: &'a DockerHost, timeout: Duration) -> Self {
        Self {
            host,
            timeout,
            noted: Vec::new(),
        }
    }

    /// The value, or `None` with the failure noted.
    fn ok<T>(&mut self, what: &'static str, read: Read<T>) -> Option<T> {
        read.map_err(|err| self.note(what, &err)).ok()
    }

    /// Notes a failure; returns its cause.
    fn note(&mut self, what: &'static str, err: &bollard::errors::Error) -> String {
        let why = match err {
            bollard::errors::Error::RequestTimeoutError => self.silent_for(),
            err => clip_text(&cause(err)),
        };
        self.noted.push((what, why.clone()));
        why
    }

    fn silent_for(&self) -> String {
        format!("no answer within {} s", self.timeout.as_secs())
    }

    fn silent(&self) -> String {
        let host = self.host;
        format!("Docker engine at DOCKER_HOST {host}: {}", self.silent_for())
    }

    /// One message for all failures; when every read failed the engine itself is unreachable and
    /// their (shared) cause is said once.
    fn explain(&self) -> Option<String> {
        let host = self.host;
        let (_, first) = self.noted.first()?;
        let message = if self.noted.len() == 5 {
            format!("Docker engine at DOCKER_HOST {host} cannot be read: {first}")
        } else {
            let parts: Vec<String> = self
                .noted
                .iter()
                .map(|(what, why)| format!("could not {what}: {why}"))
                .collect();
            format!("Docker engine at DOCKER_HOST {host}: {}", parts.join("; "))
        };
        Some(clip(&message, MAX_ERROR_CHARS))
    }
}

/// A snapshot saying only why the engine could not be read.
fn unreadable(now_unix: i64, why: &str) -> EngineSnapshot {
    fit(EngineSnapshot {
        taken_at: now_unix,
        error: Some(clip(why, MAX_ERROR_CHARS)),
        ..EngineSnapshot::default()
    })
}

/// Counts and the bounded list; "running" is what `docker ps` lists (running, paused, restarting).
/// Up containers are listed first so that a truncated list keeps them.
fn summarize(mut containers: Vec<models::ContainerSummary>) -> EngineSnapshot {
    let running = containers.iter().filter(|c| is_up(c)).count();
    let stopped = containers.len() - running;
    containers.sort_by_key(|c| !is_up(c));
    EngineSnapshot {
        containers_running: count(running),
        containers_stopped: count(stopped),
        containers: containers
            .iter()
            .take(MAX_LISTED_CONTAINERS)
            .map(container)
            .collect(),
        ..EngineSnapshot::default()
    }
}

fn is_up(container: &models::ContainerSummary) -> bool {
    use ContainerSummaryStateEnum::{PAUSED, RESTARTING, RUNNING};
    matches!(container.state, Some(RUNNING | PAUSED | RESTARTING))
}

fn container(c: &models::ContainerSummary) -> ContainerSummary {
    let names = c.names.iter().flatten().take(MAX_NAMES);
    ContainerSummary {
        id: c
            .id
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(SHORT_ID_CHARS)
            .collect(),
        names: names
            .map(|n| clip_text(n.strip_prefix('/').unwrap_or(n)))
            .collect(),
        image: clip_text(c.image.as_deref().unwrap_or_default()),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        status: clip_text(c.status.as_deref().unwrap_or_default()),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn clip_text(text: &str) -> String {
    clip(text, MAX_TEXT_CHARS)
}

/// An error and its sources, `: `-joined, skipping a source its parent already quotes.
pub(crate) fn cause(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests;
