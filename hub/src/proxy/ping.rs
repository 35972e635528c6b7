//! The docker CLI's `/_ping`, answered by the hub once the device's engine has answered it.
//!
//! Every docker command starts with `GET` or `HEAD /_ping` (API version negotiation) before its
//! real call: one more round trip to the device, 0.6 s on a GEO link, on every command (the link
//! bench). The hub keeps the first answer of each session ([`crate::ping_cache`]) and answers later
//! pings itself, without summoning the device, and refreshes an answer past its refresh age
//! beside the command's next real request ([`refresh_behind`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use tracing::debug;

use super::Route;
use crate::context::HubContext;
use crate::registry::LiveSession;

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

/// Ask the device's engine for `/_ping` on a task of its own, for the session's cache to take the
/// answer: the cached answer is due for a refresh
/// ([`crate::ping_cache::PingCache::claim_refresh`]) and a real request has just opened its
/// stream, which summoned the device anyway.
pub(super) fn refresh_behind(ctx: Arc<HubContext>, session: Arc<LiveSession>, route: Route) {
    let endpoint = session.endpoint;
    let uri = format!("{}endpoints/{}/docker/_ping", route.base, route.id);
    let request = match Request::get(uri).body(Body::empty()) {
        Ok(request) => request,
        Err(e) => return debug!(%endpoint, "ping refresh not built: {e}"),
    };
    tokio::spawn(async move {
        let pending = std::future::pending();
        match super::carry(&ctx, session, route, request, pending, |_, _| {}, true).await {
            Ok(response) => debug!(%endpoint, status = %response.status(), "ping refresh answered"),
            Err(e) => debug!(%endpoint, "ping answer not refreshed: {e}"),
        }
    });
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
}
