//! The hub's side of fetch streams ([`outpost_protocol::fetch`]): an agent's loopback registry
//! asks for a manifest, or a blob from a byte on, and the hub answers from its mirror — so each
//! blob comes from the upstream at most once however many devices want it, and a transfer cut by an
//! outage or an agent restart goes on from where it stopped instead of starting over.
//!
//! Each stream is served on a task of its own (the session's driver only accepts it and keeps
//! count, for the window grant), at a lower priority than proxy streams: an admin's `docker ps`
//! is sent ahead of queued blob bytes on the same connection (issue #16 item 4).
//!
//! Before the mirror is asked, the session's grant decides whether the device may have it
//! ([`super::fetch_grant`]): only images the fleet ordered onto it.

use std::time::Duration;

use std::sync::Arc;

use outpost_protocol::fetch::{
    self, DeferCause, Fetch, FetchError, FetchRefusal, FetchReply, Wanted, MAX_FETCH_STREAMS,
};
use outpost_protocol::job::Features;
use outpost_protocol::wire::HubMessage;
use quinn::VarInt;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::fetch_grant::{self, SharedGrant, Verdict};
use crate::context::HubContext;
use crate::mirror::counters::Count;
use crate::mirror::error::MirrorError;
use crate::mirror::grant::References;
use crate::mirror::store::StoreError;
use crate::mirror::upstream::UpstreamError;
use crate::mirror::Mirror;
use crate::registry::LiveSession;
use crate::traffic::tally::{Class, Direction};
use crate::traffic::{self, Budgeted};

/// How long an agent has to send its request once it opened the stream.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Fetch streams go after proxy streams (priority 0) when both have bytes to send.
pub(super) const FETCH_PRIORITY: i32 = -1;
/// Bytes read from the mirror's file per write, each checked against the budget first.
const CHUNK: usize = traffic::BUDGET_CHUNK as usize;

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
///
/// The channel that carries that word exists only while a stream is open: most sessions never
/// fetch, and a tokio channel costs ~540 bytes of heap (its cache-padded state and first block)
/// on each of a hub's idle connections (heaptrack, `BENCHMARKS.md` "Hub per-agent cost").
#[derive(Debug, Default)]
pub(super) struct FetchStreams {
    open: usize,
    done: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    /// What the session's device may fetch, made with its first stream.
    grant: Option<SharedGrant>,
}

impl FetchStreams {
    /// Serve a new stream of `session` on a task of its own.
    pub(super) fn spawn(
        &mut self,
        ctx: Arc<HubContext>,
        session: Arc<LiveSession>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        self.open += 1;
        let (done, _) = self
            .done
            .get_or_insert_with(|| mpsc::channel(MAX_FETCH_STREAMS as usize));
        let done = done.clone();
        let grant = self.grant.get_or_insert_with(SharedGrant::default).clone();
        tokio::spawn(async move {
            serve(&ctx, &session, &grant, send, recv).await;
            let _ = done.send(()).await;
        });
    }

    /// Streams open now.
    pub(super) fn open(&self) -> usize {
        self.open
    }

    /// Returns when a stream has ended (cancel-safe: a select may drop it); never while none is
    /// open. The last one to end takes the channel with it.
    pub(super) async fn closed(&mut self) {
        let Some((_, ended)) = &mut self.done else {
            return std::future::pending().await;
        };
        if ended.recv().await.is_some() {
            self.open = self.open.saturating_sub(1);
            if self.open == 0 {
                self.done = None;
            }
        }
    }
}

/// Serve one fetch stream from the mirror; returns when the stream is done, however it ended.
async fn serve(
    ctx: &HubContext,
    session: &Arc<LiveSession>,
    grant: &SharedGrant,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let endpoint = session.endpoint;
    // Only fails on a stream already reset, which the first write reports.
    let _ = send.set_priority(FETCH_PRIORITY);
    ctx.mirror.count(Count::AgentFetch, 1);
    let read = tokio::time::timeout(REQUEST_DEADLINE, fetch::read_request(&mut recv)).await;
    let outcome = match read {
        Ok(Ok(request)) => {
            let asked = fetch::encode_request(&request.to_request()).len() as u64;
            session.traffic().add(Class::Images, Direction::Up, asked);
            let mut sink = Sink {
                send: &mut send,
                session,
            };
            answer(ctx, grant, &request, &mut sink).await
        }
        Ok(Err(e)) => {
            let mut sink = Sink {
                send: &mut send,
                session,
            };
            sink.refuse(FetchRefusal::Invalid, &e.to_string()).await
        }
        Err(_) => return debug!(%endpoint, "fetch stream closed: no request in time"),
    };
    match outcome {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(e) => debug!(%endpoint, "fetch stream ended: {e}"),
    }
}

/// The stream's sending half, counting what it sends to the device as image bytes.
struct Sink<'a> {
    send: &'a mut quinn::SendStream,
    session: &'a Arc<LiveSession>,
}

impl Sink<'_> {
    async fn reply(&mut self, reply: &FetchReply) -> Result<(), FetchError> {
        let mut encoded = Vec::new();
        fetch::write_reply(&mut encoded, reply).await?;
        self.write(&encoded).await
    }

    /// Count `bytes` (when handed to the connection, which is when a budget must count them),
    /// then write them.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        let traffic = self.session.traffic();
        traffic.add(Class::Images, Direction::Down, bytes.len() as u64);
        self.send.write_all(bytes).await.map_err(io)
    }

    async fn refuse(&mut self, reason: FetchRefusal, message: &str) -> Result<(), FetchError> {
        let reply = FetchReply::Refused {
            reason,
            message: message.to_owned(),
        };
        self.reply(&reply).await
    }
}

/// Answer a checked request the device may have: the reply, then the bytes it promises.
async fn answer(
    ctx: &HubContext,
    grant: &SharedGrant,
    request: &Fetch,
    sink: &mut Sink<'_>,
) -> Result<(), FetchError> {
    let mirror = &ctx.mirror;
    let (route, key) = match mirror.repo_key(&request.name) {
        Ok(routed) => routed,
        Err(e) => return refuse_for(sink, &e).await,
    };
    let asked = (request.name.as_str(), &route, &key);
    match fetch_grant::decide(ctx, sink.session, grant, asked, &request.wanted).await {
        Verdict::Granted => {}
        Verdict::Forbidden(message) => return forbid(ctx, sink, &message).await,
        Verdict::Unknown(message) => {
            warn!(endpoint = %sink.session.endpoint, "fetch refused: {message}");
            return sink.refuse(FetchRefusal::Unavailable, &message).await;
        }
    }
    match &request.wanted {
        Wanted::Manifest(reference) => {
            let manifest = match mirror.manifest(&route, reference).await {
                Ok(manifest) => manifest,
                Err(e) => return refuse_for(sink, &e).await,
            };
            let reply = FetchReply::Found {
                digest: manifest.digest.as_str().to_owned(),
                size: manifest.bytes.len() as u64,
                media_type: manifest.media_type.clone(),
            };
            let references = References::of(&manifest.bytes);
            grant.lock().await.note_manifest(&key, &references);
            sink.reply(&reply).await?;
            sink.write(&manifest.bytes).await?;
            mirror.count(Count::AgentBytes, manifest.bytes.len() as u64);
            Ok(())
        }
        Wanted::Blob { digest, offset } => {
            let mut reader = match mirror.blob(&route, digest).await {
                Ok(reader) => reader,
                Err(e) => return refuse_for(sink, &e).await,
            };
            let size = reader.size;
            if *offset > size {
                let message = format!("offset {offset} is past the blob's {size} bytes");
                return sink.refuse(FetchRefusal::Invalid, &message).await;
            }
            let budget = budget_of(ctx, sink.session).await;
            if let Some(budgeted) = budget.as_ref().filter(|b| !has_room(b, sink.session)) {
                return defer(sink, budgeted).await;
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
            sink.reply(&reply).await?;
            reader
                .seek(*offset)
                .await
                .map_err(|e| io(std::io::Error::other(e)))?;
            copy(mirror, &mut reader, sink, budget.as_ref()).await
        }
    }
}

/// The device's budget, if one is set; a store that cannot say holds nothing back (the bytes
/// are still counted).
async fn budget_of(ctx: &HubContext, session: &Arc<LiveSession>) -> Option<Budgeted> {
    match traffic::allowance(ctx, session).await {
        Ok(budget) => budget,
        Err(e) => {
            warn!(endpoint = %session.endpoint, "the device's budget could not be read: {e}");
            None
        }
    }
}

/// Whether a chunk still fits in the budget, with the session as it is now.
fn has_room(budgeted: &Budgeted, session: &LiveSession) -> bool {
    budgeted.allowance.fits(&session.tally(), CHUNK as u64)
}

/// The rest of the blob, counted as it goes (a cut transfer counts what was sent). Where the
/// budget runs out the stream ends early — finished, not reset, so every byte already handed to
/// the connection (and charged to the budget) arrives: the agent keeps it, asks again from
/// there, and is told it is deferred.
async fn copy(
    mirror: &Mirror,
    reader: &mut crate::mirror::store::BlobReader,
    sink: &mut Sink<'_>,
    budget: Option<&Budgeted>,
) -> Result<(), FetchError> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if let Some(budgeted) = budget.filter(|b| !has_room(b, sink.session)) {
            let used = budgeted.allowance.used(&sink.session.tally());
            info!(endpoint = %sink.session.endpoint, budget = budgeted.allowance.budget, used, "budget spent part-way through a blob: deferred");
            return Ok(());
        }
        sink.write(&buf[..n]).await?;
        mirror.count(Count::AgentBytes, n as u64);
    }
}

/// Tell the agent its background transfers wait for the next period. An agent that cannot take
/// a deferral is told the mirror is unavailable, with the same words.
async fn defer(sink: &mut Sink<'_>, budgeted: &Budgeted) -> Result<(), FetchError> {
    let retry_at = u64::try_from(budgeted.next_start).unwrap_or_default();
    let message = format!(
        "deferred: budget: {} bytes a period set on {} are spent; transfers resume at {}",
        budgeted.allowance.budget,
        budgeted.scope,
        crate::api::rfc3339_secs(budgeted.next_start).unwrap_or_default(),
    );
    info!(endpoint = %sink.session.endpoint, "{message}");
    let reason = if sink.session.takes_deferrals() {
        FetchRefusal::Deferred {
            cause: DeferCause::Budget,
            retry_at,
        }
    } else {
        FetchRefusal::Unavailable
    };
    sink.refuse(reason, &message).await
}

/// Refuse an image not ordered onto the device: `Forbidden` to an agent that reads it, else
/// `NotFound` with the same words.
async fn forbid(ctx: &HubContext, sink: &mut Sink<'_>, message: &str) -> Result<(), FetchError> {
    ctx.mirror.count(Count::AgentForbidden, 1);
    warn!(endpoint = %sink.session.endpoint, "fetch refused (Forbidden): {message}");
    let reason = match sink.session.announced(Features::FETCH_FORBIDDEN) {
        true => FetchRefusal::Forbidden,
        false => FetchRefusal::NotFound,
    };
    sink.refuse(reason, message).await
}

async fn refuse_for(sink: &mut Sink<'_>, error: &MirrorError) -> Result<(), FetchError> {
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
    sink.refuse(reason, &error.to_string()).await
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

fn io(e: impl Into<std::io::Error>) -> FetchError {
    FetchError::from(e.into())
}
