//! The docker CLI's `/_ping`, answered by the hub once the device's engine has answered it.
//!
//! Every docker command starts with `GET` or `HEAD /_ping` (API version negotiation) before its
//! real call: one more round trip to the device, 0.6 s on a GEO link, on every command (the link
//! bench). The hub keeps the first answer of each session ([`crate::ping_cache`]) and answers later
//! pings itself, without summoning the device.

use axum::http::Method;

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
