//! `outpost-hub admin-cert …`, `outpost-hub token …` and `outpost-hub admin-token …`: issue, list
//! and revoke admin client certificates and named tokens, rotate the bootstrap admin token.

use anyhow::Result;
use outpost_api::{AdminCert, NewAdminCert, NewToken, Scope, TokenInfo};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::admin::{connect, failed, print_json, text, texts};
use super::docker_context::issue;
use super::{AdminCertCommand, AdminTokenCommand, ApiArgs, TokenCommand};

/// Run an admin-cert command.
pub async fn run_admin_cert(args: &ApiArgs, command: AdminCertCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        AdminCertCommand::Create { out, name, grant } => {
            let new = NewAdminCert {
                name,
                role: Some(grant.role.clone()),
                scope: grant.scope(),
            };
            issue(&api, &out, &new).await?;
            println!(
                "admin certificate written to {dir}: export DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={dir}",
                dir = out.display()
            );
            Ok(())
        }
        AdminCertCommand::List { json } => {
            let certs = api.admin_certs().await.map_err(failed)?;
            if json {
                return print_json(&certs);
            }
            print_certs(&certs);
            Ok(())
        }
        AdminCertCommand::Revoke { serial_or_name } => {
            let answer = api
                .revoke_admin_certs(&serial_or_name)
                .await
                .map_err(failed)?;
            println!("revoked admin certificate(s): {}", texts(&answer.revoked));
            Ok(())
        }
    }
}

/// Run a token command.
pub async fn run_token(args: &ApiArgs, command: TokenCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        TokenCommand::Create { name, grant } => {
            let new = NewToken {
                name,
                role: grant.role.clone(),
                scope: grant.scope(),
            };
            let issued = api.create_token(&new).await.map_err(failed)?;
            println!("{}", text(Some(&issued.token)));
            eprintln!(
                "outpost-hub: token {} ({}, {}) created; it is printed only this once",
                text(Some(&issued.info.name)),
                text(Some(&issued.info.role)),
                reach(issued.info.scope.as_ref())
            );
            Ok(())
        }
        TokenCommand::List { json } => {
            let tokens = api.tokens().await.map_err(failed)?;
            if json {
                return print_json(&tokens);
            }
            print_tokens(&tokens);
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            let revoked = api.revoke_token(&name).await.map_err(failed)?;
            println!("revoked token {}", text(Some(&revoked.name)));
            Ok(())
        }
    }
}

/// Where a credential reaches, for a table.
fn reach(scope: Option<&Scope>) -> String {
    let Some(scope) = scope else {
        return "whole fleet".into();
    };
    let mut parts: Vec<String> = scope.groups.iter().map(|g| format!("group:{g}")).collect();
    parts.extend(scope.tags.iter().map(|t| format!("tag:{t}")));
    text(Some(&parts.join(",")))
}

fn print_tokens(tokens: &[TokenInfo]) {
    println!(
        "{:<24} {:<9} {:<28} {:<22} {:<22}",
        "NAME", "ROLE", "SCOPE", "CREATED", "REVOKED"
    );
    for token in tokens {
        println!(
            "{:<24} {:<9} {:<28} {:<22} {:<22}",
            text(Some(&token.name)),
            text(Some(&token.role)),
            reach(token.scope.as_ref()),
            when(Some(token.created_at)),
            when(token.revoked_at),
        );
    }
}

/// Run an admin-token command.
pub async fn run_admin_token(args: &ApiArgs, command: AdminTokenCommand) -> Result<()> {
    let api = connect(args)?;
    match command {
        AdminTokenCommand::Rotate => {
            let answer = api
                .rotate_admin_token()
                .await
                .map_err(|e| failed(api.base_url(), e))?;
            println!("{}", text(Some(&answer.token)));
            eprintln!(
                "outpost-hub: the old admin token no longer works; the hub wrote the new one to {} (it is printed only this once)",
                text(Some(&answer.written_to))
            );
            Ok(())
        }
    }
}

fn print_certs(certs: &[AdminCert]) {
    println!(
        "{:<34} {:<24} {:<9} {:<28} {:<22} {:<22}",
        "SERIAL", "NAME", "ROLE", "SCOPE", "ISSUED", "REVOKED"
    );
    for cert in certs {
        println!(
            "{:<34} {:<24} {:<9} {:<28} {:<22} {:<22}",
            text(Some(&cert.serial)),
            text(Some(&cert.name)),
            text(Some(&cert.role)),
            reach(cert.scope.as_ref()),
            when(Some(cert.issued_at)),
            when(cert.revoked_at),
        );
    }
}

/// Unix seconds as RFC 3339, `-` when absent.
fn when(secs: Option<i64>) -> String {
    secs.and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}
