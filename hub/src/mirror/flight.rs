//! Single flight: concurrent requests for one blob share one upstream fetch.
//!
//! The first request for a missing blob becomes the leader: [`super::Mirror`] spawns the fetch as a
//! task of its own (so it finishes, and the blob is kept, even if every requester goes away) and
//! every later request joins it and waits for its outcome. The entry is removed before the outcome
//! is published, after a successful fetch has put the blob in the store: a request that comes after
//! finds the blob there, and one that comes after a failure starts a fresh fetch.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::digest::Digest;
use super::error::MirrorError;

/// A fetch's result, shared by everyone who waited for it.
pub type Outcome = Result<(), MirrorError>;

/// How a request takes part in a fetch.
#[derive(Debug)]
pub enum Joined {
    /// It is the first: it must run the fetch and [`Flights::finish`] it.
    Leader(watch::Sender<Option<Outcome>>),
    /// A fetch is running: wait for it with [`wait`].
    Follower(watch::Receiver<Option<Outcome>>),
}

/// Fetches in progress, by blob.
#[derive(Debug, Default)]
pub struct Flights {
    running: Mutex<HashMap<Digest, watch::Receiver<Option<Outcome>>>>,
}

impl Flights {
    /// Join the fetch of `digest`, or become its leader (also in place of a leader that vanished
    /// without finishing, so one failed task does not fail its blob forever).
    pub fn join(&self, digest: &Digest) -> Joined {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(receiver) = running.get(digest).filter(|r| r.has_changed().is_ok()) {
            return Joined::Follower(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        running.insert(digest.clone(), receiver);
        Joined::Leader(sender)
    }

    /// The leader's fetch of `digest` ended with `outcome`: forget it, then tell the followers.
    pub fn finish(
        &self,
        digest: &Digest,
        leader: &watch::Sender<Option<Outcome>>,
        outcome: Outcome,
    ) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        leader.send_replace(Some(outcome));
    }
}

/// Wait for a fetch's outcome; a leader that vanished without one (its task panicked) is an error.
pub async fn wait(mut receiver: watch::Receiver<Option<Outcome>>) -> Outcome {
    match receiver.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Err(MirrorError::FetchLost)),
        Err(_) => Err(MirrorError::FetchLost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_share_the_leaders_outcome_and_a_later_request_leads_anew() {
        let flights = Flights::default();
        let digest = Digest::of(b"blob");
        let Joined::Leader(leader) = flights.join(&digest) else {
            panic!("the first request leads")
        };
        let followers: Vec<_> = (0..5)
            .map(|_| match flights.join(&digest) {
                Joined::Follower(receiver) => tokio::spawn(wait(receiver)),
                Joined::Leader(_) => panic!("a second leader"),
            })
            .collect();
        flights.finish(&digest, &leader, Err(MirrorError::BlobUnknown));
        for follower in followers {
            assert!(matches!(
                follower.await.unwrap(),
                Err(MirrorError::BlobUnknown)
            ));
        }
        assert!(matches!(flights.join(&digest), Joined::Leader(_)));
    }

    #[tokio::test]
    async fn a_vanished_leader_fails_its_followers() {
        let flights = Flights::default();
        let digest = Digest::of(b"blob");
        let leader = flights.join(&digest);
        let Joined::Follower(receiver) = flights.join(&digest) else {
            panic!("follower")
        };
        drop(leader);
        assert!(matches!(wait(receiver).await, Err(MirrorError::FetchLost)));
        assert!(
            matches!(flights.join(&digest), Joined::Leader(_)),
            "the next request leads"
        );
    }
}
