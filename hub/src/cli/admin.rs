//! The admin client behind `outpost-hub endpoint …`: resolves where the API is and how to trust it,
//! calls it, and prints JSON or a table.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use reqwest::Method;
use serde_json::Value;

use super::escape::{escape_controls, escape_json};
use super::{ApiArgs, EndpointCommand, ListArgs};

/// A connection to a hub's admin API.
pub(super) struct Api {
    pub(super) base: String,
    token: String,
    client: reqwest::Client,
}

fn read_trimmed(path: &Path, what: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("no {what} given and {} is not readable (pass --{what} or run on the hub's machine with --data-dir)", path.display()))?
        .trim()
        .to_owned())
}

impl Api {
    pub(super) fn connect(args: &ApiArgs) -> Result<Self> {
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
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client,
        })
    }

    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the hub API at {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["message"].as_str().unwrap_or("no message");
            bail!("{} ({status})", escape_controls(message));
        }
        Ok(body)
    }
}

/// Run an endpoint command.
pub async fn run(args: &ApiArgs, command: EndpointCommand) -> Result<()> {
    let api = Api::connect(args)?;
    match command {
        EndpointCommand::Create {
            name,
            agent_id,
            fleet,
            group,
            tags,
        } => {
            let body = serde_json::json!({
                "name": name, "agent_id": agent_id, "fleet": fleet, "group": group, "tags": tags,
            });
            print_json(&api.call(Method::POST, "/api/endpoints", Some(body)).await?)
        }
        EndpointCommand::List(args) => list(&api, args).await,
        EndpointCommand::Tag { id, tag } => {
            let body = serde_json::json!({ "tag": tag });
            let path = format!("/api/endpoints/{id}/tags");
            let shown = api.call(Method::POST, &path, Some(body)).await?;
            println!("endpoint {id} tags: {}", text(&shown["tags"]));
            Ok(())
        }
        EndpointCommand::Untag { id, tag } => {
            let path = format!("/api/endpoints/{id}/tags/{}", url_escape(&tag));
            let shown = api.call(Method::DELETE, &path, None).await?;
            println!("endpoint {id} tags: {}", text(&shown["tags"]));
            Ok(())
        }
        EndpointCommand::Group { id, group } => set_group(&api, id, Value::String(group)).await,
        EndpointCommand::Ungroup { id } => set_group(&api, id, Value::Null).await,
        EndpointCommand::Show { id, json } => {
            let endpoint = api
                .call(Method::GET, &format!("/api/endpoints/{id}"), None)
                .await?;
            if json {
                print_json(&endpoint)
            } else {
                print_fields(&endpoint);
                Ok(())
            }
        }
        EndpointCommand::Approve { id } => {
            api.call(Method::POST, &format!("/api/endpoints/{id}/approve"), None)
                .await?;
            println!("endpoint {id} approved");
            Ok(())
        }
        EndpointCommand::Summon { id } => {
            let answer = api
                .call(Method::POST, &format!("/api/endpoints/{id}/summon"), None)
                .await?;
            println!(
                "endpoint {id} ready in {:.1} ms",
                answer["ready_ms"].as_f64().unwrap_or_default()
            );
            Ok(())
        }
        EndpointCommand::Context {
            id,
            name,
            cert_dir,
            print,
        } => super::docker_context::context(&api, id, name, &cert_dir, print).await,
        EndpointCommand::Reset { id } => print_json(
            &api.call(Method::POST, &format!("/api/endpoints/{id}/reset"), None)
                .await?,
        ),
        EndpointCommand::Rm { id } => {
            let answer = api
                .call(Method::DELETE, &format!("/api/endpoints/{id}"), None)
                .await?;
            let note = if answer["disconnected"] == Value::Bool(true) {
                ", its connection closed"
            } else {
                ""
            };
            println!("endpoint {id} removed, certificate revoked{note}");
            Ok(())
        }
    }
}

async fn list(api: &Api, args: ListArgs) -> Result<()> {
    let order = if args.desc { "desc" } else { "asc" };
    let mut path = format!(
        "/api/endpoints?page={}&per_page={}&sort={}&order={order}",
        args.page,
        args.per_page,
        url_escape(&args.sort)
    );
    let filters = [
        ("status", args.status),
        ("search", args.search),
        ("group", args.group),
        ("tag", args.tag),
    ];
    for (key, value) in filters {
        if let Some(value) = value {
            path.push_str(&format!("&{key}={}", url_escape(&value)));
        }
    }
    if args.fleets {
        path.push_str("&kind=fleet");
    }
    let page = api.call(Method::GET, &path, None).await?;
    if args.json {
        print_json(&page)
    } else {
        print_table(&page);
        Ok(())
    }
}

async fn set_group(api: &Api, id: u64, group: Value) -> Result<()> {
    let body = serde_json::json!({ "group": group });
    let shown = api
        .call(Method::PATCH, &format!("/api/endpoints/{id}"), Some(body))
        .await?;
    println!("endpoint {id} group: {}", text(&shown["group"]));
    Ok(())
}

pub(super) fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn print_json(value: &Value) -> Result<()> {
    println!("{}", escape_json(&serde_json::to_string_pretty(value)?));
    Ok(())
}

/// A field for a human: escaped ([`escape_controls`]), `-` when empty.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => escape_controls(s).into_owned(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => escape_controls(&other.to_string()).into_owned(),
    }
}

fn print_table(page: &Value) {
    println!(
        "{:<6} {:<24} {:<8} {:<16} {:<24} {:<36} {:<26} {:<22} {:>8}",
        "ID", "NAME", "STATUS", "GROUP", "TAGS", "AGENT", "LAST CHECK-IN", "ADDRESS", "RTT ms"
    );
    for item in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<6} {:<24} {:<8} {:<16} {:<24} {:<36} {:<26} {:<22} {:>8}",
            text(&item["id"]),
            text(&item["name"]),
            text(&item["status"]),
            text(&item["group"]),
            text(&item["tags"]),
            text(&item["agent_id"]),
            text(&item["last_checkin"]),
            text(&item["remote_addr"]),
            text(&item["rtt_ms"]),
        );
    }
    println!("({} in all)", text(&page["total"]));
}

fn print_fields(endpoint: &Value) {
    if let Some(fields) = endpoint.as_object() {
        for (key, value) in fields {
            println!("{:<14} {}", escape_controls(key), text(value));
        }
    }
}
