//! The agent's answer to a stream preface, read without holding up the request.
//!
//! The hub sends the HTTP request right behind the preface instead of waiting for the agent's
//! `Ready`: a Docker call then costs one round trip to the device, not two (on a 600 ms GEO path,
//! `docker ps` — two calls — drops from about 2.5 s to 1.3 s). The agent reads the request only
//! after it has connected to its engine, so nothing is lost while it does.
//!
//! A task reads the reply off the stream's receive side and hands the stream on only if the agent
//! said `Ready`; the HTTP client's reads wait for that. A refusal (the engine is unreachable) is
//! kept for the handler, which turns the failed request into a 502 carrying the agent's message.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use outpost_protocol::stream::{self, StreamReply};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{oneshot, watch};

/// What the agent answered, once it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Not yet.
    Waiting,
    /// Relaying to the engine.
    Ready,
    /// Not relayed; the agent's (or the hub's) reason.
    Refused(String),
}

/// The receive side of a proxy stream that yields engine bytes only after the agent's `Ready`.
#[derive(Debug)]
pub(super) struct AfterReply {
    state: State,
}

#[derive(Debug)]
enum State {
    Waiting(oneshot::Receiver<quinn::RecvStream>),
    Relaying(quinn::RecvStream),
    Refused,
}

/// Start reading the reply on `recv`; returns the reader for the HTTP client and a watch on what
/// the agent answered.
pub(super) fn after_reply(
    mut recv: quinn::RecvStream,
    deadline: Duration,
) -> (AfterReply, watch::Receiver<Outcome>) {
    let (outcome_tx, outcome_rx) = watch::channel(Outcome::Waiting);
    let (mut stream_tx, stream_rx) = oneshot::channel();
    tokio::spawn(async move {
        let reply = tokio::select! {
            reply = tokio::time::timeout(deadline, stream::read_reply(&mut recv)) => reply,
            // Nobody waits for the answer any more (the client went away and the handler is
            // done): drop the stream now (QUIC tells the agent, which closes its engine
            // connection) instead of holding it for `deadline`.
            _ = async { tokio::join!(stream_tx.closed(), outcome_tx.closed()) } => return,
        };
        let outcome = match reply {
            Ok(Ok(StreamReply::Ready)) => Outcome::Ready,
            Ok(Ok(StreamReply::Refused { message, .. })) => Outcome::Refused(message),
            Ok(Err(e)) => Outcome::Refused(format!("the device closed the stream: {e}")),
            Err(_) => Outcome::Refused(format!(
                "the device did not answer the stream within {deadline:?}"
            )),
        };
        let ready = outcome == Outcome::Ready;
        let _ = outcome_tx.send(outcome);
        if ready {
            let _ = stream_tx.send(recv);
        }
    });
    (
        AfterReply {
            state: State::Waiting(stream_rx),
        },
        outcome_rx,
    )
}

impl AsyncRead for AfterReply {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Waiting(handoff) => {
                    self.state = match ready!(Pin::new(handoff).poll(cx)) {
                        Ok(recv) => State::Relaying(recv),
                        Err(_) => State::Refused,
                    };
                }
                State::Relaying(recv) => return Pin::new(recv).poll_read(cx, buf),
                State::Refused => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "the device refused the stream",
                    )))
                }
            }
        }
    }
}

/// The agent's refusal, if it refused: waits up to `deadline` for its answer.
pub(super) async fn refusal(
    mut outcome: watch::Receiver<Outcome>,
    deadline: Duration,
) -> Option<String> {
    let answered = tokio::time::timeout(deadline, outcome.wait_for(|o| *o != Outcome::Waiting));
    match answered.await {
        Ok(Ok(answer)) => match &*answer {
            Outcome::Refused(message) => Some(message.clone()),
            _ => None,
        },
        _ => None,
    }
}
