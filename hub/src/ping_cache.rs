//! A session's copy of its engine's answer to the docker CLI's `/_ping`, kept for [`PING_TTL`].
//!
//! Every docker command starts with a ping (API version negotiation); the engine's answer changes
//! only when the engine does, so the proxy keeps each session's first `200 OK` and answers later
//! pings itself (`crate::proxy::ping`). The cache lives with the session (the registry holds one
//! per live session) and knows neither the proxy nor the registry, so both may use it without
//! depending on each other; [`crate::ping_carry`] hands it to the device's next session.
//!
//! An answer older than [`REFRESH_AFTER`] is still given, and the proxy asks the engine again
//! beside the command's next real request ([`PingCache::claim_refresh`]), which summons the
//! device anyway. Without that, an answer lived its [`PING_TTL`] and the first command after it
//! paid the ping's round trip, 1.1 s on GEO with the summon: the `link_profiles` bench's third
//! `load` after a reconnect (5.9-6.4 s against 5.3 s) in sessions 30-32, as its first ping's
//! answer, carried from connection to connection, came of age.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tokio::time::Instant;

/// How long an engine's ping answer is reused: an engine upgraded under a connected agent is
/// seen within this.
pub(crate) const PING_TTL: Duration = Duration::from_secs(300);
/// How old an answer may be before the proxy refreshes it behind the CLI: a fifth of the TTL,
/// so a device used at least every four minutes never pays for a ping, and an engine upgraded
/// under a connected agent is seen from the first command a minute after.
pub(crate) const REFRESH_AFTER: Duration = Duration::from_secs(60);
/// How long a claimed refresh keeps others from starting: the proxy's deadline for the agent's
/// reply to a stream; a refresh that failed is tried again after it.
const REFRESH_CLAIM: Duration = Duration::from_secs(30);
/// Marks the hub's own answers.
pub(crate) const ANSWERED_BY: &str = "outpost-ping";

/// The headers of an engine's last `200 OK` to `/_ping`.
#[derive(Clone, Debug)]
pub(crate) struct CachedPing {
    headers: HeaderMap,
    stored_at: Instant,
    /// When a refresh of this answer was last claimed.
    refresh_claimed: Option<Instant>,
}

/// A session's cached ping; boxed, so a session without one costs a pointer.
#[derive(Debug, Default)]
pub(crate) struct PingCache(Mutex<Option<Box<CachedPing>>>);

impl CachedPing {
    /// Whether it may still answer at `now`.
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        now.duration_since(self.stored_at) < PING_TTL
    }

    /// The `Server` header the engine answered with (`Docker/VERSION (OS)`).
    pub(crate) fn server(&self) -> Option<&str> {
        self.headers.get(header::SERVER)?.to_str().ok()
    }
}

impl PingCache {
    /// The hub's answer, if the cache holds a fresh one; marked `Outpost-Ping: hub`.
    pub(crate) fn answer(&self, now: Instant) -> Option<Response<Body>> {
        let guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = guard
            .as_ref()
            .filter(|c| now.duration_since(c.stored_at) < PING_TTL)?;
        let mut response = Response::new(Body::from("OK"));
        *response.status_mut() = StatusCode::OK;
        *response.headers_mut() = cached.headers.clone();
        response.headers_mut().insert(
            HeaderName::from_static(ANSWERED_BY),
            HeaderValue::from_static("hub"),
        );
        Some(response)
    }

    /// Whether to ask the engine again behind an answer given at `now`: the answer is older
    /// than [`REFRESH_AFTER`], still fresh, and no refresh was claimed within the last
    /// [`REFRESH_CLAIM`]. True once per claim: the caller refreshes.
    pub(crate) fn claim_refresh(&self, now: Instant) -> bool {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(cached) = guard.as_deref_mut() else {
            return false;
        };
        let due = cached.is_fresh(now) && now.duration_since(cached.stored_at) >= REFRESH_AFTER;
        let claimed = cached
            .refresh_claimed
            .is_some_and(|at| now.duration_since(at) < REFRESH_CLAIM);
        if due && !claimed {
            cached.refresh_claimed = Some(now);
        }
        due && !claimed
    }

    /// A copy of the cached ping, if fresh at `now` (for the device's next session:
    /// [`crate::ping_carry`]), without this session's refresh claim.
    pub(crate) fn fresh_copy(&self, now: Instant) -> Option<CachedPing> {
        let guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut copy = guard.as_deref().filter(|c| c.is_fresh(now)).cloned()?;
        copy.refresh_claimed = None;
        Some(copy)
    }

    /// Install `ping`, carried from the device's previous session, unless this session cached
    /// its own already; it keeps its age, so [`PING_TTL`] still bounds it.
    pub(crate) fn adopt(&self, ping: CachedPing) {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(Box::new(ping));
        }
    }

    /// Keep the headers of an engine's `200 OK` to a ping (without those that describe one
    /// message).
    pub(crate) fn remember(&self, headers: &HeaderMap, now: Instant) {
        let mut kept = headers.clone();
        for hop in [
            header::CONTENT_LENGTH,
            header::DATE,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ] {
            kept.remove(hop);
        }
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(CachedPing {
            headers: kept,
            stored_at: now,
            refresh_claimed: None,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_ping_is_answered_until_it_is_stale() {
        let cache = PingCache::default();
        let start = Instant::now();
        assert!(cache.answer(start).is_none());
        let mut headers = HeaderMap::new();
        headers.insert("api-version", HeaderValue::from_static("1.41"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        cache.remember(&headers, start);
        let answered = cache.answer(start + Duration::from_secs(1)).unwrap();
        assert_eq!(answered.status(), StatusCode::OK);
        assert_eq!(answered.headers()["api-version"], "1.41");
        assert_eq!(answered.headers()[ANSWERED_BY], "hub");
        assert!(!answered.headers().contains_key(header::CONTENT_LENGTH));
        assert!(cache.answer(start + PING_TTL).is_none());
    }

    #[test]
    fn an_answer_past_the_refresh_age_is_refreshed_once_per_claim_until_it_is_stale() {
        let cache = PingCache::default();
        let start = Instant::now();
        assert!(!cache.claim_refresh(start), "nothing cached");
        cache.remember(&HeaderMap::new(), start);
        assert!(!cache.claim_refresh(start + REFRESH_AFTER / 2), "young");
        let due = start + REFRESH_AFTER;
        assert!(cache.claim_refresh(due));
        assert!(!cache.claim_refresh(due), "claimed already");
        assert!(
            !cache.claim_refresh(due + REFRESH_CLAIM / 2),
            "a refresh is in flight"
        );
        assert!(
            cache.fresh_copy(due).unwrap().refresh_claimed.is_none(),
            "a carried answer is not claimed in the next session"
        );
        assert!(
            cache.claim_refresh(due + REFRESH_CLAIM),
            "a refresh that never answered is tried again"
        );
        assert!(cache.answer(due + REFRESH_CLAIM).is_some(), "still given");
        assert!(
            !cache.claim_refresh(start + PING_TTL),
            "stale: the CLI's ping goes to the engine"
        );
        let refreshed = due + REFRESH_CLAIM;
        cache.remember(&HeaderMap::new(), refreshed);
        assert!(!cache.claim_refresh(refreshed + REFRESH_AFTER / 2));
        assert!(
            cache.answer(start + PING_TTL).is_some(),
            "the refresh renewed it"
        );
    }
}
