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
//! The payload is `fleet:<hub id>:<kind>:<id>,<id>,…`, split so each stays under PostgreSQL's
//! 8,000-byte limit; a hub ignores its own. Each tick sends at most one announcement per kind
//! and [`MAX_PAYLOAD`] of ids, and only while another hub is alive.

use outpost_protocol::EndpointId;

use crate::changes::{announce_text, CHANNEL_LIMIT};
use crate::context::HubContext;
use crate::registry::Control;
use crate::store::db::Db;
use crate::store::hubs::HubId;
use crate::store::StoreError;

const PREFIX: &str = "fleet";

/// Longest payload sent: PostgreSQL refuses 8,000 bytes and more.
pub const MAX_PAYLOAD: usize = CHANNEL_LIMIT;

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

impl Kind {
    fn letter(self) -> char {
        match self {
            Self::Desired => 'd',
            Self::Reported => 'r',
            Self::Present => 'p',
            Self::Absent => 'a',
            Self::Labelled => 'l',
        }
    }

    fn from_letter(letter: &str) -> Option<Self> {
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

/// One announcement as heard: who sent it, what, about which devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    /// The announcing hub.
    pub from: HubId,
    /// What happened.
    pub kind: Kind,
    /// To which devices.
    pub ids: Vec<EndpointId>,
}

/// The payloads announcing `kind` for `ids` from `hub`, each under [`MAX_PAYLOAD`] bytes.
pub fn encode(hub: HubId, kind: Kind, ids: &[EndpointId]) -> Vec<String> {
    split(&format!("{PREFIX}:{}:{}:", hub.0, kind.letter()), ids)
}

/// `head` followed by `ids` separated by commas, in as many payloads as keep each under
/// [`MAX_PAYLOAD`] bytes (none for no ids).
pub(crate) fn split(head: &str, ids: &[EndpointId]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = head.to_owned();
    for id in ids {
        let item = id.0.to_string();
        if current.len() + item.len() + 1 >= MAX_PAYLOAD && current.len() > head.len() {
            payloads.push(std::mem::replace(&mut current, head.to_owned()));
        }
        if current.len() > head.len() {
            current.push(',');
        }
        current.push_str(&item);
    }
    if current.len() > head.len() {
        payloads.push(current);
    }
    payloads
}

/// A payload back into an announcement; `None` for anything else.
pub fn decode(payload: &str) -> Option<Relayed> {
    if payload.len() >= MAX_PAYLOAD {
        return None;
    }
    let mut parts = payload.splitn(4, ':');
    if parts.next()? != PREFIX {
        return None;
    }
    let from = HubId(parts.next()?.parse().ok()?);
    let kind = Kind::from_letter(parts.next()?)?;
    let ids = ids(parts.next()?)?;
    Some(Relayed { from, kind, ids })
}

/// The ids of a payload [`split`] wrote; `None` if any is not one.
pub(crate) fn ids(text: &str) -> Option<Vec<EndpointId>> {
    text.split(',')
        .map(|id| id.parse().ok().map(EndpointId))
        .collect()
}

/// Tell the other hubs (PostgreSQL only) that `kind` happened to `ids`.
pub fn announce(conn: &Db, hub: HubId, kind: Kind, ids: &[EndpointId]) -> Result<(), StoreError> {
    for payload in encode(hub, kind, ids) {
        announce_text(conn, &payload)?;
    }
    Ok(())
}

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
    use super::*;

    #[test]
    fn an_announcement_survives_its_payloads_split_under_the_limit() {
        let ids: Vec<EndpointId> = (1_000_000..1_003_000).map(EndpointId).collect();
        let payloads = encode(HubId(7), Kind::Reported, &ids);
        assert!(payloads.len() > 1, "3,000 ids do not fit one payload");
        let mut heard = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < MAX_PAYLOAD, "{}", payload.len());
            let relayed = decode(payload).unwrap();
            assert_eq!((relayed.from, relayed.kind), (HubId(7), Kind::Reported));
            heard.extend(relayed.ids);
        }
        assert_eq!(heard, ids);
        assert!(encode(HubId(1), Kind::Desired, &[]).is_empty());
        for kind in [Kind::Desired, Kind::Present, Kind::Absent, Kind::Labelled] {
            let payload = &encode(HubId(2), kind, &[EndpointId(5)])[0];
            assert_eq!(decode(payload).unwrap().kind, kind);
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
            assert_eq!(decode(payload), None, "{payload:?}");
        }
        let long = format!("fleet:1:r:{}", "1,".repeat(4_000));
        assert_eq!(decode(&long), None);
    }
}
