//! `outpost-hub image …`: images in the hub's mirror.
//!
//! `image push` streams a `docker save` archive (a file, or stdin) to the running hub's API
//! rather than writing into its data directory: the hub owns its mirror's store (its index of
//! blobs, the one import at a time, the tags it serves), an operator may push from another
//! machine than the hub's, and every push is authenticated and in the audit trail like any other
//! change.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use outpost_api::{ImagesPushed, PushQuery};
use tokio_util::io::ReaderStream;

use super::admin::{connect, failed, print_json};
use super::ApiArgs;

/// `outpost-hub image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load a `docker save` archive into the hub's mirror, for devices to pull as
    /// `127.0.0.1:5380/NAME:TAG` (the name without its registry host).
    #[command(after_help = PUSH_EXAMPLES)]
    Push {
        /// The archive; stdin when not given.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Serve the archive's image by this `NAME[:TAG]` instead of its own names.
        #[arg(long)]
        tag: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

const PUSH_EXAMPLES: &str = "Examples:
  docker save registry.example/pos/web:4 | outpost-hub image push
  outpost-hub image push --file web.tar --tag pos/web:4
then on a device (or in a stack): docker pull 127.0.0.1:5380/pos/web:4";

/// Run an image command against the API.
pub async fn run(args: &ApiArgs, command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Push { file, tag, json } => push(args, file, tag, json).await,
    }
}

async fn push(args: &ApiArgs, file: Option<PathBuf>, tag: Option<String>, json: bool) -> Result<()> {
    let client = connect(args)?;
    let body = match &file {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            reqwest::Body::wrap_stream(ReaderStream::new(file))
        }
        None => reqwest::Body::wrap_stream(ReaderStream::new(tokio::io::stdin())),
    };
    let pushed = client
        .push_image(body, &PushQuery { tag })
        .await
        .map_err(|e| failed(client.base_url(), e))?;
    if json {
        return print_json(&pushed);
    }
    print_pushed(&pushed);
    Ok(())
}

fn print_pushed(pushed: &ImagesPushed) {
    for image in &pushed.images {
        println!(
            "pushed {} ({} layers, {} bytes to pull)\n  id {}\n  manifest {}",
            image.tags.join(", "),
            image.layers,
            image.bytes,
            image.id,
            image.manifest
        );
    }
}
