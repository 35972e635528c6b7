//! The ticket keys the hubs of one store share, and when they rotate: no I/O, the clock is a
//! parameter (Unix seconds), so the schedule is tested without waiting.
//!
//! A key set holds three keys. Every hub seals new tickets with `current` and opens tickets
//! sealed with any of the three. A rotation shifts them: `previous` is erased, `current` becomes
//! `previous`, `next` becomes `current`, and a fresh key becomes `next`. So a hub that has not yet
//! read a rotation another hub wrote still opens the tickets sealed with the new `current` (its
//! `next`), and the rotating hub still opens the ones the lagging hub seals (its `previous`).
//!
//! A key is current for at least one [`ROTATION_PERIOD`] and kept one more as `previous`, so a
//! ticket sealed at any moment opens for at least [`ROTATION_PERIOD`], which is the lifetime the
//! ticket announces ([`TICKET_LIFETIME`]).
//!
//! Stored form (one settings row, a secret: never log it):
//! `v1 ROTATED_AT PREVIOUS|- CURRENT NEXT`, each key `base64url(name ‖ secret)`.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

/// How long a ticket is good for, as it tells the agent: RFC 8446's maximum (7 days; a client
/// drops an older ticket whatever the server says). A ticket is issued at a session's handshake
/// and used at the next connection, so it only helps a session younger than this: a fleet whose
/// sessions have lasted longer comes back after a restart with full handshakes.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the shared keys rotate: a leaked key opens (and forges) tickets for at most two
/// periods. No shorter than [`TICKET_LIFETIME`], so every ticket opens for its whole announced life.
pub const ROTATION_PERIOD: Duration = TICKET_LIFETIME;

/// The length of a key's public name, which leads every ticket it seals.
pub const NAME_LEN: usize = 16;
/// The length of a key's secret (ChaCha20-Poly1305).
pub const SECRET_LEN: usize = 32;

const VERSION: &str = "v1";

/// Why ticket keys could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TicketKeyError {
    /// The system's random source failed: no key can be made. The hub cannot start safely.
    #[error("the system random source failed")]
    Random,
    /// The stored keys are not in a form this hub reads (written by a newer hub, or damaged).
    /// Delete the settings row `tls_ticket_keys`: every hub then makes or takes a new set, and
    /// agents fall back to full handshakes once.
    #[error("stored ticket keys unreadable: {0}")]
    Malformed(&'static str),
}

/// One ticket key: a public name (carried in each ticket, to pick the key) and a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketKey {
    /// Which key sealed a ticket.
    pub name: [u8; NAME_LEN],
    /// The AEAD key.
    pub secret: [u8; SECRET_LEN],
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("TicketKey")
            .field("name", &hex(&self.name))
            .field("secret", &"***")
            .finish()
    }
}

impl TicketKey {
    /// A fresh key from the system's random source.
    pub fn generate() -> Result<Self, TicketKeyError> {
        let rng = SystemRandom::new();
        let mut key = Self {
            name: [0; NAME_LEN],
            secret: [0; SECRET_LEN],
        };
        rng.fill(&mut key.name)
            .and_then(|()| rng.fill(&mut key.secret))
            .map_err(|_| TicketKeyError::Random)?;
        Ok(key)
    }

    fn encode(&self) -> String {
        let mut bytes = [0u8; NAME_LEN + SECRET_LEN];
        bytes[..NAME_LEN].copy_from_slice(&self.name);
        bytes[NAME_LEN..].copy_from_slice(&self.secret);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(text: &str) -> Result<Self, TicketKeyError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TicketKeyError::Malformed("a key is not base64url"))?;
        let (name, secret) = bytes
            .split_at_checked(NAME_LEN)
            .ok_or(TicketKeyError::Malformed("a key is too short"))?;
        Ok(Self {
            name: name
                .try_into()
                .map_err(|_| TicketKeyError::Malformed("a key's name"))?,
            secret: secret
                .try_into()
                .map_err(|_| TicketKeyError::Malformed("a key is not 48 bytes"))?,
        })
    }
}

/// The keys of one store at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketKeys {
    /// When the set last rotated (or was made), Unix seconds.
    pub rotated_at: i64,
    /// Opens tickets sealed before the last rotation.
    pub previous: Option<TicketKey>,
    /// Seals new tickets.
    pub current: TicketKey,
    /// Opens tickets sealed by a hub that read the next rotation first.
    pub next: TicketKey,
}

impl TicketKeys {
    /// A new set made at `now`, with keys from `fresh`.
    pub fn new(
        now: i64,
        mut fresh: impl FnMut() -> Result<TicketKey, TicketKeyError>,
    ) -> Result<Self, TicketKeyError> {
        Ok(Self {
            rotated_at: now,
            previous: None,
            current: fresh()?,
            next: fresh()?,
        })
    }

    /// When this set is due to rotate.
    pub fn rotation_due_at(&self, period: Duration) -> i64 {
        let period = i64::try_from(period.as_secs()).unwrap_or(i64::MAX);
        self.rotated_at.saturating_add(period)
    }

    /// Whether this set is due to rotate at `now`. A clock that went back never rotates early.
    pub fn rotation_due(&self, now: i64, period: Duration) -> bool {
        now >= self.rotation_due_at(period)
    }

    /// The set after one rotation at `now`, with `fresh` as the new `next`. One step however late
    /// it is: the key sealing tickets until now must keep opening them for a period.
    pub fn rotated(&self, now: i64, fresh: TicketKey) -> Self {
        Self {
            rotated_at: now,
            previous: Some(self.current.clone()),
            current: self.next.clone(),
            next: fresh,
        }
    }

    /// Every key that opens tickets: `current` first, then `next`, then `previous`.
    pub fn openers(&self) -> impl Iterator<Item = &TicketKey> {
        [
            Some(&self.current),
            Some(&self.next),
            self.previous.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    /// The stored form. A secret: never log it.
    pub fn encode(&self) -> String {
        let previous = self
            .previous
            .as_ref()
            .map_or_else(|| "-".to_owned(), TicketKey::encode);
        format!(
            "{VERSION} {} {previous} {} {}",
            self.rotated_at,
            self.current.encode(),
            self.next.encode()
        )
    }

    /// Read the stored form.
    pub fn decode(text: &str) -> Result<Self, TicketKeyError> {
        let fields: Vec<&str> = text.split(' ').collect();
        let [version, rotated_at, previous, current, next] = fields[..] else {
            return Err(TicketKeyError::Malformed("not five fields"));
        };
        if version != VERSION {
            return Err(TicketKeyError::Malformed("an unknown version"));
        }
        Ok(Self {
            rotated_at: rotated_at
                .parse()
                .map_err(|_| TicketKeyError::Malformed("the rotation time"))?,
            previous: match previous {
                "-" => None,
                key => Some(TicketKey::decode(key)?),
            },
            current: TicketKey::decode(current)?,
            next: TicketKey::decode(next)?,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys numbered 1, 2, 3, … in order of making.
    fn numbered() -> impl FnMut() -> Result<TicketKey, TicketKeyError> {
        let mut n = 0u8;
        move || {
            n += 1;
            Ok(key(n))
        }
    }

    fn key(n: u8) -> TicketKey {
        TicketKey {
            name: [n; NAME_LEN],
            secret: [n.wrapping_add(100); SECRET_LEN],
        }
    }

    const PERIOD: Duration = Duration::from_secs(1000);

    #[test]
    fn a_set_rotates_once_a_period_and_a_key_opens_tickets_for_two() {
        let keys = TicketKeys::new(5_000, numbered()).unwrap();
        assert_eq!((keys.current.clone(), keys.next.clone()), (key(1), key(2)));
        assert!(!keys.rotation_due(5_999, PERIOD));
        assert!(keys.rotation_due(6_000, PERIOD));

        let once = keys.rotated(6_000, key(3));
        assert_eq!(once.previous, Some(key(1)));
        assert_eq!((once.current.clone(), once.next.clone()), (key(2), key(3)));
        assert!(!once.rotation_due(6_999, PERIOD));

        // Key 1 sealed tickets until 6,000 and opens them until the second rotation (7,000).
        let twice = once.rotated(7_000, key(4));
        assert_eq!(
            twice.openers().cloned().collect::<Vec<_>>(),
            [key(3), key(4), key(2)]
        );
    }

    #[test]
    fn a_late_rotation_is_one_step_from_when_it_happens() {
        let keys = TicketKeys::new(0, numbered()).unwrap();
        // No hub ran for ten periods: the current key still opens what it sealed last.
        let late = keys.rotated(10_000, key(3));
        assert_eq!(late.previous, Some(key(1)));
        assert_eq!(late.rotation_due_at(PERIOD), 11_000);
    }

    #[test]
    fn a_clock_that_went_back_does_not_rotate() {
        let keys = TicketKeys::new(5_000, numbered()).unwrap();
        assert!(!keys.rotation_due(-1, PERIOD));
        assert!(!keys.rotation_due(4_000, PERIOD));
    }

    #[test]
    fn the_stored_form_reads_back_and_rejects_what_it_did_not_write() {
        let keys = TicketKeys::new(1_700_000_000, numbered()).unwrap();
        let rotated = keys.rotated(1_700_600_000, key(9));
        for set in [keys, rotated] {
            assert_eq!(TicketKeys::decode(&set.encode()).unwrap(), set);
        }
        let good = TicketKeys::new(1, numbered()).unwrap().encode();
        let cases = [
            String::new(),
            good.replacen("v1", "v2", 1),
            good.replacen(" 1 ", " x ", 1),
            format!("{good} extra"),
            good.replacen(" - ", " AAAA ", 1),
            good.replace('A', "*"),
        ];
        for case in cases {
            assert!(
                matches!(TicketKeys::decode(&case), Err(TicketKeyError::Malformed(_))),
                "{case:?}"
            );
        }
    }

    #[test]
    fn a_key_never_prints_its_secret() {
        let printed = format!("{:?}", TicketKeys::new(1, numbered()).unwrap());
        assert!(printed.contains("***"));
        let secret = key(1).secret;
        assert!(!printed.contains(&format!("{secret:?}")));
        assert!(!printed.contains(&hex(&secret)));
    }

    #[test]
    fn generated_keys_differ() {
        let (a, b) = (
            TicketKey::generate().unwrap(),
            TicketKey::generate().unwrap(),
        );
        assert_ne!(a.name, b.name);
        assert_ne!(a.secret, b.secret);
    }
}
