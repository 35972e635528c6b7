//! The store's half of stack delivery for one session: read the device's desired state when the
//! session asks ([`crate::session::delivery`]). The reports the agent sends go to the fleet's
//! queue ([`crate::fleet::Fleet::report`]), which stores each second's reports in one transaction.
//!
//! The read is awaited by the session driver after its `select!`, like snapshots and renewals: a
//! slow disk delays this agent's next frame, never another agent's.
//!
//! An agent that announced drift policies is sent the whole order and names its digest; an
//! older one is sent the stacks alone, names their digest, and re-applies whatever drifts.

use outpost_protocol::wire::HubMessage;
use tracing::{info, warn};

use crate::context::HubContext;
use crate::registry::LiveSession;
use crate::store::deployments;

/// The device's desired state if the agent should be sent it now. A store failure sends nothing;
/// the next check-in asks again.
pub(super) async fn desired_to_send(ctx: &HubContext, session: &LiveSession) -> Option<HubMessage> {
    let id = session.endpoint;
    let order = match ctx
        .store
        .read(move |c| deployments::desired_state(c, id))
        .await
    {
        Ok(order) => order,
        Err(e) => {
            warn!(endpoint = %id, "desired state not read: {e}");
            return None;
        }
    };
    let stacks = order.state.stacks.len();
    let unheeded = (!session.reads_drift_policy()).then(|| order.report_drift.clone());
    let (digest, message) = match unheeded {
        None => (order.digest(), HubMessage::DesiredOrder(order)),
        Some(_) => (order.state.digest(), HubMessage::Desired(order.state)),
    };
    if !session.desired_read(digest) {
        return None;
    }
    if let Some(projects) = unheeded.filter(|p| !p.is_empty()) {
        warn!(endpoint = %id, ?projects, "this agent predates drift policies: it will re-apply these stacks when they drift, not only report it; upgrade the agent");
    }
    info!(endpoint = %id, stacks, "sending the desired state");
    Some(message)
}
