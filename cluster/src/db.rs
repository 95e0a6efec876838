//! The database handle: a connection pool, the schema migrations embedded in the binary
//! (`cluster/migrations/`), and the refusal to run against a schema newer than this build
//! knows (a rolled-back binary must not write rows it does not understand). Used by
//! `minotaur serve --database-url` at start and by `minotaur migrate`.

use std::time::Duration;

use sqlx::{
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Errors of the directory.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrating the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the database schema is at version {found}, newer than this build knows ({known}); \
         run a newer minotaur binary (rolling back the binary needs the schema rolled back first)"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
}

impl DbError {
    /// The database could not be reached or the connection broke: worth retrying, and
    /// nothing is known to have been written.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            DbError::Sql(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::WorkerCrashed
            )
        ) || matches!(self, DbError::Sql(sqlx::Error::Database(e))
            // admin_shutdown, crash_shutdown, cannot_connect_now, idle_in_transaction_timeout
            if matches!(e.code().as_deref(), Some("57P01" | "57P02" | "57P03" | "25P03")))
    }
}

/// A handle on the cluster database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    /// A pool for `url` (`postgres://user:pass@host:port/db`, or a unix socket with
    /// `?host=/path`). Connects lazily, so a node starts even while the database is down;
    /// the first query says whether it is there.
    pub fn connect_lazy(url: &str) -> Result<Db, DbError> {
        Db::connect_lazy_with(url, None)
    }

    /// As [`Db::connect_lazy`]; with `idle_in_transaction`, the server aborts any
    /// transaction of this node that sits idle between two statements for longer (the
    /// node was paused, or its process stalled, mid-transaction): a frozen owner must not
    /// keep the row locks that the claims of its takeover wait for. The node's own
    /// interrupted write then fails as "database unavailable" and is retried — fenced,
    /// so after a takeover it changes nothing.
    pub fn connect_lazy_with(
        url: &str,
        idle_in_transaction: Option<Duration>,
    ) -> Result<Db, DbError> {
        let mut options: PgConnectOptions = url.parse()?;
        if let Some(t) = idle_in_transaction {
            let ms = millis(t).max(1).to_string();
            options = options.options([("idle_in_transaction_session_timeout", ms.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options);
        Ok(Db { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A handle on the same database with a pool of its own of `connections`: the lease
    /// renewal and the writer's group commits must never queue behind a burst of session
    /// loads for a connection (a late renewal pauses every session of the node).
    pub fn dedicated(&self, connections: u32) -> Db {
        let options = self.pool.connect_options().as_ref().clone();
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options);
        Db { pool }
    }

    /// The newest schema version this build knows.
    pub fn known_version() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The newest schema version applied to the database (0: none).
    pub async fn schema_version(&self) -> Result<i64, DbError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        if !exists {
            return Ok(0);
        }
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(v.unwrap_or(0))
    }

    /// Applies the migrations this build has and the database lacks (under sqlx's advisory
    /// lock, so nodes starting together migrate once). Refuses a newer schema.
    pub async fn migrate(&self) -> Result<i64, DbError> {
        // One direct connection first: a pool that cannot connect only says "timed out";
        // this says why (connection refused, unknown host, authentication, no such
        // database).
        use sqlx::Connection;
        let direct =
            sqlx::postgres::PgConnection::connect_with(self.pool.connect_options().as_ref())
                .await?;
        let _ = direct.close().await;
        let (found, known) = (self.schema_version().await?, Db::known_version());
        if found > known {
            return Err(DbError::SchemaTooNew { found, known });
        }
        MIGRATOR.run(&self.pool).await?;
        Ok(known)
    }

    /// `SELECT 1`: is the database there?
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Milliseconds of a duration, as PostgreSQL intervals are built here
/// (`$n * interval '1 millisecond'`).
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
