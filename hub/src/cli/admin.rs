//! The admin client behind `outpost-hub endpoint …`: resolves where the API is and how to trust it,
//! calls it through [`outpost_api::ApiClient`], and prints JSON or a table.

use std::future::Future;
use std::path::Path;

use anyhow::{Context as _, Result};
use outpost_api::{ApiClient, ApiError, EndpointDetail, ListQuery, Page, NO_MESSAGE};
use serde::Serialize;

use super::escape::{escape_controls, escape_json};
use super::{ApiArgs, EndpointCommand, ListArgs};

fn read_trimmed(path: &Path, what: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("no {what} given and {} is not readable (pass --{what} or run on the hub's machine with --data-dir)", path.display()))?
        .trim()
        .to_owned())
}

/// A client of the API `args` point at.
pub(super) fn connect(args: &ApiArgs) -> Result<ApiClient> {
    let base = match &args.api {
        Some(url) => url.clone(),
        None => read_trimmed(&args.data_dir.join("api.url"), "api")?,
    };
    let token = match &args.token {
        Some(token) => token.clone(),
        None => read_trimmed(&args.data_dir.join("admin.token"), "token")?,
    };
    let ca_path = args
        .ca
        .clone()
        .unwrap_or_else(|| args.data_dir.join("ca.pem"));
    let ca = std::fs::read(&ca_path).with_context(|| {
        format!(
            "cannot read the hub CA certificate {} (pass --ca)",
            ca_path.display()
        )
    })?;
    ApiClient::new(&base, &token, &ca).map_err(|e| failed(&base, e))
}

/// An API failure as the admin reads it: the hub's message (escaped) and status, or why the hub
/// could not be reached.
pub(super) fn failed(base: &str, error: ApiError) -> anyhow::Error {
    match error {
        ApiError::Status {
            status, message, ..
        } => {
            let message = message.as_deref().unwrap_or(NO_MESSAGE);
            anyhow::anyhow!("{} ({status})", escape_controls(message))
        }
        ApiError::Transport { source, .. } => {
            anyhow::Error::from(source).context(format!("cannot reach the hub API at {base}"))
        }
        ApiError::Client(source) => source.into(),
        other @ ApiError::BadReply { .. } => other.into(),
    }
}

/// Run an endpoint command.
pub async fn run(args: &ApiArgs, command: EndpointCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        EndpointCommand::Create {
            name,
            agent_id,
            fleet,
            group,
            tags,
        } => {
            let new = outpost_api::NewEndpoint {
                name,
                agent_id,
                fleet,
                group,
                tags,
            };
            print_json(&api.create_endpoint(&new).await.map_err(failed)?)
        }
        EndpointCommand::List(args) => list(&api, args).await,
        EndpointCommand::Tag { id, tag } => {
            let shown = api.tag(id, &tag).await.map_err(failed)?;
            println!("endpoint {id} tags: {}", texts(&shown.tags));
            Ok(())
        }
        EndpointCommand::Untag { id, tag } => {
            let shown = api.untag(id, &tag).await.map_err(failed)?;
            println!("endpoint {id} tags: {}", texts(&shown.tags));
            Ok(())
        }
        EndpointCommand::Group { id, group } => {
            let shown = api.group(id, &group).await.map_err(failed)?;
            println!("endpoint {id} group: {}", text(shown.group.as_deref()));
            Ok(())
        }
        EndpointCommand::Ungroup { id } => {
            let shown = api.ungroup(id).await.map_err(failed)?;
            println!("endpoint {id} group: {}", text(shown.group.as_deref()));
            Ok(())
        }
        EndpointCommand::Show { id, json } => {
            let endpoint = api.show(id).await.map_err(failed)?;
            if json {
                print_json(&endpoint)
            } else {
                print_fields(&endpoint)
            }
        }
        EndpointCommand::Approve { id } => {
            api.approve(id).await.map_err(failed)?;
            println!("endpoint {id} approved");
            Ok(())
        }
        EndpointCommand::Summon { id } => {
            let answer = api.summon(id).await.map_err(failed)?;
            println!("endpoint {id} ready in {:.1} ms", answer.ready_ms);
            Ok(())
        }
        EndpointCommand::Context {
            id,
            name,
            cert_dir,
            print,
        } => super::docker_context::context(&api, id, name, &cert_dir, print).await,
        EndpointCommand::Reset { id } => print_json(&api.reset(id).await.map_err(failed)?),
        EndpointCommand::Rm { id } => {
            let answer = api.remove(id).await.map_err(failed)?;
            let note = if answer.disconnected {
                ", its connection closed"
            } else {
                ""
            };
            println!("endpoint {id} removed, certificate revoked{note}");
            Ok(())
        }
    }
}

async fn list(api: &ApiClient, args: ListArgs) -> Result<()> {
    let order = if args.desc { "desc" } else { "asc" };
    let query = ListQuery {
        page: Some(args.page.to_string()),
        per_page: Some(args.per_page.to_string()),
        sort: Some(args.sort),
        order: Some(order.into()),
        status: args.status,
        search: args.search,
        group: args.group,
        tag: args.tag,
        kind: args.fleets.then(|| "fleet".into()),
    };
    let page = api
        .list(&query)
        .await
        .map_err(|e| failed(api.base_url(), e))?;
    if args.json {
        print_json(&page)
    } else {
        print_table(&page);
        Ok(())
    }
}

/// What the hub answers to `request`, or `None` once that is printed as JSON (`json`): the
/// commands that print either the answer or a table of it start alike. A failure is worded by
/// [`failed`].
pub(super) async fn asked<T: Serialize>(
    api: &ApiClient,
    request: impl Future<Output = Result<T, ApiError>>,
    json: bool,
) -> Result<Option<T>> {
    let answer = request.await.map_err(|e| failed(api.base_url(), e))?;
    if json {
        print_json(&answer)?;
        return Ok(None);
    }
    Ok(Some(answer))
}

/// Pretty JSON of what the hub answered, keys sorted, control characters escaped.
pub(super) fn print_json(answer: &impl Serialize) -> Result<()> {
    let value = serde_json::to_value(answer)?;
    println!("{}", escape_json(&serde_json::to_string_pretty(&value)?));
    Ok(())
}

/// A field for a human: escaped ([`escape_controls`]), `-` when absent.
pub(super) fn text(value: Option<&str>) -> String {
    value.map_or_else(|| "-".into(), |s| escape_controls(s).into_owned())
}

/// A list for a human: escaped items joined by `,`, `-` when empty.
pub(super) fn texts(values: &[String]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let escaped: Vec<_> = values.iter().map(|v| escape_controls(v)).collect();
    escaped.join(",")
}

/// A JSON value for a human: strings and lists as [`text`] and [`texts`] print them, anything
/// else as its JSON.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => escape_controls(s).into_owned(),
        serde_json::Value::Array(items) if items.is_empty() => "-".into(),
        serde_json::Value::Array(items) => {
            items.iter().map(json_text).collect::<Vec<_>>().join(",")
        }
        other => escape_controls(&other.to_string()).into_owned(),
    }
}

fn print_table(page: &Page) {
    println!(
        "{:<6} {:<24} {:<8} {:<16} {:<24} {:<36} {:<26} {:<22} {:>8}",
        "ID", "NAME", "STATUS", "GROUP", "TAGS", "AGENT", "LAST CHECK-IN", "ADDRESS", "RTT ms"
    );
    for item in &page.items {
        let rtt = item
            .rtt_ms
            .map(|ms| serde_json::Value::from(ms).to_string());
        println!(
            "{:<6} {:<24} {:<8} {:<16} {:<24} {:<36} {:<26} {:<22} {:>8}",
            item.id,
            text(Some(&item.name)),
            item.status.as_str(),
            text(item.group.as_deref()),
            texts(&item.tags),
            text(item.agent_id.as_deref()),
            text(item.last_checkin.as_deref()),
            text(item.remote_addr.as_deref()),
            text(rtt.as_deref()),
        );
    }
    println!("({} in all)", page.total);
}

/// `endpoint show`: every field of the answer, one per line, in the order of its JSON's keys.
fn print_fields(endpoint: &EndpointDetail) -> Result<()> {
    if let serde_json::Value::Object(fields) = serde_json::to_value(endpoint)? {
        for (key, value) in &fields {
            println!("{:<14} {}", escape_controls(key), json_text(value));
        }
    }
    Ok(())
}
