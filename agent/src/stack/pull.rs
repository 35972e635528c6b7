//! Pulling what a stack needs before any container is touched (Compose's `pull_policy: missing`):
//! on a device's link a pull is the slow, fallible part of an apply, and a failed pull must leave
//! the running version alone. Images already on the engine are not pulled again, so an apply with
//! unchanged images needs no registry at all.
//!
//! Progress is the bytes downloaded over the bytes known so far, summed over layers; the total
//! grows as the engine learns each layer's size, as it does in `docker pull`.
//!
//! An image of the registry the hub mirrors by default is pulled through the agent's loopback
//! registry ([`crate::loopback`]) while the session's hub serves it: over the hub's QUIC session,
//! resumed across outages, each layer fetched upstream once for the whole fleet. It is then tagged
//! with its own name (and the loopback name removed), so the stack's containers name it as
//! written. If that pull fails the engine pulls directly, as it would without a hub mirror —
//! unless the hub deferred it (a spent byte budget): then the apply waits for the hub, with
//! what arrived kept.

use std::collections::BTreeMap;

use bollard::models::CreateImageInfo;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use outpost_protocol::stack::StackSpec;

use tracing::{info, warn};

use super::error::{engine_message, is_not_found, ApplyError};
use super::Progress;
use crate::loopback::HubLink;

/// Pull every image of `spec` the engine lacks, in service order, reporting progress; through
/// `mirror` where it serves the image's registry.
pub(crate) async fn pull_missing(
    docker: &Docker,
    spec: &StackSpec,
    mirror: Option<&HubLink>,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<(), ApplyError> {
    for image in distinct_images(spec) {
        if !is_present(docker, image).await? {
            let through = mirror.and_then(|m| m.loopback_name(image));
            match through {
                Some(local) => {
                    if let Err(e) = pull_through(docker, &local, image, progress).await {
                        // A deferred pull waits for the hub: pulling directly would spend the
                        // very bytes the hub is holding back.
                        if let Some(deferral) = mirror.and_then(HubLink::deferral) {
                            return Err(ApplyError::Deferred {
                                image: image.to_owned(),
                                message: deferral.message,
                                retry_at: deferral.retry_at,
                            });
                        }
                        warn!(
                            image,
                            "pull through the hub's mirror failed, pulling directly: {e}"
                        );
                        pull(docker, image, image, progress).await?;
                    }
                }
                None => pull(docker, image, image, progress).await?,
            }
            progress(Progress::Pulled {
                image: image.to_owned(),
            });
        }
    }
    Ok(())
}

fn distinct_images(spec: &StackSpec) -> Vec<&str> {
    let mut images: Vec<&str> = Vec::new();
    for service in &spec.services {
        if !images.contains(&service.image.as_str()) {
            images.push(&service.image);
        }
    }
    images
}

async fn is_present(docker: &Docker, image: &str) -> Result<bool, ApplyError> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(err) if is_not_found(&err) => Ok(false),
        Err(err) => Err(pull_error(image, &err)),
    }
}

/// Pull `local` (the loopback registry's name of `image`), then name it `image`.
pub(crate) async fn pull_through(
    docker: &Docker,
    local: &str,
    image: &str,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<(), ApplyError> {
    // An admin's own pull of the loopback name keeps it; the stack's goes after the tag.
    let had_local = is_present(docker, local).await?;
    pull(docker, local, image, progress).await?;
    let (repo, tag) = repo_and_tag(image);
    let options = TagImageOptionsBuilder::default()
        .repo(repo)
        .tag(tag)
        .build();
    docker
        .tag_image(local, Some(options))
        .await
        .map_err(|err| pull_error(image, &err))?;
    // Only the loopback name goes: the image keeps its own.
    let untag = RemoveImageOptionsBuilder::default().noprune(true).build();
    if !had_local {
        if let Err(err) = docker.remove_image(local, Some(untag), None).await {
            warn!(local, "the loopback name stays: {}", engine_message(&err));
        }
    }
    info!(image, "pulled through the hub's mirror");
    Ok(())
}

/// `registry.example:5000/pos/web:4` → (`registry.example:5000/pos/web`, `4`); `latest` when
/// the name has no tag.
fn repo_and_tag(image: &str) -> (&str, &str) {
    let last_component = image.rsplit('/').next().unwrap_or(image);
    match last_component.rsplit_once(':') {
        Some((_, tag)) => (&image[..image.len() - tag.len() - 1], tag),
        None => (image, "latest"),
    }
}

/// Pull `image`, reporting progress as `shown`.
pub(crate) async fn pull(
    docker: &Docker,
    image: &str,
    shown: &str,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<(), ApplyError> {
    let mut options = CreateImageOptionsBuilder::default().from_image(image);
    if let Some(tag) = tag_to_pull(image) {
        options = options.tag(tag);
    }
    let mut stream = docker.create_image(Some(options.build()), None, None);
    let mut layers = Layers::default();
    while let Some(info) = stream.next().await {
        let info = info.map_err(|err| pull_error(image, &err))?;
        if layers.note(&info) {
            let (done, total) = layers.sum();
            progress(Progress::Pulling {
                image: shown.to_owned(),
                done,
                total,
            });
        }
    }
    Ok(())
}

fn pull_error(image: &str, err: &bollard::errors::Error) -> ApplyError {
    ApplyError::Pull {
        image: image.to_owned(),
        message: engine_message(err),
    }
}

/// The tag to ask for: `latest` for a bare name (the engine would otherwise pull every tag of
/// the repository), none when the reference names its tag or digest.
pub(crate) fn tag_to_pull(image: &str) -> Option<&'static str> {
    let last_component = image.rsplit('/').next().unwrap_or(image);
    let named = image.contains('@') || last_component.contains(':');
    (!named).then_some("latest")
}

/// Bytes done and known per layer, from the pull stream's `progressDetail`.
#[derive(Debug, Default)]
struct Layers {
    by_id: BTreeMap<String, (u64, u64)>,
}

impl Layers {
    /// Takes one stream message; says whether the sums changed.
    fn note(&mut self, info: &CreateImageInfo) -> bool {
        let (Some(id), Some(status)) = (&info.id, &info.status) else {
            return false;
        };
        let before = self.by_id.get(id).copied();
        match status.as_str() {
            "Downloading" => {
                let detail = info.progress_detail.as_ref();
                let read = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
                let current = read(detail.and_then(|d| d.current));
                let total = read(detail.and_then(|d| d.total));
                self.by_id.insert(id.clone(), (current, total.max(current)));
            }
            "Download complete" | "Pull complete" | "Already exists" => {
                let layer = self.by_id.entry(id.clone()).or_default();
                layer.0 = layer.1;
            }
            _ => {}
        }
        self.by_id.get(id).copied() != before
    }

    /// Bytes done and bytes known, over all layers.
    fn sum(&self) -> (u64, u64) {
        self.by_id
            .values()
            .fold((0, 0), |(done, total), (d, t)| (done + d, total + t))
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::ProgressDetail;

    use super::*;

    fn message(id: &str, status: &str, current: i64, total: i64) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.to_owned()),
            status: Some(status.to_owned()),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_is_summed_over_layers() {
        let mut layers = Layers::default();
        assert!(!layers.note(&message("a", "Pulling fs layer", 0, 0)));
        assert!(layers.note(&message("a", "Downloading", 100, 1000)));
        assert!(layers.note(&message("b", "Downloading", 50, 500)));
        assert_eq!(layers.sum(), (150, 1500));
        assert!(layers.note(&message("a", "Download complete", 0, 0)));
        assert_eq!(layers.sum(), (1050, 1500));
        assert!(!layers.note(&message("a", "Extracting", 10, 1000)));
        assert!(!layers.note(&message("a", "Pull complete", 0, 0)));
        assert_eq!(layers.sum(), (1050, 1500));
    }

    #[test]
    fn messages_without_a_layer_do_not_count() {
        let mut layers = Layers::default();
        let status = CreateImageInfo {
            status: Some("Pulling from library/nginx".to_owned()),
            ..Default::default()
        };
        assert!(!layers.note(&status));
        assert_eq!(layers.sum(), (0, 0));
    }

    #[test]
    fn an_image_is_tagged_back_with_its_own_name() {
        assert_eq!(
            repo_and_tag("r.example:5000/pos/web:4"),
            ("r.example:5000/pos/web", "4")
        );
        assert_eq!(
            repo_and_tag("r.example:5000/pos/web"),
            ("r.example:5000/pos/web", "latest")
        );
        assert_eq!(repo_and_tag("busybox:1.36"), ("busybox", "1.36"));
    }

    #[test]
    fn a_bare_name_pulls_latest_only() {
        assert_eq!(tag_to_pull("nginx"), Some("latest"));
        assert_eq!(tag_to_pull("registry.example:5000/pos"), Some("latest"));
        assert_eq!(tag_to_pull("nginx:1.27"), None);
        assert_eq!(tag_to_pull("registry.example:5000/pos:4"), None);
        assert_eq!(tag_to_pull("pos@sha256:0123"), None);
    }
}
