//! `outpost-hub admin-cert …`, `outpost-hub token …` and `outpost-hub admin-token …`: issue, list
//! and revoke admin client certificates and named tokens, rotate the bootstrap admin token.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use outpost_api::{AdminCert, NewAdminCert, NewToken, Scope, TokenInfo};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::admin::{asked, connect, failed, text, texts};
use super::docker_context::issue;
use super::ApiArgs;

/// `outpost-hub admin-token …`.
#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Replace the admin token: the hub writes the new one to DATA_DIR/admin.token (0600), this
    /// prints it once, and the old one stops working at once (its open streams end too).
    Rotate,
}

/// `outpost-hub admin-cert …`.
#[derive(Debug, Subcommand)]
pub enum AdminCertCommand {
    /// List the admin certificates this hub issued.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke admin certificates by serial or by name (every valid one with that name): requests
    /// on them are refused from now on, on open connections too, and their streams end.
    Revoke {
        /// A serial (as `admin-cert list` shows it) or a name.
        serial_or_name: String,
    },
    /// Issue an admin certificate and write ca.pem, cert.pem and key.pem into a directory, so that
    /// `DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=DIR` works.
    Create {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Name recorded in the certificate.
        #[arg(long, default_value = "admin")]
        name: String,
        /// What it may do and where.
        #[command(flatten)]
        grant: GrantArgs,
    },
}

/// A credential's role and scope on the command line.
#[derive(Clone, Debug, Args)]
pub struct GrantArgs {
    /// `viewer` (read), `operator` (also the Docker proxy, jobs, rollouts, stacks) or `admin`.
    #[arg(long, default_value = "admin")]
    pub role: String,
    /// Reach only devices in this group (repeat for more; with --tag, devices in either).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Reach only devices with this tag (repeat for more).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

impl GrantArgs {
    /// The scope asked for, `None` (the whole fleet) when no group or tag is given.
    pub fn scope(&self) -> Option<Scope> {
        let scoped = !self.groups.is_empty() || !self.tags.is_empty();
        scoped.then(|| Scope {
            groups: self.groups.clone(),
            tags: self.tags.clone(),
        })
    }
}

/// `outpost-hub token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (only this once: the hub keeps its hash).
    Create {
        /// Its name, shown in lists and audit records.
        name: String,
        /// What it may do and where.
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// List the tokens (names, roles, scopes; never the tokens).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name: its requests are refused from now on, on open connections too.
    Revoke {
        /// The token's name.
        name: String,
    },
}

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
            let Some(certs) = asked(&api, api.admin_certs(), json).await? else {
                return Ok(());
            };
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
            let Some(tokens) = asked(&api, api.tokens(), json).await? else {
                return Ok(());
            };
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
