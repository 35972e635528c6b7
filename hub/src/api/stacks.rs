//! Stacks through the API: `POST /api/stacks` stores a Compose file as the stack's next version,
//! `GET /api/stacks` pages through them by name, `GET /api/stacks/{name}[?version=N]` shows the
//! history and one version, `DELETE /api/stacks/{name}` removes the stack.
//!
//! A file is read and checked in full before anything is stored ([`crate::stacks::compile`]); a
//! refusal is a 400 whose message names the key and line.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use outpost_api::{
    NewStackVersion, StackDetail, StackListQuery, StackPage, StackRemoved, StackSummary,
    StackVersionInfo, StackVersionSaved,
};
use outpost_protocol::stack::{StackError, StackSpec};
use serde::Deserialize;
use tracing::info;

use super::page::{counted, page_asked, Counted};
use super::ApiError;
use crate::context::HubContext;
use crate::stacks::{compile, ComposeError, ComposeInput};
use crate::store::stacks::{self, Removed, Saved, StackVersionRecord};

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn no_stack(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no stack named {name:?}"))
}

/// The stack's name as a project name, or a 400 saying what is allowed.
fn check_name(name: &str) -> Result<(), ApiError> {
    let probe = StackSpec {
        project: name.to_owned(),
        version: 1,
        services: vec![],
        volumes: vec![],
    };
    match probe.check() {
        Err(e @ StackError::BadName { .. }) => Err(bad(format!(
            "stack {e}; the name becomes the Compose project on every device"
        ))),
        _ => Ok(()),
    }
}

pub(super) async fn save(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<NewStackVersion>,
) -> Result<(StatusCode, Json<StackVersionSaved>), ApiError> {
    check_name(&request.name)?;
    let name = request.name.clone();
    let saved = ctx
        .store
        .call(move |c| {
            stacks::save_version(c, &request.name, &request.compose, |version| {
                compile(&ComposeInput {
                    project: &request.name,
                    version,
                    compose: &request.compose,
                    variables: request.env_file.as_deref(),
                    env_files: &request.env_files,
                })
            })
        })
        .await?
        .map_err(|e: ComposeError| bad(format!("the Compose file was refused: {e}")))?;
    let (status, record) = match saved {
        Saved::Created(record) => {
            info!(stack = %name, version = record.version, "stack version stored");
            (StatusCode::CREATED, record)
        }
        Saved::Unchanged(record) => (StatusCode::OK, record),
    };
    let created = status == StatusCode::CREATED;
    Ok((status, Json(saved_view(&record, created))))
}

fn saved_view(record: &StackVersionRecord, created: bool) -> StackVersionSaved {
    StackVersionSaved {
        name: record.name.clone(),
        version: record.version,
        created,
        digest: hex(&record.digest),
        services: record
            .spec
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect(),
    }
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
    query: Result<Query<StackListQuery>, QueryRejection>,
) -> Result<Counted<StackPage>, ApiError> {
    let (offset, per_page) = page_asked(query)?;
    let (rows, total) = ctx
        .store
        .read(move |c| stacks::list(c, offset, per_page))
        .await?;
    let items = rows
        .into_iter()
        .map(|r| StackSummary {
            name: r.name,
            latest_version: r.latest_version,
            versions: r.versions,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect();
    Ok(counted(total, StackPage { items, total }))
}

/// `?version=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionQuery {
    version: Option<u32>,
}

pub(super) async fn show(
    State(ctx): State<Arc<HubContext>>,
    Path(name): Path<String>,
    query: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Json<StackDetail>, ApiError> {
    let Query(VersionQuery { version }) = query.map_err(|e| bad(e.body_text()))?;
    let lookup = name.clone();
    let (record, history) = ctx
        .store
        .read(move |c| {
            Ok((
                stacks::version(c, &lookup, version)?,
                stacks::history(c, &lookup)?,
            ))
        })
        .await?;
    let record = match (record, version) {
        (Some(record), _) => record,
        (None, Some(v)) if !history.is_empty() => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("stack {name:?} has no version {v}"),
            ))
        }
        (None, _) => return Err(no_stack(&name)),
    };
    Ok(Json(StackDetail {
        name: record.name,
        versions: history
            .iter()
            .map(|h| StackVersionInfo {
                version: h.version,
                created_at: h.created_at,
                digest: hex(&h.digest),
            })
            .collect(),
        version: record.version,
        compose: record.compose,
        spec: record.spec,
    }))
}

pub(super) async fn remove(
    State(ctx): State<Arc<HubContext>>,
    Path(name): Path<String>,
) -> Result<Json<StackRemoved>, ApiError> {
    let lookup = name.clone();
    match ctx.store.call(move |c| stacks::remove(c, &lookup)).await? {
        Removed::Done(versions) => {
            info!(stack = %name, versions, "stack removed");
            Ok(Json(StackRemoved { name, versions }))
        }
        Removed::Deployed(devices) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("stack {name:?} is deployed to {devices} devices and cannot be removed while any should run it"),
        )),
        Removed::Missing => Err(no_stack(&name)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
