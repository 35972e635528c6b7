//! Groups and tags through the API: `PATCH /api/endpoints/{id}` sets the group and replaces the
//! tags, `POST /api/endpoints/{id}/tags` adds one tag, `DELETE /api/endpoints/{id}/tags/{tag}`
//! removes one. Each answers with the endpoint as `GET /api/endpoints/{id}` shows it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use outpost_api::{Endpoint, EndpointPatch, NewTag};
use outpost_protocol::EndpointId;
use tracing::info;

use super::endpoints::{not_found, view_of};
use super::id::{CanonicalId, IdPath};
use super::ApiError;
use crate::context::HubContext;
use crate::store::labels::{self, MAX_TAGS};
use crate::store::{Label, TagAdded};

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// A group name from a request, validated.
pub(super) fn parse_group(text: Option<&str>) -> Result<Option<Label>, ApiError> {
    text.map(|t| t.parse().map_err(|e| bad(format!("group {t:?}: {e}"))))
        .transpose()
}

/// Tag names from a request, validated and bounded.
pub(super) fn parse_tags(texts: &[String]) -> Result<Vec<Label>, ApiError> {
    if texts.len() > MAX_TAGS {
        return Err(bad(format!("an endpoint carries at most {MAX_TAGS} tags")));
    }
    texts
        .iter()
        .map(|t| t.parse().map_err(|e| bad(format!("tag {t:?}: {e}"))))
        .collect()
}

pub(super) async fn patch(
    State(ctx): State<Arc<HubContext>>,
    IdPath(CanonicalId(id)): IdPath<CanonicalId>,
    Json(request): Json<EndpointPatch>,
) -> Result<Json<Endpoint>, ApiError> {
    let group = request
        .group
        .map(|g| parse_group(g.as_deref()))
        .transpose()?;
    let tags = request.tags.as_deref().map(parse_tags).transpose()?;
    let found = ctx
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            if !labels::exists(&tx, id)? {
                return Ok(false);
            }
            if let Some(group) = &group {
                labels::set_group(&tx, id, group.as_ref())?;
            }
            if let Some(tags) = &tags {
                // parse_tags bounded the count, so every tag lands.
                labels::set_tags(&tx, id, tags)?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await?;
    if !found {
        return Err(not_found(id));
    }
    info!(endpoint = %id, "endpoint labels changed");
    ctx.fleet.labelled(id);
    Ok(Json(view_of(&ctx, id).await?))
}

pub(super) async fn add_tag(
    State(ctx): State<Arc<HubContext>>,
    IdPath(CanonicalId(id)): IdPath<CanonicalId>,
    Json(request): Json<NewTag>,
) -> Result<Json<Endpoint>, ApiError> {
    let tag: Label = request
        .tag
        .parse()
        .map_err(|e| bad(format!("tag {:?}: {e}", request.tag)))?;
    let added = tag.clone();
    match ctx
        .store
        .call(move |c| labels::add_tag(c, id, &added))
        .await?
    {
        TagAdded::Done => {
            info!(endpoint = %id, %tag, "tag added");
            ctx.fleet.labelled(id);
            Ok(Json(view_of(&ctx, id).await?))
        }
        TagAdded::NoEndpoint => Err(not_found(id)),
        TagAdded::Full => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("endpoint {id} already carries {MAX_TAGS} tags; remove one first"),
        )),
    }
}

pub(super) async fn remove_tag(
    State(ctx): State<Arc<HubContext>>,
    IdPath((CanonicalId(id), tag)): IdPath<(CanonicalId, String)>,
) -> Result<Json<Endpoint>, ApiError> {
    let label = tag.parse::<Label>().ok();
    let (exists, removed) = ctx
        .store
        .call(move |c| {
            let removed = match &label {
                Some(label) => labels::remove_tag(c, id, label)?,
                None => false,
            };
            Ok((labels::exists(c, id)?, removed))
        })
        .await?;
    if !exists {
        return Err(not_found(id));
    }
    if !removed {
        return Err(tag_not_found(id, &tag));
    }
    info!(endpoint = %id, %tag, "tag removed");
    Ok(Json(view_of(&ctx, id).await?))
}

fn tag_not_found(id: EndpointId, tag: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("endpoint {id} has no tag {tag:?}"),
    )
}
