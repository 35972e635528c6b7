//! The hub's side of fetch streams ([`outpost_protocol::fetch`]): an agent's loopback registry
//! asks for a manifest, or a blob from a byte on, and the hub answers from its mirror — so each
//! blob comes from the upstream at most once however many devices want it, and a transfer cut by an
//! outage or an agent restart goes on from where it stopped instead of starting over.
//!
//! Each stream is served on a task of its own (the session's driver only accepts it and keeps
//! count, for the window grant), at a lower priority than proxy streams: an admin's `docker ps`
//! is sent ahead of queued blob bytes on the same connection (issue #16 item 4).

use std::time::Duration;

use outpost_protocol::fetch::{
    self, Fetch, FetchError, FetchRefusal, FetchReply, Wanted, MAX_FETCH_STREAMS,
};
use outpost_protocol::wire::HubMessage;
use outpost_protocol::EndpointId;
use quinn::VarInt;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::context::HubContext;
use crate::mirror::counters::Count;
use crate::mirror::error::MirrorError;
use crate::mirror::store::StoreError;
use crate::mirror::upstream::UpstreamError;
use crate::mirror::Mirror;

/// How long an agent has to send its request once it opened the stream.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Fetch streams go after proxy streams (priority 0) when both have bytes to send.
pub(super) const FETCH_PRIORITY: i32 = -1;
/// Bytes read from the mirror's file per write.
const CHUNK: usize = 64 << 10;

/// Grant `conn`'s agent its fetch streams if this hub mirrors a registry: the message that says so.
pub(super) fn offer(ctx: &HubContext, conn: &quinn::Connection) -> Option<HubMessage> {
    if !ctx.mirror.serves() {
        debug!("the agent runs a registry; this hub mirrors none");
        return None;
    }
    // The control stream stays open: it counts against the credit.
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(1 + MAX_FETCH_STREAMS));
    Some(HubMessage::Registry {
        streams: MAX_FETCH_STREAMS,
        upstreams: ctx.mirror.upstream_hosts(),
    })
}

/// The session's fetch streams: how many are open, and word when one ends.
#[derive(Debug)]
pub(super) struct FetchStreams {
    open: usize,
    done: (mpsc::Sender<()>, mpsc::Receiver<()>),
}

impl Default for FetchStreams {
    fn default() -> Self {
        Self {
            open: 0,
            done: mpsc::channel(MAX_FETCH_STREAMS as usize),
        }
    }
}

impl FetchStreams {
    /// Serve a new stream on a task of its own.
    pub(super) fn spawn(
        &mut self,
        mirror: Mirror,
        endpoint: EndpointId,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        self.open += 1;
        let done = self.done.0.clone();
        tokio::spawn(async move {
            serve(mirror, endpoint, send, recv).await;
            let _ = done.send(()).await;
        });
    }

    /// Streams open now.
    pub(super) fn open(&self) -> usize {
        self.open
    }

    /// Returns when a stream has ended (cancel-safe: a select may drop it).
    pub(super) async fn closed(&mut self) {
        if self.done.1.recv().await.is_some() {
            self.open = self.open.saturating_sub(1);
        }
    }
}

/// Serve one fetch stream on `mirror`; returns when the stream is done, however it ended.
async fn serve(
    mirror: Mirror,
    endpoint: EndpointId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    // Only fails on a stream already reset, which the first write reports.
    let _ = send.set_priority(FETCH_PRIORITY);
    mirror.count(Count::AgentFetch, 1);
    let read = tokio::time::timeout(REQUEST_DEADLINE, fetch::read_request(&mut recv)).await;
    let outcome = match read {
        Ok(Ok(request)) => answer(&mirror, &request, &mut send).await,
        Ok(Err(e)) => refuse(&mut send, FetchRefusal::Invalid, &e.to_string()).await,
        Err(_) => return debug!(%endpoint, "fetch stream closed: no request in time"),
    };
    match outcome {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(e) => debug!(%endpoint, "fetch stream ended: {e}"),
    }
}

/// Answer a checked request: the reply, then the bytes it promises.
async fn answer(
    mirror: &Mirror,
    request: &Fetch,
    send: &mut quinn::SendStream,
) -> Result<(), FetchError> {
    let route = match mirror.route(&request.name) {
        Ok(route) => route,
        Err(e) => return refuse_for(send, &e).await,
    };
    match &request.wanted {
        Wanted::Manifest(reference) => {
            let manifest = match mirror.manifest(&route, reference).await {
                Ok(manifest) => manifest,
                Err(e) => return refuse_for(send, &e).await,
            };
            let reply = FetchReply::Found {
                digest: manifest.digest.as_str().to_owned(),
                size: manifest.bytes.len() as u64,
                media_type: manifest.media_type.clone(),
            };
            fetch::write_reply(send, &reply).await?;
            send.write_all(&manifest.bytes).await.map_err(io)?;
            mirror.count(Count::AgentBytes, manifest.bytes.len() as u64);
            Ok(())
        }
        Wanted::Blob { digest, offset } => {
            let mut reader = match mirror.blob(&route, digest).await {
                Ok(reader) => reader,
                Err(e) => return refuse_for(send, &e).await,
            };
            let size = reader.size;
            if *offset > size {
                let message = format!("offset {offset} is past the blob's {size} bytes");
                return refuse(send, FetchRefusal::Invalid, &message).await;
            }
            if *offset > 0 {
                mirror.count(Count::ResumedFetch, 1);
                info!(%digest, offset, size, "resuming a blob for an agent");
            }
            let reply = FetchReply::Found {
                digest: digest.as_str().to_owned(),
                size,
                media_type: "application/octet-stream".into(),
            };
            fetch::write_reply(send, &reply).await?;
            reader
                .seek(*offset)
                .await
                .map_err(|e| io(std::io::Error::other(e)))?;
            copy(mirror, &mut reader, send).await
        }
    }
}

/// The rest of the blob, counted as it goes (a cut transfer counts what was sent).
async fn copy(
    mirror: &Mirror,
    reader: &mut crate::mirror::store::BlobReader,
    send: &mut quinn::SendStream,
) -> Result<(), FetchError> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        send.write_all(&buf[..n]).await.map_err(io)?;
        mirror.count(Count::AgentBytes, n as u64);
    }
}

async fn refuse_for(send: &mut quinn::SendStream, error: &MirrorError) -> Result<(), FetchError> {
    let reason = match error {
        MirrorError::NameUnknown(_)
        | MirrorError::ManifestUnknown(_)
        | MirrorError::BlobUnknown => FetchRefusal::NotFound,
        MirrorError::Name(_) | MirrorError::Digest(_) => FetchRefusal::Invalid,
        MirrorError::Upstream(upstream) if corrupt(upstream) => FetchRefusal::Corrupt,
        MirrorError::Upstream(_) => FetchRefusal::Upstream,
        MirrorError::Store(_) | MirrorError::FetchLost => FetchRefusal::Unavailable,
    };
    info!("fetch refused ({reason:?}): {error}");
    refuse(send, reason, &error.to_string()).await
}

/// Whether the upstream sent bytes that were not their digest.
fn corrupt(error: &UpstreamError) -> bool {
    matches!(
        error,
        UpstreamError::ManifestDigest { .. }
            | UpstreamError::Store {
                source: StoreError::DigestMismatch { .. },
                ..
            }
    )
}

async fn refuse(
    send: &mut quinn::SendStream,
    reason: FetchRefusal,
    message: &str,
) -> Result<(), FetchError> {
    let reply = FetchReply::Refused {
        reason,
        message: message.to_owned(),
    };
    fetch::write_reply(send, &reply).await
}

fn io(e: impl Into<std::io::Error>) -> FetchError {
    FetchError::from(e.into())
}
