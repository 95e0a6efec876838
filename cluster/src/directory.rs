//! The session directory (`minotaur_sessions`): which node owns each session at which
//! epoch, and the session's document of record. Ownership only ever moves by
//! compare-and-set — a takeover claim names the old `(owner, epoch)`, a hand-off names
//! this node's own — and every move increments the epoch, so a write fenced on the old
//! pair finds nothing (see [`crate::writes`] and [`crate::ownership`]).

use std::time::Duration;

use minotaur_state::Journal;

use crate::{
    announce::{HANDOFF_CHANNEL, MAX_PAYLOAD},
    db::{millis, Db, DbError},
};

/// Where a session is, as the directory says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub owner: String,
    pub epoch: i64,
    pub ended: bool,
    /// The owner's player address (`host:port`), if its node row exists.
    pub url: Option<String>,
    /// The owner's lease is valid and it has not stopped.
    pub owner_live: bool,
}

/// A live session whose owner's lease has run out (or who stopped, or has no row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub session: String,
    pub owner: String,
    pub epoch: i64,
    /// How long ago the owner's lease expired.
    pub orphaned_ms: i64,
}

/// One compare-and-set of a takeover: move `session` from `(owner, epoch)` to the claimant
/// at `epoch + 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub session: String,
    pub owner: String,
    pub epoch: i64,
}

/// A session's document of record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub owner: String,
    pub epoch: i64,
    pub ended: bool,
    /// The full save followed by every incremental save (Automerge loads them as one).
    pub doc: Option<Vec<u8>>,
    /// What was acknowledged after `doc` (empty when `doc` holds everything).
    pub journal: Journal,
}

/// `locate`'s row: owner, epoch, ended, the owner's address, whether it is live.
type LocatedRow = (String, i64, bool, Option<String>, Option<bool>);
/// `load_session`'s row: owner, epoch, ended, full save, legacy journal snapshot, chunks,
/// journal records.
type StoredRow = (
    String,
    i64,
    bool,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
);

impl Db {
    /// Enters a new session owned by `owner` at epoch 1. `false` if the id is taken.
    pub async fn create_session(&self, id: &str, game: &str, owner: &str) -> Result<bool, DbError> {
        let r = sqlx::query(
            "INSERT INTO minotaur_sessions (id, game, owner, epoch) VALUES ($1, $2, $3, 1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(game)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Where `session` is, or `None` if the directory has never heard of it.
    pub async fn locate(&self, session: &str) -> Result<Option<Located>, DbError> {
        let row: Option<LocatedRow> = sqlx::query_as(
            "SELECT s.owner, s.epoch, s.ended, n.url,
                    n.lease_expires > now() AND n.status <> 'stopped'
             FROM minotaur_sessions s LEFT JOIN minotaur_nodes n ON n.id = s.owner
             WHERE s.id = $1",
        )
        .bind(session)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(owner, epoch, ended, url, live)| Located {
            owner,
            epoch,
            ended,
            url,
            owner_live: live.unwrap_or(false),
        }))
    }

    /// Live sessions whose owner's lease expired more than `grace` ago (database time), whose
    /// owner stopped, or whose owner has no row. `limit` bounds one sweep.
    pub async fn orphans(&self, grace: Duration, limit: i64) -> Result<Vec<Orphan>, DbError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT s.id, s.owner, s.epoch,
                    COALESCE((extract(epoch FROM now() - n.lease_expires) * 1000)::bigint, 1000000)
             FROM minotaur_sessions s LEFT JOIN minotaur_nodes n ON n.id = s.owner
             WHERE NOT s.ended
               AND (n.id IS NULL OR n.status = 'stopped'
                    OR n.lease_expires < now() - $1 * interval '1 millisecond')
             ORDER BY s.id LIMIT $2",
        )
        .bind(millis(grace))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(session, owner, epoch, orphaned_ms)| Orphan {
                session,
                owner,
                epoch,
                orphaned_ms,
            })
            .collect())
    }

    /// Takes over `claims` for `me`, each only if still at its `(owner, epoch)` AND still
    /// an orphan at the moment of the claim (its owner stopped, has no row, or its lease
    /// expired more than `grace` ago, in database time): an orphan list read before a
    /// database outage must not take sessions from an owner that has renewed since. Never
    /// claims from `me`. Returns the sessions won, with their new epoch.
    pub async fn claim(
        &self,
        me: &str,
        claims: &[Claim],
        grace: Duration,
    ) -> Result<Vec<(String, i64)>, DbError> {
        let claims: Vec<&Claim> = claims.iter().filter(|c| c.owner != me).collect();
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = claims.iter().map(|c| c.session.as_str()).collect();
        let owners: Vec<&str> = claims.iter().map(|c| c.owner.as_str()).collect();
        let epochs: Vec<i64> = claims.iter().map(|c| c.epoch).collect();
        let won = sqlx::query_as(
            "UPDATE minotaur_sessions s SET owner = $4, epoch = s.epoch + 1, updated_at = now()
             FROM unnest($1::text[], $2::text[], $3::int8[]) AS c(id, owner, epoch)
             WHERE s.id = c.id AND s.owner = c.owner AND s.epoch = c.epoch AND NOT s.ended
               AND NOT EXISTS (
                   SELECT 1 FROM minotaur_nodes n
                   WHERE n.id = s.owner AND n.status <> 'stopped'
                     AND n.lease_expires >= now() - $5 * interval '1 millisecond')
             RETURNING s.id, s.epoch",
        )
        .bind(&ids)
        .bind(&owners)
        .bind(&epochs)
        .bind(me)
        .bind(millis(grace))
        .fetch_all(self.pool())
        .await?;
        Ok(won)
    }

    /// Hands `sessions` (id, epoch held by `me`) to `target` at `epoch + 1`, and tells the
    /// target which (NOTIFY, delivered at commit; [`crate::announce`]). Returns the
    /// sessions moved, with new epochs.
    pub async fn hand_off(
        &self,
        me: &str,
        target: &str,
        sessions: &[(String, i64)],
    ) -> Result<Vec<(String, i64)>, DbError> {
        let ids: Vec<&str> = sessions.iter().map(|(s, _)| s.as_str()).collect();
        let epochs: Vec<i64> = sessions.iter().map(|(_, e)| *e).collect();
        // One statement (its notification is delivered at its commit): no transaction is
        // left open between statements, where a starved process would meet the
        // idle-in-transaction timeout.
        let moved: Vec<(String, i64)> = sqlx::query_as(
            "WITH moved AS (
                 UPDATE minotaur_sessions s SET owner = $4, epoch = s.epoch + 1, updated_at = now()
                 FROM unnest($1::text[], $2::int8[]) AS c(id, epoch)
                 WHERE s.id = c.id AND s.owner = $3 AND s.epoch = c.epoch AND NOT s.ended
                 RETURNING s.id, s.epoch
             ), listed AS (
                 SELECT $4 || E'\t' || $3
                        || string_agg(E'\n' || m.id || E'\t' || m.epoch, '') AS payload
                 FROM moved m HAVING count(*) > 0
             ), notified AS (
                 SELECT pg_notify($5, CASE WHEN octet_length(payload) <= $6 THEN payload
                                           ELSE $4 || E'\t' || $3 END)
                 FROM listed
             )
             SELECT m.id, m.epoch FROM moved m CROSS JOIN (SELECT count(*) FROM notified) n",
        )
        .bind(&ids)
        .bind(&epochs)
        .bind(me)
        .bind(target)
        .bind(HANDOFF_CHANNEL)
        .bind(MAX_PAYLOAD as i32)
        .fetch_all(self.pool())
        .await?;
        Ok(moved)
    }

    /// A restarted node takes back what its id still owns, at a new epoch (so anything a
    /// previous process with this id might still write is fenced). Returns (id, epoch).
    pub async fn reclaim_own(&self, me: &str) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query_as(
            "UPDATE minotaur_sessions SET epoch = epoch + 1, updated_at = now()
             WHERE owner = $1 AND NOT ended RETURNING id, epoch",
        )
        .bind(me)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Every live session the directory names `me` the owner of, with its epoch.
    pub async fn owned(&self, me: &str) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query_as(
            "SELECT id, epoch FROM minotaur_sessions WHERE owner = $1 AND NOT ended ORDER BY id",
        )
        .bind(me)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// The live sessions of `game` whose owner is not `me`: what a publish's dry run on
    /// `me` restores from the database (its own sessions it asks their actors for).
    pub async fn live_elsewhere(&self, game: &str, me: &str) -> Result<Vec<String>, DbError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM minotaur_sessions WHERE game = $1 AND owner <> $2 AND NOT ended \
             ORDER BY id",
        )
        .bind(game)
        .bind(me)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// How many live sessions the directory names each node the owner of: the load that
    /// placement and rebalancing compare (exact, unlike the counts nodes report at renewal).
    pub async fn session_counts(&self) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query_as(
            "SELECT owner, count(*) FROM minotaur_sessions WHERE NOT ended GROUP BY owner",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// The directory's `(owner, epoch)` of each of `sessions` (missing ones are left out).
    pub async fn owners(
        &self,
        sessions: &[String],
    ) -> Result<Vec<(String, String, i64, bool)>, DbError> {
        let rows = sqlx::query_as(
            "SELECT id, owner, epoch, ended FROM minotaur_sessions WHERE id = ANY($1)",
        )
        .bind(sessions)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// The stored session: directory row, document (full save + chunks in order) and journal.
    pub async fn load_session(&self, session: &str) -> Result<Option<StoredSession>, DbError> {
        // One statement, one snapshot: the row, its chunks and its journal records agree,
        // and no transaction stays open between statements.
        let row: Option<StoredRow> = sqlx::query_as(
            "SELECT owner, epoch, ended, doc, journal,
                    ARRAY(SELECT chunk FROM minotaur_session_chunks
                          WHERE session = s.id ORDER BY seq),
                    ARRAY(SELECT record FROM minotaur_session_journal
                          WHERE session = s.id ORDER BY seq)
             FROM minotaur_sessions s WHERE id = $1",
        )
        .bind(session)
        .fetch_optional(self.pool())
        .await?;
        let Some((owner, epoch, ended, doc, journal, chunks, records)) = row else {
            return Ok(None);
        };
        let doc = doc.map(|mut bytes| {
            for c in chunks {
                bytes.extend_from_slice(&c);
            }
            bytes
        });
        let journal =
            Journal::from_stored(journal.as_deref(), records).map_err(|e| DbError::Corrupt {
                what: format!("journal of session {session}"),
                reason: e.to_string(),
            })?;
        Ok(Some(StoredSession {
            owner,
            epoch,
            ended,
            doc,
            journal,
        }))
    }
}
