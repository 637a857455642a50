//! PostgreSQL backend, for several issuer replicas on one database.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::Result;

/// [`super::Store`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and runs the migrations (sqlx takes an advisory lock, so replicas
    /// starting together migrate once).
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(10))
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }

    /// READ COMMITTED plus `SELECT … FOR UPDATE` on the session row (see `rotate`).
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

super::sql_store!(PgStore, sqlx::Postgres, lock = " FOR UPDATE");
