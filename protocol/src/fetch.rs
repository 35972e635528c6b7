//! Fetch streams: how an agent's loopback registry gets manifests and blobs from the hub's mirror,
//! resuming a cut blob at the byte where it stopped.
//!
//! ```text
//! agent announces Features(REGISTRY) once per session; a hub with a mirror raises the agent's
//! bidirectional stream credit by MAX_FETCH_STREAMS and says so:
//!   agent ◀─ HubMessage::Registry { streams } ── hub          (wire version 6)
//! then, per manifest or blob, the agent opens a bidirectional stream:
//!   agent → hub: "OPF" version:u8 len:u16be postcard(FetchRequest)  (len ≤ MAX_REQUEST)
//!   agent ← hub: len:u16be postcard(FetchReply)                      (len ≤ MAX_REPLY)
//!   agent ← hub: bytes [offset, size) of the manifest or blob, then FIN
//! ```
//!
//! The agent opens these streams, the reverse of proxy streams ([`crate::stream`]), because the
//! device decides what it lacks and how much of it it already holds: a blob cut by an outage or
//! an agent restart is asked for again `from` the length of its `.partial` file, and the hub
//! answers with the rest. The hub never trusts the request (names, references and digests are
//! parsed by [`crate::registry`] before any is used) and the agent never trusts the reply (the
//! digest is checked against the one asked for, and the whole blob against its digest, before the
//! engine can read it). A hub without the feature never sends `Registry`, so the agent never opens
//! a fetch stream to it (an old hub grants no credit beyond the control stream); an agent without
//! it never announces the feature and is never granted the credit.
//!
//! The hub serves a device only the images the fleet ordered onto it (a deployed stack's, a pull
//! job's): a manifest of another repository, or a blob no such manifest names, is refused
//! [`FetchRefusal::Forbidden`].
//!
//! Versions: 1 — first version (manifests and blobs with a start offset). Later within version 1
//! (nothing changes for those that do not know it): [`FetchRefusal::Forbidden`] at the end of its
//! enum, sent only to agents that announced
//! [`Features::FETCH_FORBIDDEN`](crate::job::Features::FETCH_FORBIDDEN); an older agent, whose
//! decoder refuses a variant index it does not know, is told [`FetchRefusal::NotFound`] with the
//! same words.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::registry::digest::{Digest, DigestError};
use crate::registry::name::{split_host, NameError, Reference, RepoPath, MAX_NAME_LEN};
use crate::wire::{self, WireError, MAX_TEXT};

/// Magic bytes opening every fetch stream.
pub const MAGIC: &[u8; 3] = b"OPF";
/// The fetch preface version this build writes and reads.
pub const FETCH_VERSION: u8 = 1;
/// Largest request body: a name (255), a digest (71) and postcard's lengths fit well within.
pub const MAX_REQUEST: usize = 512;
/// Largest reply body: a digest, a media type (255) or a refusal's message ([`MAX_TEXT`]).
pub const MAX_REPLY: usize = 1024;
/// Fetch streams an agent may have open at once (the engine pulls three layers at a time).
pub const MAX_FETCH_STREAMS: u32 = 4;
/// Largest manifest a hub sends or an agent accepts, as the mirror bounds them upstream.
pub const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// Longest media type passed through.
pub const MAX_MEDIA_TYPE: usize = 255;
/// Most upstream hosts a hub names in `HubMessage::Registry`.
pub const MAX_UPSTREAMS: usize = 16;

/// Whether the upstream hosts a hub named are usable as image name prefixes: at most
/// [`MAX_UPSTREAMS`], each a lowercase `host[:port]` of at most 255 characters.
pub fn check_upstreams(upstreams: &[String]) -> bool {
    let host_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-:".contains(&b);
    upstreams.len() <= MAX_UPSTREAMS
        && upstreams
            .iter()
            .all(|h| !h.is_empty() && h.len() <= 255 && h.bytes().all(host_char))
}

/// What one fetch stream asks for, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The repository name as the engine wrote it (a leading host picks the hub's upstream).
    pub name: String,
    /// The manifest or blob.
    pub target: FetchTarget,
}

/// A manifest by tag or digest, or a blob from a byte on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchTarget {
    /// A manifest: a tag or a `sha256:` digest.
    Manifest {
        /// The reference.
        reference: String,
    },
    /// A blob, from byte `offset` (the length of what the agent already holds).
    Blob {
        /// Its digest.
        digest: String,
        /// The first byte wanted.
        offset: u64,
    },
}

/// A request after its fields were checked: what the hub acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The repository name, valid by the grammar.
    pub name: String,
    /// What is wanted.
    pub wanted: Wanted,
}

/// A checked target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// A manifest.
    Manifest(Reference),
    /// A blob from `offset` on.
    Blob {
        /// Its digest.
        digest: Digest,
        /// The first byte wanted.
        offset: u64,
    },
}

/// The hub's answer, before the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchReply {
    /// Found: the bytes `[offset, size)` follow.
    Found {
        /// The content's digest.
        digest: String,
        /// Its whole size.
        size: u64,
        /// A manifest's media type (`application/octet-stream` for a blob).
        media_type: String,
    },
    /// Not served, and why.
    Refused {
        /// Machine-readable reason.
        reason: FetchRefusal,
        /// What happened, for the device's log and the engine's error.
        message: String,
    },
}

/// Why a hub refused a fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchRefusal {
    /// No such repository, manifest or blob upstream.
    NotFound,
    /// The request did not parse (a name, a reference, an offset past the end).
    Invalid,
    /// The upstream failed.
    Upstream,
    /// The upstream sent bytes that do not match their digest; the hub kept none of them.
    Corrupt,
    /// The hub serves no registry.
    Unavailable,
    /// Background transfers to this device are held back, not failed: ask again at `retry_at`
    /// (seconds since the Unix epoch; sooner is refused again, at the cost of a round trip).
    /// Sent only to agents that announced [`Features::DEFERRAL`](crate::job::Features::DEFERRAL).
    /// A blob the hub stops part-way for this reason ends early (FIN before its size): every
    /// byte sent arrives, and asking again from them is answered with this refusal.
    Deferred {
        /// What holds them back.
        cause: DeferCause,
        /// When to ask again.
        retry_at: u64,
    },
    /// The fleet ordered nothing onto this device that names this image (its repository, or a
    /// manifest of it that references this blob): the hub's upstream credentials are not the
    /// device's. Not worth retrying until an order names the image. Sent only to agents that
    /// announced [`Features::FETCH_FORBIDDEN`](crate::job::Features::FETCH_FORBIDDEN).
    Forbidden,
}

/// Why the hub holds a device's background transfers back (`budget` or `window` in JSON; the
/// wire encodes the variant's index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeferCause {
    /// The device's byte budget for the period is spent.
    Budget,
    /// Outside the device's transfer window.
    Window,
}

impl DeferCause {
    /// The word the endpoint view and a deferred phase show: `budget` or `window`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Budget => "budget",
            Self::Window => "window",
        }
    }
}

/// Why a fetch preface could not be read.
#[derive(Debug, Error)]
pub enum FetchError {
    /// The stream does not start with the magic bytes.
    #[error("not an Outpost fetch stream (bad magic)")]
    BadMagic,
    /// A preface version this build does not speak.
    #[error("fetch stream version {0} is not supported (this build speaks {FETCH_VERSION})")]
    UnsupportedVersion(u8),
    /// Length above the limit.
    #[error("fetch stream preface of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A name or reference outside the grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A digest that is not `sha256:<64 hex>`.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A reply that does not fit its request (another digest, an offset past the end, a manifest
    /// over [`MAX_MANIFEST`], an unprintable media type or message).
    #[error("fetch reply refused: {0}")]
    BadReply(&'static str),
    /// Body did not decode, or the stream broke.
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl From<std::io::Error> for FetchError {
    fn from(e: std::io::Error) -> Self {
        Self::Wire(WireError::Io(e))
    }
}

impl FetchRequest {
    /// Check every field against the registry grammar.
    pub fn check(self) -> Result<Fetch, FetchError> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong.into());
        }
        RepoPath::parse(split_host(&self.name)?.rest)?;
        let wanted = match self.target {
            FetchTarget::Manifest { reference } => Wanted::Manifest(Reference::parse(&reference)?),
            FetchTarget::Blob { digest, offset } => Wanted::Blob {
                digest: Digest::parse(&digest)?,
                offset,
            },
        };
        Ok(Fetch {
            name: self.name,
            wanted,
        })
    }
}

impl Fetch {
    /// The request as it travels.
    pub fn to_request(&self) -> FetchRequest {
        let target = match &self.wanted {
            Wanted::Manifest(reference) => FetchTarget::Manifest {
                reference: reference.as_str().to_owned(),
            },
            Wanted::Blob { digest, offset } => FetchTarget::Blob {
                digest: digest.as_str().to_owned(),
                offset: *offset,
            },
        };
        FetchRequest {
            name: self.name.clone(),
            target,
        }
    }
}

/// A `Found` reply checked against its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The content's digest (the one asked for, for a blob or a manifest by digest).
    pub digest: Digest,
    /// Its whole size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// Check a reply against the request it answers: `Ok(Err(..))` is the hub's refusal.
pub fn check_reply(
    fetch: &Fetch,
    reply: FetchReply,
) -> Result<Result<Found, (FetchRefusal, String)>, FetchError> {
    let (digest, size, media_type) = match reply {
        FetchReply::Refused { reason, message } => {
            crate::text::device_text(&message)
                .map_err(|_| FetchError::BadReply("unprintable refusal"))?;
            return Ok(Err((reason, message)));
        }
        FetchReply::Found {
            digest,
            size,
            media_type,
        } => (Digest::parse(&digest)?, size, media_type),
    };
    let printable = media_type
        .bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ');
    if media_type.is_empty() || media_type.len() > MAX_MEDIA_TYPE || !printable {
        return Err(FetchError::BadReply("media type"));
    }
    match &fetch.wanted {
        Wanted::Blob {
            digest: asked,
            offset,
        } => {
            if *asked != digest {
                return Err(FetchError::BadReply("another blob's digest"));
            }
            if *offset > size {
                return Err(FetchError::BadReply("offset past the blob's end"));
            }
        }
        Wanted::Manifest(reference) => {
            if matches!(reference, Reference::Digest(asked) if *asked != digest) {
                return Err(FetchError::BadReply("another manifest's digest"));
            }
            if size > MAX_MANIFEST {
                return Err(FetchError::BadReply("manifest too large"));
            }
        }
    }
    Ok(Ok(Found {
        digest,
        size,
        media_type,
    }))
}

/// Encode a request with its preface.
pub fn encode_request(request: &FetchRequest) -> Vec<u8> {
    let body = wire::encode(request);
    let mut out = Vec::with_capacity(6 + body.len());
    out.extend_from_slice(MAGIC);
    out.push(FETCH_VERSION);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Read and check a request: magic, version and length before the body, every field after.
pub async fn read_request<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Fetch, FetchError> {
    let mut fixed = [0u8; 6];
    reader.read_exact(&mut fixed).await?;
    if &fixed[..3] != MAGIC {
        return Err(FetchError::BadMagic);
    }
    if fixed[3] != FETCH_VERSION {
        return Err(FetchError::UnsupportedVersion(fixed[3]));
    }
    let len = u16::from_be_bytes([fixed[4], fixed[5]]) as usize;
    read_body::<FetchRequest, _>(reader, len, MAX_REQUEST)
        .await?
        .check()
}

/// Write the hub's reply; a refusal's message is cut to [`MAX_TEXT`] bytes.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    writer: &mut W,
    reply: &FetchReply,
) -> Result<(), FetchError> {
    let mut reply = reply.clone();
    if let FetchReply::Refused { message, .. } = &mut reply {
        let mut end = message.len().min(MAX_TEXT);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    let body = wire::encode(&reply);
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    writer.write_all(&out).await?;
    Ok(())
}

/// Read the hub's reply (checked against its request with [`check_reply`]).
pub async fn read_reply<R: AsyncRead + Unpin>(reader: &mut R) -> Result<FetchReply, FetchError> {
    let mut len = [0u8; 2];
    reader.read_exact(&mut len).await?;
    read_body(reader, u16::from_be_bytes(len) as usize, MAX_REPLY).await
}

async fn read_body<T, R>(reader: &mut R, len: usize, max: usize) -> Result<T, FetchError>
where
    T: serde::de::DeserializeOwned,
    R: AsyncRead + Unpin,
{
    if len > max {
        return Err(FetchError::Oversized { len, max });
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(wire::decode(&body)?)
}

#[cfg(test)]
mod tests;
