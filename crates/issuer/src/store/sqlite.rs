//! SQLite backend: one file in WAL mode, created on first start.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::error::{Error, Result};

/// [`super::Store`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and runs the migrations.
    ///
    /// The pool defaults to one connection: SQLite has one writer anyway, and queueing
    /// in the pool is much cheaper than SQLite's sleeping busy handler. Other processes
    /// on the same file still wait on `busy_timeout`.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::config("database_url", e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.unwrap_or(1))
            .acquire_timeout(Duration::from_secs(30))
            // Keep connections: with `sqlite::memory:` the database lives only as long
            // as its (single) connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// `BEGIN IMMEDIATE` takes SQLite's write lock up front, so a read-then-write
    /// transaction can neither deadlock on lock upgrade nor interleave with another
    /// process's rotation of the same token.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

super::sql_store!(SqliteStore, sqlx::Sqlite, lock = "");
