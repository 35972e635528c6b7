//! What the driver asks when check-ins go unanswered: does the hub answer over TCP (this network
//! now drops UDP: [`crate::tunnel::TcpReach`]), or does another hub of the fleet answer (this one
//! is gone: [`crate::hub_reach::HubReach`])? Both run beside the session, which keeps riding the
//! silence out; a finding counts only if nothing arrived on the connection meanwhile.

use std::time::Duration;

use outpost_protocol::wire::CloseCode;
use outpost_transport::close::CloseCodeVarint as _;
use tokio::task::JoinHandle;
use tracing::warn;

use super::SessionEnd;

use crate::hub_reach::HubReach;
use crate::tunnel::TcpReach;

/// How long a session whose check-ins go unanswered still waits, once the hub has answered over
/// TCP, for anything to arrive on its own path before it calls the path dead: after an outage a
/// fresh TCP handshake can beat a stalled connection's backed-off retransmission timer (Linux
/// doubles from 200 ms: 6.2 s into an outage the next try comes 6.4 s later), so a tunnel or UDP
/// path that is merely slow to resume is not torn down mid-transfer.
const BLOCK_CONFIRM: Duration = Duration::from_secs(8);

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Finding {
    /// The hub answers over TCP.
    UdpBlocked,
    /// The hub at this address of the list answers.
    OtherHub(String),
}

/// The checks a silent hub starts, each at most once at a time.
pub(super) struct SilenceChecks {
    tcp_reach: Option<TcpReach>,
    hub_reach: Option<HubReach>,
    /// Running checks, with the datagrams the connection had received when each began.
    tcp: Option<(JoinHandle<bool>, u64)>,
    hubs: Option<(JoinHandle<Option<String>>, u64)>,
}

impl SilenceChecks {
    /// The checks a session may run: over TCP, and to other hubs.
    pub(super) fn new(tcp_reach: Option<TcpReach>, hub_reach: Option<HubReach>) -> Self {
        Self {
            tcp_reach,
            hub_reach,
            tcp: None,
            hubs: None,
        }
    }

    /// Check-ins go unanswered; the connection has received `received` datagrams so far.
    pub(super) fn start(&mut self, received: u64) {
        if let (Some(reach), None) = (&self.tcp_reach, &self.tcp) {
            let reach = reach.clone();
            let check = tokio::spawn(async move {
                let answers = reach.answers().await;
                if answers {
                    tokio::time::sleep(BLOCK_CONFIRM).await;
                }
                answers
            });
            self.tcp = Some((check, received));
        }
        let other_hubs = self.hub_reach.as_ref().filter(|reach| reach.has_others());
        if let (Some(reach), None) = (other_hubs, &self.hubs) {
            let reach = reach.clone();
            let check = tokio::spawn(async move { reach.first_answering().await });
            self.hubs = Some((check, received));
        }
    }

    /// The fleet's hubs are now `addrs`: a later check asks those.
    pub(super) fn set_hub_addrs(&mut self, addrs: &[String]) {
        if let Some(reach) = &mut self.hub_reach {
            reach.set_addrs(addrs);
        }
    }

    /// The next check to end with a finding, with the datagrams received when it began; never
    /// while no check runs. A check that found nothing just ends.
    pub(super) async fn next(&mut self) -> (Finding, u64) {
        loop {
            match (&mut self.tcp, &mut self.hubs) {
                (None, None) => return std::future::pending().await,
                (tcp, hubs) => {
                    tokio::select! {
                        answers = wait(tcp), if tcp.is_some() => {
                            let (answers, received) = answers;
                            *tcp = None;
                            if answers == Some(true) {
                                return (Finding::UdpBlocked, received);
                            }
                        }
                        answer = wait(hubs), if hubs.is_some() => {
                            let (answer, received) = answer;
                            *hubs = None;
                            if let Some(Some(addr)) = answer {
                                return (Finding::OtherHub(addr), received);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A running check's result (`None` if its task failed) and the datagrams counted at its start.
async fn wait<T>(check: &mut Option<(JoinHandle<T>, u64)>) -> (Option<T>, u64) {
    match check {
        Some((task, received)) => ((&mut *task).await.ok(), *received),
        None => std::future::pending().await,
    }
}

/// End the session on what a silence check found.
pub(super) fn end_session(conn: &quinn::Connection, finding: Finding) -> SessionEnd {
    match finding {
        Finding::UdpBlocked => {
            warn!("check-ins go unanswered but the hub answers over TCP: UDP is blocked (or this session's path is dead); reconnecting over TCP");
            conn.close(CloseCode::Done.to_varint(), b"UDP blocked");
            SessionEnd::UdpBlocked
        }
        Finding::OtherHub(addr) => {
            warn!(hub = %addr, "check-ins go unanswered but another hub of the fleet answers: this hub is gone; reconnecting there");
            conn.close(CloseCode::Done.to_varint(), b"hub silent");
            SessionEnd::HubGone { answering: addr }
        }
    }
}
