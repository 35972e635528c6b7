//! The control messages the rest of the hub queues towards one agent (summons, approval, a new
//! desired state, jobs).
//!
//! A tokio channel allocates a block of 32 slots and its bookkeeping up front, ~1 KB per agent
//! (heaptrack on the hub at 2,000 agents), for a queue that is empty almost always. This one is a
//! `VecDeque`, which allocates only while something waits, behind a mutex, and a `Notify`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use outpost_protocol::wire::HubMessage;
use tokio::sync::Notify;

/// What the rest of the hub asks a session driver to tell its agent: the few control messages not
/// sent by the driver itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Ask the agent for stream credit.
    Summon {
        /// Echoed in the agent's `Ready`.
        id: u32,
    },
    /// The pending device was approved.
    Approved,
    /// What the device should run changed: the driver reads it and sends it if the agent runs
    /// something else (`session::delivery`).
    DesiredChanged,
    /// Send job `id` ([`crate::jobs`]): the driver asks for the order, with the time left.
    Job {
        /// The job.
        id: u64,
    },
    /// Results of the device's jobs are stored: the driver takes the acknowledgements waiting
    /// ([`crate::jobs::Jobs::take_acks`]), however many, and sends them.
    JobAcks,
    /// An admin cancelled job `id`.
    JobCancel {
        /// The job.
        id: u64,
    },
    /// The transfer windows changed (or the agent just said it takes them): the driver reads
    /// the device's and sends it to an agent that takes deferrals.
    WindowChanged,
    /// The fleet's live hubs changed ([`crate::hubs`]): the driver sends their addresses to an
    /// agent that takes them mid-session.
    HubAddrsChanged,
}

impl Control {
    /// The frame to send as it is, or `None` for what the driver must look up first.
    pub fn message(self) -> Option<HubMessage> {
        match self {
            Self::Summon { id } => Some(HubMessage::Summon { id }),
            Self::Approved => Some(HubMessage::Approved),
            Self::JobCancel { id } => Some(HubMessage::JobCancel { id }),
            Self::DesiredChanged
            | Self::Job { .. }
            | Self::JobAcks
            | Self::WindowChanged
            | Self::HubAddrsChanged => None,
        }
    }
}

/// Why a control message was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// [`ControlQueue::CAPACITY`] messages wait already: the driver is not writing them out.
    Full,
    /// The session ended.
    Closed,
}

/// A bounded FIFO of [`Control`] messages with one reader, the session driver.
#[derive(Debug, Default)]
pub struct ControlQueue {
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Control>,
    closed: bool,
}

impl ControlQueue {
    /// Messages waiting at most; a summon is one, so this never fills while the driver runs.
    pub const CAPACITY: usize = 16;

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `control` for the driver.
    pub fn push(&self, control: Control) -> Result<(), Refused> {
        let mut queue = self.lock();
        if queue.closed {
            return Err(Refused::Closed);
        }
        if queue.items.len() >= Self::CAPACITY {
            return Err(Refused::Full);
        }
        queue.items.push_back(control);
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    /// The next message, waiting for one. Cancel-safe: a message leaves the queue only in the
    /// poll that returns it.
    pub async fn pop(&self) -> Control {
        loop {
            if let Some(control) = self.lock().items.pop_front() {
                return control;
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check above
            // and this wait is not missed.
            self.ready.notified().await;
        }
    }

    /// The session ended: refuse from now on, and drop what waits.
    pub fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    /// A waker that records being woken: the reader's state is observed, not waited for.
    #[derive(Default)]
    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Woken>, Waker) {
        let woken = Arc::new(Woken::default());
        (woken.clone(), Waker::from(woken))
    }

    #[test]
    fn messages_arrive_in_order_and_a_waiting_reader_wakes() {
        let queue = ControlQueue::default();
        let (woken, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut pop = pin!(queue.pop());
        assert!(pop.as_mut().poll(&mut cx).is_pending(), "the reader waits");
        queue.push(Control::Summon { id: 1 }).unwrap();
        queue.push(Control::Approved).unwrap();
        assert!(woken.0.load(Ordering::SeqCst), "the push woke the reader");
        assert_eq!(
            pop.as_mut().poll(&mut cx),
            Poll::Ready(Control::Summon { id: 1 })
        );
        let mut next = pin!(queue.pop());
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Control::Approved));
    }

    #[test]
    fn a_full_or_closed_queue_refuses() {
        let queue = ControlQueue::default();
        for id in 0..ControlQueue::CAPACITY as u32 {
            queue.push(Control::Summon { id }).unwrap();
        }
        assert_eq!(queue.push(Control::Approved), Err(Refused::Full));
        queue.close();
        assert_eq!(queue.push(Control::Approved), Err(Refused::Closed));
        assert_eq!(queue.lock().items.capacity(), 0, "closing frees the queue");
    }

    #[test]
    fn a_reader_cancelled_while_waiting_loses_nothing() {
        let queue = ControlQueue::default();
        let (_, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        {
            let mut cancelled = pin!(queue.pop());
            assert!(cancelled.as_mut().poll(&mut cx).is_pending());
        }
        queue.push(Control::Approved).unwrap();
        let mut pop = pin!(queue.pop());
        assert_eq!(pop.as_mut().poll(&mut cx), Poll::Ready(Control::Approved));
    }
}
