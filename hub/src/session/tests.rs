//! Virtual-clock tests: time is a value we advance from a fixed start, addresses are plain values,
//! so hours of session life cost nothing and no socket is opened.

use std::net::SocketAddr;

use outpost_protocol::EndpointId;

use super::*;

const INTERVAL: Duration = Duration::from_secs(25);
/// The hub's liveness bound at that interval (`HubContext::stale_after`).
const STALE_AFTER: Duration = Duration::from_secs(60);
const PERIODIC: Flush = Flush::Periodic {
    stale_after: STALE_AFTER,
};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

/// A session plus a virtual clock; waiters are plain numbers.
struct Harness {
    start: Instant,
    now: Instant,
    session: HubSession<u32>,
}

impl Harness {
    fn new(pending: bool) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            session: HubSession::new(
                EndpointId(7),
                start,
                addr(1000),
                pending,
                0,
                CheckinTuner::new(INTERVAL, interval::TunerTiming::default(), start),
            ),
        }
    }

    fn approved() -> Self {
        Self::new(false)
    }

    fn checkin(&mut self, from: u16) -> CheckIn {
        let wall = SystemTime::UNIX_EPOCH + (self.now - self.start) + Duration::from_secs(1);
        self.session.handle_checkin(self.now, wall, addr(from))
    }

    fn status(&self) -> Status {
        self.session.status(self.now, STALE_AFTER)
    }

    fn save(&mut self, flush: Flush) -> Option<LivenessUpdate> {
        let save = self.session.poll_save(self.now, flush)?;
        Some(save.into_update(|| ConnectionEnd {
            wire: (11, 22),
            path: None,
            path_mtu: None,
        }))
    }

    /// Summon and answer at once: the window change the answer asks for.
    fn summon_and_answer(&mut self, waiter: u32) -> WindowChange {
        let Summon::Send { id } = self.session.handle_summon(waiter) else {
            panic!("expected a summon frame")
        };
        match self.session.handle_ready(id) {
            Ready::Answered {
                waiter: woken,
                windows,
            } => {
                assert_eq!(woken, waiter);
                windows
            }
            Ready::Unsolicited => panic!("the answer was not matched"),
        }
    }

    fn full_windows(&self) -> bool {
        let link = Link {
            rtt: Duration::ZERO,
            wire: WireCounts::default(),
            proxy_streams: 0,
        };
        self.session.view(self.now, STALE_AFTER, link).full_windows
    }
}

#[test]
fn a_summon_is_sent_once_answered_and_the_session_is_active_until_standby() {
    let mut h = Harness::approved();
    assert_eq!(h.session.handle_summon(1), Summon::Send { id: 1 });
    assert_eq!(h.status(), Status::Standby, "active only once answered");
    let Ready::Answered { waiter, windows } = h.session.handle_ready(1) else {
        panic!("unmatched")
    };
    assert_eq!((waiter, windows), (1, WindowChange::Grant));
    assert_eq!(h.status(), Status::Active);
    assert_eq!(
        h.session.handle_ready(1),
        Ready::Unsolicited,
        "answered twice"
    );
    assert_eq!(
        h.session.handle_summon(2),
        Summon::Active,
        "an active device needs no frame"
    );
    h.session.handle_standby();
    assert!(!h.full_windows(), "no grant held");
    assert_eq!(h.status(), Status::Standby);
    assert_eq!(
        h.session.handle_summon(3),
        Summon::Send { id: 2 },
        "the next summon takes a new id"
    );
}

#[test]
fn concurrent_summons_are_each_answered_by_their_own_ready() {
    let mut h = Harness::approved();
    assert_eq!(h.session.handle_summon(10), Summon::Send { id: 1 });
    assert_eq!(h.session.handle_summon(20), Summon::Send { id: 2 });
    let Ready::Answered { waiter, .. } = h.session.handle_ready(2) else {
        panic!("unmatched")
    };
    assert_eq!(waiter, 20);
    let Ready::Answered { waiter, windows } = h.session.handle_ready(1) else {
        panic!("unmatched")
    };
    assert_eq!((waiter, windows), (10, WindowChange::Grant));
    assert_eq!(h.session.summons.capacity(), 0, "no summon waits: no table");
}

#[test]
fn a_session_that_ends_hands_back_every_waiting_summoner() {
    let mut h = Harness::approved();
    assert_eq!(h.session.handle_summon(10), Summon::Send { id: 1 });
    assert_eq!(h.session.handle_summon(20), Summon::Send { id: 2 });
    let mut waiters = h.session.handle_ended();
    waiters.sort_unstable();
    assert_eq!(waiters, [10, 20]);
    assert_eq!(h.session.summons.capacity(), 0, "no summon waits: no table");
    assert_eq!(
        h.session.handle_ready(1),
        Ready::Unsolicited,
        "a late Ready wakes nobody"
    );
}

#[test]
fn an_unsolicited_ready_changes_nothing() {
    let mut pending = Harness::new(true);
    // A pending device is never summoned, so any id it names is unsolicited.
    assert_eq!(pending.session.handle_summon(1), Summon::Pending);
    for id in [0, 1, 2, u32::MAX] {
        assert_eq!(pending.session.handle_ready(id), Ready::Unsolicited);
    }
    assert_eq!(pending.status(), Status::Pending);
    assert!(!pending.full_windows());

    let mut approved = Harness::approved();
    assert_eq!(approved.session.handle_ready(1), Ready::Unsolicited);
    assert_eq!(approved.status(), Status::Standby);
}

#[test]
fn a_summon_given_up_then_answered_is_ignored_and_the_next_one_counts() {
    let mut h = Harness::approved();
    let Summon::Send { id } = h.session.handle_summon(1) else {
        panic!("expected a summon frame")
    };
    assert_eq!(h.session.handle_summon_given_up(id), Some(1), "timed out");
    assert_eq!(
        h.session.handle_ready(id),
        Ready::Unsolicited,
        "the late answer"
    );
    assert_eq!(h.status(), Status::Standby);
    assert_eq!(h.summon_and_answer(2), WindowChange::Grant);
    assert_eq!(h.status(), Status::Active);
}

#[test]
fn full_windows_follow_a_hub_sent_summon_and_return_at_standby() {
    let mut h = Harness::approved();
    assert_eq!(h.summon_and_answer(1), WindowChange::Grant);
    assert!(!h.full_windows(), "not until the budget grants them");
    h.session.handle_windows_granted();
    assert!(h.full_windows());
    h.session.handle_standby();
    assert!(!h.full_windows());

    // The budget had nothing left: the session works at standby windows and asks again next time.
    assert_eq!(h.summon_and_answer(2), WindowChange::Grant);
    h.session.handle_standby();
    assert!(!h.full_windows());
    assert_eq!(h.summon_and_answer(3), WindowChange::Grant);
    h.session.handle_windows_granted();
    assert!(h.full_windows());
    h.session.handle_standby();
    assert!(!h.full_windows());
}

#[test]
fn liveness_goes_stale_past_the_bound_and_live_again_at_the_next_check_in() {
    let mut h = Harness::approved();
    assert_eq!(
        h.status(),
        Status::Standby,
        "the connection is proof of life"
    );
    h.now += STALE_AFTER;
    assert_eq!(h.session.liveness(h.now, STALE_AFTER), Liveness::Live);
    h.now += Duration::from_millis(1);
    assert_eq!(h.session.liveness(h.now, STALE_AFTER), Liveness::Stale);
    assert_eq!(h.status(), Status::Offline);
    h.checkin(1000);
    assert_eq!(h.status(), Status::Standby);
    h.now += STALE_AFTER + Duration::from_secs(1);
    assert_eq!(h.status(), Status::Offline);
    h.session.handle_approval(h.now);
    assert_eq!(h.status(), Status::Offline, "stale whatever its mode");
}

#[test]
fn migrations_are_counted_at_check_ins_and_between_them() {
    let mut h = Harness::approved();
    assert!(!h.checkin(1000).migrated);
    for port in 1001..=1011 {
        assert!(h.session.handle_path(addr(port)), "rebind to {port} seen");
    }
    assert!(!h.session.handle_path(addr(1011)), "no change, no count");
    h.now += INTERVAL;
    assert!(!h.checkin(1011).migrated, "already counted");
    let link = Link {
        rtt: Duration::ZERO,
        wire: WireCounts::default(),
        proxy_streams: 0,
    };
    let view = h.session.view(h.now, STALE_AFTER, link);
    assert_eq!((view.migrations, view.remote_addr), (11, addr(1011)));
}

#[test]
fn the_interval_shortens_when_the_nat_forgets_between_check_ins() {
    let mut h = Harness::approved();
    h.checkin(1000);
    assert_eq!(h.checkin(1000).interval_s, 25);
    // A NAT that forgets within the interval: each regular check-in comes from a new port.
    let mut port = 1000;
    for _ in 0..3 {
        h.now += INTERVAL;
        port += 1;
        let ack = h.checkin(port);
        assert!(ack.migrated);
    }
    let shortened = h.checkin(port).interval_s;
    assert!(
        (interval::FLOOR.as_secs() as u16..25).contains(&shortened),
        "{shortened}"
    );
    // A migration right after a check-in (a retry burst) says nothing about the binding.
    h.now += Duration::from_secs(2);
    assert_eq!(h.checkin(port + 1).interval_s, shortened);
}

#[test]
fn a_check_ins_lag_is_how_late_it_came_past_its_interval() {
    let mut h = Harness::approved();
    assert_eq!(h.checkin(1000).lag, None, "the session's first");
    h.now += INTERVAL + Duration::from_millis(300);
    assert_eq!(h.checkin(1000).lag, Some(Duration::from_millis(300)));
    // A retry or a probe comes sooner than the interval: not late at all.
    h.now += Duration::from_secs(2);
    assert_eq!(h.checkin(1000).lag, Some(Duration::ZERO));
}

#[test]
fn a_new_session_is_written_once_then_check_ins_only_at_checkpoints() {
    let mut h = Harness::approved();
    let first = h.save(PERIODIC).expect("a new connection is written");
    assert!(first.connected);
    assert!(first.claim, "going live claims the device for this hub");
    assert_eq!(first.last_checkin, None, "before its first check-in");
    assert_eq!(h.save(PERIODIC), None, "once");

    h.checkin(1000);
    for _ in 0..19 {
        h.now += INTERVAL;
        h.checkin(1000);
        assert_eq!(h.save(PERIODIC), None, "a check-in writes nothing");
    }
    h.now = h.start + LIVENESS_CHECKPOINT;
    h.checkin(1000);
    let checkpoint = h.save(PERIODIC).expect("the checkpoint refreshes it");
    assert!(checkpoint.connected);
    assert!(!checkpoint.claim, "a refresh holds, it does not claim");
    assert_eq!(checkpoint.last_checkin, Some(601));

    h.now += INTERVAL;
    h.session.handle_path(addr(2000));
    let moved = h.save(PERIODIC).expect("an address change is durable");
    assert_eq!(
        (moved.addr.as_str(), moved.migrations),
        ("192.0.2.1:2000", 1)
    );
    assert_eq!(moved.wire_ended, None);
}

#[test]
fn a_change_of_liveness_is_written_once_each_way() {
    let mut h = Harness::approved();
    h.save(PERIODIC);
    h.checkin(1000);
    h.now += STALE_AFTER + Duration::from_secs(1);
    let stale = h.save(PERIODIC).expect("gone stale");
    assert!(!stale.connected && !stale.claim);
    assert_eq!(h.save(PERIODIC), None);
    h.checkin(1000);
    let live = h.save(PERIODIC).expect("live again");
    assert!(live.connected);
    assert!(live.claim, "checking in here again claims it back");
    assert_eq!(h.save(PERIODIC), None);
}

#[test]
fn the_final_flush_writes_disconnected_with_the_wire_totals_once() {
    let mut h = Harness::approved();
    h.save(PERIODIC);
    h.now += INTERVAL;
    h.checkin(1000);
    let last = h.save(Flush::Final).expect("the departure");
    assert!(!last.connected);
    assert_eq!(
        last.last_checkin,
        Some(26),
        "the unsaved check-in goes with it"
    );
    assert_eq!(last.wire_ended, Some((11, 22)));
    assert_eq!(h.save(Flush::Final), None, "only once");
    let mut asked = false;
    h.now += INTERVAL;
    h.checkin(1000);
    let again = h
        .session
        .poll_save(h.now, Flush::Final)
        .expect("a later check-in");
    assert_eq!(
        again
            .into_update(|| {
                asked = true;
                ConnectionEnd::default()
            })
            .wire_ended,
        None
    );
    assert!(!asked, "the totals are not read again");
}

#[test]
fn one_renewal_per_session() {
    let mut h = Harness::approved();
    assert_eq!(h.session.handle_renewal(), Renewal::First);
    assert_eq!(h.session.handle_renewal(), Renewal::Again);
    assert_eq!(h.session.handle_renewal(), Renewal::Again);
}

#[test]
fn approval_tells_the_agent_once_and_opens_summons() {
    let mut h = Harness::new(true);
    assert_eq!(h.session.handle_summon(1), Summon::Pending);
    assert!(h.session.handle_approval(h.now));
    assert!(!h.session.handle_approval(h.now), "once");
    assert_eq!(h.status(), Status::Standby);
    assert_eq!(h.session.handle_summon(1), Summon::Send { id: 1 });
}

#[test]
fn a_pending_device_is_sent_jobs_only_once_approved() {
    use outpost_protocol::job::Features;
    let mut h = Harness::new(true);
    assert_eq!(h.session.handle_features(h.now, Features::JOBS), Ok(false));
    assert!(!h.session.runs_jobs(), "pending: no jobs");
    assert!(h.session.handle_approval(h.now));
    assert!(h.session.runs_jobs(), "approved: jobs from now on");
    let mut without = Harness::approved();
    without
        .session
        .handle_features(without.now, Features::default())
        .unwrap();
    assert!(!without.session.runs_jobs(), "it never said it runs jobs");
}
