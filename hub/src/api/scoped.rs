//! Fleet work under a scoped credential: a job or rollout may be started, seen or steered only
//! when every device its selection can reach is in the credential's scope — its groups and tags
//! are the scope's own, its endpoint ids are in scope — so a device that joins one of those groups
//! later is in scope too. Lists narrow the same way in SQL ([`crate::store::access`]).

use axum::http::StatusCode;

use super::ApiError;
use crate::access::Principal;
use crate::context::HubContext;
use crate::store::access;
use crate::store::rollouts::Selector;

/// Refuse (403) a selection that reaches outside the principal's scope; `what` names the work.
pub(super) async fn check_selection(
    ctx: &HubContext,
    principal: &Principal,
    selector: &Selector,
    what: &str,
) -> Result<(), ApiError> {
    let Some(scope) = &principal.scope else {
        return Ok(());
    };
    let outside = match scope.outside_of(selector) {
        Some(label) => Some(label),
        None => {
            let (ids, owned) = (selector.endpoints.clone(), scope.clone());
            ctx.store
                .read(move |c| access::first_outside(c, &ids, &owned))
                .await?
                .map(|id| format!("endpoint {id}"))
        }
    };
    match outside {
        Some(outside) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{what} reaches {outside}, outside the scope of credential {:?} ({scope})",
                principal.name
            ),
        )),
        None => Ok(()),
    }
}
