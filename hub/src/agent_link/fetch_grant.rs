//! Whether a session's device may have what a fetch stream asks for (issue #16, per-device
//! mirror authorisation): the rule is [`crate::mirror::grant`]'s, fed here from the store (the
//! device's orders, read through [`Store::call`](crate::store::Store::call) so every hub of a
//! shared store decides alike, a restarted one too) and from the mirror (the manifests those
//! orders resolve to).
//!
//! A refusal is [`Verdict::Forbidden`]; the caller answers it, logs it and counts it
//! (`outpost_hub_mirror_agent_forbidden`). It is not audited: the audit trail records admins'
//! state-changing calls, and a device's reads, refused or not, are not among them. Admins'
//! pulls through the API's `/v2/` never come here.

use std::sync::Arc;

use outpost_protocol::fetch::Wanted;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::context::HubContext;
use crate::mirror::grant::{OrderedImage, RepoKey, SessionGrant};
use crate::mirror::Route;
use crate::registry::LiveSession;
use crate::store::{ordered_images::ordered_images, unix_now, StoreError};

/// A session's grant, shared by its fetch streams.
pub(super) type SharedGrant = Arc<Mutex<SessionGrant>>;

/// What the grant says of one fetch.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Serve it.
    Granted,
    /// Not ordered onto the device: why, in words for the device's log and its engine.
    Forbidden(String),
    /// The device's orders could not be read, and never were this session (older ones are used
    /// while the store fails).
    Unknown(String),
}

/// Decide whether `session`'s device may fetch `wanted` of the repository `key` (asked for as
/// `name`, routed by `route`).
pub(super) async fn decide(
    ctx: &HubContext,
    session: &LiveSession,
    grant: &Mutex<SessionGrant>,
    (name, route, key): (&str, &Route, &RepoKey),
    wanted: &Wanted,
) -> Verdict {
    let mut grant = grant.lock().await;
    let mut fresh = false;
    if grant.needs_orders(Instant::now()) {
        match read_orders(ctx, session, &mut grant).await {
            Ok(()) => fresh = true,
            Err(e) if !grant.has_orders() => {
                return Verdict::Unknown(format!("the device's orders could not be read: {e}"));
            }
            Err(e) => {
                warn!(endpoint = %session.endpoint, "the device's orders could not be read again: {e}")
            }
        }
    }
    if !grant.allows_repo(key) && !fresh && grant.take_reread(Instant::now()) {
        // About to refuse: the order the device is pulling for may be a moment old (a pull job
        // is sent as it is made). Refusals cost the store a few reads, then one a second.
        if let Err(e) = read_orders(ctx, session, &mut grant).await {
            warn!(endpoint = %session.endpoint, "the device's orders could not be read again: {e}");
        }
    }
    if !grant.allows_repo(key) {
        return Verdict::Forbidden(format!(
            "{name} is not an image ordered onto this device (by a stack deployed to it or an \
             image pull aimed at it)"
        ));
    }
    let Wanted::Blob { digest, .. } = wanted else {
        return Verdict::Granted;
    };
    if !grant.allows_blob(key, digest) && grant.start_look_up(Instant::now()) {
        look_up(ctx, &mut grant, route, key).await;
    }
    if grant.allows_blob(key, digest) {
        return Verdict::Granted;
    }
    Verdict::Forbidden(format!(
        "blob {digest} is in no manifest of an image ordered onto this device"
    ))
}

/// Read the device's orders and the repository each names.
async fn read_orders(
    ctx: &HubContext,
    session: &LiveSession,
    grant: &mut SessionGrant,
) -> Result<(), StoreError> {
    let endpoint = session.endpoint;
    let images = ctx
        .store
        .call(move |conn| ordered_images(conn, endpoint, unix_now()))
        .await?;
    let mut orders = Vec::with_capacity(images.len());
    for image in images {
        let parsed = OrderedImage::parse(&image);
        match parsed.map(|o| (ctx.mirror.repo_key(&o.name), o)) {
            Some((Ok((_, key)), ordered)) => orders.push((key, ordered)),
            Some((Err(e), _)) => {
                debug!(%endpoint, image, "an ordered image the mirror does not serve: {e}")
            }
            None => debug!(%endpoint, image, "an ordered image outside the grammar"),
        }
    }
    grant.set_orders(Instant::now(), orders);
    Ok(())
}

/// Look for the manifests that may reference a blob the session was not served the manifest of,
/// in the (ordered) repository `key` it was asked under, as an engine asks for an image's blobs:
/// each image ordered from it, resolved as a pull would, then every manifest the mirror holds for
/// a tag of it. What they reference is granted. The session's other fetch streams wait meanwhile
/// (the grant is locked): a look-up is rare, at most every `LOOK_UP_EVERY`, and what it resolves
/// from an upstream the mirror keeps.
async fn look_up(ctx: &HubContext, grant: &mut SessionGrant, route: &Route, key: &RepoKey) {
    let ordered_here: Vec<OrderedImage> = grant
        .orders()
        .iter()
        .filter(|(ordered_key, _)| ordered_key == key)
        .map(|(_, ordered)| ordered.clone())
        .collect();
    for ordered in ordered_here {
        match ctx.mirror.references_of(route, &ordered.reference).await {
            Ok(found) => found.iter().for_each(|r| grant.note_manifest(key, r)),
            Err(e) => debug!(name = %ordered.name, "an ordered image did not resolve: {e}"),
        }
    }
    for found in ctx.mirror.known_references(route).await {
        grant.note_manifest(key, &found);
    }
}
