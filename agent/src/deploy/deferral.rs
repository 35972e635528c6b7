//! When a deferred apply is tried again: the hub holds the device's image transfers back (a
//! spent byte budget, outside its transfer window) and says until when; the worker keeps the
//! order and tries it again then — sooner if an admin may have lifted the hold.

use std::time::Duration;

use outpost_protocol::stack::DesiredOrder;
use outpost_protocol::window::TransferWindow;
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest wait before a deferred apply is tried again, whatever the hub said: an admin who
/// raises a spent budget sees the device go on within this, not at the next period.
const DEFERRED_RECHECK: Duration = Duration::from_secs(300);

/// Shortest wait before a deferred apply is tried again: the hub names its retry time on its own
/// clock, and a device whose clock runs ahead would otherwise ask again at once, and again,
/// for as long as the clocks disagree. Each try is a manifest and a refused blob, a few KB.
const DEFERRED_FLOOR: Duration = Duration::from_secs(10);

/// Most jitter added to a deferred apply's retry. Devices deferred for long already ask at their
/// own [`DEFERRED_RECHECK`] phases, spread over five minutes; the jitter spreads those told the
/// same near moment (a short lab period, a budget raised for a group), at most a tenth of the
/// wait so a short period is not overshot.
const DEFERRED_SPREAD: Duration = Duration::from_secs(30);

/// The next change of the transfer window; `None` once the link is gone, never without one.
pub(super) async fn window_changed(
    windows: Option<&mut watch::Receiver<Option<TransferWindow>>>,
) -> Option<()> {
    match windows {
        Some(windows) => windows.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Sleeps until a deferred order's retry; never, without one (the branch is off then).
pub(super) async fn retry_deferred(deferred: Option<&(DesiredOrder, Instant)>) {
    match deferred {
        Some((_, at)) => tokio::time::sleep_until(*at).await,
        None => std::future::pending().await,
    }
}

/// When to try a deferred apply again: when the hub said (seconds since the Unix epoch), at
/// least [`DEFERRED_FLOOR`] and at most [`DEFERRED_RECHECK`] from now, plus up to a tenth of that
/// (at most [`DEFERRED_SPREAD`]) of jitter.
pub(crate) fn retry_instant(retry_at: Option<u64>) -> Instant {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let wait = retry_wait(retry_at, now_unix);
    let jitter = (wait / 10)
        .min(DEFERRED_SPREAD)
        .mul_f64(rand::random::<f64>());
    Instant::now() + wait + jitter
}

/// The wait before the jitter, with the device's clock at `now_unix`.
fn retry_wait(retry_at: Option<u64>, now_unix: u64) -> Duration {
    retry_at
        .map(|at| Duration::from_secs(at.saturating_sub(now_unix)))
        .unwrap_or(DEFERRED_RECHECK)
        .clamp(DEFERRED_FLOOR, DEFERRED_RECHECK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_waits_what_the_hub_said_within_its_bounds() {
        assert_eq!(retry_wait(Some(1_060), 1_000), Duration::from_secs(60));
        assert_eq!(retry_wait(Some(1_000_000), 1_000), DEFERRED_RECHECK);
        assert_eq!(retry_wait(None, 1_000), DEFERRED_RECHECK);
        // A device clock ahead of the hub's: the named time has passed, yet it does not spin.
        assert_eq!(retry_wait(Some(900), 1_000), DEFERRED_FLOOR);
    }
}
