//! The admin listener's connection cap. Every accepted TCP connection costs a file descriptor and
//! a task from accept on, TLS handshake included; past the cap the oldest connection that has not
//! proved an admin credential is shed to make room, so a flood of silent or half-sent connections
//! displaces only its own kind while admins' connections (and their `logs -f`) stay. When every
//! connection is authenticated the newcomer itself is shed. A hijacked connection (`exec -it`)
//! leaves hyper but keeps its place in the table until the splice ends ([`ConnectionSlot`]).
//!
//! The cap is the smaller of the configured one and what the open-file limit leaves after
//! [`RESERVED_FDS`]: under `ulimit -n 256` the hub holds at most 192 API connections instead of
//! failing `accept` with EMFILE, which refused every admin alike.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Default cap: a few admins run a handful of docker commands each, and a `docker logs -f` or
/// `exec -it` holds one connection for as long as it runs; 1,024 leaves room for hundreds of
/// those and bounds what a flood holds to 1,024 descriptors and tasks.
pub const DEFAULT_MAX_API_CONNECTIONS: usize = 1024;

/// Descriptors kept out of the cap for everything else the hub opens: the store (two SQLite
/// connections with their WAL and shared-memory files), the UDP socket, the listener, the runtime's
/// epoll and wakers, log and certificate files (~20 in use after start), with room to spare.
pub const RESERVED_FDS: u64 = 64;

/// The cap in force under an open-file limit of `nofile`.
pub fn effective_cap(configured: usize, nofile: u64) -> usize {
    let by_fds = usize::try_from(nofile.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    configured.min(by_fds).max(1)
}

#[derive(Debug)]
struct Live {
    authenticated: Arc<AtomicBool>,
    shed: oneshot::Sender<()>,
}

/// The live connections, oldest first.
#[derive(Debug, Default)]
pub(super) struct ConnectionTable {
    live: Mutex<BTreeMap<u64, Live>>,
    next: std::sync::atomic::AtomicU64,
}

/// One admitted connection.
#[derive(Debug)]
pub(super) struct Admitted {
    /// Its place in the table.
    pub(super) slot: ConnectionSlot,
    /// Resolves when it is shed.
    pub(super) shed: oneshot::Receiver<()>,
}

/// A connection's place in the table, held until the last clone drops.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSlot(Arc<Slot>);

#[derive(Debug)]
struct Slot {
    id: u64,
    table: Arc<ConnectionTable>,
    authenticated: Arc<AtomicBool>,
}

impl ConnectionSlot {
    /// It proved an admin credential: shed it only when nothing else can go.
    pub(super) fn authenticate(&self) {
        self.0.authenticated.store(true, Ordering::Relaxed);
    }
}

impl ConnectionTable {
    /// Admit a new connection; if that puts more than `cap` in the table, shed the oldest
    /// unauthenticated one (which is the new one when all others are authenticated).
    pub(super) fn admit(self: &Arc<Self>, cap: usize) -> Admitted {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let authenticated = Arc::new(AtomicBool::new(false));
        let (shed_tx, shed) = oneshot::channel();
        let mut live = self.lock();
        live.insert(
            id,
            Live {
                authenticated: authenticated.clone(),
                shed: shed_tx,
            },
        );
        while live.len() > cap {
            let oldest = live
                .iter()
                .find(|(_, c)| !c.authenticated.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            match oldest.and_then(|id| live.remove(&id)) {
                Some(victim) => {
                    let _ = victim.shed.send(());
                }
                None => break,
            }
        }
        let slot = Slot {
            id,
            table: self.clone(),
            authenticated,
        };
        Admitted {
            slot: ConnectionSlot(Arc::new(slot)),
            shed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shed(admitted: &mut Admitted) -> bool {
        admitted.shed.try_recv().is_ok()
    }

    #[test]
    fn the_oldest_unauthenticated_goes_first() {
        let table = Arc::new(ConnectionTable::default());
        let mut admin = table.admit(3);
        admin.slot.authenticate();
        let mut first = table.admit(3);
        let mut second = table.admit(3);
        let mut third = table.admit(3);
        assert!(shed(&mut first));
        assert!(!shed(&mut admin) && !shed(&mut second) && !shed(&mut third));
        assert_eq!(table.lock().len(), 3);
        let mut fourth = table.admit(3);
        assert!(shed(&mut second));
        assert!(!shed(&mut admin) && !shed(&mut third) && !shed(&mut fourth));
    }

    #[test]
    fn a_full_table_of_admins_sheds_the_newcomer() {
        let table = Arc::new(ConnectionTable::default());
        let mut admins: Vec<_> = (0..2).map(|_| table.admit(2)).collect();
        for admin in &admins {
            admin.slot.authenticate();
        }
        let mut newcomer = table.admit(2);
        assert!(shed(&mut newcomer));
        assert!(admins.iter_mut().all(|a| !shed(a)));
        drop(admins.pop());
        assert_eq!(table.lock().len(), 1);
        let mut next = table.admit(2);
        assert!(!shed(&mut next));
    }

    #[test]
    fn a_held_slot_outlives_the_admitted_connection() {
        let table = Arc::new(ConnectionTable::default());
        let admitted = table.admit(4);
        let hijacked = admitted.slot.clone();
        drop(admitted);
        assert_eq!(table.lock().len(), 1);
        drop(hijacked);
        assert_eq!(table.lock().len(), 0);
    }

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_of_the_hub() {
        assert_eq!(effective_cap(1024, 256), 192);
        assert_eq!(effective_cap(1024, 1 << 20), 1024);
        assert_eq!(effective_cap(1024, 10), 1);
    }
}
