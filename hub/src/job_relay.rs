//! Job events between the hubs of one store (issue #18: "any hub accepts any admin request").
//!
//! A job is coordinated by one hub (`jobs.hub_id`, [`crate::jobs`]), but its devices may be held
//! by any. The coordinator decides who is sent the job and when; the hub holding a device sends
//! it, reading the order from the store. They tell each other on the channel of
//! [`crate::changes`], beside [`crate::fleet_relay`]:
//! - `p` / `a`, present / absent: a session whose agent runs jobs began or ended here; a
//!   coordinator's dispatch counts the device online or not;
//! - `o<job>`, ordered: the coordinator stored these devices `sent`; the hub holding one sends it
//!   the order, and answers `u<job>` for those it cannot (gone, or not running jobs);
//! - `u<job>`, unsent: the coordinator puts them back in the queue, offline;
//! - `r<job>`, rows: these devices' states or results were stored; the coordinator reads them
//!   back and feeds its dispatch (counts, expiry, the job's end and its alert stay there);
//! - `c<job>`, cancelled: the hub holding one of these devices tells its session.
//!
//! The payload is `jobs:<hub id>:<kind>:<id>,<id>,…` ([`crate::announcement`]), split under
//! PostgreSQL's 8,000 bytes like the fleet's; a hub ignores its own. Sent only while another hub
//! is alive.

use crate::announcement;
use crate::context::HubContext;

/// What happened to some devices, for the other hubs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Their session began on the announcing hub, and their agent runs jobs.
    Present,
    /// Their session on the announcing hub ended.
    Absent,
    /// The coordinator sent them the job.
    Ordered(i64),
    /// Their hub could not send them the job.
    Unsent(i64),
    /// Their rows of the job changed: started, or a result stored.
    Rows(i64),
    /// The coordinator cancelled the job they hold.
    Cancelled(i64),
}

impl announcement::Kind for Kind {
    const PREFIX: &'static str = "jobs";

    fn text(self) -> String {
        match self {
            Self::Present => "p".to_owned(),
            Self::Absent => "a".to_owned(),
            Self::Ordered(job) => format!("o{job}"),
            Self::Unsent(job) => format!("u{job}"),
            Self::Rows(job) => format!("r{job}"),
            Self::Cancelled(job) => format!("c{job}"),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "p" => return Some(Self::Present),
            "a" => return Some(Self::Absent),
            _ => {}
        }
        let (letter, job) = text.split_at_checked(1)?;
        if !job.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let job = job.parse().ok()?;
        Some(match letter {
            "o" => Self::Ordered(job),
            "u" => Self::Unsent(job),
            "r" => Self::Rows(job),
            "c" => Self::Cancelled(job),
            _ => return None,
        })
    }
}

/// One announcement of the jobs' as heard.
pub type Relayed = announcement::Relayed<Kind>;

/// Act on what another hub announced: a cancel at once, the rest at the jobs' next tick.
pub(crate) fn apply(ctx: &HubContext, relayed: Relayed) {
    if relayed.from == ctx.hubs.id {
        return;
    }
    match relayed.kind {
        // Devices this hub does not hold are another hub's to tell.
        Kind::Cancelled(job) => drop(ctx.jobs.tell_cancel(ctx, job, &relayed.ids)),
        _ => ctx.jobs.heard(relayed),
    }
}

#[cfg(test)]
mod tests {
    use outpost_protocol::EndpointId;

    use super::*;
    use crate::announcement::{decode, encode, MAX_PAYLOAD};
    use crate::store::hubs::HubId;

    #[test]
    fn every_kind_survives_its_payloads_split_under_the_limit() {
        let ids: Vec<EndpointId> = (1_000_000..1_003_000).map(EndpointId).collect();
        let payloads = encode(HubId(7), Kind::Rows(42), &ids);
        assert!(payloads.len() > 1, "3,000 ids do not fit one payload");
        let mut heard = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < MAX_PAYLOAD, "{}", payload.len());
            let relayed = decode::<Kind>(payload).unwrap();
            assert_eq!((relayed.from, relayed.kind), (HubId(7), Kind::Rows(42)));
            heard.extend(relayed.ids);
        }
        assert_eq!(heard, ids);
        assert!(encode(HubId(1), Kind::Present, &[]).is_empty());
        for kind in [
            Kind::Present,
            Kind::Absent,
            Kind::Ordered(1),
            Kind::Unsent(i64::MAX),
            Kind::Cancelled(9),
        ] {
            let payload = &encode(HubId(2), kind, &[EndpointId(5)])[0];
            assert_eq!(decode::<Kind>(payload).unwrap().kind, kind);
        }
    }

    #[test]
    fn anything_else_is_not_a_job_announcement() {
        for payload in [
            "",
            "jobs",
            "jobs:1:p",
            "jobs:1:p:",
            "jobs:1:x:5",
            "jobs:1:o:5",
            "jobs:1:o-3:5",
            "jobs:1:o+3:5",
            "jobs:1:pp:5",
            "jobs:x:p:5",
            "jobs:1:r7:5,,6",
            "fleet:1:r:5",
            "removed:5",
        ] {
            assert_eq!(decode::<Kind>(payload), None, "{payload:?}");
        }
        let long = format!("jobs:1:r3:{}", "1,".repeat(4_000));
        assert_eq!(decode::<Kind>(&long), None);
    }
}
