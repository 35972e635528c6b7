//! The pure parts of a webhook delivery: its signature and its retry schedule.
//!
//! The signature lets a receiver check that a POST came from this hub and was not replayed: the
//! HMAC-SHA256, under the webhook's secret, of `"<timestamp>.<body>"`, sent as
//! `X-Outpost-Signature: sha256=<hex>` with the timestamp (Unix seconds) in `X-Outpost-Timestamp`.
//! A receiver recomputes it over the raw body and refuses old timestamps. The timestamp is inside
//! the MAC, so an old request cannot be re-sent under a fresh one.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Outpost-Signature";
/// The header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "X-Outpost-Timestamp";

/// The first retry waits this long.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// No retry waits longer: a receiver back from a restart hears within five minutes.
pub const MAX_RETRY: Duration = Duration::from_secs(5 * 60);
/// A delivery still failing this long after its event is given up (and recorded as such): a
/// day covers a receiver's weekend-night outage without holding events forever.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `sha256=<hex>` for `body` sent at `timestamp` (Unix seconds) under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// How long to wait after the `failures`-th failed attempt (1 for the first): doubling from
/// [`FIRST_RETRY`], capped at [`MAX_RETRY`].
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// Whether a delivery whose event is `age` old should stop being retried.
pub fn give_up(age: Duration) -> bool {
    age >= GIVE_UP_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_mac_of_timestamp_dot_body() {
        let joined = "1700000000.{\"event\":\"offline\"}";
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"secret").unwrap();
        mac.update(joined.as_bytes());
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{\"event\":\"offline\"}"),
            format!("sha256={expected}")
        );
    }

    #[test]
    fn the_mac_is_rfc_4231_test_case_2() {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_different_secret_timestamp_or_body_changes_the_signature() {
        let base = signature(b"k", 1, b"body");
        assert_ne!(base, signature(b"K", 1, b"body"));
        assert_ne!(base, signature(b"k", 2, b"body"));
        assert_ne!(base, signature(b"k", 1, b"bodY"));
        assert!(base.starts_with("sha256=") && base.len() == 7 + 64);
    }

    #[test]
    fn retries_double_from_one_second_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
        assert_eq!(retry_delay(0), FIRST_RETRY);
    }

    #[test]
    fn a_delivery_is_given_up_after_a_day() {
        assert!(!give_up(Duration::from_secs(24 * 3600 - 1)));
        assert!(give_up(Duration::from_secs(24 * 3600)));
    }
}
