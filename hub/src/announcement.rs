//! The one payload format of the relays between the hubs of one store ([`crate::fleet_relay`],
//! [`crate::job_relay`]), kept in one place so both split and bound their payloads alike.
//!
//! A payload is `<prefix>:<hub id>:<kind>:<id>,<id>,…`. The prefix tells the relays apart, the
//! kind is the relay's own ([`Kind`]). Announcing many devices splits them over as many payloads
//! as keep each under PostgreSQL's 8,000-byte limit ([`MAX_PAYLOAD`]); reading one back refuses
//! an oversized payload before looking inside it, and anything not wholly an announcement.

use outpost_protocol::EndpointId;

use crate::changes::{announce_text, CHANNEL_LIMIT};
use crate::store::db::Db;
use crate::store::hubs::HubId;
use crate::store::StoreError;

/// Longest payload sent: PostgreSQL refuses 8,000 bytes and more.
pub const MAX_PAYLOAD: usize = CHANNEL_LIMIT;

/// What a relay announces happened to some devices.
pub trait Kind: Copy {
    /// The payload's first field, naming the relay.
    const PREFIX: &'static str;

    /// The kind as the payload's third field.
    fn text(self) -> String;

    /// The payload's third field back into a kind; `None` for anything else.
    fn parse(text: &str) -> Option<Self>;
}

/// One announcement as heard: who sent it, what, about which devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed<K> {
    /// The announcing hub.
    pub from: HubId,
    /// What happened.
    pub kind: K,
    /// To which devices.
    pub ids: Vec<EndpointId>,
}

/// The payloads announcing `kind` for `ids` from `hub`, each under [`MAX_PAYLOAD`] bytes.
pub fn encode<K: Kind>(hub: HubId, kind: K, ids: &[EndpointId]) -> Vec<String> {
    split(&format!("{}:{}:{}:", K::PREFIX, hub.0, kind.text()), ids)
}

/// `head` followed by `ids` separated by commas, in as many payloads as keep each under
/// [`MAX_PAYLOAD`] bytes (none for no ids).
fn split(head: &str, ids: &[EndpointId]) -> Vec<String> {
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

/// A payload back into an announcement of `K`; `None` for anything else.
pub fn decode<K: Kind>(payload: &str) -> Option<Relayed<K>> {
    if payload.len() >= MAX_PAYLOAD {
        return None;
    }
    let mut parts = payload.splitn(4, ':');
    if parts.next()? != K::PREFIX {
        return None;
    }
    let from = HubId(parts.next()?.parse().ok()?);
    let kind = K::parse(parts.next()?)?;
    let ids = ids(parts.next()?)?;
    Some(Relayed { from, kind, ids })
}

/// The ids of a payload [`split`] wrote; `None` if any is not one.
fn ids(text: &str) -> Option<Vec<EndpointId>> {
    text.split(',')
        .map(|id| id.parse().ok().map(EndpointId))
        .collect()
}

/// Tell the other hubs (PostgreSQL only) that `kind` happened to `ids`.
pub fn announce<K: Kind>(
    conn: &Db,
    hub: HubId,
    kind: K,
    ids: &[EndpointId],
) -> Result<(), StoreError> {
    for payload in encode(hub, kind, ids) {
        announce_text(conn, &payload)?;
    }
    Ok(())
}
