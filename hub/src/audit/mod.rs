//! The audit trail (issue #17 item 2): every state-changing call — an API write, a proxied Docker
//! call other than GET and HEAD, a hijacked `exec`/`attach` session with its whole duration — is
//! recorded with who made it (the credential's name), the device, method, path and query (never a
//! header or a body: `X-Registry-Auth` and a `docker login`'s password are not in either), status,
//! bytes each way and duration.
//!
//! A call's record is an [`InFlight`] shared by whatever still serves it: the auth middleware
//! (which sets the status), the request and response bodies (which count bytes) and, for a
//! hijacked connection, the proxy's splice (which adds its bytes and holds it until it closes).
//! The last holder to let go sends the record, so its duration ends when the client's exchange
//! does. Records go through a bounded channel to one writer ([`writer`]) that inserts them a batch
//! per transaction; the request path never waits for SQLite. When the channel is full the record is
//! sent from a task instead, so a slow disk delays records, it never drops them.

mod bodies;
pub mod writer;

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::Method;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

pub use bodies::{CountedRequest, CountedResponse};

use crate::store::audit::NewRecord;

/// Records waiting for the writer; past this, senders queue as tasks.
const QUEUE: usize = 16_384;

/// Where records go: the writer's queue.
#[derive(Clone, Debug)]
pub struct Audit {
    queue: mpsc::Sender<NewRecord>,
}

impl Audit {
    /// A trail whose records arrive on the returned receiver (give it to [`writer::run`]).
    pub fn new() -> (Self, mpsc::Receiver<NewRecord>) {
        let (queue, records) = mpsc::channel(QUEUE);
        (Self { queue }, records)
    }

    /// Whether a call with this method changes state and is recorded.
    pub fn records(method: &Method) -> bool {
        *method != Method::GET && *method != Method::HEAD && *method != Method::OPTIONS
    }

    /// Start the record of one call.
    pub fn begin(&self, call: Call) -> AuditHandle {
        AuditHandle(Arc::new(InFlight {
            queue: self.queue.clone(),
            call,
            started: Instant::now(),
            at_ms: unix_ms(),
            status: AtomicU16::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            hijacked: AtomicU64::new(0),
        }))
    }
}

/// What a call is, known when it arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The credential's name.
    pub who: String,
    /// The device, when the call is about one.
    pub endpoint: Option<u64>,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
}

/// One call's record while it is served; sent when the last holder lets go.
#[derive(Debug)]
pub struct InFlight {
    queue: mpsc::Sender<NewRecord>,
    call: Call,
    started: Instant,
    at_ms: i64,
    status: AtomicU16,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    hijacked: AtomicU64,
}

/// A holder of a call's record.
#[derive(Clone, Debug)]
pub struct AuditHandle(Arc<InFlight>);

impl AuditHandle {
    /// The answer's status.
    pub fn answered(&self, status: u16) {
        self.0.status.store(status, Ordering::Relaxed);
    }

    /// Bytes from the client.
    pub fn received(&self, bytes: u64) {
        self.0.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes to the client.
    pub fn sent(&self, bytes: u64) {
        self.0.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A hijacked session closed after `up` bytes from the client and `down` to it.
    pub fn spliced(&self, up: u64, down: u64) {
        self.received(up);
        self.sent(down);
        self.0.hijacked.store(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let record = NewRecord {
            at_ms: self.at_ms,
            who: std::mem::take(&mut self.call.who),
            endpoint: self.call.endpoint,
            method: std::mem::take(&mut self.call.method),
            path: std::mem::take(&mut self.call.path),
            status: self.status.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            duration_ms: self.started.elapsed().as_millis() as u64,
            hijacked: self.hijacked.load(Ordering::Relaxed) == 1,
        };
        match self.queue.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(record)) => {
                let queue = self.queue.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(async move { queue.send(record).await });
                    }
                    Err(_) => warn!(?record, "audit record lost: no runtime to queue it on"),
                }
            }
            Err(mpsc::error::TrySendError::Closed(record)) => {
                warn!(?record, "audit record lost: the hub is stopping");
            }
        }
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
