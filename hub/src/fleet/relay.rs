//! The fleet's side of [`crate::fleet_relay`]: what this hub's tick announces to the other hubs,
//! what it reads back for the announcements it heard, and telling sessions here or elsewhere
//! that their desired state changed.

use std::collections::{HashMap, HashSet};

use outpost_protocol::stack::Phase;
use outpost_protocol::EndpointId;
use tracing::{debug, warn};

use super::{Event, Queued};
use crate::announcement;
use crate::context::HubContext;
use crate::fleet_relay::Kind;
use crate::registry::Control;
use crate::store::deployments::{self, DeploymentRow};
use crate::store::endpoints;

/// Tell the sessions of `endpoints` that what they should run changed: those held here at once,
/// the others through the hubs holding them. A device offline everywhere is sent its state at
/// its next session.
pub(super) async fn tell(ctx: &HubContext, endpoints: &[EndpointId]) {
    let mut elsewhere = Vec::new();
    for endpoint in endpoints {
        match ctx.registry.get(*endpoint) {
            // A full queue means the driver is not reading it; the next check-in delivers anyway.
            Some(session) => {
                let _ = session.control().push(Control::DesiredChanged);
            }
            None => elsewhere.push(*endpoint),
        }
    }
    if ctx.hubs.others_alive() > 0 {
        announce(ctx, Kind::Desired, elsewhere).await;
    }
}

/// Announce what happened here this tick: reports stored, sessions begun and ended, labels
/// changed. Only while another hub is alive to hear it.
pub(super) async fn announce_local(ctx: &HubContext, events: &[Queued]) {
    if ctx.hubs.others_alive() == 0 {
        return;
    }
    let mut by_kind: HashMap<Kind, Vec<EndpointId>> = HashMap::new();
    for queued in events.iter().filter(|q| !q.remote) {
        let (kind, id) = match &queued.event {
            Event::Report(id, _) => (Kind::Reported, *id),
            Event::Presence(id, true) => (Kind::Present, *id),
            Event::Presence(id, false) => (Kind::Absent, *id),
            Event::Labelled(id) => (Kind::Labelled, *id),
            Event::Stored(_) => continue,
        };
        by_kind.entry(kind).or_default().push(id);
    }
    for (kind, ids) in by_kind {
        announce(ctx, kind, ids).await;
    }
}

/// Send one announcement; a failure is logged (the store holds the truth: a coordinator that
/// misses a report learns the device's phase from its next one, or when it restarts).
async fn announce(ctx: &HubContext, kind: Kind, mut ids: Vec<EndpointId>) {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let hub = ctx.hubs.id;
    let count = ids.len();
    let sent = ctx
        .store
        .call(move |c| announcement::announce(c, hub, kind, &ids))
        .await;
    match sent {
        Ok(()) => debug!(
            ?kind,
            devices = count,
            "rollout event announced to the other hubs"
        ),
        Err(e) => warn!(
            ?kind,
            devices = count,
            "rollout event not announced to the other hubs: {e}"
        ),
    }
}

/// What the store says of the devices other hubs announced: their deployment rows (for stored
/// reports) and which are connected (for sessions that ended elsewhere).
#[derive(Debug, Default)]
pub(super) struct Remote {
    rows: HashMap<EndpointId, Vec<DeploymentRow>>,
    connected: HashSet<EndpointId>,
}

impl Remote {
    /// The phase `endpoint` last reported for `version` of `stack`.
    pub(super) fn phase(&self, endpoint: EndpointId, stack: &str, version: u32) -> Option<Phase> {
        self.rows
            .get(&endpoint)?
            .iter()
            .find(|row| row.stack == stack && row.version == version)
            .map(|row| row.phase.clone())
    }

    /// Whether `endpoint` is connected to some hub.
    pub(super) fn connected(&self, endpoint: EndpointId) -> bool {
        self.connected.contains(&endpoint)
    }
}

/// Read what the other hubs' announcements in `events` refer to, in one read.
pub(super) async fn read_remote(ctx: &HubContext, events: &[Queued]) -> Remote {
    let mut stored = Vec::new();
    let mut absent = Vec::new();
    for queued in events.iter().filter(|q| q.remote) {
        match queued.event {
            Event::Stored(id) => stored.push(id),
            Event::Presence(id, false) => absent.push(id),
            _ => {}
        }
    }
    if stored.is_empty() && absent.is_empty() {
        return Remote::default();
    }
    let read = ctx
        .store
        .read(move |c| {
            let mut rows = HashMap::new();
            for id in stored {
                rows.insert(id, deployments::deployments_of(c, id)?);
            }
            let connected = endpoints::connected_of(c, &absent)?;
            Ok(Remote { rows, connected })
        })
        .await;
    read.unwrap_or_else(|e| {
        warn!("the other hubs' rollout events not read back: {e}");
        Remote::default()
    })
}
