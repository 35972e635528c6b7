//! The hub's `ProducesTickets`: seals with the shared set's current key, opens with any of its
//! keys; the set is swapped in place when the store's rotates.
//!
//! A ticket is `name ‖ nonce ‖ ChaCha20-Poly1305(plaintext) ‖ tag`, the key's public name as
//! associated data (rustls' own ticketer's layout): the name picks the key without trying each,
//! and binds the ciphertext to it. The nonce is random (a counter would tell tickets apart), which
//! at 96 bits is safe far beyond the tickets a key seals in a period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use super::keys::{TicketKey, TicketKeys, NAME_LEN, TICKET_LIFETIME};

const ALGORITHM: &aead::Algorithm = &aead::CHACHA20_POLY1305;
const TAG_LEN: usize = 16;
/// The longest ticket opened: what a ticket carries (the session's secrets and the agent's
/// certificate chain, ~1 KB) with room to spare. Longer input is refused before any work.
pub const MAX_TICKET_LEN: usize = 16 * 1024;

/// Tickets sealed and opened since the hub started (the metrics' `outpost_hub_tls_tickets`).
#[derive(Debug, Default)]
pub struct TicketCounts {
    /// Tickets sealed (one per agent handshake).
    pub issued: AtomicU64,
    /// Tickets opened: a session resumed, its certificates not sent again.
    pub opened: AtomicU64,
    /// Tickets refused (too old, from another store, damaged): a full handshake follows.
    pub refused: AtomicU64,
}

struct Sealer {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

impl Sealer {
    fn new(key: &TicketKey) -> Self {
        // ChaCha20-Poly1305 takes any 32-byte key: this cannot fail.
        let unbound = UnboundKey::new(ALGORITHM, &key.secret)
            .unwrap_or_else(|_| unreachable!("a 32-byte ChaCha20-Poly1305 key"));
        Self {
            name: key.name,
            key: LessSafeKey::new(unbound),
        }
    }
}

/// The keys in use: the first seals, all open.
struct Ring(Vec<Sealer>);

impl Ring {
    fn of(keys: &TicketKeys) -> Self {
        Self(keys.openers().map(Sealer::new).collect())
    }
}

/// Tickets under the keys the hubs of one store share.
pub struct StoreTicketer {
    keys: RwLock<Arc<Ring>>,
    rng: SystemRandom,
    /// What it sealed and opened.
    pub counts: TicketCounts,
}

impl std::fmt::Debug for StoreTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTicketer")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl StoreTicketer {
    /// A ticketer using `keys`.
    pub fn new(keys: &TicketKeys) -> Self {
        Self {
            keys: RwLock::new(Arc::new(Ring::of(keys))),
            rng: SystemRandom::new(),
            counts: TicketCounts::default(),
        }
    }

    /// Use `keys` from now on (a rotation, read from the store).
    pub fn install(&self, keys: &TicketKeys) {
        let ring = Arc::new(Ring::of(keys));
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = ring;
    }

    fn ring(&self) -> Arc<Ring> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let ring = self.ring();
        let sealer = ring.0.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        ticket.extend_from_slice(&sealer.name);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let tag = sealer
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(sealer.name),
                &mut ticket[NAME_LEN + NONCE_LEN..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET_LEN || ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let ring = self.ring();
        // The name is public (it travels in the ticket): comparing it leaks nothing.
        let opener = ring.0.iter().find(|s| s.name[..] == *name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut plain = sealed.to_vec();
        let len = opener
            .key
            .open_in_place(nonce, Aad::from(name), &mut plain)
            .ok()?
            .len();
        plain.truncate(len);
        Some(plain)
    }
}

impl ProducesTickets for StoreTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(TICKET_LIFETIME.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let ticket = self.seal(plain);
        if ticket.is_some() {
            self.counts.issued.fetch_add(1, Ordering::Relaxed);
        }
        ticket
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let plain = self.open(ticket);
        let count = match plain {
            Some(_) => &self.counts.opened,
            None => &self.counts.refused,
        };
        count.fetch_add(1, Ordering::Relaxed);
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(now: i64) -> TicketKeys {
        TicketKeys::new(now, TicketKey::generate).unwrap()
    }

    #[test]
    fn a_ticket_opens_under_the_same_keys_anywhere_and_not_under_others() {
        let shared = keys(0);
        let (hub1, hub2) = (StoreTicketer::new(&shared), StoreTicketer::new(&shared));
        let ticket = hub1.encrypt(b"session state").unwrap();
        assert_eq!(
            hub2.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        assert_eq!(StoreTicketer::new(&keys(0)).decrypt(&ticket), None);
        assert_eq!(hub1.counts.issued.load(Ordering::Relaxed), 1);
        assert_eq!(hub2.counts.opened.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_ticket_opens_across_one_rotation_and_not_two() {
        let keys = keys(0);
        let hub = StoreTicketer::new(&keys);
        let ticket = hub.encrypt(b"x").unwrap();
        let once = keys.rotated(10, TicketKey::generate().unwrap());
        hub.install(&once);
        assert!(hub.decrypt(&ticket).is_some());
        hub.install(&once.rotated(20, TicketKey::generate().unwrap()));
        assert_eq!(hub.decrypt(&ticket), None);
        assert_eq!(hub.counts.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_hub_that_has_not_read_a_rotation_opens_the_tickets_sealed_after_it() {
        let keys = keys(0);
        let (rotated, lagging) = (StoreTicketer::new(&keys), StoreTicketer::new(&keys));
        rotated.install(&keys.rotated(10, TicketKey::generate().unwrap()));
        let new = rotated.encrypt(b"new").unwrap();
        let old = lagging.encrypt(b"old").unwrap();
        assert!(lagging.decrypt(&new).is_some());
        assert!(rotated.decrypt(&old).is_some());
    }

    #[test]
    fn a_tampered_truncated_or_oversized_ticket_is_refused() {
        let hub = StoreTicketer::new(&keys(0));
        let ticket = hub.encrypt(b"session state").unwrap();
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert_eq!(hub.decrypt(&bad), None, "byte {i} flipped");
        }
        for len in 0..ticket.len() {
            assert_eq!(hub.decrypt(&ticket[..len]), None, "cut to {len}");
        }
        let mut long = ticket.clone();
        long.resize(MAX_TICKET_LEN + 1, 0);
        assert_eq!(hub.decrypt(&long), None);
        assert!(hub.decrypt(&ticket).is_some());
    }

    #[test]
    fn two_tickets_of_one_session_state_differ() {
        let hub = StoreTicketer::new(&keys(0));
        assert_ne!(hub.encrypt(b"same"), hub.encrypt(b"same"));
    }
}
