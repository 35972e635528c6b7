//! Which images a device may fetch through the mirror, without I/O: the rule that
//! `agent_link::fetch_grant` feeds from the store and the mirror.
//!
//! The mirror reads every upstream with the hub's credentials, so a device must not be able to
//! read through it what the fleet did not send it: a stolen kiosk would otherwise read every
//! private image. A device may fetch
//! - a **manifest** (by any tag or digest) of a repository that an image ordered onto it names —
//!   a deployed stack's service image, or the image of a live job aimed at it
//!   ([`crate::store::ordered_images`]);
//! - a **blob** asked for under such a repository, only if a manifest of such a repository
//!   references it: its config, a layer, or (an index) a child manifest, whose own references
//!   follow once the child is read.
//!
//! Names are compared as the mirror routes them ([`RepoKey`]): an order's
//! `registry.example/pos/web:4` and the agent's `pos/web` (its loopback registry strips the default
//! upstream's host) are one repository, as are Docker Hub's `nginx` and `library/nginx`.
//!
//! A session remembers the blobs of the manifests it served ([`SessionGrant`], at most
//! [`MAX_GRANTED_BLOBS`]); a blob it has not seen a manifest for (a hub restarted, or another hub
//! held the session when the manifest was read) is looked for among the manifests of the
//! device's ordered images and those the mirror has resolved for its repositories.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::digest::Digest;
use super::name::{split_host, Reference, RepoPath};

/// How long a session believes the device's orders before it reads them again.
pub const ORDERS_TTL: Duration = Duration::from_secs(30);
/// Blobs a session remembers as granted; past this the oldest are forgotten (and found again
/// from the manifests if asked for). ~100 bytes each.
pub const MAX_GRANTED_BLOBS: usize = 4096;
/// Ordered images a session keeps (a device with more is granted the first ones).
pub const MAX_ORDERED_IMAGES: usize = 256;
/// Least time between two look-ups of a session's ordered manifests for a blob it was not served
/// the manifest of: a device asking for blobs of no ordered image costs the upstreams at most
/// one resolution of its orders this often (tags are believed for a minute anyway).
pub const LOOK_UP_EVERY: Duration = Duration::from_secs(10);
/// Reads of the orders a session may make to check refusals (a pull job is sent as it is made, so
/// an order may be a moment newer than the session's copy): a burst of this many, for a device
/// refused just before its order arrived, then one per [`REREAD_BEFORE_REFUSAL_EVERY`]. A device
/// asking again and again for what it was not ordered costs the store that, not a read per request.
pub const REREADS_BEFORE_REFUSAL: u32 = 4;
/// The time a spent refusal re-read takes to come back.
pub const REREAD_BEFORE_REFUSAL_EVERY: Duration = Duration::from_secs(1);
/// References read from one manifest (an index of every platform has a few dozen).
const MAX_REFERENCES: usize = 1024;

/// A repository as the mirror serves it: the upstream (none: a hub serving pushed images only)
/// and the path there, Docker Hub's official images under `library/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoKey {
    /// The upstream's index in the configuration.
    pub upstream: Option<usize>,
    /// The repository's path on it.
    pub repo: String,
}

/// An image as an order names it, split into the name an agent asks the mirror by and the
/// reference it pulls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderedImage {
    /// The repository name, with a registry host if the order gave one other than a loopback
    /// registry's (`127.0.0.1:5380/pos/web` is `pos/web`, as the agent asks for it).
    pub name: String,
    /// The tag (`latest` when none) or digest.
    pub reference: Reference,
}

impl OrderedImage {
    /// Split `image` (`[HOST/]NAME[:TAG][@DIGEST]`); `None` for one outside the grammar, which
    /// nothing could fetch through the mirror anyway.
    pub fn parse(image: &str) -> Option<Self> {
        let (named, digest) = match image.rsplit_once('@') {
            Some((named, digest)) => (named, Some(digest)),
            None => (image, None),
        };
        let last_slash = named.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match named[last_slash..].rfind(':') {
            Some(colon) => (
                &named[..last_slash + colon],
                Some(&named[last_slash + colon + 1..]),
            ),
            None => (named, None),
        };
        let requested = split_host(name).ok()?;
        RepoPath::parse(requested.rest).ok()?;
        let name = match requested.host {
            Some(host) if is_loopback(host) => requested.rest,
            _ => name,
        };
        let reference = Reference::parse(digest.or(tag).unwrap_or("latest")).ok()?;
        Some(Self {
            name: name.to_owned(),
            reference,
        })
    }
}

/// Whether `host` (`host[:port]`) is a device's loopback registry.
fn is_loopback(host: &str) -> bool {
    let bare = host.rsplit_once(':').map_or(host, |(bare, _)| bare);
    bare == "localhost" || bare.starts_with("127.")
}

/// What a manifest references: blobs (its config and layers) and child manifests (an index's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    /// Configs and layers.
    pub blobs: Vec<Digest>,
    /// An index's manifests.
    pub children: Vec<Digest>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct Parsed {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl References {
    /// The references of a manifest or index (OCI or Docker schema 2); none for anything else.
    /// A digest outside the grammar is skipped: nothing could fetch it.
    pub fn of(bytes: &[u8]) -> Self {
        let Ok(parsed) = serde_json::from_slice::<Parsed>(bytes) else {
            return Self::default();
        };
        let digests = |list: Vec<Descriptor>| -> Vec<Digest> {
            list.into_iter()
                .take(MAX_REFERENCES)
                .filter_map(|d| Digest::parse(&d.digest).ok())
                .collect()
        };
        let mut blobs = digests(parsed.config.into_iter().collect());
        blobs.extend(digests(parsed.layers));
        Self {
            blobs,
            children: digests(parsed.manifests),
        }
    }
}

/// One session's grant: the repositories its device's orders name (read from the store now and
/// then) and the blobs of the manifests it was served.
#[derive(Debug, Default)]
pub struct SessionGrant {
    orders: Vec<(RepoKey, OrderedImage)>,
    read_at: Option<Instant>,
    looked_up_at: Option<Instant>,
    blobs: HashMap<Digest, RepoKey>,
    /// `blobs`' keys, oldest first.
    arrival: VecDeque<Digest>,
    /// Refusal re-reads spent, and when the oldest of them comes back.
    rereads: (u32, Option<Instant>),
}

impl SessionGrant {
    /// Whether the orders should be read (again) before deciding at `now`: never read, or older
    /// than [`ORDERS_TTL`]. (A refusal reads them again anyway: see `agent_link::fetch_grant`.)
    pub fn needs_orders(&self, now: Instant) -> bool {
        self.read_at
            .is_none_or(|at| now.saturating_duration_since(at) >= ORDERS_TTL)
    }

    /// Whether a refusal at `now` may read the orders again first ([`REREADS_BEFORE_REFUSAL`]),
    /// and if so, that it does.
    pub fn take_reread(&mut self, now: Instant) -> bool {
        let (spent, back_at) = &mut self.rereads;
        while *spent > 0 && back_at.is_some_and(|at| now >= at) {
            *spent -= 1;
            *back_at = back_at.map(|at| at + REREAD_BEFORE_REFUSAL_EVERY);
        }
        if *spent == 0 {
            *back_at = None;
        }
        if *spent >= REREADS_BEFORE_REFUSAL {
            return false;
        }
        *spent += 1;
        back_at.get_or_insert(now + REREAD_BEFORE_REFUSAL_EVERY);
        true
    }

    /// Whether the orders were read at all this session.
    pub fn has_orders(&self) -> bool {
        self.read_at.is_some()
    }

    /// The device's orders as read at `now`, each with the repository it names (at most
    /// [`MAX_ORDERED_IMAGES`]).
    pub fn set_orders(&mut self, now: Instant, mut orders: Vec<(RepoKey, OrderedImage)>) {
        orders.truncate(MAX_ORDERED_IMAGES);
        if orders != self.orders {
            self.looked_up_at = None;
        }
        self.orders = orders;
        self.read_at = Some(now);
    }

    /// Whether the ordered manifests may be looked up at `now` (none since the orders changed,
    /// or [`LOOK_UP_EVERY`] since the last), and if so, that they are.
    pub fn start_look_up(&mut self, now: Instant) -> bool {
        let due = self
            .looked_up_at
            .is_none_or(|at| now.saturating_duration_since(at) >= LOOK_UP_EVERY);
        if due {
            self.looked_up_at = Some(now);
        }
        due
    }

    /// The ordered images.
    pub fn orders(&self) -> &[(RepoKey, OrderedImage)] {
        &self.orders
    }

    /// Whether the device's orders name repository `key`.
    pub fn allows_repo(&self, key: &RepoKey) -> bool {
        self.orders.iter().any(|(ordered, _)| ordered == key)
    }

    /// Record what a manifest of `key` references, once it was served or found for the device.
    pub fn note_manifest(&mut self, key: &RepoKey, references: &References) {
        for digest in &references.blobs {
            if self.blobs.insert(digest.clone(), key.clone()).is_none() {
                self.arrival.push_back(digest.clone());
            }
        }
        while self.arrival.len() > MAX_GRANTED_BLOBS {
            if let Some(oldest) = self.arrival.pop_front() {
                self.blobs.remove(&oldest);
            }
        }
    }

    /// Whether blob `digest` asked for under repository `key` may be served: the repository is
    /// ordered, and a manifest of an ordered repository references the blob.
    pub fn allows_blob(&self, key: &RepoKey, digest: &Digest) -> bool {
        self.allows_repo(key)
            && self
                .blobs
                .get(digest)
                .is_some_and(|from| self.allows_repo(from))
    }
}

#[cfg(test)]
mod tests;
