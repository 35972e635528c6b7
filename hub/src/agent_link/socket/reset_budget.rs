//! How many stateless resets the hub sends, per destination network and in all.
//!
//! A stateless reset answers a packet whose connection id verifies under the hub's key but whose
//! connection the hub does not know: after a crash or restart, it tells each agent at its next
//! check-in to reconnect now instead of waiting out its 110 s idle timeout. Anyone who has seen
//! an agent's packets holds such ids, and can send them from a spoofed source to have resets sent
//! there: a reflection (never an amplification: quinn makes each reset smaller than its packet).
//! One global budget, as quinn has, let such a spray take every reset the hub may send, so real
//! agents after a crash got none.
//!
//! So each destination prefix ([`SourcePrefix`]: IPv4 /24, IPv6 /48) gets at most
//! [`PER_PREFIX_PER_SECOND`] resets a second after a burst of as many, and all prefixes together
//! [`GLOBAL_PER_SECOND`]. A spoofed spray towards one network gets it at most 1,000 packets a
//! second; to starve the agents of other networks it must spray from ten networks at once, and
//! then it still shares the budget with them. A dropped reset costs an agent a retransmission
//! (its next probe meets the next token), not the connection.
//!
//! Pure bookkeeping with the time passed in (a GCRA per bucket: a theoretical arrival time).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::agent_link::admission::SourcePrefix;

/// Resets a second to one prefix, after a burst of as many: a fleet of 25,000 agents behind one
/// carrier NAT checks in 1,000 times a second (every 25 s), so even such a prefix gets a reset
/// for each agent's first check-in after a crash.
pub(crate) const PER_PREFIX_PER_SECOND: u32 = 1_000;
/// Resets a second in all, after a burst of [`GLOBAL_BURST`]: after a restart 25,000 agents whose
/// close frame was lost check in ~1,000 times a second, and quinn's default of 50 a second left
/// 10,720 of them waiting out their idle timeout (`scale` bench).
pub(crate) const GLOBAL_PER_SECOND: u32 = 10_000;
/// Resets sent at once before the global rate applies.
pub(crate) const GLOBAL_BURST: u32 = 1_000;
/// How often the prefixes whose budget is full again are forgotten; a prefix's bucket refills in
/// a second, so the table holds at most the prefixes sent a reset within two seconds.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Least time between two log lines about dropped resets.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// One token bucket as a theoretical arrival time: a send is allowed while that time is less
/// than `burst` intervals ahead of now.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    interval: Duration,
    burst: u32,
}

impl Bucket {
    fn per_second(rate: u32, burst: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate,
            burst,
        }
    }

    fn allows(&self, now: Instant, tat: Instant) -> bool {
        tat.saturating_duration_since(now) + self.interval <= self.interval * self.burst
    }

    fn take(&self, now: Instant, tat: Instant) -> Instant {
        tat.max(now) + self.interval
    }
}

/// The resets the hub may still send.
#[derive(Debug)]
pub(crate) struct ResetBudget {
    global: Bucket,
    global_tat: Instant,
    per_prefix: Bucket,
    by_prefix: HashMap<SourcePrefix, Instant>,
    swept: Instant,
    dropped: u64,
    reported: Option<Instant>,
}

impl ResetBudget {
    /// The hub's budget ([`PER_PREFIX_PER_SECOND`], [`GLOBAL_PER_SECOND`]), full at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            global: Bucket::per_second(GLOBAL_PER_SECOND, GLOBAL_BURST),
            global_tat: now,
            per_prefix: Bucket::per_second(PER_PREFIX_PER_SECOND, PER_PREFIX_PER_SECOND),
            by_prefix: HashMap::new(),
            swept: now,
            dropped: 0,
            reported: None,
        }
    }

    /// Whether a reset to `to` may be sent at `now`; if so, it is counted.
    pub(crate) fn allow(&mut self, now: Instant, to: IpAddr) -> bool {
        self.sweep(now);
        let prefix = SourcePrefix::from(to);
        let tat = self.by_prefix.get(&prefix).copied().unwrap_or(now);
        if !self.per_prefix.allows(now, tat) || !self.global.allows(now, self.global_tat) {
            self.dropped += 1;
            return false;
        }
        self.by_prefix
            .insert(prefix, self.per_prefix.take(now, tat));
        self.global_tat = self.global.take(now, self.global_tat);
        true
    }

    /// The resets dropped since the last report, when one is due at `now` (at most one each
    /// [`REPORT_EVERY`]).
    pub(crate) fn report(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .reported
            .is_none_or(|last| now.saturating_duration_since(last) >= REPORT_EVERY);
        if !due || self.dropped == 0 {
            return None;
        }
        self.reported = Some(now);
        Some(std::mem::take(&mut self.dropped))
    }

    /// Prefixes tracked now.
    #[cfg(test)]
    fn prefixes(&self) -> usize {
        self.by_prefix.len()
    }

    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        self.by_prefix.retain(|_, tat| *tat > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sent(budget: &mut ResetBudget, now: Instant, to: &str, tries: u32) -> u32 {
        (0..tries).filter(|_| budget.allow(now, ip(to))).count() as u32
    }

    #[test]
    fn one_prefix_gets_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut budget = ResetBudget::new(start);
        assert_eq!(sent(&mut budget, start, "203.0.113.7", 5_000), 1_000);
        assert_eq!(sent(&mut budget, start, "203.0.113.200", 10), 0, "same /24");
        assert_eq!(budget.report(start), Some(4_010));
        let later = start + Duration::from_millis(100);
        assert_eq!(sent(&mut budget, later, "203.0.113.7", 5_000), 100);
        assert_eq!(budget.report(later), None, "one report each ten seconds");
        assert_eq!(budget.report(start + REPORT_EVERY), Some(4_900));
    }

    #[test]
    fn a_sprayed_prefix_leaves_other_prefixes_their_resets() {
        let start = Instant::now();
        let mut budget = ResetBudget::new(start);
        let mut real = 0;
        for ms in 0..2_000 {
            let now = start + Duration::from_millis(ms);
            sent(&mut budget, now, "198.51.100.1", 20);
            real += sent(&mut budget, now, "192.0.2.9", 1);
        }
        assert_eq!(real, 2_000, "every real agent's reset went out");
    }

    #[test]
    fn the_global_budget_bounds_a_spray_from_many_prefixes() {
        let start = Instant::now();
        let mut budget = ResetBudget::new(start);
        let mut total = 0;
        for ms in 0..1_000u32 {
            let now = start + Duration::from_millis(u64::from(ms));
            for net in 0..40 {
                total += sent(&mut budget, now, &format!("10.0.{net}.1"), 1);
            }
        }
        assert!(total <= GLOBAL_BURST + GLOBAL_PER_SECOND, "{total}");
        assert!(total >= GLOBAL_PER_SECOND, "{total}");
    }

    #[test]
    fn prefixes_whose_budget_refilled_are_forgotten() {
        let start = Instant::now();
        let mut budget = ResetBudget::new(start);
        for net in 0..100 {
            sent(&mut budget, start, &format!("10.1.{net}.1"), 1);
        }
        assert_eq!(budget.prefixes(), 100);
        sent(&mut budget, start + Duration::from_secs(2), "10.2.0.1", 1);
        assert_eq!(budget.prefixes(), 1);
    }

    #[test]
    fn ipv6_counts_by_slash_48() {
        let start = Instant::now();
        let mut budget = ResetBudget::new(start);
        assert_eq!(sent(&mut budget, start, "2001:db8:1:1::1", 600), 600);
        assert_eq!(sent(&mut budget, start, "2001:db8:1:2::1", 600), 400);
        assert_eq!(
            sent(&mut budget, start, "2001:db8:2::1", 600),
            0,
            "global burst spent"
        );
    }
}
