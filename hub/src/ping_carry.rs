//! A device's cached `/_ping` answer, carried from one of its sessions to the next.
//!
//! The proxy answers the docker CLI's pings from the session's cache ([`crate::ping_cache`]), but
//! a new session starts empty, so the first command after every reconnect — an agent restart, a
//! power cut, a hub restart is not one (the hub's memory goes with it) — paid a round trip to the
//! engine for the ping before its own request: 0.6 s on a GEO link, on the transfer the
//! `link_profiles` bench times after a reconnect.
//!
//! The answer is only carried to a session whose engine is provably the same: the agent sends an
//! engine snapshot at connect (`EngineSnapshot::engine_version`, `docker version`'s server
//! version), and the ping's own `Server` header names the engine that gave it
//! (`Docker/20.10.24+dfsg1 (linux)`). An engine upgraded or replaced while the agent was away
//! shows another version, and its first ping goes to it as before. The answer keeps its age, so
//! [`crate::ping_cache::PING_TTL`] bounds it across sessions as within one. No I/O.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use outpost_protocol::EndpointId;
use tokio::time::Instant;

use crate::ping_cache::{CachedPing, PingCache};

/// Answers held for devices between sessions, at most one each.
#[derive(Debug, Default)]
pub(crate) struct PingCarry {
    held: Mutex<HashMap<EndpointId, CachedPing>>,
}

impl PingCarry {
    /// A session of `endpoint` ended or was replaced at `now`: hold its fresh answer for the next.
    /// Answers gone stale are dropped on the way, so the map holds only devices whose session
    /// ended within the TTL.
    pub(crate) fn keep(&self, endpoint: EndpointId, ended: &PingCache, now: Instant) {
        let Some(ping) = ended.fresh_copy(now) else {
            return;
        };
        let mut held = self.lock();
        if held.len() >= 64 && held.len().is_power_of_two() {
            held.retain(|_, ping| ping.is_fresh(now));
        }
        held.insert(endpoint, ping);
    }

    /// A new session of `endpoint` showed an engine of `engine_version` at `now`: its cache takes
    /// the held answer if that engine gave it and it is still fresh. Either way the held answer
    /// is gone.
    pub(crate) fn restore(
        &self,
        endpoint: EndpointId,
        engine_version: &str,
        into: &PingCache,
        now: Instant,
    ) -> bool {
        let Some(ping) = self.lock().remove(&endpoint) else {
            return false;
        };
        let same_engine = ping
            .server()
            .is_some_and(|server| names(server, engine_version));
        let carried = same_engine && ping.is_fresh(now);
        if carried {
            into.adopt(ping);
        }
        carried
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, CachedPing>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether an engine's `Server` header (`Docker/VERSION (OS)`) names `engine_version`.
fn names(server: &str, engine_version: &str) -> bool {
    let version = server
        .strip_prefix("Docker/")
        .and_then(|rest| rest.split_whitespace().next());
    !engine_version.is_empty() && version == Some(engine_version)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{header, HeaderMap, HeaderValue};

    use super::*;
    use crate::ping_cache::PING_TTL;

    const ENGINE: &str = "20.10.24+dfsg1";

    fn pinged(at: Instant) -> PingCache {
        let cache = PingCache::default();
        let mut headers = HeaderMap::new();
        headers.insert("api-version", HeaderValue::from_static("1.41"));
        let server = HeaderValue::from_static("Docker/20.10.24+dfsg1 (linux)");
        headers.insert(header::SERVER, server);
        cache.remember(&headers, at);
        cache
    }

    #[test]
    fn the_next_session_of_the_same_engine_answers_the_first_ping_itself() {
        let (carry, start) = (PingCarry::default(), Instant::now());
        let id = EndpointId(7);
        carry.keep(id, &pinged(start), start);
        let next = PingCache::default();
        let later = start + Duration::from_secs(30);
        assert!(
            !carry.restore(EndpointId(8), ENGINE, &next, later),
            "another device's"
        );
        assert!(carry.restore(id, ENGINE, &next, later));
        let answer = next.answer(later).unwrap();
        assert_eq!(answer.headers()["api-version"], "1.41");
        assert!(
            next.answer(start + PING_TTL).is_none(),
            "a carried answer keeps its age"
        );
        assert!(
            !carry.restore(id, ENGINE, &PingCache::default(), later),
            "once"
        );
    }

    #[test]
    fn another_engine_or_a_stale_answer_is_not_carried() {
        let (carry, start) = (PingCarry::default(), Instant::now());
        let id = EndpointId(7);
        carry.keep(id, &pinged(start), start);
        let next = PingCache::default();
        assert!(!carry.restore(id, "27.3.1", &next, start));
        assert!(next.answer(start).is_none(), "an upgraded engine is asked");
        assert!(
            !carry.restore(id, ENGINE, &next, start),
            "and the answer is dropped"
        );

        carry.keep(id, &pinged(start), start);
        assert!(!carry.restore(id, ENGINE, &next, start + PING_TTL));
        assert!(!carry.restore(id, "", &next, start));
        carry.keep(id, &PingCache::default(), start);
        assert!(
            !carry.restore(id, ENGINE, &next, start),
            "nothing cached, nothing kept"
        );
    }

    #[test]
    fn a_session_that_cached_its_own_answer_keeps_it() {
        let (carry, start) = (PingCarry::default(), Instant::now());
        carry.keep(EndpointId(7), &pinged(start), start);
        let next = pinged(start + Duration::from_secs(100));
        carry.restore(
            EndpointId(7),
            ENGINE,
            &next,
            start + Duration::from_secs(100),
        );
        assert!(
            next.answer(start + PING_TTL).is_some(),
            "its own, newer answer"
        );
    }

    #[test]
    fn stale_answers_leave_the_map_as_it_grows() {
        let (carry, start) = (PingCarry::default(), Instant::now());
        for n in 0..64 {
            carry.keep(EndpointId(n), &pinged(start), start);
        }
        let later = start + PING_TTL;
        carry.keep(EndpointId(1000), &pinged(later), later);
        assert_eq!(carry.lock().len(), 1);
    }

    #[test]
    fn the_server_header_names_its_engine() {
        assert!(names("Docker/27.3.1 (linux)", "27.3.1"));
        assert!(!names("Docker/27.3.1 (linux)", "27.3"));
        assert!(!names("nginx/1.25", "1.25"));
        assert!(!names("Docker/", ""));
    }
}
