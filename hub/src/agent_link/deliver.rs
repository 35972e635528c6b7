//! The store's half of stack delivery for one session: read the device's desired state when the
//! session asks ([`crate::session::delivery`]). The reports the agent sends go to the fleet's
//! queue ([`crate::fleet::Fleet::report`]), which stores each second's reports in one transaction.
//!
//! The read is awaited by the session driver after its `select!`, like snapshots and renewals: a
//! slow disk delays this agent's next frame, never another agent's.

use outpost_protocol::stack::DesiredState;
use tracing::{info, warn};

use crate::context::HubContext;
use crate::registry::LiveSession;
use crate::store::deployments;

/// The device's desired state if the agent should be sent it now. A store failure sends nothing;
/// the next check-in asks again.
pub(super) async fn desired_to_send(
    ctx: &HubContext,
    session: &LiveSession,
) -> Option<DesiredState> {
    let id = session.endpoint;
    let state = match ctx
        .store
        .read(move |c| deployments::desired_state(c, id))
        .await
    {
        Ok(state) => state,
        Err(e) => {
            warn!(endpoint = %id, "desired state not read: {e}");
            return None;
        }
    };
    if !session.desired_read(state.digest()) {
        return None;
    }
    info!(endpoint = %id, stacks = state.stacks.len(), "sending the desired state");
    Some(state)
}
