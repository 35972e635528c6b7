//! The connection ids the hub issues: 4 bytes, 3 random and 1 of a keyed hash over them.
//!
//! Every packet an agent sends starts with one of them, so their length is paid on every
//! check-in and on every packet of a `docker save` or an image push. quinn's default is 8 bytes
//! (3 random, 5 of hash); on 3g's 64 KB/s uplink those 4 extra bytes are 0.27 % of a 10 MB
//! `save`, ~0.45 s, more than the gap the hub was behind TCP+TLS on Cubic by (issue #14). With
//! the agent's own 4-byte ids (`outpost_transport::connection_id`) an idle interval costs 186
//! bytes instead of 198 (`quiet_idle`, session 35).
//!
//! - **Unique**: 3 random bytes are quinn's own nonce (16.7 M ids); a hub of 100,000 agents
//!   holds ~500,000 ids (quinn issues 5 per connection: the peer's limit, `CidQueue::LEN`), and
//!   quinn draws again on a clash.
//! - **Recognised after a restart**: the hash byte is keyed with the stored endpoint key, so a
//!   restarted hub (or another hub of the same store) answers an id its predecessor minted with
//!   a stateless reset, and the agent reconnects at once. One byte lets 1 in 256 random ids pass
//!   too, which costs one bounded reset each (`socket::reset_budget`): anyone who has seen an
//!   agent's packets can replay a real id anyway, so the budget, not the hash, is the defence.
//! - **Unlinkable** across an agent's paths: each id is drawn afresh.
//!
//! A hub upgraded from 8-byte ids cannot reset its predecessor's connections (it reads the first
//! 4 bytes of an 8-byte id, whose reset token does not match): after a crash across that one
//! upgrade, agents reconnect at their idle timeout; a clean stop closes them as always.

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};
use rand::RngCore;
use ring::hmac;

/// Bytes in each connection id the hub issues.
pub const HUB_CID_LEN: usize = 4;
/// The random part of an id; the rest is the keyed hash.
const NONCE_LEN: usize = 3;

/// quinn's generator of the hub's ids (see the module's notes).
#[derive(Debug)]
pub struct HubConnectionIds {
    key: hmac::Key,
}

impl HubConnectionIds {
    /// Ids signed with `key`: the same key recognises them in another process.
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    fn signature(&self, nonce: &[u8]) -> u8 {
        hmac::sign(&self.key, nonce).as_ref()[0]
    }
}

impl ConnectionIdGenerator for HubConnectionIds {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut id = [0u8; HUB_CID_LEN];
        rand::rng().fill_bytes(&mut id[..NONCE_LEN]);
        id[NONCE_LEN] = self.signature(&id[..NONCE_LEN]);
        ConnectionId::new(&id)
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        if cid.len() != HUB_CID_LEN {
            return Err(InvalidCid);
        }
        let (nonce, signature) = cid.split_at(NONCE_LEN);
        match self.signature(nonce) == signature[0] {
            true => Ok(()),
            false => Err(InvalidCid),
        }
    }

    fn cid_len(&self) -> usize {
        HUB_CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_four_bytes_and_a_restarted_hub_recognises_them() {
        let mut before = HubConnectionIds::new(b"the stored key");
        let after = HubConnectionIds::new(b"the stored key");
        for _ in 0..1_000 {
            let id = before.generate_cid();
            assert_eq!(id.len(), HUB_CID_LEN);
            assert!(after.validate(&id).is_ok());
        }
    }

    #[test]
    fn ids_of_another_key_mostly_fail() {
        let mut other = HubConnectionIds::new(b"another hub's key");
        let ours = HubConnectionIds::new(b"the stored key");
        let passed = (0..10_000)
            .filter(|_| ours.validate(&other.generate_cid()).is_ok())
            .count();
        // One byte of hash: 1 in 256 on average (~39 of 10,000); ten times that would be a broken hash.
        assert!(passed < 400, "{passed} of 10,000 passed");
    }

    #[test]
    fn an_id_of_another_length_fails() {
        let ours = HubConnectionIds::new(b"the stored key");
        let mut quinns = quinn_proto::HashedConnectionIdGenerator::from_key(7);
        assert!(ours.validate(&quinns.generate_cid()).is_err());
    }

    #[test]
    fn ids_are_drawn_afresh() {
        let mut ids = HubConnectionIds::new(b"the stored key");
        let drawn: std::collections::HashSet<_> = (0..1_000).map(|_| ids.generate_cid()).collect();
        // 1,000 draws from 16.7 M: a clash or two at most, never a counter or a constant.
        assert!(drawn.len() >= 990, "{} distinct", drawn.len());
    }
}
