//! The path MTU each network of devices carried last time, so a connection from it starts at that
//! size instead of searching for it again (issue #18: the set-up cost of a restart).
//!
//! QUIC starts every connection at 1,200 bytes and searches upward with probes (quinn's PLPMTUD).
//! Counted with nftables on loopback, a resumed reconnect cost 28 datagrams, 8 of them the hub's
//! search: four probes of up to 1,452 bytes and their acks, 60 % of the bytes the hub sent. After
//! a restart 100,000 devices search again for what the last hub already knew. The agent keeps its
//! own side's result (`outpost_agent::dial`); this is the hub's.
//!
//! Remembered by IP address, as the kernel's own PMTU cache is: the path to one address is one
//! path whatever the port, so a NAT's new port or several devices behind one address share it.
//! Filled from the store at start (each device's last address and the MTU its last connection
//! found, written with its liveness) and from each connection that ends. An address whose path
//! now carries less (a new network behind the same address) costs its first large packets:
//! quinn's black-hole detection then falls back to 1,200 and searches again.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use outpost_transport::profile::{Role, TransportProfile};

use crate::store::{LivenessUpdate, Store, StoreError};

/// QUIC's floor: every path carries it, and every connection starts there unless told otherwise.
const QUIC_MIN_MTU: u16 = 1_200;
/// Networks remembered at most: one entry is ~40 bytes, so 10 MB at the bound. Past it, new
/// networks are not remembered (their connections search, as with no memory).
pub const MAX_NETWORKS: usize = 262_144;

/// The MTU worth remembering from a connection that found `mtu`: only above QUIC's floor.
pub fn worth_keeping(mtu: u16) -> Option<u16> {
    (mtu > QUIC_MIN_MTU).then_some(mtu)
}

/// Path MTUs by address, bounded. No I/O.
#[derive(Debug, Default)]
pub struct MtuMemory {
    by_ip: HashMap<IpAddr, u16>,
}

impl MtuMemory {
    /// What the store kept ([`Self::from_saved`]).
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let saved = crate::store::liveness::saved_path_mtus(&store.lock())?;
        Ok(Self::from_saved(saved))
    }

    /// What the store kept: each device's last address (as written, `ip:port`) and MTU. Rows that
    /// do not parse or are not worth keeping are skipped.
    pub fn from_saved(saved: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut memory = Self::default();
        for (addr, mtu) in saved {
            if let (Ok(addr), Ok(mtu)) = (addr.parse::<SocketAddr>(), u16::try_from(mtu)) {
                memory.remember(addr, mtu);
            }
        }
        memory
    }

    /// `addr`'s network carried `mtu`.
    pub fn remember(&mut self, addr: SocketAddr, mtu: u16) {
        let Some(mtu) = worth_keeping(mtu) else {
            return;
        };
        let ip = addr.ip().to_canonical();
        if self.by_ip.len() < MAX_NETWORKS || self.by_ip.contains_key(&ip) {
            self.by_ip.insert(ip, mtu);
        }
    }

    /// The MTU a connection from `addr` may start at, if its network is known.
    pub fn mtu_for(&self, addr: SocketAddr) -> Option<u16> {
        self.by_ip.get(&addr.ip().to_canonical()).copied()
    }

    /// Networks remembered.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

/// The memory, and a server config per MTU for the connections it applies to.
#[derive(Debug)]
pub struct PathMtus {
    memory: Mutex<MtuMemory>,
    configs: Mutex<HashMap<u16, Arc<quinn::ServerConfig>>>,
    base: quinn::ServerConfig,
    profile: TransportProfile,
}

impl PathMtus {
    /// A memory starting from `memory`, whose configs are `base` with `profile`'s transport for
    /// the hub, starting at each MTU.
    pub fn new(memory: MtuMemory, base: quinn::ServerConfig, profile: TransportProfile) -> Self {
        Self {
            memory: Mutex::new(memory),
            configs: Mutex::default(),
            base,
            profile,
        }
    }

    /// Learn from a liveness batch: each connection that ended over UDP with an MTU found.
    pub fn learn(&self, updates: &[LivenessUpdate]) {
        let mut memory = lock(&self.memory);
        for update in updates {
            if let (Some(mtu), Ok(addr)) = (update.path_mtu, update.addr.parse()) {
                memory.remember(addr, mtu);
            }
        }
    }

    /// The server config for a connection from `remote`, if its network's MTU is known: the
    /// endpoint's own otherwise.
    pub fn config_for(&self, remote: SocketAddr) -> Option<Arc<quinn::ServerConfig>> {
        let mtu = lock(&self.memory).mtu_for(remote)?;
        let mut configs = lock(&self.configs);
        let config = configs.entry(mtu).or_insert_with(|| {
            let mut config = self.base.clone();
            config.transport_config(self.profile.config_from_mtu(Role::Hub, mtu));
            Arc::new(config)
        });
        Some(config.clone())
    }

    /// Networks remembered.
    pub fn networks(&self) -> usize {
        lock(&self.memory).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
