//! `outpost-hub admin-cert …` and `outpost-hub admin-token …`: issue, list and revoke admin client
//! certificates, rotate the admin token.

use anyhow::{Context as _, Result};
use reqwest::Method;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::admin::{print_json, text, Api};
use super::docker_context::issue;
use super::{AdminCertCommand, AdminTokenCommand, ApiArgs};

/// Run an admin-cert command.
pub async fn run_admin_cert(args: &ApiArgs, command: AdminCertCommand) -> Result<()> {
    let api = Api::connect(args)?;
    match command {
        AdminCertCommand::Create { out, name } => {
            issue(&api, &out, &name).await?;
            println!(
                "admin certificate written to {dir}: export DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={dir}",
                dir = out.display()
            );
            Ok(())
        }
        AdminCertCommand::List { json } => {
            let certs = api.call(Method::GET, "/api/admin-certs", None).await?;
            if json {
                return print_json(&certs);
            }
            print_certs(&certs);
            Ok(())
        }
        AdminCertCommand::Revoke { serial_or_name } => {
            let path = format!(
                "/api/admin-certs/{}",
                super::admin::url_escape(&serial_or_name)
            );
            let answer = api.call(Method::DELETE, &path, None).await?;
            println!("revoked admin certificate(s): {}", text(&answer["revoked"]));
            Ok(())
        }
    }
}

/// Run an admin-token command.
pub async fn run_admin_token(args: &ApiArgs, command: AdminTokenCommand) -> Result<()> {
    let api = Api::connect(args)?;
    match command {
        AdminTokenCommand::Rotate => {
            let answer = api
                .call(Method::POST, "/api/admin-token/rotate", None)
                .await?;
            let token = answer["token"]
                .as_str()
                .context("the hub's answer lacks the token")?;
            println!("{}", text(&Value::String(token.to_owned())));
            eprintln!(
                "outpost-hub: the old admin token no longer works; the hub wrote the new one to {} (it is printed only this once)",
                text(&answer["written_to"])
            );
            Ok(())
        }
    }
}

fn print_certs(certs: &Value) {
    println!(
        "{:<34} {:<24} {:<22} {:<22}",
        "SERIAL", "NAME", "ISSUED", "REVOKED"
    );
    for cert in certs.as_array().into_iter().flatten() {
        println!(
            "{:<34} {:<24} {:<22} {:<22}",
            text(&cert["serial"]),
            text(&cert["name"]),
            when(&cert["issued_at"]),
            when(&cert["revoked_at"]),
        );
    }
}

/// Unix seconds as RFC 3339, `-` when absent.
fn when(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}
