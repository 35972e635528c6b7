//! The docker CLI's `/_ping`, answered by the hub once the device's engine has answered it.
//!
//! Every docker command starts with `GET` or `HEAD /_ping` (API version negotiation) before its
//! real call: one more round trip to the device, 0.6 s on a GEO link, on every command (the link
//! bench). The engine's answer changes only when the engine does, so the hub keeps the first
//! answer of each session for [`PING_TTL`] and answers later pings itself, without summoning the
//! device; its answers carry `Outpost-Ping: hub`.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use tokio::time::Instant;

/// How long an engine's ping answer is reused: an engine upgraded under a connected agent is
/// seen within this.
pub(crate) const PING_TTL: Duration = Duration::from_secs(300);
/// Marks the hub's own answers.
pub(crate) const ANSWERED_BY: &str = "outpost-ping";

/// The headers of an engine's last `200 OK` to `/_ping`.
#[derive(Debug)]
pub(crate) struct CachedPing {
    headers: HeaderMap,
    stored_at: Instant,
}

/// A session's cached ping; boxed, so a session without one costs a pointer.
pub(crate) type PingCache = Mutex<Option<Box<CachedPing>>>;

/// Whether `method` and the engine path `rest` (after `/docker/`) are a ping.
pub(crate) fn is_ping(method: &Method, rest: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let path = rest
        .split('?')
        .next()
        .unwrap_or(rest)
        .trim_start_matches('/');
    let unversioned = match path.split_once('/') {
        Some((version, tail)) if is_api_version(version) => tail,
        _ => path,
    };
    unversioned == "_ping"
}

fn is_api_version(segment: &str) -> bool {
    segment.strip_prefix('v').is_some_and(|v| {
        v.split_once('.').is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major
                    .bytes()
                    .chain(minor.bytes())
                    .all(|b| b.is_ascii_digit())
        })
    })
}

/// The hub's answer from `cache`, if it holds a fresh one.
pub(crate) fn answer(cache: &PingCache, now: Instant) -> Option<Response<Body>> {
    let guard = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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

/// Keep the headers of an engine's `200 OK` to a ping (without those that describe one message).
pub(crate) fn remember(cache: &PingCache, headers: &HeaderMap, now: Instant) {
    let mut kept = headers.clone();
    for hop in [
        header::CONTENT_LENGTH,
        header::DATE,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ] {
        kept.remove(hop);
    }
    *cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Box::new(CachedPing {
        headers: kept,
        stored_at: now,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_recognised_with_or_without_an_api_version() {
        for rest in ["_ping", "/_ping", "v1.41/_ping", "v1.47/_ping?x=1"] {
            assert!(is_ping(&Method::GET, rest), "{rest}");
            assert!(is_ping(&Method::HEAD, rest), "{rest}");
        }
        for (method, rest) in [
            (Method::POST, "_ping"),
            (Method::GET, "containers/json"),
            (Method::GET, "v1.41/containers/_ping"),
            (Method::GET, "vx.1/_ping"),
            (Method::GET, "v1./_ping"),
            (Method::GET, "_pingx"),
        ] {
            assert!(!is_ping(&method, rest), "{method} {rest}");
        }
    }

    #[test]
    fn a_remembered_ping_is_answered_until_it_is_stale() {
        let cache = PingCache::default();
        let start = Instant::now();
        assert!(answer(&cache, start).is_none());
        let mut headers = HeaderMap::new();
        headers.insert("api-version", HeaderValue::from_static("1.41"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        remember(&cache, &headers, start);
        let answered = answer(&cache, start + Duration::from_secs(1)).unwrap();
        assert_eq!(answered.status(), StatusCode::OK);
        assert_eq!(answered.headers()["api-version"], "1.41");
        assert_eq!(answered.headers()[ANSWERED_BY], "hub");
        assert!(!answered.headers().contains_key(header::CONTENT_LENGTH));
        assert!(answer(&cache, start + PING_TTL).is_none());
    }
}
