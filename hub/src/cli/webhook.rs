//! `outpost-hub webhook …`: subscribe URLs to alerts, list and remove them, see their
//! deliveries, and set how long a group's devices are offline before `offline` is raised.

use anyhow::Result;
use clap::Subcommand;
use outpost_api::{DeliveryQuery, NewThreshold, NewWebhook, Webhook, WebhookDelivery};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::admin::{asked, connect, failed, text, texts};
use super::ApiArgs;

/// `outpost-hub webhook …`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// POST these events to URL as signed JSON; prints the signing secret (only this once).
    Add {
        /// Where to POST (`http://` or `https://`).
        url: String,
        /// Events, comma-separated: offline, online, rollout, job, cert-expiring.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the webhooks.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a webhook and its pending deliveries.
    Remove {
        /// Webhook id.
        id: i64,
    },
    /// The newest deliveries (of one webhook, or all) with their attempts and outcome.
    Deliveries {
        /// Webhook id.
        id: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set how long a device is offline before `offline` is raised: for a group, or the default
    /// (10m unless set). Without a duration, list the thresholds set.
    Threshold {
        /// The group (default: every device whose group has none).
        #[arg(long)]
        group: Option<String>,
        /// A duration such as 30s, 10m or 2h (1s to 7 days).
        after: Option<String>,
    },
}

/// Run a webhook command.
pub async fn run(args: &ApiArgs, command: WebhookCommand) -> Result<()> {
    let api = connect(args)?;
    let failed = |e| failed(api.base_url(), e);
    match command {
        WebhookCommand::Add { url, events, json } => {
            let Some(created) =
                asked(&api, api.add_webhook(&NewWebhook { url, events }), json).await?
            else {
                return Ok(());
            };
            println!(
                "webhook {} added: {}",
                created.webhook.id,
                text(Some(&created.webhook.url))
            );
            println!("signing secret (shown only this once): {}", created.secret);
        }
        WebhookCommand::List { json } => {
            let Some(webhooks) = asked(&api, api.webhooks(), json).await? else {
                return Ok(());
            };
            print_webhooks(&webhooks);
        }
        WebhookCommand::Remove { id } => {
            let removed = api.remove_webhook(id).await.map_err(failed)?;
            println!("webhook {} removed", removed.removed);
        }
        WebhookCommand::Deliveries { id, json } => {
            let query = DeliveryQuery { webhook: id };
            let Some(deliveries) = asked(&api, api.webhook_deliveries(&query), json).await? else {
                return Ok(());
            };
            print_deliveries(&deliveries);
        }
        WebhookCommand::Threshold { group, after: None } => {
            let thresholds = api.thresholds().await.map_err(failed)?;
            println!("{:<24} {:>10}", "GROUP", "AFTER");
            for t in thresholds
                .iter()
                .filter(|t| group.is_none() || t.group == group)
            {
                let name = t.group.as_deref().unwrap_or("(default)");
                println!("{:<24} {:>9}s", text(Some(name)), t.after_secs);
            }
        }
        WebhookCommand::Threshold {
            group,
            after: Some(after),
        } => {
            let set = api
                .set_threshold(&NewThreshold { group, after })
                .await
                .map_err(failed)?;
            let name = set.group.as_deref().unwrap_or("(default)");
            println!(
                "offline alerts for {} after {}s offline",
                text(Some(name)),
                set.after_secs
            );
        }
    }
    Ok(())
}

fn print_webhooks(webhooks: &[Webhook]) {
    println!("{:<6} {:<48} {:<40} {:<22}", "ID", "URL", "EVENTS", "ADDED");
    for webhook in webhooks {
        println!(
            "{:<6} {:<48} {:<40} {:<22}",
            webhook.id,
            text(Some(&webhook.url)),
            texts(&webhook.events),
            when(Some(webhook.created_at)),
        );
    }
}

fn print_deliveries(deliveries: &[WebhookDelivery]) {
    println!(
        "{:<8} {:<8} {:<14} {:<10} {:>8} {:<6} {:<22} LAST ERROR",
        "ID", "WEBHOOK", "EVENT", "STATE", "ATTEMPTS", "STATUS", "QUEUED"
    );
    for d in deliveries {
        let status = d.last_status.map_or_else(|| "-".into(), |s| s.to_string());
        println!(
            "{:<8} {:<8} {:<14} {:<10} {:>8} {:<6} {:<22} {}",
            d.id,
            d.webhook,
            text(Some(&d.event)),
            d.state,
            d.attempts,
            status,
            when(Some(d.created_at)),
            text(d.last_error.as_deref()),
        );
    }
}

/// Unix seconds as RFC 3339, `-` when absent.
fn when(secs: Option<i64>) -> String {
    secs.and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}
