//! `outpost-hub image push`: a `docker save` archive loaded into the mirror, for sites whose hub
//! reaches no registry (issue #16 item 1).
//!
//! The archive is read once as it arrives ([`super::import_tar`]) into a staging directory under
//! the pushed store, then checked whole ([`super::import_image`]: every layer against its
//! config's `diff_id`, every path that names a digest against its bytes, every size bounded)
//! before anything is kept. Only then are the blobs renamed into the pushed store, the manifest
//! written and the tags pointed at it; any refusal drops the staging directory and keeps
//! nothing. One import runs at a time, and an archive may stage at most the room left under
//! `--mirror-max-gib` (its gzipped layers take up to as much again while it is prepared).
//!
//! **Names.** A pushed image is served by its name *without a registry host*, the name a
//! device's engine asks its loopback registry for (`127.0.0.1:5380/outpost/app:1` asks for
//! `outpost/app:1`): `docker save registry.example/outpost/app:1` is pushed as `outpost/app:1`.
//! Such names otherwise go to the hub's default upstream, so a pushed tag is looked up first
//! there and wins over the upstream's (the operator put it there on purpose); a hub with no
//! `--registry` at all serves pushed images only. `--tag` names the image instead of the
//! archive's own names (one image per archive).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use thiserror::Error;
use tokio::io::AsyncRead;
use tokio_util::io::SyncIoBridge;
use tracing::info;

use super::digest::Digest;
use super::import_image::{
    config_descriptor, manifest, prepare_layer, read_config, read_index, Descriptor, ImageTag,
    SavedImage, MANIFEST_TYPE,
};
use super::import_tar::{unpack, Unpacked};
use super::manifests::Manifest;
use super::store::StoreError;
use super::Mirror;

/// Why an archive was refused; nothing of it was kept.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The bytes are not a readable tar archive (or the upload was cut).
    #[error("not a readable tar archive (docker save writes one): {0}")]
    Archive(String),
    /// An entry's path is absolute or climbs out of the archive.
    #[error("archive entry {0:?} is absolute or leaves the archive: refused")]
    Traversal(String),
    /// More entries than any image needs.
    #[error("the archive has more than {0} entries")]
    TooManyEntries(usize),
    /// A part whose size is bounded is larger.
    #[error("{what} is larger than the {limit} bytes accepted")]
    Oversized {
        /// Which part.
        what: String,
        /// Its bound.
        limit: u64,
    },
    /// The archive is larger than the mirror may still hold.
    #[error("the archive is larger than the {limit} bytes the mirror may still hold (raise --mirror-max-gib)")]
    TooLarge {
        /// Bytes that were left.
        limit: u64,
    },
    /// No `manifest.json`: not written by `docker save`.
    #[error("no manifest.json in the archive: not written by docker save")]
    NoIndex,
    /// `manifest.json` is not the index `docker save` writes, or out of bounds.
    #[error("manifest.json: {0}")]
    Index(String),
    /// `manifest.json` names a file the archive does not have.
    #[error("{0} is named by manifest.json but not in the archive")]
    Missing(String),
    /// A file's bytes are not the digest its name or the image config says.
    #[error("{path}: its bytes are {actual}, expected {expected}")]
    DigestMismatch {
        /// The archive path.
        path: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// The image config is not one.
    #[error("image config {path}: {reason}")]
    Config {
        /// Its archive path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An image with no name to be served by.
    #[error("an image of the archive has no name (saved by id): give one with --tag NAME:TAG")]
    NoTag,
    /// A name outside the distribution grammar.
    #[error("image name {tag:?}: {reason}")]
    Tag {
        /// The name.
        tag: String,
        /// Why it is refused.
        reason: String,
    },
    /// `--tag` given for an archive of several images.
    #[error("--tag names one image; the archive has {0}")]
    TagAmbiguous(usize),
    /// The staging directory could not be written.
    #[error("staging {path}: {source}")]
    Staging {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The mirror's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    pub(crate) fn archive(e: std::io::Error) -> Self {
        Self::Archive(e.to_string())
    }

    /// Whether the archive (not the hub) is at fault.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Staging { .. } | Self::Store(_))
    }
}

/// One image the archive held, now served.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The names it is served by (`repo:tag`).
    pub tags: Vec<String>,
    /// Its manifest's digest.
    pub manifest: Digest,
    /// Its config's digest: the image id an engine shows.
    pub config: Digest,
    /// Its layers.
    pub layers: usize,
    /// Bytes a device pulls: config and gzipped layers.
    pub bytes: u64,
}

/// An image checked and prepared in the staging directory, not yet kept.
struct Prepared {
    tags: Vec<ImageTag>,
    manifest: Manifest,
    config: (Descriptor, PathBuf),
    layers: Vec<(Descriptor, PathBuf)>,
}

impl Mirror {
    /// Read a `docker save` archive from `reader` and serve its images, named by `tags` if any
    /// (else by the archive's own names); nothing is kept unless all of it is.
    pub async fn import(
        &self,
        reader: impl AsyncRead + Send + Unpin + 'static,
        tags: Vec<ImageTag>,
    ) -> Result<Vec<Imported>, ImportError> {
        let pushed = &self.inner.pushed;
        let _one_at_a_time = pushed.importing.lock().await;
        let staging = StagingDir::create(pushed.blobs.tmp_dir())?;
        let (dir, budget) = (staging.0.clone(), pushed.room());
        let reader = SyncIoBridge::new(reader);
        let prepared = tokio::task::spawn_blocking(move || {
            let unpacked = unpack(reader, &dir, budget)?;
            prepare_all(&unpacked, &tags)
        })
        .await
        .map_err(|e| ImportError::Archive(e.to_string()))??;
        let mut kept = HashSet::new();
        let mut imported = Vec::new();
        for image in prepared {
            imported.push(self.keep(image, &mut kept).await?);
        }
        Ok(imported)
    }

    /// Move one prepared image's blobs into the pushed store, then its manifest, then its tags.
    async fn keep(
        &self,
        image: Prepared,
        kept: &mut HashSet<Digest>,
    ) -> Result<Imported, ImportError> {
        let pushed = &self.inner.pushed;
        for (descriptor, file) in std::iter::once(&image.config).chain(&image.layers) {
            if kept.insert(descriptor.digest.clone()) {
                pushed
                    .blobs
                    .adopt(file.clone(), &descriptor.digest, descriptor.size)?;
            }
        }
        self.inner.manifests.put(&image.manifest).await?;
        pushed.set_tags(&image.tags, &image.manifest.digest).await?;
        let tags: Vec<String> = image.tags.iter().map(ToString::to_string).collect();
        let bytes = image.config.0.size + image.layers.iter().map(|l| l.0.size).sum::<u64>();
        info!(tags = ?tags, manifest = %image.manifest.digest, bytes, "image pushed into the mirror");
        Ok(Imported {
            tags,
            manifest: image.manifest.digest,
            config: image.config.0.digest,
            layers: image.layers.len(),
            bytes,
        })
    }
}

fn prepare_all(unpacked: &Unpacked, tags: &[ImageTag]) -> Result<Vec<Prepared>, ImportError> {
    let index = unpacked.index.as_deref().ok_or(ImportError::NoIndex)?;
    let images = read_index(index)?;
    if !tags.is_empty() && images.len() != 1 {
        return Err(ImportError::TagAmbiguous(images.len()));
    }
    let mut gzipped = HashMap::new();
    images
        .iter()
        .map(|image| prepare(unpacked, image, tags, &mut gzipped))
        .collect()
}

/// Layers already gzipped in this archive, by their staged file: images may share them.
type Gzipped = HashMap<PathBuf, (Descriptor, PathBuf)>;

fn prepare(
    unpacked: &Unpacked,
    image: &SavedImage,
    tags: &[ImageTag],
    gzipped: &mut Gzipped,
) -> Result<Prepared, ImportError> {
    let tags = match tags {
        [] => image
            .repo_tags
            .iter()
            .flatten()
            .map(|t| super::import_image::parse_tag(t))
            .collect::<Result<Vec<_>, _>>()?,
        given => given.to_vec(),
    };
    if tags.is_empty() {
        return Err(ImportError::NoTag);
    }
    let (config, diff_ids) = read_config(unpacked, &image.config)?;
    if diff_ids.len() != image.layers.len() {
        return Err(ImportError::Config {
            path: image.config.clone(),
            reason: format!(
                "{} diff_ids for the {} layers manifest.json names",
                diff_ids.len(),
                image.layers.len()
            ),
        });
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (path, diff_id) in image.layers.iter().zip(&diff_ids) {
        let staged = unpacked.file(path)?;
        let layer = match gzipped.get(&staged.path) {
            Some(done) => done.clone(),
            None => prepare_layer(path, staged, diff_id)?,
        };
        gzipped.insert(staged.path.clone(), layer.clone());
        layers.push(layer);
    }
    let config = (config_descriptor(&config), config.path.clone());
    let descriptors: Vec<Descriptor> = layers.iter().map(|l| l.0.clone()).collect();
    let bytes = Bytes::from(manifest(&config.0, &descriptors));
    Ok(Prepared {
        tags,
        manifest: Manifest {
            digest: Digest::of(&bytes),
            media_type: MANIFEST_TYPE.to_owned(),
            bytes,
        },
        config,
        layers,
    })
}

/// A staging directory, removed with whatever is left in it when dropped.
struct StagingDir(PathBuf);

impl StagingDir {
    fn create(tmp: &Path) -> Result<Self, ImportError> {
        let dir = tmp.join(format!("import-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).map_err(|source| ImportError::Staging {
            path: dir.clone(),
            source,
        })?;
        Ok(Self(dir))
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
#[path = "import_tests.rs"]
pub(super) mod tests;
