//! `outpost-hub`: run a hub, or administer one.

use anyhow::Result;
use clap::Parser;
use outpost_hub::cli::{
    run_admin, run_admin_cert, run_admin_token, run_audit, run_budget, run_hubs, run_image,
    run_job, run_quiet, run_rollout, run_stack, run_token, run_webhook, run_window, Cli, Command,
    LogFormat,
};
use outpost_hub::{api, server};

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    outpost_hub::cli::init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve((*args).into_config(), cli.log_format).await,
        Command::Endpoint { api, command } => run_admin(&api, command).await,
        Command::Stack { api, command } => run_stack(&api, command).await,
        Command::Rollout { api, command } => run_rollout(&api, command).await,
        Command::Job { api, command } => run_job(&api, command).await,
        Command::Image { api, command } => run_image(&api, command).await,
        Command::AdminCert { api, command } => run_admin_cert(&api, command).await,
        Command::AdminToken { api, command } => run_admin_token(&api, command).await,
        Command::Token { api, command } => run_token(&api, command).await,
        Command::Audit { api, command } => run_audit(&api, command).await,
        Command::Webhook { api, command } => run_webhook(&api, command).await,
        Command::Budget { api, command } => run_budget(&api, command).await,
        Command::Window { api, command } => run_window(&api, command).await,
        Command::Quiet { api, command } => run_quiet(&api, command).await,
        Command::Hubs { api, json } => run_hubs(&api, json).await,
    }
}

/// A start-up line for the operator: plain on a text log, a log event on a JSON one (so every
/// stderr line parses).
fn say(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("outpost-hub: {message}"),
        LogFormat::Json => tracing::info!("{message}"),
    }
}

async fn serve(config: outpost_hub::config::HubConfig, format: LogFormat) -> Result<()> {
    api::raise_open_file_limit_and_log(config.max_api_connections);
    let data_dir = config.data_dir.clone();
    let hub = server::start(config).await?;
    let ca = data_dir.join("ca.pem");
    say(
        format,
        &format!(
            "agents on udp {}, admin API on https://{}",
            hub.agent_addr, hub.api_addr
        ),
    );
    if let Some(addr) = hub.agent_tcp_addr {
        say(format, &format!("agents where UDP is blocked: tcp {addr}"));
    }
    if let Some(addr) = hub.metrics_addr {
        say(format, &format!("metrics on http://{addr}/metrics"));
    }
    say(format, &format!("hub CA certificate: {}", ca.display()));
    match &hub.new_admin_token {
        Some(path) => say(
            format,
            &format!("new admin token written to {}", path.display()),
        ),
        None => say(
            format,
            &format!(
                "admin token: {} (from first start)",
                data_dir.join("admin.token").display()
            ),
        ),
    }
    say(format, &format!("attach a device: outpost-hub endpoint create --name NAME --data-dir {dir}, then on the device: EDGE_KEY=<edge_key> outpost-agent",
        dir = data_dir.display())
    );
    server::shutdown_signal().await;
    say(format, "shutting down");
    hub.shutdown().await;
    Ok(())
}
