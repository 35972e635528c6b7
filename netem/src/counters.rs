//! Counter snapshots of a running front end and their printed form.
//!
//! The relay and the router print the same table on exit and on SIGUSR1, so a scripted scenario
//! can diff the numbers of two runs.

use std::fmt;

use crate::model::LinkCounters;

/// NAT events seen by the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatCounters {
    /// Mappings created (the first one per client included).
    pub mappings: u64,
    /// Mappings moved to a new port (scheduled or commanded rebinding).
    pub rebinds: u64,
    /// Mappings forgotten after the binding timeout.
    pub expired: u64,
    /// Inbound packets dropped because their mapping had expired or moved.
    pub dropped_inbound: u64,
}

/// A snapshot of both directions' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrontendCounters {
    /// Device → hub.
    pub up: LinkCounters,
    /// Hub → device.
    pub down: LinkCounters,
    /// NAT events (zero for the L3 router).
    pub nat: NatCounters,
}

impl fmt::Display for FrontendCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<5} {:>10} {:>10} {:>10} {:>10} {:>12}  drops: loss/queue/outage/mtu/rule",
            "dir", "submitted", "sent", "dropped", "delayed", "queue-hw(B)"
        )?;
        for (name, c) in [("up", &self.up), ("down", &self.down)] {
            writeln!(
                f,
                "{name:<5} {:>10} {:>10} {:>10} {:>10} {:>12}  {}/{}/{}/{}/{}",
                c.submitted,
                c.sent,
                c.dropped(),
                c.delayed,
                c.queue_high_water,
                c.dropped_loss,
                c.dropped_queue,
                c.dropped_outage,
                c.dropped_mtu,
                c.dropped_rule
            )?;
        }
        let n = &self.nat;
        write!(
            f,
            "nat   mappings {} rebinds {} expired {} inbound-dropped {}",
            n.mappings, n.rebinds, n.expired, n.dropped_inbound
        )
    }
}
