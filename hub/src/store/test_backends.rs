//! The store's tests run on both backends: each test is a function of a [`Backend`], and
//! [`both_backends!`] makes a `sqlite::` and a `postgres::` test of it.
//!
//! A PostgreSQL test gets a database of its own, created on the cluster at
//! `OUTPOST_TEST_POSTGRES` (default [`DEFAULT_URL`], the cluster `scripts/postgres-setup.sh`
//! starts) and dropped when the test ends, so tests run in parallel. Without a cluster a
//! PostgreSQL test fails: the test script always starts one.

use std::sync::atomic::{AtomicU32, Ordering};

use super::db::{Db, PgConn};
use super::{Store, StoreLocation};

/// Where the store tests find PostgreSQL unless `OUTPOST_TEST_POSTGRES` says otherwise.
pub(super) const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// The backend a test runs on.
#[derive(Clone, Copy, Debug)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
}

/// What a test's store lives in, removed when the test ends.
#[derive(Debug)]
pub(super) enum Place {
    /// An SQLite file in a temporary directory.
    Dir(tempfile::TempDir),
    /// A PostgreSQL database of its own.
    Database(TestDatabase),
}

impl Place {
    /// Where a store reopens this place.
    pub(super) fn location(&self) -> StoreLocation {
        match self {
            Self::Dir(dir) => StoreLocation::Sqlite(dir.path().join("hub.db")),
            Self::Database(db) => StoreLocation::Postgres(db.url.clone()),
        }
    }
}

impl Backend {
    /// A new, empty store.
    pub(super) fn open(self) -> (Place, Store) {
        let place = match self {
            Self::Sqlite => Place::Dir(tempfile::tempdir().expect("a temporary directory")),
            Self::Postgres => Place::Database(TestDatabase::create()),
        };
        let store = Store::open_location(&place.location()).expect("the test store opens");
        (place, store)
    }
}

/// A new PostgreSQL store opened by a role that may create tables but not extensions, as on a
/// managed server: the trigram extension cannot be created.
pub(super) fn postgres_without_extensions() -> (Place, Store) {
    let mut db = TestDatabase::create();
    let role = format!("{}_plain", db.name);
    db.role = Some(role.clone());
    connect(&db.url)
        .execute_batch(&format!(
            "CREATE ROLE {role} LOGIN; GRANT CREATE ON SCHEMA public TO {role}"
        ))
        .expect("a role without CREATE on the database");
    let url = with_user(&db.url, &role);
    let store = Store::open_location(&StoreLocation::Postgres(url)).expect("the store opens");
    (Place::Database(db), store)
}

/// `url` with its user replaced by `user`.
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// A database created for one test and dropped after it, with the role the test made for it.
#[derive(Debug)]
pub(super) struct TestDatabase {
    name: String,
    url: String,
    role: Option<String>,
}

fn server_url() -> String {
    std::env::var("OUTPOST_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.into())
}

fn admin() -> Db {
    connect(&server_url())
}

fn connect(url: &str) -> Db {
    match PgConn::connect(url) {
        Ok(conn) => Db::Postgres(conn),
        Err(e) => panic!(
            "no PostgreSQL for the store tests at {url} ({e}); start it with \
             scripts/postgres-setup.sh or point OUTPOST_TEST_POSTGRES at one"
        ),
    }
}

impl TestDatabase {
    fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "outpost_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin()
            .execute_batch(&format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        let server = server_url();
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Self {
            name,
            url,
            role: None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE: a clone of the store may still hold a connection.
        let dropped = admin().execute_batch(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
        if let Some(role) = &self.role {
            if let Err(e) = admin().execute_batch(&format!("DROP ROLE IF EXISTS {role}")) {
                eprintln!("could not drop test role {role}: {e}");
            }
        }
    }
}

/// `both_backends!(a, b)` after test functions `fn a(backend: Backend)`, … makes the tests
/// `sqlite::a`, `postgres::a`, ….
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::store::test_backends::Backend::Sqlite);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::store::test_backends::Backend::Postgres);
                }
            )*
        }
    };
}
pub(super) use both_backends;
