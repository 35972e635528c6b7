//! `outpost-hub admin-cert …` and `outpost-hub admin-token …`: issue, list and revoke admin client
//! certificates, rotate the admin token.

use anyhow::Result;
use outpost_api::AdminCert;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::admin::{connect, failed, print_json, text, texts};
use super::docker_context::issue;
use super::{AdminCertCommand, AdminTokenCommand, ApiArgs};

/// Run an admin-cert command.
pub async fn run_admin_cert(args: &ApiArgs, command: AdminCertCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
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
        "{:<34} {:<24} {:<22} {:<22}",
        "SERIAL", "NAME", "ISSUED", "REVOKED"
    );
    for cert in certs {
        println!(
            "{:<34} {:<24} {:<22} {:<22}",
            text(Some(&cert.serial)),
            text(Some(&cert.name)),
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
