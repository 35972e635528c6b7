//! A PostgreSQL database of its own for a test of hubs on a shared store: created on the cluster
//! `scripts/postgres-setup.sh` starts (`OUTPOST_TEST_POSTGRES`, as the store's own tests use) and
//! dropped when the test ends. Without the cluster the test fails, saying how to start it.

use std::sync::atomic::{AtomicU32, Ordering};

use outpost_hub::store::db::{Db, PgConn};

/// Where the cluster is unless `OUTPOST_TEST_POSTGRES` says otherwise.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// A database created for one test.
#[derive(Debug)]
pub(crate) struct TestDatabase {
    name: String,
    /// Its URL, for `serve --store`.
    pub(crate) url: String,
}

fn server_url() -> String {
    std::env::var("OUTPOST_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.into())
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

impl TestDatabase {
    /// A new, empty database.
    pub(crate) fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "outpost_e2e_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // A database left by a killed run of the same process id goes first.
        let admin = admin();
        admin
            .execute_batch(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("DROP DATABASE");
        admin
            .execute_batch(&format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        let server = server_url();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE: a hub process may still hold connections.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin().execute_batch(&sql) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}
