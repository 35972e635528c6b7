//! The hub's memory bound for agent connections: flow-control windows from a budget.
//!
//! What a peer can make the hub buffer is its QUIC window: the connection receive window (data the
//! agent may send before the hub reads it) and the send window (data the hub queues towards the
//! agent). Every connection starts with the small standby windows of the hub's transport config
//! ([`profile::HUB_STANDBY_WINDOW`]): enough for control frames, which the hub reads at once.
//! When an agent is summoned and opens stream credit, its connection gets the profile's full
//! windows, if the budget has a grant left (only for a summon the hub sent: a `Ready` nobody asked
//! for, as a pending device may send, gets nothing; the session decides, see
//! [`crate::session::HubSession::handle_ready`]); without one it keeps working at standby windows
//! (window / RTT of throughput) until a grant frees up at the next summon. The session driver
//! holds the [`WindowGrant`] and returns it when the agent goes back to standby or disconnects.
//!
//! So with N agents connected and G grants, the hub's flow-control memory is at most
//! `N × cost(standby) + G × cost(full)`, where [`cost`] counts what quinn may really hold for a
//! window: its reassembly buffer keeps up to 1.5 × the buffered bytes (at least 32 KiB) of slack
//! before it compacts, so `2.5 × receive + 32 KiB + send`.

use std::sync::Arc;

use outpost_transport::profile::{self, TransportProfile};
use quinn::VarInt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Over-allocation quinn's stream reassembly tolerates before compacting: 1.5 × the buffered bytes,
/// at least 32 KiB (quinn-proto `Assembler::insert`).
const REASSEMBLY_SLACK: u64 = 32 * 1024;

/// A pair of flow-control windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Connection receive window.
    pub receive: u32,
    /// Send window.
    pub send: u32,
}

impl Windows {
    /// The standby windows every agent connection starts with.
    pub const STANDBY: Self = Self {
        receive: profile::HUB_STANDBY_WINDOW,
        send: profile::HUB_STANDBY_WINDOW,
    };

    /// The full windows of a transport profile.
    pub fn full(profile: &TransportProfile) -> Self {
        Self {
            receive: profile.connection_window,
            send: profile.send_window,
        }
    }

    fn apply(self, conn: &quinn::Connection) {
        conn.set_receive_window(VarInt::from_u32(self.receive));
        conn.set_send_window(self.send.into());
    }
}

/// The most memory a connection with `windows` can hold in flow-controlled buffers.
pub fn cost(windows: Windows) -> u64 {
    u64::from(windows.receive) * 5 / 2 + REASSEMBLY_SLACK + u64::from(windows.send)
}

/// Grants of full windows, as many as a memory budget holds.
#[derive(Debug)]
pub struct WindowBudget {
    full: Windows,
    grants: Arc<Semaphore>,
    max_grants: usize,
}

impl WindowBudget {
    /// As many grants of `profile`'s full windows as fit in `budget` bytes (at least one, so a
    /// tiny budget still lets one device transfer at full speed).
    pub fn new(budget: u64, profile: &TransportProfile) -> Self {
        let full = Windows::full(profile);
        let max_grants = usize::try_from(budget / cost(full))
            .unwrap_or(usize::MAX)
            .max(1);
        Self {
            full,
            grants: Arc::new(Semaphore::new(max_grants)),
            max_grants,
        }
    }

    /// Full windows for `conn`, or `None` when every grant is taken.
    pub fn grant(&self, conn: &quinn::Connection) -> Option<WindowGrant> {
        let permit = self.grants.clone().try_acquire_owned().ok()?;
        self.full.apply(conn);
        Some(WindowGrant {
            conn: conn.clone(),
            _permit: permit,
        })
    }

    /// How many connections may hold full windows at once.
    pub fn max_grants(&self) -> usize {
        self.max_grants
    }

    /// The bound on flow-controlled memory with `agents` connected and every grant taken.
    pub fn worst_case(&self, agents: u64) -> u64 {
        agents * cost(Windows::STANDBY) + self.max_grants as u64 * cost(self.full)
    }
}

/// Full windows held by one connection; dropping it returns the connection to standby windows.
#[derive(Debug)]
pub struct WindowGrant {
    conn: quinn::Connection,
    _permit: OwnedSemaphorePermit,
}

impl Drop for WindowGrant {
    fn drop(&mut self) {
        Windows::STANDBY.apply(&self.conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_budget_holds_whole_grants_and_at_least_one() {
        let profile = profile::CELLULAR;
        let per_grant = cost(Windows::full(&profile));
        assert_eq!(
            WindowBudget::new(10 * per_grant + 1, &profile).max_grants(),
            10
        );
        assert_eq!(WindowBudget::new(0, &profile).max_grants(), 1);
    }

    #[test]
    fn the_default_budget_bounds_a_hub_of_25000_agents() {
        let budget =
            WindowBudget::new(crate::agent_link::DEFAULT_WINDOW_BUDGET, &profile::CELLULAR);
        let worst = budget.worst_case(25_000);
        // Standby windows for everyone plus the granted full windows: a few GiB, not 25,000 × 4 MiB.
        assert!(worst <= 4 * 1024 * MIB, "{} MiB", worst / MIB);
        assert!(cost(Windows::STANDBY) <= 96 * 1024);
    }
}
