//! What the mirror did, as plain atomics: cheap on every request, read whole by
//! [`super::Mirror::counters`] (for the endpoint view, tests and, later, the metrics).

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since the hub started.
#[derive(Debug, Default)]
pub struct Counters {
    blob_fetches: AtomicU64,
    manifest_fetches: AtomicU64,
    upstream_bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    refused: AtomicU64,
    agent_fetches: AtomicU64,
    resumed_fetches: AtomicU64,
    agent_bytes: AtomicU64,
    agent_forbidden: AtomicU64,
}

/// A reading of [`Counters`] plus what the store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorCounters {
    /// Blob fetches from upstreams (successful or not).
    pub blob_fetches: u64,
    /// Manifest fetches from upstreams.
    pub manifest_fetches: u64,
    /// Bytes received from upstreams (blobs and manifests).
    pub upstream_bytes: u64,
    /// Requests answered from the store.
    pub hits: u64,
    /// Requests that needed an upstream.
    pub misses: u64,
    /// Upstream answers refused because their bytes were not their digest.
    pub refused: u64,
    /// Fetch streams agents opened (manifests and blobs).
    pub agent_fetches: u64,
    /// Of those, blob fetches that resumed from a byte past 0.
    pub resumed_fetches: u64,
    /// Bytes sent to agents on fetch streams.
    pub agent_bytes: u64,
    /// Fetch streams refused because the image was not ordered onto the device.
    pub agent_forbidden: u64,
    /// Bytes of blobs in the store.
    pub stored_bytes: u64,
    /// Blobs in the store.
    pub stored_blobs: u64,
}

/// Which counter.
#[derive(Clone, Copy, Debug)]
pub enum Count {
    /// A blob fetch started.
    BlobFetch,
    /// A manifest fetch started.
    ManifestFetch,
    /// Bytes arrived from an upstream.
    UpstreamBytes,
    /// A request was answered from the store.
    Hit,
    /// A request needed an upstream.
    Miss,
    /// An upstream answer was refused for its digest.
    Refused,
    /// An agent opened a fetch stream.
    AgentFetch,
    /// An agent's blob fetch started past byte 0.
    ResumedFetch,
    /// Bytes went to an agent on a fetch stream.
    AgentBytes,
    /// An agent asked for an image not ordered onto its device.
    AgentForbidden,
}

impl Counters {
    /// Add `n` to a counter.
    pub fn add(&self, which: Count, n: u64) {
        let counter = match which {
            Count::BlobFetch => &self.blob_fetches,
            Count::ManifestFetch => &self.manifest_fetches,
            Count::UpstreamBytes => &self.upstream_bytes,
            Count::Hit => &self.hits,
            Count::Miss => &self.misses,
            Count::Refused => &self.refused,
            Count::AgentFetch => &self.agent_fetches,
            Count::ResumedFetch => &self.resumed_fetches,
            Count::AgentBytes => &self.agent_bytes,
            Count::AgentForbidden => &self.agent_forbidden,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Read them all, with the store's holdings.
    pub fn read(&self, (stored_bytes, stored_blobs): (u64, usize)) -> MirrorCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MirrorCounters {
            blob_fetches: get(&self.blob_fetches),
            manifest_fetches: get(&self.manifest_fetches),
            upstream_bytes: get(&self.upstream_bytes),
            hits: get(&self.hits),
            misses: get(&self.misses),
            refused: get(&self.refused),
            agent_fetches: get(&self.agent_fetches),
            resumed_fetches: get(&self.resumed_fetches),
            agent_bytes: get(&self.agent_bytes),
            agent_forbidden: get(&self.agent_forbidden),
            stored_bytes,
            stored_blobs: stored_blobs as u64,
        }
    }
}
