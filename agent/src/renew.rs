//! Renewing the agent's certificate before it expires, over the live session.
//!
//! Agent certificates last a year (`outpost-hub serve`'s default). Once one is past 2/3 of its
//! life (~8 months) the agent sends `Renew` with a CSR for its same key right after the hub's
//! welcome, stores the `Renewed` certificate atomically (temporary file + rename) and uses it from
//! the next connection on; the hub revokes the old one only then, so a lost reply costs nothing.
//! A session that is still up when the point passes is closed once, so the next one renews: a
//! second's reconnect every eight months, and no message the session driver must time.
//!
//! The remaining third (~4 months) is the slack for a device that is offline at the renewal
//! point. A certificate that expired anyway cannot be renewed: the agent stops with
//! [`Expired`], which says how to re-enrol (the same key re-enrols with the endpoint's token).

use outpost_transport::close::CloseCodeVarint as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use outpost_certs::{cert_public_key, cert_validity, Fingerprint, Validity};
use outpost_protocol::wire::{AgentMessage, CloseCode};
use thiserror::Error;
use tracing::{info, warn};

/// The longest single wait of the renewal timer; the wall clock is read again after it (a device
/// that booted with a wrong clock corrects it later).
const RECHECK: Duration = Duration::from_secs(24 * 3600);

/// When to renew a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// It is past 2/3 of its life: ask on this session.
    Now,
    /// Not yet: at this moment.
    At(SystemTime),
}

/// The renewal plan for `validity` at `now`: due at 2/3 of its life.
pub fn plan(validity: Validity, now: SystemTime) -> Plan {
    let life = validity
        .not_after
        .duration_since(validity.not_before)
        .unwrap_or_default();
    let due = validity.not_before + life * 2 / 3;
    if now >= due {
        Plan::Now
    } else {
        Plan::At(due)
    }
}

/// The agent's certificate has expired: it cannot connect or renew.
#[derive(Debug, Error)]
#[error(
    "this device's certificate expired {} ago (it was not renewed in time: the device was \
     offline at its renewal point). Delete {dir}/enrollment.json and run the agent with the \
     endpoint's EDGE_KEY to enrol again with the same key, or ask the admin for a new token \
     (outpost-hub endpoint reset)",
    human(*ago)
)]
pub struct Expired {
    /// How long ago.
    pub ago: Duration,
    /// The data directory.
    pub dir: String,
}

/// `span` in its largest whole unit a reader takes in at a glance: "3 days", "5 hours", "40 s".
fn human(span: Duration) -> String {
    let secs = span.as_secs();
    match secs {
        172_800.. => format!("{} days", secs / 86_400),
        7_200.. => format!("{} hours", secs / 3_600),
        120.. => format!("{} minutes", secs / 60),
        _ => format!("{secs} s"),
    }
}

/// What a session needs to renew the certificate it connects with.
#[derive(Clone, Debug)]
pub struct Renewal {
    plan: Plan,
    csr_der: Vec<u8>,
    key: Fingerprint,
    cert_path: PathBuf,
}

impl Renewal {
    /// The renewal of the certificate `leaf` (DER), whose key is `key_der` (SubjectPublicKeyInfo)
    /// and whose file is `cert_path`; `None` when its validity cannot be read (the hub will say
    /// more than a guess could). `csr` builds a CSR for the key, only when one is due.
    pub fn prepare(
        leaf: &[u8],
        key_der: &[u8],
        cert_path: PathBuf,
        now: SystemTime,
        csr: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<Self> {
        let plan = plan(cert_validity(leaf).ok()?, now);
        let csr_der = match plan {
            Plan::Now => csr()?,
            Plan::At(_) => Vec::new(),
        };
        Some(Self {
            plan,
            csr_der,
            key: Fingerprint::of(key_der),
            cert_path,
        })
    }

    /// Store a renewed certificate if it certifies this agent's key.
    fn store(&self, cert_der: &[u8]) {
        match cert_public_key(cert_der) {
            Ok(key) if key == self.key => {}
            _ => {
                warn!("the hub's renewed certificate is not for this device's key; ignored");
                return;
            }
        }
        let pem = outpost_certs::cert_to_pem(cert_der);
        match outpost_certs::write_private_file(&self.cert_path, pem.as_bytes()) {
            Ok(()) => info!("certificate renewed; the next connection uses it"),
            Err(e) => warn!("the renewed certificate could not be stored: {e}"),
        }
    }
}

/// Fail with [`Expired`] when `leaf` (DER) is past its end at `now`.
pub fn check_expiry(leaf: &[u8], now: SystemTime, dir: &str) -> Result<(), Expired> {
    let Ok(validity) = cert_validity(leaf) else {
        return Ok(());
    };
    match now.duration_since(validity.not_after) {
        Ok(ago) if !ago.is_zero() => Err(Expired {
            ago,
            dir: dir.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// A renewal asked for on this session, waiting for the hub's `Renewed`.
#[derive(Debug)]
pub struct Requested(Renewal);

impl Requested {
    /// The hub's answer arrived: store the certificate if it is for this device's key.
    pub fn answered(&self, cert_der: &[u8]) {
        self.0.store(cert_der);
    }
}

/// Start the renewal on a welcomed session: when it is due, the `Renew` request for the driver to
/// send and what takes the answer; otherwise close the connection when the renewal point passes
/// during the session.
pub fn attach(
    conn: &quinn::Connection,
    renewal: Option<Renewal>,
) -> Option<(AgentMessage, Requested)> {
    let renewal = renewal?;
    match renewal.plan {
        Plan::Now => {
            let csr_der = renewal.csr_der.clone();
            info!("certificate past 2/3 of its life; renewal requested");
            Some((AgentMessage::Renew { csr_der }, Requested(renewal)))
        }
        Plan::At(due) => {
            tokio::spawn(close_when_due(conn.clone(), due));
            None
        }
    }
}

async fn close_when_due(conn: quinn::Connection, due: SystemTime) {
    loop {
        let left = due.duration_since(SystemTime::now()).unwrap_or_default();
        if left.is_zero() {
            info!("certificate past 2/3 of its life; reconnecting to renew it");
            conn.close(CloseCode::Done.to_varint(), b"renewing the certificate");
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(RECHECK)) => {}
            _ = conn.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validity(from: u64, to: u64) -> Validity {
        Validity {
            not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(from),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(to),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_life() {
        let year = validity(0, 365 * 86_400);
        assert_eq!(plan(year, at(0)), Plan::At(at(2 * 365 * 86_400 / 3)));
        assert_eq!(
            plan(year, at(243 * 86_400)),
            Plan::At(at(2 * 365 * 86_400 / 3))
        );
        assert_eq!(plan(year, at(244 * 86_400)), Plan::Now);
        assert_eq!(plan(year, at(400 * 86_400)), Plan::Now);
        // A clock before the certificate's start waits; a nonsense span is due at once.
        assert!(matches!(plan(validity(100, 400), at(0)), Plan::At(_)));
        assert_eq!(plan(validity(400, 100), at(400)), Plan::Now);
    }

    #[test]
    fn an_expired_certificate_is_a_final_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let pki = outpost_certs::HubPki::load_or_create(dir.path(), &[]).unwrap();
        let key = outpost_certs::AgentKey::generate().unwrap();
        let id = uuid::Uuid::new_v4();
        let cert = pki
            .issue_client_cert(
                &outpost_certs::ClientRole::Agent(id),
                &key.csr_der(id).unwrap(),
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(check_expiry(&cert.der, SystemTime::now(), "/data").is_ok());
        let later = cert.not_after + Duration::from_secs(5);
        let err = check_expiry(&cert.der, later, "/data").unwrap_err();
        assert_eq!(err.ago, Duration::from_secs(5));
        assert!(err.to_string().contains("/data/enrollment.json"), "{err}");
        assert!(err.to_string().contains("expired 5 s ago"), "{err}");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 5)), "3 days");
        assert_eq!(human(Duration::from_secs(5 * 3_600)), "5 hours");
        assert_eq!(human(Duration::from_secs(600)), "10 minutes");
        let renewal = Renewal::prepare(
            &cert.der,
            &key.public_key_der(),
            dir.path().join("agent.pem"),
            SystemTime::now(),
            || key.csr_der(id).ok(),
        )
        .unwrap();
        // Backdated an hour, a one-minute certificate is past 2/3 of its life at once.
        assert_eq!(renewal.plan, Plan::Now);
        renewal.store(&cert.der);
        assert!(dir.path().join("agent.pem").exists());
    }
}
