//! Docker-side conveniences: admin client certificates in Docker's file layout, and a docker context
//! per device so an admin switches devices with `docker context use kiosk-17`.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use reqwest::Method;

use super::admin::Api;
use super::escape::escape_controls;

/// Issue an admin certificate into `out` (ca.pem, cert.pem, key.pem).
pub(super) async fn issue(api: &Api, out: &Path, name: &str) -> Result<()> {
    let issued = api
        .call(
            Method::POST,
            "/api/admin-certs",
            Some(serde_json::json!({ "name": name })),
        )
        .await?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (file, field) in [("ca.pem", "ca_pem"), ("cert.pem", "cert_pem")] {
        let text = issued[field]
            .as_str()
            .context("the hub's answer lacks a PEM")?;
        outpost_certs::write_public_file(&out.join(file), text.as_bytes())?;
    }
    let key = issued["key_pem"]
        .as_str()
        .context("the hub's answer lacks the key")?;
    outpost_certs::write_private_file(&out.join("key.pem"), key.as_bytes())?;
    Ok(())
}

/// `endpoint context ID`: make sure an admin certificate exists, then create or update the context.
pub(super) async fn context(
    api: &Api,
    id: u64,
    name: Option<String>,
    cert_dir: &Path,
    print: bool,
) -> Result<()> {
    let endpoint = api
        .call(Method::GET, &format!("/api/endpoints/{id}"), None)
        .await?;
    let name = match name {
        Some(name) => name,
        None => endpoint["name"]
            .as_str()
            .context("endpoint without a name")?
            .to_owned(),
    };
    if !cert_dir.join("key.pem").exists() {
        issue(api, cert_dir, "docker-context").await?;
    }
    let dir = std::fs::canonicalize(cert_dir)?;
    let hub = api
        .base
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let docker = format!(
        "host=tcp://{hub}/api/endpoints/{id}/docker,ca={d}/ca.pem,cert={d}/cert.pem,key={d}/key.pem",
        d = dir.display()
    );
    if print {
        let shown = escape_controls(&name);
        println!("docker context create {shown} --docker '{docker}'");
        return Ok(());
    }
    let exists = std::process::Command::new("docker")
        .args(["context", "inspect", &name])
        .output()
        .map(|o| o.status.success())
        .context("the docker CLI is not on PATH (use --print to get the command)")?;
    let verb = if exists { "update" } else { "create" };
    let status = std::process::Command::new("docker")
        .args(["context", verb, &name, "--docker", &docker])
        .status()?;
    if !status.success() {
        bail!("docker context {verb} failed");
    }
    println!(
        "switch to it with: docker context use {}",
        escape_controls(&name)
    );
    Ok(())
}
