//! NAT behaviour: periodic source-port rebinding and idle binding timeouts.
//!
//! Carrier-grade NATs on cellular networks forget a UDP mapping after 30 s to a few minutes of
//! silence and sometimes move a flow to a new external port without warning. Either way the far
//! side sees packets from a new address, and packets it sends to the old one vanish. A transport
//! must keep its mapping alive with keepalives and survive migration; this module decides when
//! that happens, and the front ends (relay) carry it out by switching to a fresh socket.
//!
//! Following RFC 4787 (REQ-6), only outbound packets (from the device) refresh a binding.

use std::time::{Duration, Instant};

/// NAT settings; both are optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatConfig {
    /// Move the mapping to a new external port this long after it was created.
    pub rebind_every: Option<Duration>,
    /// Forget a mapping after this long without an outbound packet.
    pub binding_timeout: Option<Duration>,
}

/// What became of a binding at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    /// The mapping still holds.
    Active,
    /// No outbound packet for longer than the binding timeout: the mapping is gone.
    Expired,
    /// The NAT has moved the flow to a new external port.
    RebindDue,
}

/// One NAT mapping's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    created: Instant,
    last_outbound: Instant,
}

impl Binding {
    /// A mapping created by an outbound packet at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            created: now,
            last_outbound: now,
        }
    }

    /// The state of the mapping at `now`.
    pub fn state(&self, config: &NatConfig, now: Instant) -> BindingState {
        if config
            .binding_timeout
            .is_some_and(|t| now.saturating_duration_since(self.last_outbound) > t)
        {
            return BindingState::Expired;
        }
        if config
            .rebind_every
            .is_some_and(|t| now.saturating_duration_since(self.created) >= t)
        {
            return BindingState::RebindDue;
        }
        BindingState::Active
    }

    /// Records an outbound packet at `now` (refreshes the idle timer).
    pub fn touch_outbound(&mut self, now: Instant) {
        self.last_outbound = self.last_outbound.max(now);
    }

    /// When the mapping was created.
    pub fn created(&self) -> Instant {
        self.created
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::t0;

    #[test]
    fn idle_binding_expires_and_keepalives_keep_it() {
        let config = NatConfig {
            rebind_every: None,
            binding_timeout: Some(Duration::from_secs(30)),
        };
        let start = t0();
        let mut b = Binding::new(start);
        assert_eq!(
            b.state(&config, start + Duration::from_secs(30)),
            BindingState::Active
        );
        assert_eq!(
            b.state(&config, start + Duration::from_secs(31)),
            BindingState::Expired
        );
        // A keepalive every 25 s keeps the mapping for ever.
        for i in 1..=100 {
            let now = start + Duration::from_secs(25 * i);
            assert_eq!(b.state(&config, now), BindingState::Active, "keepalive {i}");
            b.touch_outbound(now);
        }
    }

    #[test]
    fn rebinds_on_schedule() {
        let config = NatConfig {
            rebind_every: Some(Duration::from_secs(60)),
            binding_timeout: None,
        };
        let start = t0();
        let b = Binding::new(start);
        assert_eq!(
            b.state(&config, start + Duration::from_secs(59)),
            BindingState::Active
        );
        assert_eq!(
            b.state(&config, start + Duration::from_secs(60)),
            BindingState::RebindDue
        );
    }
}
