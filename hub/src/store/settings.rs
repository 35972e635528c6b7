//! Hub settings: small named values (the admin token's hash, the stateless-reset key, …).

use super::db::{Db, OptionalExtension};
use super::StoreError;

/// Read a setting.
pub fn setting(conn: &Db, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Write a setting.
pub fn set_setting(conn: &Db, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}
