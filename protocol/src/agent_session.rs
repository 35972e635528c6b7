//! The agent's session logic as a plain state machine: no sockets, no clock of its own.
//!
//! The async driver in the agent feeds it what happened (`handle_*(now, …)`) and carries out what it
//! asks for, in a fixed order: datagrams to send ([`AgentSession::poll_transmit`]), events to act on
//! ([`AgentSession::poll_event`]), then sleep until [`AgentSession::poll_timeout`]. Because time is
//! an argument, the tests below run a 30-minute outage in microseconds.
//!
//! What it decides:
//! - **Check-ins**: one datagram per interval (the hub can change the interval in each ack, within
//!   [`MIN_CHECKIN_INTERVAL`] and [`MAX_CHECKIN_INTERVAL`]: seconds by default, minutes for a
//!   `quiet` device, whose NAT binding may expire between check-ins). A
//!   check-in whose ack does not come back within the ack timeout is retried sooner, with the delay
//!   doubling per miss up to the interval; after `max_missed_acks` misses in a row it reports the hub
//!   silent once (the driver logs it; QUIC's idle timeout decides whether the connection is dead).
//! - **Round trips**: an ack is timed only against the check-in it names, and only while that
//!   check-in is the one in flight. A retry is a new check-in with its own sequence number, so a
//!   late ack of the missed one is no sample (Karn's rule: an ack that could answer either send
//!   says nothing about the path); [`AgentSession::poll_rtt_sample`] hands each sample out once.
//! - **Summon → active**: the first summon opens stream credit; every summon is answered `Ready`.
//!   A stream the hub opened with a standby session's one stream of credit
//!   ([`crate::stream::STANDBY_STREAMS`]) makes it active too: its summon is on the way.
//! - **Standby**: when no proxy stream is open and nothing moved for `standby_after`, credit drops
//!   back to that one stream.
//! - **Silence while streams are open**: a device that only receives (an image coming down) sends
//!   nothing but acks, and acks answer packets. When its NAT rebinds mid-transfer the hub's packets
//!   go to the old mapping, nothing arrives, no ack leaves from the new one, and the hub never
//!   learns the new address: the transfer stalled until the next check-in, up to an interval
//!   (`flaky-cellular` congestion bench, session 7). So while a proxy stream is open, the session
//!   checks in after [`SILENCE_PROBE`] without a received stream frame (the driver reports the
//!   connection's count, [`AgentSession::handle_received`]; acks of the check-ins themselves do not
//!   count), then after twice that, and so on up to the interval: a stream that is merely quiet
//!   costs a handful of check-ins, not one a second.
//! - **Snapshots**: one at each return to standby (and when the driver asks, at connect), at most
//!   one per [`MIN_SNAPSHOT_INTERVAL`]: a request inside the interval is deferred to its end, and
//!   requests that pile up meanwhile are one snapshot.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::snapshot::MIN_SNAPSHOT_INTERVAL;
use crate::stack::StateDigest;
use crate::wire::{Datagram, EndpointTiming};

/// Timing of one agent session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTiming {
    /// Time between check-ins (until the hub says otherwise).
    pub checkin_interval: Duration,
    /// Inactivity after which an active session returns to standby.
    pub standby_after: Duration,
    /// How long to wait for a check-in's ack before counting it missed.
    pub ack_timeout: Duration,
    /// Misses in a row before the hub is reported silent.
    pub max_missed_acks: u32,
    /// Incoming bidirectional streams granted when summoned.
    pub stream_credit: u32,
}

/// Shortest check-in interval the agent accepts from a hub, so a misconfigured hub cannot make a
/// fleet flood a metered link.
pub const MIN_CHECKIN_INTERVAL: Duration = Duration::from_secs(1);

/// Longest check-in interval the agent accepts from a hub: an hour. A `quiet` device checks in
/// minutes apart (its NAT binding may expire in between, and a summon waits for the next
/// check-in); beyond an hour the hub would learn of a dead device, and the device of a dead hub,
/// too late to be of use. The agent's connection idle timeout follows its interval
/// (`outpost_transport::profile::idle_timeout_for`), so the connection outlives the silence.
pub const MAX_CHECKIN_INTERVAL: Duration = Duration::from_secs(3600);

/// How long a session with open proxy streams may receive nothing before it checks in, so that a
/// rebound NAT mapping or a returning path is heard from within about a second.
pub const SILENCE_PROBE: Duration = Duration::from_secs(1);

/// Whether the hub may open proxy streams right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No stream credit; only check-ins cross the link.
    Standby,
    /// Stream credit open; an admin is using the device.
    Active,
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// Raise the incoming bidirectional stream limit to this many.
    GrantStreams(u32),
    /// Tell the hub (control stream) that credit is open for this summon.
    SendReady(u32),
    /// Drop the stream limit to zero and tell the hub (control stream).
    EnterStandby,
    /// This many check-ins in a row went unanswered.
    HubSilent {
        /// Consecutive misses.
        missed: u32,
    },
    /// Read the engine and send a snapshot (control stream).
    TakeSnapshot,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    seq: u32,
    sent: Instant,
}

/// The agent's side of one session connection.
#[derive(Debug)]
pub struct AgentSession {
    config: SessionTiming,
    mode: Mode,
    next_seq: u32,
    next_checkin: Instant,
    last_sent: Option<Instant>,
    in_flight: Option<InFlight>,
    missed: u32,
    silent_reported: bool,
    open_streams: u32,
    last_activity: Instant,
    rtt: Option<Duration>,
    rtt_sample: Option<Duration>,
    last_snapshot: Option<Instant>,
    snapshot_due: Option<Instant>,
    /// Stream frames the connection has received, the wait before the next silence check-in,
    /// and when that is due (only with streams open).
    received: u64,
    silence_wait: Duration,
    silence_probe_at: Instant,
    /// The desired state this device runs, once the agent applies stacks (check-ins name it).
    applied: Option<StateDigest>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<AgentEvent>,
}

impl AgentSession {
    /// A new session on a fresh connection: the first check-in is due at once.
    pub fn new(now: Instant, config: SessionTiming) -> Self {
        Self {
            config,
            mode: Mode::Standby,
            next_seq: 0,
            next_checkin: now,
            last_sent: None,
            in_flight: None,
            missed: 0,
            silent_reported: false,
            open_streams: 0,
            last_activity: now,
            rtt: None,
            rtt_sample: None,
            last_snapshot: None,
            snapshot_due: None,
            received: 0,
            silence_wait: SILENCE_PROBE,
            silence_probe_at: now + SILENCE_PROBE,
            applied: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Apply settings from the hub's welcome or a later update.
    pub fn handle_settings(&mut self, settings: EndpointTiming) {
        self.set_interval(Duration::from_millis(settings.checkin_interval_ms.into()));
        self.config.standby_after = Duration::from_millis(settings.standby_after_ms.into());
    }

    /// A datagram arrived from the hub.
    pub fn handle_datagram(&mut self, now: Instant, datagram: Datagram) {
        let Datagram::Ack { seq, interval_s } = datagram else {
            return;
        };
        if let Some(in_flight) = self.in_flight.filter(|f| f.seq == seq) {
            let rtt = now.saturating_duration_since(in_flight.sent);
            self.rtt = Some(rtt);
            self.rtt_sample = Some(rtt);
            self.in_flight = None;
        }
        // Any ack, even a late one, proves the hub is there.
        self.missed = 0;
        self.silent_reported = false;
        self.set_interval(Duration::from_secs(interval_s.into()));
    }

    /// The hub summoned the device.
    pub fn handle_summon(&mut self, now: Instant, id: u32) {
        self.go_active();
        self.last_activity = now;
        self.events.push_back(AgentEvent::SendReady(id));
    }

    /// Active from standby: the full stream credit.
    fn go_active(&mut self) {
        if self.mode == Mode::Standby {
            self.mode = Mode::Active;
            self.events
                .push_back(AgentEvent::GrantStreams(self.config.stream_credit));
        }
    }

    /// The hub opened a proxy stream: in standby, with the one stream of credit a standby
    /// session grants ([`crate::stream::STANDBY_STREAMS`]), so its summon is on the way and the
    /// session goes active now rather than when that arrives.
    pub fn handle_stream_opened(&mut self, now: Instant) {
        self.go_active();
        if self.open_streams == 0 {
            self.restart_silence(now);
        }
        self.open_streams += 1;
        self.last_activity = now;
    }

    /// A proxy stream ended.
    pub fn handle_stream_closed(&mut self, now: Instant) {
        self.open_streams = self.open_streams.saturating_sub(1);
        self.last_activity = now;
    }

    /// The connection has received `stream_frames` in all by `now` (the driver reads its counter
    /// before each timeout); a change ends a silence.
    pub fn handle_received(&mut self, now: Instant, stream_frames: u64) {
        if stream_frames != self.received {
            self.received = stream_frames;
            self.restart_silence(now);
        }
    }

    /// The device's route to the hub changed (a new local address): check in now, so the hub
    /// learns the new path at once instead of at the next interval. Until then it would keep
    /// sending to the old address, and a summon would wait for the next check-in.
    pub fn handle_path_change(&mut self, now: Instant) {
        self.send_checkin(now);
    }

    /// The desired state the device now runs: from here on every check-in names it
    /// ([`Datagram::CheckInApplied`]), which also tells the hub this agent applies stacks. An agent
    /// that never calls this sends version-2 check-ins and is never sent stacks.
    pub fn set_applied(&mut self, applied: StateDigest) {
        self.applied = Some(applied);
    }

    /// A snapshot is wanted: now, or at the end of the [`MIN_SNAPSHOT_INTERVAL`] since the last.
    pub fn request_snapshot(&mut self, now: Instant) {
        let earliest = self
            .last_snapshot
            .map_or(now, |last| last + MIN_SNAPSHOT_INTERVAL);
        self.snapshot_due.get_or_insert(earliest);
        self.take_snapshot_if_due(now);
    }

    /// The driver took a snapshot at `at` without being asked (the one due at connect, sent behind
    /// the hello before this session existed): later ones keep [`MIN_SNAPSHOT_INTERVAL`] from it.
    pub fn handle_snapshot_taken(&mut self, at: Instant) {
        self.last_snapshot = Some(at);
    }

    /// Time has reached (or passed) [`Self::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(in_flight) = self.in_flight {
            if now >= self.ack_deadline(in_flight) {
                self.on_ack_missed(in_flight.sent);
            }
        }
        if self.silence_probe_due().is_some_and(|due| now >= due) {
            self.silence_wait = self.silence_wait.saturating_mul(2);
            self.silence_probe_at = now + self.silence_wait;
            self.send_checkin(now);
        }
        if now >= self.next_checkin {
            self.send_checkin(now);
        }
        if let Some(deadline) = self.standby_deadline() {
            if now >= deadline {
                self.mode = Mode::Standby;
                self.events.push_back(AgentEvent::EnterStandby);
                self.request_snapshot(now);
            }
        }
        self.take_snapshot_if_due(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    /// The next thing the driver must do.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack_deadline = self.in_flight.map(|f| self.ack_deadline(f));
        [
            Some(self.next_checkin),
            ack_deadline,
            self.standby_deadline(),
            self.snapshot_due,
            self.silence_probe_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The round trip of a check-in acknowledged since the last call: sent once and answered
    /// while still in flight (a late ack of a retried one is none).
    pub fn poll_rtt_sample(&mut self) -> Option<Duration> {
        self.rtt_sample.take()
    }

    /// Standby or active.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Round trip of the last acknowledged check-in.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Check-ins in a row without an ack.
    pub fn missed_acks(&self) -> u32 {
        self.missed
    }

    /// Proxy streams open now.
    pub fn open_streams(&self) -> u32 {
        self.open_streams
    }

    /// The check-in interval in force.
    pub fn checkin_interval(&self) -> Duration {
        self.config.checkin_interval
    }

    fn standby_deadline(&self) -> Option<Instant> {
        (self.mode == Mode::Active && self.open_streams == 0)
            .then(|| self.last_activity + self.config.standby_after)
    }

    /// When a silence with streams open next calls for a check-in: [`SILENCE_PROBE`] after the last
    /// received stream frame (or the first stream's opening), then after twice as long as the
    /// previous wait, until the regular check-in comes as soon.
    fn silence_probe_due(&self) -> Option<Instant> {
        (self.open_streams > 0 && self.silence_wait < self.config.checkin_interval)
            .then_some(self.silence_probe_at)
    }

    fn restart_silence(&mut self, now: Instant) {
        self.silence_wait = SILENCE_PROBE;
        self.silence_probe_at = now + SILENCE_PROBE;
    }

    fn take_snapshot_if_due(&mut self, now: Instant) {
        if self.snapshot_due.is_some_and(|due| now >= due) {
            self.snapshot_due = None;
            self.last_snapshot = Some(now);
            self.events.push_back(AgentEvent::TakeSnapshot);
        }
    }

    fn set_interval(&mut self, interval: Duration) {
        let interval = interval.clamp(MIN_CHECKIN_INTERVAL, MAX_CHECKIN_INTERVAL);
        if interval == self.config.checkin_interval {
            return;
        }
        self.config.checkin_interval = interval;
        if let (Some(last), None) = (self.last_sent, self.in_flight) {
            self.next_checkin = last + interval;
        }
    }

    /// When a check-in in flight counts as missed: after the ack timeout, or when the next one is
    /// due if that comes sooner. Otherwise, at an interval shorter than the ack timeout (1 s in a
    /// lab, 1.2 s to ack on `lan`), each check-in replaced the last before it could be missed and
    /// a dead hub was never reported.
    fn ack_deadline(&self, in_flight: InFlight) -> Instant {
        in_flight.sent + self.config.ack_timeout.min(self.config.checkin_interval)
    }

    fn send_checkin(&mut self, now: Instant) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.transmits.push_back(match self.applied {
            Some(applied) => Datagram::CheckInApplied { seq, applied },
            None => Datagram::CheckIn { seq },
        });
        self.in_flight = Some(InFlight { seq, sent: now });
        self.last_sent = Some(now);
        self.next_checkin = now + self.config.checkin_interval;
    }

    fn on_ack_missed(&mut self, sent: Instant) {
        self.in_flight = None;
        self.missed += 1;
        // Retry sooner than the interval, doubling per miss, so one lost datagram on a lossy link
        // does not leave the hub without news for a whole interval.
        let exponent = (self.missed - 1).min(16);
        let retry = self
            .config
            .ack_timeout
            .saturating_mul(1 << exponent)
            .min(self.config.checkin_interval);
        self.next_checkin = self
            .next_checkin
            .min(sent + self.config.ack_timeout + retry);
        if self.missed >= self.config.max_missed_acks && !self.silent_reported {
            self.silent_reported = true;
            self.events.push_back(AgentEvent::HubSilent {
                missed: self.missed,
            });
        }
    }
}

#[cfg(test)]
mod tests;
