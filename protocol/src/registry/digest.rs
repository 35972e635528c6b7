//! Content digests as the distribution API writes them (`sha256:<64 lowercase hex>`), and the
//! hasher that checks bytes against one while they stream.
//!
//! Only SHA-256: it is what every registry and engine in use writes, and a digest is used as a file
//! name, so the parser accepts exactly one fixed-length lowercase form and nothing that could step
//! out of a directory.

use std::fmt;

use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// The only algorithm the mirror accepts.
const PREFIX: &str = "sha256:";
/// Hex characters in a SHA-256 digest.
const HEX_LEN: usize = 64;

/// Why a string is not a digest the mirror accepts.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DigestError {
    /// Another algorithm (`sha512:…`) or none: the mirror keeps SHA-256 only.
    #[error("unsupported digest algorithm: only sha256:<64 hex> is accepted")]
    Algorithm,
    /// The hex part has the wrong length or characters (uppercase included).
    #[error("malformed sha256 digest: expected 64 lowercase hex characters")]
    Hex,
}

/// A SHA-256 content digest, validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parse `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Self, DigestError> {
        let hex = text.strip_prefix(PREFIX).ok_or(DigestError::Algorithm)?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hex.len() != HEX_LEN || !hex.bytes().all(lower_hex) {
            return Err(DigestError::Hex);
        }
        Ok(Self(text.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut hasher = Hasher::default();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The hex part: the file name under `sha256/`.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// The whole digest, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 over bytes fed in pieces.
#[derive(Clone, Debug, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// Feed more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest(format!("{PREFIX}{:x}", self.0.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn the_digest_of_nothing_is_the_well_known_one() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY);
        assert_eq!(Digest::parse(EMPTY).unwrap().hex().len(), 64);
    }

    #[test]
    fn hostile_digests_are_refused() {
        let long = format!("{EMPTY}0");
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        let cases = [
            ("", DigestError::Algorithm),
            ("sha512:00", DigestError::Algorithm),
            ("SHA256:00", DigestError::Algorithm),
            ("sha256:", DigestError::Hex),
            ("sha256:../../etc/passwd", DigestError::Hex),
            (&long, DigestError::Hex),
            (&EMPTY[..70], DigestError::Hex),
            (&upper, DigestError::Hex),
        ];
        for (text, error) in cases {
            assert_eq!(Digest::parse(text), Err(error), "{text:?}");
        }
    }
}
