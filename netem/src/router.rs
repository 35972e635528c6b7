//! The L3 emulator: all IP traffic between two TUN devices crosses the same [`LinkModel`]s.
//!
//! The UDP relay only sees UDP, so a TCP baseline would cross a different (real) link than our
//! QUIC traffic. The router sits in the rig's router namespace and moves raw IP packets: what
//! the kernel routes into the hub-side TUN device goes to the agent side through the `down`
//! model, and the other way through `up` (see `rig.sh` for the policy routing that feeds it).
//! Packets are not parsed: TCP, UDP and ICMP are all shaped alike, by their IP length.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::Controllable;
use crate::counters::FrontendCounters;
use crate::delay_line::{DelayLine, Sink};
use crate::error::FrontendError;
use crate::model::{LinkModel, Verdict};
use crate::profile::Profile;

/// MTU of the TUN devices: a plain Ethernet path.
const TUN_MTU: u16 = 1500;

/// A TUN device shared by a reader task and a delay line.
#[derive(Clone)]
struct Tun(Arc<tun::AsyncDevice>);

impl fmt::Debug for Tun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tun")
    }
}

impl Sink for Tun {
    type Item = Bytes;
    async fn deliver(&mut self, packet: Bytes) {
        if let Err(e) = self.0.send(&packet).await {
            tracing::debug!(error = %e, "tun write failed");
        }
    }
}

fn open_tun(name: &str) -> Result<Tun, FrontendError> {
    let mut config = tun::Configuration::default();
    config.tun_name(name).mtu(TUN_MTU).up();
    let device = tun::create_as_async(&config).map_err(|source| FrontendError::Tun {
        name: name.to_owned(),
        source,
    })?;
    Ok(Tun(Arc::new(device)))
}

/// Entry point: creates the TUN devices and runs the router on the current tokio runtime.
#[derive(Debug)]
pub struct Router;

impl Router {
    /// Creates TUN devices `hub_tun` (towards the hub) and `agent_tun` (towards the agent) and
    /// moves packets between them through `profile`. Needs CAP_NET_ADMIN.
    pub async fn start(
        hub_tun: &str,
        agent_tun: &str,
        profile: Profile,
        seed: u64,
    ) -> Result<RouterHandle, FrontendError> {
        let hub = open_tun(hub_tun)?;
        let agent = open_tun(agent_tun)?;
        let epoch = Instant::now().into_std();
        let models = Arc::new(Models {
            up: Mutex::new(LinkModel::new(profile.up, seed, epoch)),
            down: Mutex::new(LinkModel::new(profile.down, seed ^ 0xD0_57, epoch)),
        });
        let (stop, stop_rx) = watch::channel(false);
        let to_hub = DelayLine::spawn(hub.clone());
        let to_agent = DelayLine::spawn(agent.clone());
        let up = tokio::spawn(forward(
            agent.clone(),
            hub.clone(),
            to_hub,
            models.clone(),
            Dir::Up,
            stop_rx.clone(),
        ));
        let down = tokio::spawn(forward(
            hub,
            agent,
            to_agent,
            models.clone(),
            Dir::Down,
            stop_rx,
        ));
        Ok(RouterHandle {
            control: RouterControl { models },
            stop,
            tasks: vec![up, down],
        })
    }
}

/// A running router.
#[derive(Debug)]
pub struct RouterHandle {
    control: RouterControl,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RouterHandle {
    /// A cloneable handle to change the link while it runs.
    pub fn control(&self) -> RouterControl {
        self.control.clone()
    }

    /// Stops the router and returns the final counters.
    pub async fn shutdown(mut self) -> FrontendCounters {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.control.counters()
    }
}

impl Drop for RouterHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[derive(Debug)]
struct Models {
    up: Mutex<LinkModel>,
    down: Mutex<LinkModel>,
}

/// Run-time control of the router (no NAT: `rebind` does nothing; use `rig-ip-change.sh`).
#[derive(Debug, Clone)]
pub struct RouterControl {
    models: Arc<Models>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Controllable for RouterControl {
    fn set_profile(&self, profile: Profile) {
        lock(&self.models.up).set_config(profile.up);
        lock(&self.models.down).set_config(profile.down);
    }

    fn outage(&self, duration: Duration) {
        let now = Instant::now().into_std();
        lock(&self.models.up).trigger_outage(now, duration);
        lock(&self.models.down).trigger_outage(now, duration);
    }

    fn rebind(&self) {}

    fn counters(&self) -> FrontendCounters {
        FrontendCounters {
            up: *lock(&self.models.up).counters(),
            down: *lock(&self.models.down).counters(),
            ..FrontendCounters::default()
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Dir {
    Up,
    Down,
}

/// Moves packets read from `from` to `to`: at once when due and nothing is waiting, else
/// through the delay line (whose sink is `to` as well).
async fn forward(
    from: Tun,
    to: Tun,
    line: DelayLine<Bytes>,
    models: Arc<Models>,
    dir: Dir,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; usize::from(TUN_MTU) + 64];
    loop {
        let len = tokio::select! {
            _ = stop.changed() => break,
            r = from.0.recv(&mut buf) => match r {
                Ok(len) => len,
                Err(_) => continue,
            },
        };
        let now = Instant::now();
        let model = match dir {
            Dir::Up => &models.up,
            Dir::Down => &models.down,
        };
        let verdict = lock(model).submit(now.into_std(), len);
        let Verdict::Deliver { at, duplicate } = verdict else {
            continue;
        };
        let at = Instant::from_std(at);
        if duplicate.is_none() && line.can_bypass(at, now) {
            let _ = to.0.send(&buf[..len]).await;
            continue;
        }
        let packet = Bytes::copy_from_slice(&buf[..len]);
        line.schedule(at, packet.clone());
        if let Some(dup) = duplicate {
            line.schedule(Instant::from_std(dup), packet);
        }
    }
}
