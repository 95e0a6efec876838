//! Membership: the `minotaur_nodes` table, one row per node id. A node registers at start
//! (a new incarnation), renews its lease every fraction of it (`lease_expires = now() +
//! lease`, in database time), and marks itself `draining` then `stopped` on the way out.
//! Nobody else writes a node's row; other nodes only read it to decide takeovers, pick
//! hand-off targets and route players.

use std::time::Duration;

use crate::db::{millis, Db, DbError};

/// A node's state as the cluster sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Takes new sessions and serves its own.
    Serving,
    /// Handing its sessions over; takes no new ones.
    Draining,
    /// Gone: whatever it still owns is taken over at once.
    Stopped,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Serving => "serving",
            NodeStatus::Draining => "draining",
            NodeStatus::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> NodeStatus {
        match s {
            "serving" => NodeStatus::Serving,
            "draining" => NodeStatus::Draining,
            _ => NodeStatus::Stopped,
        }
    }
}

/// One row of `minotaur_nodes`, with the lease judged in database time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub id: String,
    pub incarnation: i64,
    /// Where players reach it (`host:port`).
    pub url: String,
    pub version: String,
    pub status: NodeStatus,
    /// Its lease has not expired (database time).
    pub live: bool,
    /// Milliseconds until its lease expires (negative: since it expired).
    pub lease_left_ms: i64,
    /// Sessions it reported at its last renewal.
    pub sessions: i32,
}

impl NodeRow {
    /// A live node that takes sessions.
    pub fn serving(&self) -> bool {
        self.live && self.status == NodeStatus::Serving
    }
}

/// `nodes`' row as selected: id, incarnation, url, version, status, live, lease left, sessions.
type NodeRowRaw = (String, i64, String, String, String, bool, i64, i32);

impl Db {
    /// Registers `id` as a new incarnation (the previous process with this id, if any, is
    /// over), serving, with a fresh lease. Returns the incarnation.
    pub async fn register_node(
        &self,
        id: &str,
        url: &str,
        version: &str,
        lease: Duration,
    ) -> Result<i64, DbError> {
        let inc: i64 = sqlx::query_scalar(
            "INSERT INTO minotaur_nodes (id, incarnation, url, version, status, lease_expires)
             VALUES ($1, 1, $2, $3, 'serving', now() + $4 * interval '1 millisecond')
             ON CONFLICT (id) DO UPDATE SET
                incarnation = minotaur_nodes.incarnation + 1, url = EXCLUDED.url,
                version = EXCLUDED.version, status = 'serving',
                lease_expires = EXCLUDED.lease_expires, started_at = now()
             RETURNING incarnation",
        )
        .bind(id)
        .bind(url)
        .bind(version)
        .bind(millis(lease))
        .fetch_one(self.pool())
        .await?;
        Ok(inc)
    }

    /// Extends this incarnation's lease to `now() + lease` and reports its session count.
    /// `false`: a newer incarnation of the id exists (this process must stop serving).
    pub async fn renew_lease(
        &self,
        id: &str,
        incarnation: i64,
        lease: Duration,
        sessions: usize,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE minotaur_nodes SET lease_expires = now() + $3 * interval '1 millisecond',
                    sessions = $4
             WHERE id = $1 AND incarnation = $2 AND status <> 'stopped'",
        )
        .bind(id)
        .bind(incarnation)
        .bind(millis(lease))
        .bind(sessions.min(i32::MAX as usize) as i32)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Sets this incarnation's status; `stopped` also ends its lease now, so whatever it
    /// still owns is claimed by the others at once.
    pub async fn set_node_status(
        &self,
        id: &str,
        incarnation: i64,
        status: NodeStatus,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE minotaur_nodes SET status = $3,
                    lease_expires = CASE WHEN $3 = 'stopped' THEN now() ELSE lease_expires END
             WHERE id = $1 AND incarnation = $2",
        )
        .bind(id)
        .bind(incarnation)
        .bind(status.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every node row, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, DbError> {
        let rows: Vec<NodeRowRaw> = sqlx::query_as(
            "SELECT id, incarnation, url, version, status, lease_expires > now(),
                    (extract(epoch FROM lease_expires - now()) * 1000)::bigint, sessions
             FROM minotaur_nodes ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, incarnation, url, version, status, live, lease_left_ms, sessions)| NodeRow {
                    id,
                    incarnation,
                    url,
                    version,
                    status: NodeStatus::parse(&status),
                    live,
                    lease_left_ms,
                    sessions,
                },
            )
            .collect())
    }
}
