//! Endpoint ids in routes: one spelling per endpoint. `u64::from_str` also accepts `01`, `+1` and
//! `001`, and the proxy strips its route prefix by the id's canonical spelling, so a
//! non-canonical id reached endpoint 1 with the whole `/api/endpoints/01/docker/…` path forwarded.
//! Every `{id}` route (all under `/api/endpoints/{id}`, and `/peer/v1/endpoints/{id}` for the
//! other hubs) takes its parameters through [`IdPath`];
//! anything but digits without a leading zero that fit a `u64` is answered 404, as for a route
//! that does not exist. The router percent-decodes parameters, so the raw segment is checked too:
//! `%31` is not a spelling of 1.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use outpost_protocol::EndpointId;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use super::ApiError;

/// An endpoint id as a route parameter, in canonical decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CanonicalId(pub(crate) EndpointId);

/// `text` as a canonical decimal `u64`: digits only, no sign, no leading zero (except `0` itself).
pub(crate) fn parse_canonical(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let padded = text.len() > 1 && text.starts_with('0');
    (digits && !padded).then(|| text.parse().ok()).flatten()
}

impl<'de> Deserialize<'de> for CanonicalId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_canonical(&text)
            .map(|id| Self(EndpointId(id)))
            .ok_or_else(|| D::Error::custom("not a canonical endpoint id"))
    }
}

/// Path parameters holding a [`CanonicalId`]; a parameter that does not parse is 404.
#[derive(Debug)]
pub(crate) struct IdPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // The segment after `endpoints`: `/api/endpoints/{id}/…` and `/peer/v1/endpoints/{id}/…`.
        let raw_id = parts
            .uri
            .path()
            .split('/')
            .skip_while(|segment| *segment != "endpoints")
            .nth(1)
            .and_then(parse_canonical);
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) if raw_id.is_some() => Ok(Self(params)),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no such API route (endpoint ids are decimal without leading zeros)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_canonical;

    #[test]
    fn only_canonical_decimal_is_an_id() {
        assert_eq!(parse_canonical("0"), Some(0));
        assert_eq!(parse_canonical("1"), Some(1));
        assert_eq!(parse_canonical("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "01",
            "00",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1a",
            "0x1",
            "１",
            "18446744073709551616",
        ] {
            assert_eq!(parse_canonical(bad), None, "{bad:?}");
        }
    }
}
