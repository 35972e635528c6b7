//! The store a bench's (or a test's) hub runs on: SQLite (`hub.db` in the hub's data directory, the default) or
//! a fresh database on the PostgreSQL cluster the store tests use (`OUTPOST_TEST_POSTGRES`,
//! default the cluster `scripts/postgres-setup.sh` starts), dropped when the bench is done.
//!
//! On PostgreSQL the store's SQL runs in the server's processes, not the hub's, so a bench that
//! compares the hub's CPU across backends also reads the server's ([`postgres_cpu_seconds`]).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use outpost_hub::store::db::{Db, PgConn};
use outpost_hub::store::{Store, StoreLocation};

use crate::proc_stats::ProcSample;

/// Where the store tests find PostgreSQL unless `OUTPOST_TEST_POSTGRES` says otherwise (the same
/// default as the hub's `store/test_backends.rs`).
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// Which backend a bench's store is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// An SQLite file in the hub's data directory.
    Sqlite,
    /// A database of its own on the test cluster.
    Postgres,
}

impl FromStr for StoreKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres),
            other => Err(format!("unknown store {other:?} (sqlite or postgres)")),
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

/// `--store sqlite|postgres|both` as the backends to run, in order.
pub fn parse_stores(text: &str) -> Vec<StoreKind> {
    match text {
        "both" => vec![StoreKind::Sqlite, StoreKind::Postgres],
        one => vec![one.parse().expect("--store sqlite|postgres|both")],
    }
}

/// A bench's store; a PostgreSQL database is dropped with it.
#[derive(Debug)]
pub struct BenchStore {
    /// Its backend.
    pub kind: StoreKind,
    location: StoreLocation,
    database: Option<String>,
}

impl BenchStore {
    /// A new, empty store for a hub whose data directory is `hub_dir`.
    pub fn create(kind: StoreKind, hub_dir: &Path) -> Self {
        match kind {
            StoreKind::Sqlite => Self {
                kind,
                location: StoreLocation::Sqlite(hub_dir.join("hub.db")),
                database: None,
            },
            StoreKind::Postgres => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default();
                let name = format!("outpost_bench_{}_{nanos}", std::process::id());
                admin()
                    .execute_batch(&format!("CREATE DATABASE {name}"))
                    .expect("CREATE DATABASE");
                let server = server_url();
                let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
                Self {
                    kind,
                    location: StoreLocation::Postgres(format!("{base}/{name}")),
                    database: Some(name),
                }
            }
        }
    }

    /// The store, opened (its schema brought up to date).
    pub fn open(&self) -> Store {
        Store::open_location(&self.location).expect("the bench store opens")
    }

    /// The `serve` flags that put a hub on this store.
    pub fn serve_flags(&self) -> Vec<String> {
        match &self.location {
            StoreLocation::Sqlite(_) => Vec::new(),
            StoreLocation::Postgres(url) => vec!["--store".into(), url.clone()],
        }
    }
}

impl Drop for BenchStore {
    fn drop(&mut self) {
        if let Some(name) = &self.database {
            // FORCE: a store still open in this process holds connections.
            let dropped =
                admin().execute_batch(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            if let Err(e) = dropped {
                eprintln!("could not drop bench database {name}: {e}");
            }
        }
    }
}

fn server_url() -> String {
    std::env::var("OUTPOST_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.into())
}

fn admin() -> Db {
    let url = server_url();
    match PgConn::connect(&url) {
        Ok(conn) => Db::Postgres(conn),
        Err(e) => panic!(
            "no PostgreSQL at {url} ({e}); start it with scripts/postgres-setup.sh or point \
             OUTPOST_TEST_POSTGRES at one"
        ),
    }
}

/// CPU seconds used so far by every process named `postgres` on this machine (the test cluster's
/// server and its backends). A backend that has exited no longer counts, so take both samples
/// while the connections being measured are open.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|pid| ProcSample::take(pid).ok())
        .map(|sample| sample.cpu_seconds)
        .sum()
}
