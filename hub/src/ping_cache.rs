//! A session's copy of its engine's answer to the docker CLI's `/_ping`, kept for [`PING_TTL`].
//!
//! Every docker command starts with a ping (API version negotiation); the engine's answer changes
//! only when the engine does, so the proxy keeps each session's first `200 OK` and answers later
//! pings itself (`crate::proxy::ping`). The cache lives with the session (the registry holds one
//! per live session) and knows neither the proxy nor the registry, so both may use it without
//! depending on each other; [`crate::ping_carry`] hands it to the device's next session.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tokio::time::Instant;

/// How long an engine's ping answer is reused: an engine upgraded under a connected agent is
/// seen within this.
pub(crate) const PING_TTL: Duration = Duration::from_secs(300);
/// Marks the hub's own answers.
pub(crate) const ANSWERED_BY: &str = "outpost-ping";

/// The headers of an engine's last `200 OK` to `/_ping`.
#[derive(Clone, Debug)]
pub(crate) struct CachedPing {
    headers: HeaderMap,
    stored_at: Instant,
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

    /// A copy of the cached ping, if fresh at `now` (for the device's next session:
    /// [`crate::ping_carry`]).
    pub(crate) fn fresh_copy(&self, now: Instant) -> Option<CachedPing> {
        let guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_deref().filter(|c| c.is_fresh(now)).cloned()
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
}
