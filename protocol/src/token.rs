//! The join token (`EDGE_KEY`): everything an agent needs to find and trust exactly one hub, and to
//! prove it may enrol as one endpoint.
//!
//! Layout: base64url (no padding) of `[version: u8] ++ postcard(TokenBody)`. The token pins the hub by
//! the SHA-256 fingerprint of its CA, not by its address, so the address list can grow or change
//! without re-provisioning. Decoding is strict: every malformed shape has its own error, because an
//! operator pasting a token into a kiosk's config needs to know whether it was cut short or mangled.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::ids::{EndpointId, Secret};

/// The token version this build writes and reads.
pub const TOKEN_VERSION: u8 = 1;
/// Longest token text accepted, checked before decoding anything.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Most hub addresses a token may carry.
pub const MAX_HUB_ADDRS: usize = 16;
/// Longest single hub address (`host:port`).
pub const MAX_ADDR_LEN: usize = 255;

/// base64url without padding. Decoding tolerates non-zero trailing bits, so a token cut short at
/// any character reads as truncated bytes (and is reported as truncated), not as bad base64.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// A decoded join token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// Where the hub can be reached, `host:port`, tried in order.
    pub hub_addrs: Vec<String>,
    /// SHA-256 of the hub CA certificate (DER): the only hub this token trusts.
    pub ca_fingerprint: [u8; 32],
    /// The endpoint (or fleet) this token enrols into.
    pub endpoint: EndpointId,
    /// Proof that the holder may enrol; the hub stores only its hash.
    pub secret: Secret,
}

/// Why a token could not be decoded. Each says what the operator can do about it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// Nothing was given.
    #[error("the join token is empty: pass the EDGE_KEY printed by `outpost-hub endpoint create`")]
    Empty,
    /// Longer than any token the hub issues.
    #[error("the join token is {0} characters long, more than the {MAX_TOKEN_LEN} allowed: it is not an Outpost EDGE_KEY")]
    TooLong(usize),
    /// Not base64url text.
    #[error("the join token is not valid base64url ({0}): check that it was copied whole and unmodified")]
    BadBase64(String),
    /// A version this agent does not understand.
    #[error("the join token has version {found}, this agent understands version {TOKEN_VERSION}: upgrade the agent or issue a new token")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The bytes end before the token does.
    #[error("the join token is truncated: it ends before its last field; copy it again in full")]
    Truncated,
    /// Extra bytes after a complete token.
    #[error("the join token has {0} unexpected bytes after its end: it was corrupted or two tokens were joined")]
    TrailingBytes(usize),
    /// A field has an impossible value.
    #[error("the join token is malformed: {0}")]
    Malformed(String),
}

impl JoinToken {
    /// Encode as the text handed to operators.
    pub fn encode(&self) -> String {
        let mut bytes = vec![TOKEN_VERSION];
        // Serialising plain owned data into a Vec cannot fail.
        bytes.extend(postcard::to_stdvec(self).unwrap_or_default());
        BASE64.encode(bytes)
    }

    /// Decode and validate a token string (surrounding whitespace is ignored).
    pub fn decode(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong(text.len()));
        }
        let bytes = BASE64.decode(text).map_err(|e| match e {
            // One character past a multiple of four cannot be base64 at all: a cut-off copy.
            base64::DecodeError::InvalidLength(_) => TokenError::Truncated,
            other => TokenError::BadBase64(other.to_string()),
        })?;
        let (&version, body) = bytes.split_first().ok_or(TokenError::Truncated)?;
        if version != TOKEN_VERSION {
            return Err(TokenError::UnsupportedVersion { found: version });
        }
        let (token, rest): (Self, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| match e {
                postcard::Error::DeserializeUnexpectedEnd => TokenError::Truncated,
                other => TokenError::Malformed(other.to_string()),
            })?;
        if !rest.is_empty() {
            return Err(TokenError::TrailingBytes(rest.len()));
        }
        token.validate()?;
        Ok(token)
    }

    fn validate(&self) -> Result<(), TokenError> {
        check_hub_addrs(&self.hub_addrs).map_err(TokenError::Malformed)
    }
}

/// Whether `addrs` is a usable list of hub addresses (a token's, a `Welcome`'s, a
/// `HubMessage::HubAddrs`'): 1 to [`MAX_HUB_ADDRS`] of them, each `host:port` and at most
/// [`MAX_ADDR_LEN`] bytes. The error says what is wrong.
pub fn check_hub_addrs(addrs: &[String]) -> Result<(), String> {
    if addrs.is_empty() {
        return Err("it lists no hub address".into());
    }
    if addrs.len() > MAX_HUB_ADDRS {
        return Err(format!(
            "it lists {} hub addresses, at most {MAX_HUB_ADDRS} are allowed",
            addrs.len()
        ));
    }
    for addr in addrs {
        if addr.is_empty() || addr.len() > MAX_ADDR_LEN || !addr.contains(':') {
            return Err(format!("hub address {addr:?} is not of the form host:port"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinToken {
        JoinToken {
            hub_addrs: vec!["hub.example:4433".into(), "198.18.0.1:4433".into()],
            ca_fingerprint: [0xab; 32],
            endpoint: EndpointId(17),
            secret: Secret([0x5a; 32]),
        }
    }

    fn raw(token: &JoinToken) -> Vec<u8> {
        BASE64.decode(token.encode()).unwrap()
    }

    #[test]
    fn round_trips() {
        let token = sample();
        assert_eq!(JoinToken::decode(&token.encode()).unwrap(), token);
        assert_eq!(
            JoinToken::decode(&format!("  {}\n", token.encode())).unwrap(),
            token
        );
    }

    #[test]
    fn rejects_empty_and_oversized() {
        assert_eq!(JoinToken::decode("  "), Err(TokenError::Empty));
        let long = "A".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            JoinToken::decode(&long),
            Err(TokenError::TooLong(MAX_TOKEN_LEN + 1))
        );
    }

    #[test]
    fn rejects_bad_base64() {
        assert!(matches!(
            JoinToken::decode("not base64 !!"),
            Err(TokenError::BadBase64(_))
        ));
        // Standard (non-url) alphabet is refused too.
        assert!(matches!(
            JoinToken::decode("ab+/"),
            Err(TokenError::BadBase64(_))
        ));
    }

    #[test]
    fn rejects_wrong_version() {
        let mut bytes = raw(&sample());
        bytes[0] = 9;
        let text = BASE64.encode(bytes);
        assert_eq!(
            JoinToken::decode(&text),
            Err(TokenError::UnsupportedVersion { found: 9 })
        );
    }

    #[test]
    fn rejects_every_truncation() {
        let bytes = raw(&sample());
        for len in 0..bytes.len() {
            let text = BASE64.encode(&bytes[..len]);
            let err = JoinToken::decode(&text).unwrap_err();
            let expected = if len == 0 {
                TokenError::Empty
            } else {
                TokenError::Truncated
            };
            assert_eq!(err, expected, "cut at {len} bytes");
        }
    }

    #[test]
    fn a_token_cut_at_any_character_reads_as_truncated() {
        let text = sample().encode();
        for len in 1..text.len() {
            assert_eq!(
                JoinToken::decode(&text[..len]),
                Err(TokenError::Truncated),
                "cut at {len} characters"
            );
        }
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = raw(&sample());
        bytes.extend([1, 2, 3]);
        let text = BASE64.encode(bytes);
        assert_eq!(JoinToken::decode(&text), Err(TokenError::TrailingBytes(3)));
    }

    #[test]
    fn rejects_impossible_fields() {
        let mut token = sample();
        token.hub_addrs.clear();
        assert!(matches!(
            JoinToken::decode(&token.encode()),
            Err(TokenError::Malformed(_))
        ));
        token.hub_addrs = vec!["no-port".into()];
        assert!(matches!(
            JoinToken::decode(&token.encode()),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn errors_read_as_advice() {
        let msg = TokenError::Truncated.to_string();
        assert!(msg.contains("truncated"), "{msg}");
        let msg = TokenError::UnsupportedVersion { found: 2 }.to_string();
        assert!(
            msg.contains("version 2") && msg.contains("version 1"),
            "{msg}"
        );
    }
}
