//! Carries out "deliver at time T" verdicts for the async front ends.
//!
//! The model hands out delivery instants; a delay line holds packets in a timer heap and hands
//! each to its sink when due. Packets due now skip the heap when nothing is waiting in it, which
//! keeps a transparent link at the cost of a plain forward (see `BENCHMARKS.md`) without letting a
//! fresh packet overtake an older delayed one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where due packets go (a UDP socket, a TUN device…).
pub(crate) trait Sink: Send + 'static {
    /// What one scheduled packet carries.
    type Item: Send + 'static;
    /// Sends one packet now; errors count as losses and are the sink's to log.
    fn deliver(&mut self, item: Self::Item) -> impl Future<Output = ()> + Send;
}

/// The sending half of a delay line.
#[derive(Debug)]
pub(crate) struct DelayLine<T> {
    tx: mpsc::UnboundedSender<(Instant, T)>,
    waiting: Arc<AtomicUsize>,
}

impl<T> Clone for DelayLine<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            waiting: self.waiting.clone(),
        }
    }
}

impl<T: Send + 'static> DelayLine<T> {
    /// Starts a delay line feeding `sink`; it ends when every sender is dropped.
    pub(crate) fn spawn<S: Sink<Item = T>>(sink: S) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(sink, rx, waiting.clone()));
        Self { tx, waiting }
    }

    /// True when `item`, due at `at`, may be sent at once by the caller: it is due and nothing
    /// older is still waiting.
    pub(crate) fn can_bypass(&self, at: Instant, now: Instant) -> bool {
        at <= now && self.waiting.load(Ordering::Acquire) == 0
    }

    /// Schedules `item` for `at`.
    pub(crate) fn schedule(&self, at: Instant, item: T) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        if self.tx.send((at, item)).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

async fn run<S: Sink>(
    mut sink: S,
    mut rx: mpsc::UnboundedReceiver<(Instant, S::Item)>,
    waiting: Arc<AtomicUsize>,
) {
    let mut heap: BinaryHeap<Reverse<Entry<S::Item>>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = heap.peek().map(|Reverse(e)| e.at);
        tokio::select! {
            received = rx.recv() => match received {
                Some((at, item)) => {
                    seq += 1;
                    heap.push(Reverse(Entry { at, seq, item }));
                }
                None => break,
            },
            () = sleep_until_opt(next) => {
                let now = Instant::now();
                while heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                    if let Some(Reverse(entry)) = heap.pop() {
                        sink.deliver(entry.item).await;
                        waiting.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
        }
    }
    // Senders are gone: the front end shut down; flush nothing further.
    waiting.store(0, Ordering::Release);
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
