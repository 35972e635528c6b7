//! Manifests the registry fetched a moment ago, kept to answer the engine's next request for the
//! same content without another round trip to the hub.
//!
//! `docker pull` asks for a manifest twice: `HEAD …/manifests/TAG` to learn its digest, then
//! `GET …/manifests/DIGEST` for the body. The hub's answer to the first already carried the body,
//! so on GEO the second cost a whole round trip (0.62 s of a 25.1 s 50 MB pull in the
//! `image_pull` bench) for bytes the agent had just verified. A manifest named by its digest is
//! content: a copy fetched for the same repository within [`KEEP_FOR`] is that content, and the
//! hub's word on whether this device may have it was given moments ago. Past that, or for a tag
//! (which may move), the hub is asked again: it stays the authority over what a device may pull.
//!
//! Bounded by count: manifests are small (the fetch protocol caps them), and a pull needs only
//! the last few (a tag's, then an index's child).

use std::collections::VecDeque;
use std::time::Duration;

use outpost_protocol::fetch::Found;
use outpost_protocol::registry::digest::Digest;
use tokio::time::Instant;

/// How long a fetched manifest answers a request by its digest: far longer than the gap between
/// the engine's `HEAD` and `GET` (milliseconds), far shorter than an order's life.
pub(super) const KEEP_FOR: Duration = Duration::from_secs(60);
/// Manifests kept at most.
pub(super) const KEPT: usize = 16;

/// One fetched manifest.
#[derive(Debug)]
struct Kept {
    repo: String,
    found: Found,
    bytes: Vec<u8>,
    fetched: Instant,
}

/// The manifests fetched last, newest at the back.
#[derive(Debug, Default)]
pub(super) struct RecentManifests {
    kept: VecDeque<Kept>,
}

impl RecentManifests {
    /// `repo`'s manifest `found` (already verified against its digest) was fetched at `now`.
    pub(super) fn keep(&mut self, repo: &str, found: &Found, bytes: &[u8], now: Instant) {
        self.kept
            .retain(|k| !(k.repo == repo && k.found.digest == found.digest));
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(Kept {
            repo: repo.to_owned(),
            found: found.clone(),
            bytes: bytes.to_vec(),
            fetched: now,
        });
    }

    /// The manifest of `repo` whose digest is `digest`, if fetched within [`KEEP_FOR`] of `now`.
    pub(super) fn get(
        &mut self,
        repo: &str,
        digest: &Digest,
        now: Instant,
    ) -> Option<(Found, Vec<u8>)> {
        self.kept
            .retain(|k| now.saturating_duration_since(k.fetched) < KEEP_FOR);
        self.kept
            .iter()
            .find(|k| k.repo == repo && &k.found.digest == digest)
            .map(|k| (k.found.clone(), k.bytes.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(body: &str) -> (Found, Vec<u8>) {
        let bytes = body.as_bytes().to_vec();
        let found = Found {
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        };
        (found, bytes)
    }

    #[test]
    fn a_manifest_just_fetched_answers_a_request_by_its_digest_in_that_repository_only() {
        let mut recent = RecentManifests::default();
        let now = Instant::now();
        let (found, bytes) = manifest("{\"layers\":[]}");
        recent.keep("pos/web", &found, &bytes, now);

        let (again, body) = recent.get("pos/web", &found.digest, now).unwrap();
        assert_eq!((again, body), (found.clone(), bytes));
        assert!(
            recent.get("pos/other", &found.digest, now).is_none(),
            "another repository asks the hub, which decides what this device may have"
        );
        let (other, _) = manifest("{}");
        assert!(recent.get("pos/web", &other.digest, now).is_none());
    }

    #[test]
    fn a_kept_manifest_expires_and_the_hub_is_asked_again() {
        let mut recent = RecentManifests::default();
        let now = Instant::now();
        let (found, bytes) = manifest("{\"layers\":[]}");
        recent.keep("pos/web", &found, &bytes, now);
        let almost = now + KEEP_FOR - Duration::from_millis(1);
        assert!(recent.get("pos/web", &found.digest, almost).is_some());
        assert!(recent
            .get("pos/web", &found.digest, now + KEEP_FOR)
            .is_none());
        assert!(
            recent.get("pos/web", &found.digest, now).is_none(),
            "an expired manifest is gone, not only hidden"
        );
    }

    #[test]
    fn only_the_newest_manifests_are_kept_and_a_refetch_counts_as_new() {
        let mut recent = RecentManifests::default();
        let now = Instant::now();
        let manifests: Vec<_> = (0..=KEPT)
            .map(|i| manifest(&format!("{{\"n\":{i}}}")))
            .collect();
        for (found, bytes) in &manifests {
            recent.keep("pos/web", found, bytes, now);
        }
        // The first was dropped for the last; fetching the second again makes it the newest.
        let (second, second_bytes) = &manifests[1];
        recent.keep("pos/web", second, second_bytes, now);
        let (third, third_bytes) = manifest("{\"n\":\"more\"}");
        recent.keep("pos/web", &third, &third_bytes, now);
        assert!(recent.get("pos/web", &manifests[0].0.digest, now).is_none());
        assert!(recent.get("pos/web", &manifests[2].0.digest, now).is_none());
        assert!(recent.get("pos/web", &second.digest, now).is_some());
        assert_eq!(recent.kept.len(), KEPT);
    }
}
