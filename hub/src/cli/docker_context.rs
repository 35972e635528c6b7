//! Docker-side conveniences: admin client certificates in Docker's file layout, and a docker context
//! per device so an admin switches devices with `docker context use kiosk-17`.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use outpost_api::{ApiClient, NewAdminCert};

use super::admin::failed;
use super::escape::escape_controls;

/// Issue an admin certificate into `out` (ca.pem, cert.pem, key.pem).
pub(super) async fn issue(api: &ApiClient, out: &Path, new: &NewAdminCert) -> Result<()> {
    let issued = api
        .create_admin_cert(new)
        .await
        .map_err(|e| failed(api.base_url(), e))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (file, pem) in [("ca.pem", &issued.ca_pem), ("cert.pem", &issued.cert_pem)] {
        outpost_certs::write_public_file(&out.join(file), pem.as_bytes())?;
    }
    outpost_certs::write_private_file(&out.join("key.pem"), issued.key_pem.as_bytes())?;
    Ok(())
}

/// `endpoint context ID`: make sure an admin certificate exists, then create or update the context.
pub(super) async fn context(
    api: &ApiClient,
    id: u64,
    name: Option<String>,
    cert_dir: &Path,
    print: bool,
) -> Result<()> {
    let shown = api.show(id).await.map_err(|e| failed(api.base_url(), e))?;
    let name = name.unwrap_or(shown.endpoint.name);
    if !cert_dir.join("key.pem").exists() {
        let new = NewAdminCert {
            name: "docker-context".into(),
            role: None,
            scope: None,
        };
        issue(api, cert_dir, &new).await?;
    }
    let dir = std::fs::canonicalize(cert_dir)?;
    let hub = api
        .base_url()
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
