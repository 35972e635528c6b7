//! The agent's side of fetch streams ([`outpost_protocol::fetch`]): a manifest, or the rest of a
//! blob from the byte its partial file ends at, over the session's QUIC connection.
//!
//! Sessions come and go under a transfer (an outage, a hub restart): [`HubLink`] holds the current
//! connection whose hub granted fetch streams, and a transfer that loses its stream waits for the
//! next one and asks again from where its file ends ([`super::resume`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use outpost_protocol::fetch::{self, DeferCause, Fetch, FetchError, FetchRefusal, Found, Wanted};
use outpost_protocol::registry::digest::Digest;
use outpost_protocol::registry::name::Reference;
use outpost_protocol::window::TransferWindow;
use thiserror::Error;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::resume::{plan, Plan, Retry};
use super::store::{LocalBlobs, LocalStoreError};

/// How long a request waits for a session whose hub serves a registry.
const LINK_WAIT: Duration = Duration::from_secs(60);
/// How long after a session is up its hub has to grant fetch streams (it answers the feature
/// announcement at once: a round trip); past this, the hub serves none (a hub without a mirror,
/// or one that predates them) and requests are refused without waiting.
const GRANT_GRACE: Duration = Duration::from_secs(5);
/// Received bytes reach the partial file in writes of up to this many, not one per chunk read
/// (a QUIC frame, ~1.2 KB, each write a round trip through tokio's blocking pool: ~2,000 a
/// second at LTE's 20 Mbit/s). An agent killed mid-blob loses at most this much of it, fetched
/// again when it resumes (0.25 % of the 100 MB in the resume bench).
const WRITE_BATCH: usize = 256 * 1024;

/// Why the loopback registry could not answer from the hub.
#[derive(Debug, Error)]
pub enum LoopbackError {
    /// No session with a hub that serves a registry.
    #[error("no session with a hub that serves a registry (is the hub started with --registry?)")]
    NoHub,
    /// The hub refused.
    #[error("the hub refused: {message}")]
    Refused {
        /// Why, as the hub put it.
        reason: FetchRefusal,
        /// What happened.
        message: String,
    },
    /// The transfer made no progress for too long; what arrived is kept for the next pull.
    #[error("no progress for too long ({held} bytes kept for the next pull): {last}")]
    Stalled {
        /// Bytes on disk.
        held: u64,
        /// The last failure.
        last: String,
    },
    /// The local store failed, or a blob failed verification.
    #[error(transparent)]
    Store(#[from] LocalStoreError),
    /// The stream broke or the hub's reply was not what was asked for.
    #[error("fetch stream: {0}")]
    Stream(#[from] FetchError),
}

impl LoopbackError {
    /// Whether another attempt may do better (a lost stream, a missing session).
    fn retryable(&self) -> bool {
        matches!(self, Self::Stream(_) | Self::NoHub)
    }
}

/// The connection fetch streams go on, while a session whose hub serves a registry is up, and
/// where the registry listens.
#[derive(Clone, Debug)]
pub struct HubLink {
    granted: watch::Sender<Option<Granted>>,
    /// When the current session, if any, came up without a grant yet.
    ungranted_since: watch::Sender<Option<Instant>>,
    /// The hub's last word that background transfers wait, until a blob is served again.
    deferral: watch::Sender<Option<Deferral>>,
    /// The device's transfer window, as its hub last sent it.
    window: watch::Sender<Option<TransferWindow>>,
    listen: SocketAddr,
}

/// The hub holds this device's background transfers back (a spent budget, outside a window).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferral {
    /// Why.
    pub cause: DeferCause,
    /// When the hub said to ask again (seconds since the Unix epoch).
    pub retry_at: u64,
    /// The hub's words.
    pub message: String,
}

/// A session's grant: its connection and the hosts its hub mirrors (the default first).
#[derive(Clone, Debug)]
struct Granted {
    conn: quinn::Connection,
    upstreams: Vec<String>,
}

impl HubLink {
    /// A link for the registry listening on `listen`, with no session yet.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            granted: watch::Sender::new(None),
            ungranted_since: watch::Sender::new(None),
            deferral: watch::Sender::new(None),
            window: watch::Sender::new(None),
            listen,
        }
    }

    /// The hub's deferral of background transfers, if its last answer to a blob was one.
    pub fn deferral(&self) -> Option<Deferral> {
        self.deferral.borrow().clone()
    }

    /// The hub set the device's transfer window (or removed it).
    pub fn set_window(&self, window: Option<TransferWindow>) {
        self.window.send_if_modified(|held| {
            let changed = *held != window;
            *held = window;
            changed
        });
    }

    /// Word of each change of the transfer window (a deferred apply tries again at once).
    pub fn watch_window(&self) -> watch::Receiver<Option<TransferWindow>> {
        self.window.subscribe()
    }

    /// The deferral the transfer window imposes now, recorded as the link's deferral.
    fn outside_window(&self) -> Option<LoopbackError> {
        let window = (*self.window.borrow())?;
        let deferral = super::window::deferral(window, &jiff::Zoned::now())?;
        let refused = LoopbackError::Refused {
            reason: FetchRefusal::Deferred {
                cause: deferral.cause,
                retry_at: deferral.retry_at,
            },
            message: deferral.message.clone(),
        };
        self.deferral.send_replace(Some(deferral));
        Some(refused)
    }

    /// A session is up; its hub has announced nothing yet.
    pub fn session_started(&self) {
        self.ungranted_since.send_replace(Some(Instant::now()));
    }

    /// The hub granted fetch streams on `conn`, mirroring `upstreams` (checked by the caller).
    pub fn attach(&self, conn: quinn::Connection, upstreams: Vec<String>) {
        self.ungranted_since.send_replace(None);
        self.granted.send_replace(Some(Granted { conn, upstreams }));
    }

    /// The session ended.
    pub fn detach(&self) {
        self.ungranted_since.send_replace(None);
        self.granted.send_replace(None);
    }

    /// The name to pull `image` by through this registry, while a session's hub mirrors the
    /// registry it comes from ([`super::loopback_name`]).
    pub fn loopback_name(&self, image: &str) -> Option<String> {
        let granted = self.granted.borrow();
        let upstreams = &granted.as_ref()?.upstreams;
        super::loopback_name(image, upstreams.first()?, self.listen)
    }

    /// The current connection, waiting up to [`LINK_WAIT`] for one; at once [`LoopbackError::NoHub`]
    /// when the session's hub let [`GRANT_GRACE`] pass without a grant.
    async fn connection(&self) -> Result<quinn::Connection, LoopbackError> {
        let since = *self.ungranted_since.borrow();
        let wait = match since {
            Some(since) => GRANT_GRACE.saturating_sub(since.elapsed()),
            None => LINK_WAIT,
        };
        let mut watching = self.granted.subscribe();
        let ready =
            watching.wait_for(|g| g.as_ref().is_some_and(|g| g.conn.close_reason().is_none()));
        let found = match tokio::time::timeout(wait, ready).await {
            Ok(Ok(granted)) => granted.as_ref().map(|g| g.conn.clone()),
            _ => None,
        };
        found.ok_or(LoopbackError::NoHub)
    }
}

/// A manifest: its checked reply and its bytes, verified against the digest the hub names.
pub async fn manifest(
    link: &HubLink,
    name: &str,
    reference: Reference,
) -> Result<(Found, Vec<u8>), LoopbackError> {
    let fetch = Fetch {
        name: name.to_owned(),
        wanted: Wanted::Manifest(reference),
    };
    let mut last = None;
    for _ in 0..3 {
        match manifest_once(link, &fetch).await {
            Err(e) if e.retryable() => last = Some(e),
            answer => return answer,
        }
    }
    Err(last.unwrap_or(LoopbackError::NoHub))
}

async fn manifest_once(link: &HubLink, fetch: &Fetch) -> Result<(Found, Vec<u8>), LoopbackError> {
    let (found, mut recv) = open(link, fetch).await?;
    let bytes = read_body(&mut recv, found.size).await?;
    let actual = Digest::of(&bytes);
    if actual != found.digest {
        return Err(LocalStoreError::DigestMismatch {
            expected: found.digest,
            actual,
        }
        .into());
    }
    Ok((found, bytes))
}

/// Make blob `digest` complete and verified on disk, resuming what is there.
pub async fn blob(
    link: &HubLink,
    blobs: &LocalBlobs,
    name: &str,
    digest: &Digest,
) -> Result<(), LoopbackError> {
    let _transfer = blobs.lock(digest).await;
    if blobs.open_complete(digest).await?.is_some() {
        return Ok(());
    }
    let mut retry = Retry::new(Instant::now(), blobs.held(digest).await?);
    loop {
        if let Some(outside) = link.outside_window() {
            return Err(outside);
        }
        let error = match blob_once(link, blobs, name, digest).await {
            Ok(()) => return Ok(()),
            Err(e) if !e.retryable() => return Err(e),
            Err(e) => e,
        };
        let held = blobs.held(digest).await?;
        let Some(delay) = retry.after_failure(Instant::now(), held) else {
            return Err(LoopbackError::Stalled {
                held,
                last: error.to_string(),
            });
        };
        warn!(%digest, held, ?delay, "blob transfer interrupted, resuming: {error}");
        tokio::time::sleep(delay).await;
    }
}

/// One stream: ask from the end of the partial file, append what arrives, verify at the end.
async fn blob_once(
    link: &HubLink,
    blobs: &LocalBlobs,
    name: &str,
    digest: &Digest,
) -> Result<(), LoopbackError> {
    let held = blobs.held(digest).await?;
    let fetch = Fetch {
        name: name.to_owned(),
        wanted: Wanted::Blob {
            digest: digest.clone(),
            offset: held,
        },
    };
    let (found, mut recv) = open(link, &fetch).await?;
    match plan(held, found.size) {
        Plan::Discard => {
            blobs.discard(digest).await?;
            return Err(FetchError::BadReply("the blob is shorter than what arrived").into());
        }
        Plan::Receive { from, len } => {
            if from > 0 {
                info!(%digest, from, size = found.size, "resuming a blob");
            }
            receive(link, &mut recv, blobs, digest, len).await?;
        }
        Plan::Verify => {}
    }
    blobs.promote(digest).await?;
    info!(%digest, size = found.size, "blob verified");
    match blobs.sweep(std::time::SystemTime::now()).await {
        Ok(0) => {}
        Ok(removed) => info!(removed, "removed blobs past their keeping"),
        Err(e) => warn!("cannot sweep the registry's blobs: {e}"),
    }
    Ok(())
}

/// Append the stream's bytes to the partial file in batches of up to [`WRITE_BATCH`], and check
/// the stream ends where it should. Whatever way it ends, what arrived is on disk before this
/// returns, so the next attempt asks from there. A transfer window that closes meanwhile stops it.
async fn receive(
    link: &HubLink,
    recv: &mut quinn::RecvStream,
    blobs: &LocalBlobs,
    digest: &Digest,
    len: u64,
) -> Result<(), LoopbackError> {
    let path = blobs.partial_path(digest);
    let mut file = BufWriter::with_capacity(WRITE_BATCH, blobs.append(digest).await?);
    let received = receive_into(link, recv, &mut file, digest, &path, len).await;
    let flushed = file
        .flush()
        .await
        .map_err(|source| LocalStoreError::Io { path, source });
    received?;
    Ok(flushed?)
}

async fn receive_into(
    link: &HubLink,
    recv: &mut quinn::RecvStream,
    file: &mut BufWriter<tokio::fs::File>,
    digest: &Digest,
    path: &Path,
    len: u64,
) -> Result<(), LoopbackError> {
    let mut left = len;
    while left > 0 {
        if let Some(outside) = link.outside_window() {
            info!(%digest, left, "the transfer window closed part-way through a blob");
            return Err(outside);
        }
        let chunk = recv
            .read_chunk(usize::try_from(left).unwrap_or(usize::MAX), true)
            .await
            .map_err(|e| FetchError::from(std::io::Error::from(e)))?;
        let Some(chunk) = chunk else {
            return Err(FetchError::BadReply("the blob ended early").into());
        };
        file.write_all(&chunk.bytes)
            .await
            .map_err(|source| LocalStoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        left -= chunk.bytes.len() as u64;
    }
    Ok(())
}

/// Open a fetch stream for `fetch` and read the hub's checked reply.
async fn open(link: &HubLink, fetch: &Fetch) -> Result<(Found, quinn::RecvStream), LoopbackError> {
    let conn = link.connection().await?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(stream_error)?;
    // Manifests and blobs come back on it.
    outpost_transport::tail_repair::receive_bulk(&recv);
    let request = fetch::encode_request(&fetch.to_request());
    send.write_all(&request).await.map_err(stream_error)?;
    let _ = send.finish();
    let reply = fetch::check_reply(fetch, fetch::read_reply(&mut recv).await?)?;
    if matches!(fetch.wanted, Wanted::Blob { .. }) {
        let deferral = match &reply {
            Err((FetchRefusal::Deferred { cause, retry_at }, message)) => Some(Deferral {
                cause: *cause,
                retry_at: *retry_at,
                message: message.clone(),
            }),
            _ => None,
        };
        if let Some(deferral) = &deferral {
            info!(
                cause = deferral.cause.as_str(),
                retry_at = deferral.retry_at,
                "the hub defers this device's image transfers: {}",
                deferral.message
            );
        }
        link.deferral.send_replace(deferral);
    }
    match reply {
        Ok(found) => Ok((found, recv)),
        Err((reason, message)) => Err(LoopbackError::Refused { reason, message }),
    }
}

fn stream_error(e: impl Into<std::io::Error>) -> LoopbackError {
    FetchError::from(e.into()).into()
}

/// A manifest's body, of the size its reply announced (at most `fetch::MAX_MANIFEST`).
async fn read_body(recv: &mut quinn::RecvStream, size: u64) -> Result<Vec<u8>, FetchError> {
    let mut bytes = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
    tokio::io::AsyncReadExt::read_exact(recv, &mut bytes).await?;
    Ok(bytes)
}
