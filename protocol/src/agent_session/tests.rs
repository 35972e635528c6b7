//! Virtual-clock tests: time is a value we advance, so hours of session life cost nothing.

use super::*;

const INTERVAL: Duration = Duration::from_secs(25);
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

fn config() -> SessionTiming {
    SessionTiming {
        checkin_interval: INTERVAL,
        standby_after: Duration::from_secs(60),
        ack_timeout: ACK_TIMEOUT,
        max_missed_acks: 3,
        stream_credit: 32,
    }
}

/// A session plus a virtual clock; `run_until` plays the driver's loop without I/O.
struct Harness {
    now: Instant,
    session: AgentSession,
    sent: Vec<(Duration, u32)>,
    events: Vec<(Duration, AgentEvent)>,
    start: Instant,
    /// Whether the simulated hub answers check-ins (after `ack_delay`).
    hub_answers: bool,
    ack_delay: Duration,
    pending_acks: Vec<(Instant, u32)>,
}

impl Harness {
    fn new() -> Self {
        #[allow(clippy::disallowed_methods)] // the one real instant: the virtual clock's origin
        let start = Instant::now();
        Self {
            now: start,
            session: AgentSession::new(start, config()),
            sent: Vec::new(),
            events: Vec::new(),
            start,
            hub_answers: true,
            ack_delay: Duration::from_millis(600),
            pending_acks: Vec::new(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn drain(&mut self) {
        while let Some(datagram) = self.session.poll_transmit() {
            let Datagram::CheckIn { seq } = datagram else {
                panic!("agent sent {datagram:?}")
            };
            self.sent.push((self.elapsed(), seq));
            if self.hub_answers {
                self.pending_acks.push((self.now + self.ack_delay, seq));
            }
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push((self.elapsed(), event));
        }
    }

    /// Advance virtual time to `until` (from start), delivering acks and firing timers in order.
    fn run_until(&mut self, until: Duration) {
        let end = self.start + until;
        loop {
            self.drain();
            let next_ack = self.pending_acks.iter().map(|(at, _)| *at).min();
            let next = [self.session.poll_timeout(), next_ack]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    if let Some(index) = self.pending_acks.iter().position(|(t, _)| *t <= self.now)
                    {
                        let (_, seq) = self.pending_acks.remove(index);
                        self.session.handle_datagram(
                            self.now,
                            Datagram::Ack {
                                seq,
                                interval_s: INTERVAL.as_secs() as u16,
                            },
                        );
                    } else {
                        self.session.handle_timeout(self.now);
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        self.drain();
    }

    fn checkin_times(&self) -> Vec<u64> {
        self.sent.iter().map(|(t, _)| t.as_secs()).collect()
    }
}

#[test]
fn checks_in_at_once_then_every_interval() {
    let mut h = Harness::new();
    h.run_until(Duration::from_secs(100));
    assert_eq!(h.checkin_times(), [0, 25, 50, 75, 100]);
    assert_eq!(h.session.rtt(), Some(Duration::from_millis(600)));
    assert_eq!(h.session.missed_acks(), 0);
    assert!(h.events.is_empty(), "{:?}", h.events);
}

#[test]
fn only_a_checkin_answered_while_in_flight_is_timed_never_a_late_ack_after_its_retry() {
    let start = Harness::new().start;
    let at = |ms: u64| start + Duration::from_millis(ms);
    let ack = |seq| Datagram::Ack {
        seq,
        interval_s: INTERVAL.as_secs() as u16,
    };
    let mut session = AgentSession::new(start, config());
    session.handle_timeout(start);
    assert_eq!(session.poll_transmit(), Some(Datagram::CheckIn { seq: 0 }));
    // Missed at 2 s, retried 2 s later as check-in 1.
    session.handle_timeout(at(2_000));
    session.handle_timeout(at(4_000));
    assert_eq!(session.poll_transmit(), Some(Datagram::CheckIn { seq: 1 }));
    // Check-in 0's ack arrives 1 ms after the retry left: no sample (it would read 1 ms).
    session.handle_datagram(at(4_001), ack(0));
    assert_eq!(session.poll_rtt_sample(), None);
    session.handle_datagram(at(4_300), ack(1));
    assert_eq!(
        session.poll_rtt_sample(),
        Some(Duration::from_millis(300)),
        "the retry's own ack times the retry"
    );
    assert_eq!(session.poll_rtt_sample(), None, "each sample once");
    // A check-in sent once and answered is timed from its send.
    let next = at(4_000) + INTERVAL;
    session.handle_timeout(next);
    assert_eq!(session.poll_transmit(), Some(Datagram::CheckIn { seq: 2 }));
    session.handle_datagram(next + Duration::from_millis(45), ack(2));
    assert_eq!(session.poll_rtt_sample(), Some(Duration::from_millis(45)));
    // A duplicate ack is no second sample.
    session.handle_datagram(next + Duration::from_millis(50), ack(2));
    assert_eq!(session.poll_rtt_sample(), None);
}

#[test]
fn a_new_local_address_checks_in_at_once_and_restarts_the_rhythm() {
    let mut h = Harness::new();
    h.run_until(Duration::from_secs(30));
    h.session.handle_path_change(h.now);
    h.run_until(Duration::from_secs(100));
    assert_eq!(h.checkin_times(), [0, 25, 30, 55, 80]);
    assert_eq!(h.session.missed_acks(), 0);
}

#[test]
fn thirty_minutes_idle_is_seventy_two_checkins_and_nothing_else() {
    let mut h = Harness::new();
    h.run_until(Duration::from_secs(30 * 60));
    assert_eq!(h.sent.len(), 72 + 1);
    assert_eq!(h.session.mode(), Mode::Standby);
    assert!(h.events.is_empty());
}

#[test]
fn lost_acks_are_retried_sooner_and_the_hub_reported_silent_once() {
    let mut h = Harness::new();
    h.hub_answers = false;
    h.run_until(Duration::from_secs(60));
    // 0: first; missed at 2 → retry 2 s later (4); missed at 6 → retry 4 s later (10);
    // missed at 12 → retry 8 s later (20), and so on, capped at the interval.
    assert_eq!(&h.checkin_times()[..5], &[0, 4, 10, 20, 38]);
    let silent: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, AgentEvent::HubSilent { .. }))
        .collect();
    assert_eq!(silent.len(), 1, "{:?}", h.events);
    assert_eq!(silent[0].0, Duration::from_secs(12));
    assert_eq!(silent[0].1, AgentEvent::HubSilent { missed: 3 });
}

#[test]
fn a_silent_hub_is_reported_at_an_interval_shorter_than_the_ack_timeout() {
    let mut h = Harness::new();
    h.hub_answers = false;
    h.session.handle_settings(EndpointTiming {
        checkin_interval_ms: 1_000,
        standby_after_ms: 60_000,
    });
    h.run_until(Duration::from_secs(10));
    let silent = h
        .events
        .iter()
        .find(|(_, e)| matches!(e, AgentEvent::HubSilent { .. }));
    assert!(
        silent.is_some_and(|(at, _)| *at <= Duration::from_secs(4)),
        "ack timeout {ACK_TIMEOUT:?}, interval 1 s: {:?}",
        h.events
    );
}

#[test]
fn an_ack_after_losses_restores_the_normal_rhythm() {
    let mut h = Harness::new();
    h.hub_answers = false;
    h.run_until(Duration::from_secs(11));
    assert_eq!(h.session.missed_acks(), 2);
    h.hub_answers = true;
    h.run_until(Duration::from_secs(80));
    assert_eq!(h.session.missed_acks(), 0);
    // The check-in of 10 s was sent while the hub was deaf; its miss at 12 s schedules a retry at
    // 20 s, which is answered; from then on, every 25 s.
    assert_eq!(h.checkin_times(), [0, 4, 10, 20, 45, 70]);
}

#[test]
fn summon_grants_credit_once_and_answers_every_summon() {
    let mut h = Harness::new();
    h.run_until(Duration::from_secs(1));
    h.session.handle_summon(h.now, 1);
    h.session.handle_summon(h.now, 2);
    h.drain();
    let events: Vec<_> = h.events.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        events,
        [
            AgentEvent::GrantStreams(32),
            AgentEvent::SendReady(1),
            AgentEvent::SendReady(2)
        ]
    );
    assert_eq!(h.session.mode(), Mode::Active);
}

#[test]
fn a_stream_opened_on_standby_credit_makes_the_session_active_before_its_summon() {
    let mut h = Harness::new();
    h.run_until(Duration::from_secs(1));
    // The hub's stream and its summon cross together; the stream is read first.
    h.session.handle_stream_opened(h.now);
    h.session.handle_summon(h.now, 1);
    h.drain();
    let events: Vec<_> = h.events.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        events,
        [AgentEvent::GrantStreams(32), AgentEvent::SendReady(1)]
    );
    assert_eq!(h.session.mode(), Mode::Active);
    // Standby again a minute after that stream closes.
    h.run_until(Duration::from_secs(5));
    h.session.handle_stream_closed(h.now);
    h.run_until(Duration::from_secs(64));
    assert_eq!(h.session.mode(), Mode::Active);
    h.run_until(Duration::from_secs(66));
    assert_eq!(h.session.mode(), Mode::Standby);
}

#[test]
fn a_transfer_that_goes_silent_checks_in_within_a_second_then_ever_less_often() {
    let mut h = Harness::new();
    h.session.handle_summon(h.now, 1);
    h.run_until(Duration::from_secs(10));
    h.session.handle_stream_opened(h.now);
    // Data arrives every 100 ms until 20 s, then nothing (a NAT rebound under a download).
    for tenth in 101..=200u64 {
        h.run_until(Duration::from_millis(tenth * 100));
        h.session.handle_received(h.now, tenth);
    }
    h.run_until(Duration::from_secs(90));
    // 1, 2, 4, 8 and 16 s into the silence; a 32 s wait would outlast the interval, so the
    // regular rhythm takes over. The acks of these check-ins do not end the silence.
    assert_eq!(h.checkin_times(), [0, 21, 23, 27, 35, 51, 76]);
    // Data again ends the silence: the next probe is a second after it (the rhythm's is at 101).
    h.session.handle_received(h.now, 201);
    h.run_until(Duration::from_millis(91_500));
    assert_eq!(h.checkin_times(), [0, 21, 23, 27, 35, 51, 76, 91]);
}

#[test]
fn a_quiet_stream_opened_long_after_the_start_is_probed_once_at_a_time() {
    let mut h = Harness::new();
    h.session.handle_summon(h.now, 1);
    h.run_until(Duration::from_secs(300));
    h.session.handle_stream_opened(h.now);
    h.run_until(Duration::from_secs(330));
    // No burst of overdue probes: the silence counts from the stream's opening.
    assert_eq!(
        h.checkin_times(),
        [0, 25, 50, 75, 100, 125, 150, 175, 200, 225, 250, 275, 300, 301, 303, 307, 315]
    );
    // Without open streams nothing but the rhythm.
    h.session.handle_stream_closed(h.now);
    let before = h.sent.len();
    h.run_until(Duration::from_secs(356));
    assert_eq!(h.sent.len(), before + 1);
}

#[test]
fn standby_countdown_starts_when_the_last_stream_closes() {
    let mut h = Harness::new();
    h.session.handle_summon(h.now, 1);
    h.run_until(Duration::from_secs(10));
    h.session.handle_stream_opened(h.now);
    // A stream open for ten minutes (docker logs -f) keeps the session active.
    h.run_until(Duration::from_secs(610));
    assert_eq!(h.session.mode(), Mode::Active);
    h.session.handle_stream_closed(h.now);
    h.run_until(Duration::from_secs(669));
    assert_eq!(h.session.mode(), Mode::Active);
    h.run_until(Duration::from_secs(671));
    assert_eq!(h.session.mode(), Mode::Standby);
    let standby: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| *e == AgentEvent::EnterStandby)
        .map(|(t, _)| t.as_secs())
        .collect();
    assert_eq!(standby, [670]);
}

#[test]
fn a_short_request_postpones_standby_and_a_new_summon_reopens_credit() {
    let mut h = Harness::new();
    h.session.handle_summon(h.now, 1);
    h.run_until(Duration::from_secs(50));
    h.session.handle_stream_opened(h.now);
    h.session.handle_stream_closed(h.now);
    h.run_until(Duration::from_secs(109));
    assert_eq!(h.session.mode(), Mode::Active);
    h.run_until(Duration::from_secs(111));
    assert_eq!(h.session.mode(), Mode::Standby);
    h.session.handle_summon(h.now, 2);
    h.drain();
    assert_eq!(
        h.events.last().map(|(_, e)| *e),
        Some(AgentEvent::SendReady(2))
    );
    assert_eq!(h.session.mode(), Mode::Active);
    let grants = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, AgentEvent::GrantStreams(_)))
        .count();
    assert_eq!(grants, 2);
}

#[test]
fn the_hub_sets_the_interval_but_not_below_the_floor() {
    let mut h = Harness::new();
    h.run_until(Duration::from_secs(1));
    h.session.handle_settings(EndpointTiming {
        checkin_interval_ms: 10,
        standby_after_ms: 5_000,
    });
    assert_eq!(h.session.checkin_interval(), MIN_CHECKIN_INTERVAL);
    h.session.handle_settings(EndpointTiming {
        checkin_interval_ms: 40_000,
        standby_after_ms: 5_000,
    });
    h.run_until(Duration::from_secs(1));
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.start + Duration::from_secs(40))
    );
}

#[test]
fn a_quiet_hub_stretches_check_ins_to_minutes_but_not_past_the_ceiling() {
    let mut h = Harness::new();
    h.run_until(Duration::from_secs(1));
    // An ack of a `quiet` group's interval: five minutes between check-ins.
    h.session.handle_datagram(
        h.now,
        Datagram::Ack {
            seq: 0,
            interval_s: 300,
        },
    );
    assert_eq!(h.session.checkin_interval(), Duration::from_secs(300));
    let before = h.sent.len();
    // Five minutes after the last check-in (at 0 s), not before.
    h.run_until(Duration::from_secs(299));
    assert_eq!(h.sent.len(), before, "silent for the whole interval");
    h.run_until(Duration::from_secs(301));
    assert_eq!(h.sent.len(), before + 1);
    // The most an ack can say, 18 hours, is held to an hour.
    h.session.handle_datagram(
        h.now,
        Datagram::Ack {
            seq: 0,
            interval_s: u16::MAX,
        },
    );
    assert_eq!(h.session.checkin_interval(), MAX_CHECKIN_INTERVAL);
}

fn snapshot_times(h: &Harness) -> Vec<u64> {
    h.events
        .iter()
        .filter(|(_, e)| *e == AgentEvent::TakeSnapshot)
        .map(|(t, _)| t.as_secs())
        .collect()
}

#[test]
fn each_return_to_standby_takes_a_snapshot() {
    let mut h = Harness::new();
    h.session.request_snapshot(h.now);
    h.session.handle_summon(h.now, 1);
    h.run_until(Duration::from_secs(61));
    h.session.handle_summon(h.now, 2);
    h.run_until(Duration::from_secs(200));
    assert_eq!(
        snapshot_times(&h),
        [0, 60, 121],
        "at connect, then at each standby"
    );
}

#[test]
fn snapshots_are_at_least_the_minimum_interval_apart_and_piled_up_requests_are_one() {
    let mut h = Harness::new();
    h.session.handle_settings(EndpointTiming {
        checkin_interval_ms: 25_000,
        standby_after_ms: 1_000,
    });
    // Summoned every two seconds for a minute: a standby (and a snapshot request) each time.
    for second in (0..60).step_by(2) {
        h.run_until(Duration::from_secs(second));
        h.session.handle_summon(h.now, second as u32);
    }
    h.run_until(Duration::from_secs(100));
    let taken = snapshot_times(&h);
    let min = MIN_SNAPSHOT_INTERVAL.as_secs();
    assert!(taken.windows(2).all(|w| w[1] - w[0] >= min), "{taken:?}");
    assert_eq!(
        taken.len(),
        7,
        "one at 1 s, then one per interval up to the last standby: {taken:?}"
    );
    assert_eq!(
        taken.last(),
        Some(&61),
        "the last standby's state is sent, late, not lost"
    );
}

#[test]
fn a_snapshot_the_driver_took_at_connect_paces_the_next() {
    let mut h = Harness::new();
    h.session.handle_snapshot_taken(h.now);
    h.session.handle_settings(EndpointTiming {
        checkin_interval_ms: 25_000,
        standby_after_ms: 1_000,
    });
    h.session.handle_summon(h.now, 1);
    h.run_until(Duration::from_secs(30));
    assert_eq!(
        snapshot_times(&h),
        [MIN_SNAPSHOT_INTERVAL.as_secs()],
        "the standby at 1 s waits out the interval from the one taken at connect, which asks for no other"
    );
}

#[test]
fn check_ins_name_the_applied_state_once_the_agent_applies_stacks() {
    let start = Harness::new().start;
    let mut session = AgentSession::new(start, config());
    session.handle_timeout(start);
    assert_eq!(
        session.poll_transmit(),
        Some(Datagram::CheckIn { seq: 0 }),
        "an agent without stacks sends version-2 check-ins"
    );
    let applied = StateDigest([7; 8]);
    session.set_applied(applied);
    session.handle_datagram(
        start,
        Datagram::Ack {
            seq: 0,
            interval_s: INTERVAL.as_secs() as u16,
        },
    );
    session.handle_timeout(start + INTERVAL);
    assert_eq!(
        session.poll_transmit(),
        Some(Datagram::CheckInApplied { seq: 1, applied })
    );
}
