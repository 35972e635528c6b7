//! Role newtypes, so an endpoint id is never passed where an agent id is meant.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The hub's id for one managed device (a row in its store). Small integers keep tokens and URLs short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointId(pub u64);

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EndpointId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// The device's own identity: a UUID it generates on first start (or is given with `EDGE_ID`) and
/// that the hub binds to an endpoint on first enrolment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentId(pub Uuid);

impl AgentId {
    /// A fresh random (v4) agent id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for AgentId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self)
    }
}

/// The 256-bit secret inside a join token. The hub keeps only [`Secret::hash`]; `Debug` masks it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(pub [u8; 32]);

impl Secret {
    /// A fresh secret from the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// SHA-256 of the secret: what the hub stores. The secret has 256 bits of entropy, so a plain
    /// hash (no salt, no stretching) cannot be inverted by search.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_masked_and_hash_is_stable() {
        let secret = Secret([7; 32]);
        assert_eq!(format!("{secret:?}"), "Secret(****)");
        assert_eq!(secret.hash(), Secret([7; 32]).hash());
        assert_ne!(secret.hash(), Secret([8; 32]).hash());
    }

    #[test]
    fn agent_id_round_trips_through_text() {
        let id = AgentId::generate();
        assert_eq!(id.to_string().parse::<AgentId>().unwrap(), id);
        assert!("not-a-uuid".parse::<AgentId>().is_err());
    }
}
