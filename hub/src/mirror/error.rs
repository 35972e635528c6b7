//! The mirror's errors: what a pull through it can run into, and why it could not open.
//!
//! [`MirrorError`] is `Clone` (its I/O causes shared behind `Arc`) because one fetch's outcome is
//! handed to every request that waited for it ([`super::flight`]). [`super::http`] maps each to the
//! distribution API's error code.

use std::sync::Arc;

use thiserror::Error;

use super::config::CredentialsError;
use super::digest::DigestError;
use super::name::NameError;
use super::store::StoreError;
use super::upstream::UpstreamError;

/// Why a pull through the mirror failed.
#[derive(Clone, Debug, Error)]
pub enum MirrorError {
    /// No configured upstream serves this name (its first component is another registry's host,
    /// or no `--registry` was given).
    #[error("no upstream registry serves {0}: the first --registry serves names without a registry host, another serves names that start with its host")]
    NameUnknown(String),
    /// The name or reference is outside the distribution grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The digest is not a sha256 digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The upstream has no such manifest.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// The upstream has no such blob.
    #[error("blob unknown to the mirror and its upstream")]
    BlobUnknown,
    /// The upstream failed or sent something refused (a blob not matching its digest among them).
    #[error(transparent)]
    Upstream(Arc<UpstreamError>),
    /// The mirror's disk failed.
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// A shared fetch ended without an outcome (its task failed): the request may be retried.
    #[error("the shared fetch of this blob ended without an outcome; try again")]
    FetchLost,
}

impl From<UpstreamError> for MirrorError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::NotFound { what, .. } if what.starts_with("manifest") => {
                Self::ManifestUnknown(what)
            }
            UpstreamError::NotFound { .. } => Self::BlobUnknown,
            e => Self::Upstream(Arc::new(e)),
        }
    }
}

impl From<StoreError> for MirrorError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

/// Why the mirror could not open at the hub's start.
#[derive(Debug, Error)]
pub enum MirrorOpenError {
    /// The credentials file was refused.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The store's directories could not be made or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An upstream's HTTP client could not be built.
    #[error("mirror upstream {host}: {detail}")]
    Client {
        /// The upstream.
        host: String,
        /// What failed.
        detail: String,
    },
}
