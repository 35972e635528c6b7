//! A fleet pre-pull (`outpost-hub image pull`, [`JobSpec::PullImage`]): the device's engine pulls
//! an image from the agent's loopback registry — so over the hub's session, resumed across
//! outages, each layer fetched from the upstream once for the whole fleet — while the agent
//! reports how far it has come.
//!
//! Which name is pulled ([`Target::of`]):
//! - `NAME[:TAG]` without a registry host (an image pushed into the hub, or one of the hub's
//!   default upstream named as on Docker Hub) is pulled as `127.0.0.1:5380/NAME:TAG` and keeps
//!   that name, the one a stack on the fleet names it by;
//! - `HOST/NAME[:TAG]` of the registry the hub mirrors by default is pulled through the loopback
//!   registry and tagged with its own name, the loopback name removed, as a stack's image is
//!   ([`crate::stack::pull`]);
//! - any other registry's image, or one named by digest, is refused: this device can reach it
//!   only through the hub, and the hub does not mirror it.
//!
//! Progress is the engine's pull stream summed over layers (bytes done over bytes known so far),
//! sent as [`JobProgress`] at most once a second ([`PROGRESS_EVERY`]) and only when it changed;
//! the result says what was pulled and how many bytes the engine downloaded.

use std::net::SocketAddr;
use std::time::Duration;

use outpost_protocol::job::{JobOrder, JobOutcome, JobProgress, JobResult, OutputCapture};
use outpost_protocol::registry::name::split_host;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::info;

use super::execute::reason;
use crate::deploy::retry_instant;
use crate::docker_host::DockerHost;
use crate::loopback::HubLink;
use crate::snapshot::engine_client;
use crate::stack::{pull_image, pull_through, tag_to_pull, Progress};

/// Least time between two progress reports of one job.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The agent's loopback registry, as a pull job needs it.
#[derive(Clone, Debug)]
pub struct Registry {
    /// Where it listens (`127.0.0.1:5380`).
    pub listen: SocketAddr,
    /// Its link to the session's hub.
    pub link: HubLink,
}

/// What to pull for an image, and the name to give it afterwards.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// Pull this loopback name and keep it.
    Loopback(String),
    /// Pull `local`, tag it `image`, remove `local`.
    Through { local: String, image: String },
}

impl Target {
    fn of(image: &str, registry: &Registry) -> Result<Self, String> {
        if image.contains('@') {
            return Err(
                "name the image by tag: a pulled image is tagged, a digest has none".into(),
            );
        }
        let image = match tag_to_pull(image) {
            Some(tag) => format!("{image}:{tag}"),
            None => image.to_owned(),
        };
        let requested = split_host(&image).map_err(|e| e.to_string())?;
        match registry.link.loopback_name(&image) {
            Some(local) => Ok(Self::Through { local, image }),
            None if requested.host.is_none() => {
                Ok(Self::Loopback(format!("{}/{image}", registry.listen)))
            }
            None => Err(format!(
                "{image}: this device pulls through the hub, which does not mirror its registry \
                 (an image pushed to the hub, or of the hub's first --registry, is named here)"
            )),
        }
    }
}

/// Pull `image` for `order` within its timeout unless `cancel` comes first, reporting progress
/// through `report`; never fails (a failure is a result).
pub(crate) async fn perform(
    host: &DockerHost,
    registry: Option<&Registry>,
    order: &JobOrder,
    image: &str,
    cancel: &Notify,
    report: impl FnMut(JobProgress) + Send,
) -> JobResult {
    let started = Instant::now();
    let mut output = OutputCapture::default();
    let limit = Duration::from_millis(order.timeout_ms);
    let attempt = attempt(host, registry, order.id, image, &mut output, report);
    let outcome = tokio::select! {
        finished = tokio::time::timeout(limit, attempt) => match finished {
            Ok(Ok(())) => JobOutcome::Exited(0),
            Ok(Err(why)) => JobOutcome::Failed(reason(&why)),
            Err(_) => JobOutcome::TimedOut,
        },
        () = cancel.notified() => JobOutcome::Cancelled,
    };
    let duration = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    output.finish(order.id, outcome, duration)
}

async fn attempt(
    host: &DockerHost,
    registry: Option<&Registry>,
    id: u64,
    image: &str,
    output: &mut OutputCapture,
    mut report: impl FnMut(JobProgress) + Send,
) -> Result<(), String> {
    let registry =
        registry.ok_or("this device runs no loopback registry (--registry-listen off)")?;
    let target = Target::of(image, registry)?;
    let docker = engine_client(host).map_err(|e| e.to_string())?;
    let mut throttle = Throttle::default();
    let mut last = (0, 0);
    loop {
        let pulled = {
            let mut progress = |p: Progress| {
                if let Progress::Pulling { done, total, .. } = p {
                    last = (done, total);
                    if throttle.due(Instant::now()) {
                        report(JobProgress {
                            id,
                            done,
                            total,
                            deferred: None,
                        });
                    }
                }
            };
            pull_target(&docker, &target, &mut progress).await
        };
        let error = match pulled {
            Ok(name) => {
                let said = format!("pulled {name}: {} of {} bytes downloaded\n", last.0, last.1);
                output.push(said.as_bytes());
                return Ok(());
            }
            Err(error) => error,
        };
        // Held back by the hub's budget or the transfer window: the job waits, not fails, and
        // the next attempt goes on from what arrived.
        let Some(deferral) = registry.link.deferral() else {
            return Err(error);
        };
        info!(id, "image pull deferred: {}", deferral.message);
        report(JobProgress {
            id,
            done: last.0,
            total: last.1,
            deferred: Some(deferral.cause),
        });
        let mut windows = registry.link.watch_window();
        tokio::select! {
            () = tokio::time::sleep_until(retry_instant(Some(deferral.retry_at))) => {}
            _ = windows.changed() => {}
        }
    }
}

/// Pull `target` with the engine: the name it has now.
async fn pull_target(
    docker: &bollard::Docker,
    target: &Target,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<String, String> {
    match target {
        Target::Loopback(local) => {
            pull_image(docker, local, local, progress)
                .await
                .map_err(|e| e.to_string())?;
            Ok(local.clone())
        }
        Target::Through { local, image } => {
            pull_through(docker, local, image, progress)
                .await
                .map_err(|e| e.to_string())?;
            Ok(image.clone())
        }
    }
}

/// At most one report per [`PROGRESS_EVERY`].
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|at| now.saturating_duration_since(at) >= PROGRESS_EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let listen = SocketAddr::from(([127, 0, 0, 1], 5380));
        Registry {
            listen,
            link: HubLink::new(listen),
        }
    }

    #[test]
    fn a_name_without_a_host_is_pulled_and_kept_under_its_loopback_name() {
        let target = Target::of("pos/web:4", &registry());
        assert_eq!(
            target,
            Ok(Target::Loopback("127.0.0.1:5380/pos/web:4".into()))
        );
        let latest = Target::of("pos/web", &registry());
        assert_eq!(
            latest,
            Ok(Target::Loopback("127.0.0.1:5380/pos/web:latest".into()))
        );
    }

    #[test]
    fn digests_and_registries_the_hub_does_not_mirror_are_refused() {
        assert!(Target::of("pos/web@sha256:00", &registry()).is_err());
        // No session grants fetch streams here, so no host is the hub's default upstream.
        let other = Target::of("registry.example:5000/pos/web:4", &registry());
        assert!(other.is_err_and(|why| why.contains("does not mirror")));
    }

    #[test]
    fn progress_is_reported_at_most_once_a_second() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert!(throttle.due(start));
        assert!(!throttle.due(start + Duration::from_millis(999)));
        assert!(throttle.due(start + PROGRESS_EVERY));
    }
}
