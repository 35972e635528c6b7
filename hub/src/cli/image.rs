//! `outpost-hub image …`: images in the hub's mirror, and on the fleet.
//!
//! `image push` streams a `docker save` archive (a file, or stdin) to the running hub's API
//! rather than writing into its data directory: the hub owns its mirror's store (its index of
//! blobs, the one import at a time, the tags it serves), an operator may push from another
//! machine than the hub's, and every push is authenticated and in the audit trail like any other
//! change.
//!
//! `image pull` is a job ([`crate::jobs`]) of its own kind: queued for offline devices, at most
//! `--concurrency` at once, each device's state and result kept, and while a device pulls, its
//! bytes done over bytes known (`job show`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use outpost_api::{ImagesPushed, JobWhat, PushQuery};
use tokio_util::io::ReaderStream;

use super::admin::{asked, connect};
use super::job::{create_job, follow, JobArgs};
use super::ApiArgs;
use crate::mirror::import_image::parse_tag;

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
    /// Pre-pull an image on every device of a selection, from the hub's mirror through each
    /// device's loopback registry; offline devices pull when they return, until it expires.
    #[command(after_help = PULL_EXAMPLES)]
    Pull(Box<PullArgs>),
    /// What the hub's mirror serves: pushed images, and tags resolved through an upstream.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take an image out of the hub's mirror: a pushed one with the blobs no other pushed image
    /// uses; a mirrored tag is forgotten (its next pull asks the upstream again).
    Rm {
        /// `NAME[:TAG]`, as `image list` shows it.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

const PULL_EXAMPLES: &str = "Examples:
  outpost-hub image pull pos/web:4 --group stores-eu --follow
  outpost-hub image pull registry.example/pos/web:4 --endpoint 7 --endpoint 9
then: outpost-hub job show ID (per device: queued, running with bytes pulled, succeeded, failed)";

/// `outpost-hub image pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// `NAME[:TAG]` (pushed to the hub, or of its first --registry), or `HOST/NAME[:TAG]` of the
    /// hub's first --registry.
    image: String,
    /// Its devices and limits.
    #[command(flatten)]
    job: JobArgs,
    /// Follow it with a progress bar until every device has settled.
    #[arg(long, conflicts_with = "json")]
    follow: bool,
}

const PUSH_EXAMPLES: &str = "Examples:
  docker save registry.example/pos/web:4 | outpost-hub image push
  outpost-hub image push --file web.tar --tag pos/web:4
then order it onto devices (`image pull`, or a stack naming 127.0.0.1:5380/pos/web:4): the hub
serves a device only the images ordered onto it";

/// Run an image command against the API.
pub async fn run(args: &ApiArgs, command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Push { file, tag, json } => push(args, file, tag, json).await,
        ImageCommand::Pull(pull) => pull_on_fleet(args, *pull).await,
        ImageCommand::List { json } => list(args, json).await,
        ImageCommand::Rm { name, json } => remove(args, &name, json).await,
    }
}

async fn list(args: &ApiArgs, json: bool) -> Result<()> {
    let client = connect(args)?;
    let Some(catalog) = asked(&client, client.images(), json).await? else {
        return Ok(());
    };
    for image in &catalog.images {
        println!("{}	{}	{}", image.name, image.source, image.digest);
    }
    println!(
        "{} images; pushed {} bytes, cache {} bytes (each at most {})",
        catalog.images.len(),
        catalog.pushed_bytes,
        catalog.cached_bytes,
        catalog.limit_bytes
    );
    Ok(())
}

async fn remove(args: &ApiArgs, name: &str, json: bool) -> Result<()> {
    let client = connect(args)?;
    let Some(removed) = asked(&client, client.remove_image(name), json).await? else {
        return Ok(());
    };
    println!(
        "removed {} ({}, {}); freed {} bytes in {} blobs",
        removed.image.name,
        removed.image.source,
        removed.image.digest,
        removed.freed_bytes,
        removed.freed_blobs
    );
    Ok(())
}

async fn pull_on_fleet(args: &ApiArgs, pull: PullArgs) -> Result<()> {
    let what = JobWhat::PullImage { image: pull.image };
    what.spec()?;
    let client = connect(args)?;
    let Some(job) = create_job(&client, pull.job, what).await? else {
        return Ok(());
    };
    let devices = job.counts.get("total").copied().unwrap_or_default();
    println!(
        "job {}: {} on {devices} devices; per device: `outpost-hub job show {}`",
        job.id, job.what, job.id
    );
    if pull.follow {
        return follow(&client, job.id).await;
    }
    Ok(())
}

async fn push(
    args: &ApiArgs,
    file: Option<PathBuf>,
    tag: Option<String>,
    json: bool,
) -> Result<()> {
    // A name the hub would refuse is refused here, in the hub's words, before any upload.
    if let Some(tag) = &tag {
        parse_tag(tag)?;
    }
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
    let Some(pushed) = asked(&client, client.push_image(body, &PushQuery { tag }), json).await?
    else {
        return Ok(());
    };
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
