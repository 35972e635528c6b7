//! Rollout events between the hubs of one store (issue #18: "desired-state changes reach every
//! hub through `LISTEN/NOTIFY`").
//!
//! A rollout is coordinated by one hub (`rollouts.hub_id`, [`crate::fleet`]), but its devices
//! may be held by any. So each hub tells the others, on the channel of [`crate::changes`]:
//! - `d`, desired: the coordinator assigned these devices a new state; the hub holding one tells
//!   its session at once (else it learns at its next check-in or connection);
//! - `r`, reported: these devices reported on their stacks, stored in `deployments`; a
//!   coordinator whose rollouts target them reads their rows back and feeds them;
//! - `p` / `a`, present / absent: their sessions began or ended here;
//! - `l`, labelled: their group or tags changed; a coordinator adds them to the rollouts whose
//!   selection now matches.
//!
//! The payload is `fleet:<hub id>:<kind>:<id>,<id>,…` ([`crate::announcement`]), split so each
//! stays under PostgreSQL's 8,000-byte limit; a hub ignores its own. Each tick sends at most one
//! announcement per kind and [`announcement::MAX_PAYLOAD`] of ids, and only while another hub is
//! alive.

use crate::announcement;
use crate::context::HubContext;
use crate::registry::Control;

/// What happened to some devices, for the other hubs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Assigned a new desired state.
    Desired,
    /// Reported on their stacks (stored).
    Reported,
    /// Their session began on the announcing hub.
    Present,
    /// Their session on the announcing hub ended.
    Absent,
    /// Their group or tags changed.
    Labelled,
}

impl announcement::Kind for Kind {
    const PREFIX: &'static str = "fleet";

    fn text(self) -> String {
        match self {
            Self::Desired => "d",
            Self::Reported => "r",
            Self::Present => "p",
            Self::Absent => "a",
            Self::Labelled => "l",
        }
        .to_owned()
    }

    fn parse(letter: &str) -> Option<Self> {
        Some(match letter {
            "d" => Self::Desired,
            "r" => Self::Reported,
            "p" => Self::Present,
            "a" => Self::Absent,
            "l" => Self::Labelled,
            _ => return None,
        })
    }
}

/// One announcement of the fleet's as heard.
pub type Relayed = announcement::Relayed<Kind>;

/// Act on what another hub announced.
pub(crate) fn apply(ctx: &HubContext, relayed: Relayed) {
    if relayed.from == ctx.hubs.id {
        return;
    }
    match relayed.kind {
        Kind::Desired => {
            for id in relayed.ids {
                if let Some(session) = ctx.registry.get(id) {
                    // A full queue: the driver is not reading; its next check-in delivers.
                    let _ = session.control().push(Control::DesiredChanged);
                }
            }
        }
        Kind::Reported => ctx.fleet.stored_elsewhere(&relayed.ids),
        Kind::Present | Kind::Absent => {
            let online = relayed.kind == Kind::Present;
            ctx.fleet.presence_elsewhere(&relayed.ids, online);
        }
        Kind::Labelled => ctx.fleet.labelled_elsewhere(&relayed.ids),
    }
}

#[cfg(test)]
mod tests {
    use outpost_protocol::EndpointId;

    use super::*;
    use crate::announcement::{decode, encode, MAX_PAYLOAD};
    use crate::store::hubs::HubId;

    #[test]
    fn an_announcement_survives_its_payloads_split_under_the_limit() {
        let ids: Vec<EndpointId> = (1_000_000..1_003_000).map(EndpointId).collect();
        let payloads = encode(HubId(7), Kind::Reported, &ids);
        assert!(payloads.len() > 1, "3,000 ids do not fit one payload");
        let mut heard = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < MAX_PAYLOAD, "{}", payload.len());
            let relayed = decode::<Kind>(payload).unwrap();
            assert_eq!((relayed.from, relayed.kind), (HubId(7), Kind::Reported));
            heard.extend(relayed.ids);
        }
        assert_eq!(heard, ids);
        assert!(encode(HubId(1), Kind::Desired, &[]).is_empty());
        for kind in [Kind::Desired, Kind::Present, Kind::Absent, Kind::Labelled] {
            let payload = &encode(HubId(2), kind, &[EndpointId(5)])[0];
            assert_eq!(decode::<Kind>(payload).unwrap().kind, kind);
        }
    }

    #[test]
    fn anything_else_is_not_an_announcement() {
        for payload in [
            "",
            "fleet",
            "fleet:1:r",
            "fleet:1:r:",
            "fleet:1:x:5",
            "fleet:x:r:5",
            "fleet:1:r:5,,6",
            "fleet:1:r:-5",
            "removed:5",
            "fleets:1:r:5",
        ] {
            assert_eq!(decode::<Kind>(payload), None, "{payload:?}");
        }
        let long = format!("fleet:1:r:{}", "1,".repeat(4_000));
        assert_eq!(decode::<Kind>(&long), None);
    }
}
