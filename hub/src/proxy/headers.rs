//! What of the admin's request reaches the device: the proxy is the end of the admin's HTTP
//! connection, so hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and every header it names,
//! `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`) stop here, and so do
//! the credentials meant for the hub or a browser session (`Authorization`, `Cookie`): the device
//! is trusted with the Docker call, not with the admin's secrets. `X-Registry-Auth` is the one
//! credential that goes on: the engine needs it to pull from a private registry.
//!
//! An upgrade (`docker exec -it`, `attach`) keeps `Upgrade` and a `Connection: Upgrade` of its
//! own, which the engine needs to answer 101. hyper frames the forwarded body itself.

use axum::http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Remove what must not reach the device from a request's headers; `upgrading` keeps the upgrade.
pub(super) fn strip(headers: &mut HeaderMap, upgrading: bool) {
    let protocol = headers.get(UPGRADE).cloned().filter(|_| upgrading);
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    let fixed = [
        CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        AUTHORIZATION,
        COOKIE,
    ];
    for name in named.into_iter().chain(proxy).chain(fixed) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    if let Some(protocol) = protocol {
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, protocol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer admin-token"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("proxy-connection", "keep-alive"),
            ("cookie", "session=1"),
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "X-Checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "tcp"),
            ("x-registry-auth", "eyJ1c2VyIjoiYSJ9"),
            ("content-type", "application/json"),
            ("user-agent", "Docker-Client/27"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_and_credentials_stop_at_the_hub() {
        let mut headers = request_headers();
        strip(&mut headers, false);
        assert_eq!(
            names(&headers),
            ["content-type", "user-agent", "x-registry-auth"]
        );
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_its_own_connection_header() {
        let mut headers = request_headers();
        strip(&mut headers, true);
        assert_eq!(
            names(&headers),
            [
                "connection",
                "content-type",
                "upgrade",
                "user-agent",
                "x-registry-auth"
            ]
        );
        assert_eq!(headers[CONNECTION], "Upgrade");
        assert_eq!(headers[UPGRADE], "tcp");
    }

    #[test]
    fn every_connection_header_value_is_honoured() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("x-a"));
        headers.append(CONNECTION, HeaderValue::from_static("x-b,,x-c"));
        for name in ["x-a", "x-b", "x-c", "x-d"] {
            headers.insert(name, HeaderValue::from_static("1"));
        }
        strip(&mut headers, false);
        assert_eq!(names(&headers), ["x-d"]);
    }
}
