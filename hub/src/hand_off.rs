//! A stopping hub's last word to its agents (issue #18: "a hub stopping cleanly hands its agents
//! to the others with its restart notice").
//!
//! Alone, a hub asks its agents back within a spread sized to its own set-up rate
//! ([`RestartNotice`]). With other live hubs on its store, it hands them over instead: each agent
//! that knows the fleet's hubs (`Features::HUB_ADDRS`) is told `reconnect elsewhere within …`
//! and dials the rest of its list first. Each agent's list is rotated by its id
//! (`crate::hubs::FleetHubs::addrs_for`), so the agents spread evenly over the other hubs and the
//! window is sized to their set-up rate together: `n / k` agents per hub for `k` others. An agent
//! that does not know the form gets the plain notice and comes back to this address.

use std::sync::Arc;
use std::time::Duration;

use outpost_protocol::wire::{CloseCode, RestartNotice};
use tokio::time::Instant;
use tracing::info;

use crate::context::HubContext;
use crate::registry::LiveSession;
use crate::restart_notice::Returning;
use crate::tickets::TICKET_LIFETIME;

/// What each kind of agent is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Farewell {
    /// For agents that come back here.
    pub(crate) back_here: RestartNotice,
    /// For agents handed to the other hubs, when there are any.
    pub(crate) elsewhere: Option<RestartNotice>,
}

/// The notices for `movable` agents that can be handed over and `staying` ones that cannot,
/// with `others` other live hubs; `spread(agents)` is the window in which one hub sets up those
/// agents.
pub(crate) fn farewell(
    movable: Returning,
    staying: Returning,
    others: usize,
    spread: impl Fn(Returning) -> Duration,
) -> Farewell {
    if others == 0 {
        return Farewell {
            back_here: RestartNotice::new(spread(Returning {
                full: movable.full + staying.full,
                resumed: movable.resumed + staying.resumed,
            })),
            elsewhere: None,
        };
    }
    Farewell {
        back_here: RestartNotice::new(spread(staying)),
        elsewhere: Some(RestartNotice::elsewhere(spread(movable.per_hub(others)))),
    }
}

/// Sessions closed, each with the datagrams it had sent when closed: their closes are on the
/// way until they have sent more ([`Closing::wait_sent`]).
pub(crate) struct Closing {
    /// The notice for the agents asked back here, for the connections still being set up.
    pub(crate) back_here: RestartNotice,
    pending: Vec<(Arc<LiveSession>, u64)>,
}

/// How often [`Closing::wait_sent`] looks.
const CLOSE_POLL: Duration = Duration::from_millis(100);

impl Closing {
    /// Wait until every close has been sent, or `cap` has passed; how many were not.
    ///
    /// A close that never leaves costs its agent its idle timeout (110 s), and the agent's
    /// check-ins meanwhile meet the next hub, whose stateless resets are rationed: at 100,000
    /// agents a fixed 2 s drain sent only some closes, and the rest flooded the next hub with
    /// ~60,000 stale packets a second for two minutes (`scale` bench).
    pub(crate) async fn wait_sent(mut self, cap: Duration) -> usize {
        let deadline = Instant::now() + cap;
        loop {
            self.pending
                .retain(|(session, before)| session.datagrams_sent() <= *before);
            if self.pending.is_empty() || Instant::now() >= deadline {
                return self.pending.len();
            }
            tokio::time::sleep(CLOSE_POLL).await;
        }
    }
}

/// Close every session with its notice: handed to the other hubs where there are some and the
/// agent takes it, else asked back here.
pub(crate) fn close_sessions(ctx: &HubContext, spread: impl Fn(Returning) -> Duration) -> Closing {
    let sessions = ctx.registry.all();
    let resumes = resumes_when(ctx.tickets.is_some(), Instant::now());
    let (mut movable, mut staying) = (Returning::default(), Returning::default());
    for session in &sessions {
        let kind = if session.takes_hub_addrs() {
            &mut movable
        } else {
            &mut staying
        };
        if resumes(session) {
            kind.resumed += 1;
        } else {
            kind.full += 1;
        }
    }
    let others = ctx.hubs.others_alive();
    let notices = farewell(movable, staying, others, spread);
    info!(
        back_here = ?notices.back_here.spread,
        elsewhere = ?notices.elsewhere.map(|n| n.spread),
        ?movable,
        ?staying,
        others,
        "asking the agents to come back spread over"
    );
    let back_here = notices.back_here.encode();
    let elsewhere = notices.elsewhere.map(|n| n.encode());
    let mut pending = Vec::with_capacity(sessions.len());
    for session in sessions {
        let reason = match &elsewhere {
            Some(reason) if session.takes_hub_addrs() => reason,
            _ => &back_here,
        };
        let sent = session.datagrams_sent();
        session.close(CloseCode::Stopping, reason);
        pending.push((session, sent));
    }
    Closing {
        back_here: notices.back_here,
        pending,
    }
}

/// Whether a session's agent will resume on the next hub: tickets sealed under the store's keys
/// (`shared`), from a handshake under a ticket's lifetime before `now`.
fn resumes_when(shared: bool, now: Instant) -> impl Fn(&LiveSession) -> bool {
    move |session| shared && now.duration_since(session.connected_at()) < TICKET_LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One hub sets up 600 a second in full, 1,200 resuming, at least 5 s.
    fn spread(agents: Returning) -> Duration {
        Duration::from_secs_f64(agents.full as f64 / 600.0 + agents.resumed as f64 / 1200.0)
            .max(Duration::from_secs(5))
    }

    fn full(n: usize) -> Returning {
        Returning {
            full: n,
            resumed: 0,
        }
    }

    #[test]
    fn alone_a_hub_asks_everyone_back_within_its_own_rate() {
        let notices = farewell(full(20_000), full(10_000), 0, spread);
        assert_eq!(
            notices.back_here,
            RestartNotice::new(Duration::from_secs(50))
        );
        assert_eq!(notices.elsewhere, None);
        let resuming = Returning {
            full: 0,
            resumed: 20_000,
        };
        let notices = farewell(resuming, full(10_000), 0, spread);
        assert_eq!(
            notices.back_here.spread.as_millis(),
            33_333,
            "resuming agents cost half a full one"
        );
    }

    #[test]
    fn with_other_hubs_the_movable_agents_go_there_within_their_joint_rate() {
        let notices = farewell(full(24_000), full(600), 2, spread);
        let elsewhere = notices.elsewhere.unwrap();
        assert!(elsewhere.elsewhere);
        assert_eq!(elsewhere.spread, Duration::from_secs(20), "12,000 per hub");
        assert_eq!(
            notices.back_here,
            RestartNotice::new(Duration::from_secs(5))
        );
        assert!(!notices.back_here.elsewhere);
    }
}
