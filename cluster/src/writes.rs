//! The fenced group commit: many sessions' writes in ONE transaction, each applied only if
//! the directory still names this node the owner at the write's epoch. A write that finds
//! another owner (or a newer epoch) changes nothing and is reported as fenced; the others
//! in the group still commit. The node's writer calls [`Db::write_sessions`]; its acks
//! leave only after it returns, so a stale owner can never acknowledge anything. A group of
//! journal appends only (acks under load) is one statement without BEGIN/COMMIT: one round
//! trip, atomic on its own.
//!
//! Invariants: a group holds at most one write per session (the writer keeps a session's
//! writes in separate groups, in order); every statement is `... WHERE owner = $me AND
//! epoch = <write's epoch>`, evaluated under the row lock that a concurrent takeover
//! claim also takes, so the claim and the write are ordered and the loser sees it.

use std::collections::HashSet;

use minotaur_state::SessionWrite;

use crate::db::{Db, DbError};

/// One session write, fenced on the epoch the writer holds the session at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedWrite {
    pub epoch: u64,
    pub write: SessionWrite,
}

impl Db {
    /// Commits `writes` for owner `me` in one transaction. Returns, per write in order,
    /// whether it applied (`false`: fenced — another owner or epoch, or the session ended).
    /// An `Err` means nothing of the group is known to be committed.
    pub async fn write_sessions(
        &self,
        me: &str,
        writes: &[FencedWrite],
    ) -> Result<Vec<bool>, DbError> {
        let mut full = Columns::default();
        let mut create = Columns::default();
        let mut create_games: Vec<String> = Vec::new();
        let mut append = Columns::default();
        let mut journal = Columns::default();
        let mut delete = Columns::default();
        for w in writes {
            let epoch = w.epoch as i64;
            match &w.write {
                SessionWrite::Full { session, bytes } => full.push(session, epoch, bytes.clone()),
                SessionWrite::Create {
                    session,
                    game,
                    bytes,
                } => {
                    create.push(session, epoch, bytes.clone());
                    create_games.push(game.clone());
                }
                SessionWrite::Append { session, chunk } => {
                    append.push(session, epoch, chunk.clone())
                }
                SessionWrite::Journal { session, record } => {
                    journal.push(session, epoch, record.encode())
                }
                SessionWrite::Delete { session } => delete.push(session, epoch, Vec::new()),
            }
        }
        if full.ids.is_empty()
            && create.ids.is_empty()
            && append.ids.is_empty()
            && delete.ids.is_empty()
        {
            // Only journal appends (the common group under load: acks): one statement is
            // atomic on its own, so it runs without BEGIN/COMMIT — one round trip.
            let applied: HashSet<String> = if journal.ids.is_empty() {
                HashSet::new()
            } else {
                append_journal(self.pool(), me, &journal)
                    .await?
                    .into_iter()
                    .collect()
            };
            return Ok(writes
                .iter()
                .map(|w| applied.contains(w.write.session()))
                .collect());
        }
        let mut applied: HashSet<String> = HashSet::new();
        // Sessions whose chunks go (a full save or an end) and whose journal goes (any
        // document write): deleted once each at the end, not per kind (round trips).
        let mut reset_chunks: Vec<String> = Vec::new();
        let mut doc_written: Vec<String> = Vec::new();
        let mut tx = self.pool().begin().await?;
        if !create.ids.is_empty() {
            // A new session enters the directory with its first save, in the group's
            // commit (not a commit of its own). Resent after an ambiguous failure, it
            // applies again only over its own row (same owner and epoch, not ended).
            let ok: Vec<String> = sqlx::query_scalar(
                "INSERT INTO minotaur_sessions AS s (id, game, owner, epoch, doc)
                 SELECT w.id, w.game, $5, w.epoch, w.bytes
                 FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])
                      AS w(id, game, epoch, bytes)
                 ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, journal = NULL,
                                                updated_at = now()
                 WHERE s.owner = EXCLUDED.owner AND s.epoch = EXCLUDED.epoch AND NOT s.ended
                 RETURNING s.id",
            )
            .bind(&create.ids)
            .bind(&create_games)
            .bind(&create.epochs)
            .bind(&create.bytes)
            .bind(me)
            .fetch_all(&mut *tx)
            .await?;
            reset_chunks.extend(ok.iter().cloned());
            doc_written.extend(ok.iter().cloned());
            applied.extend(ok);
        }
        if !full.ids.is_empty() {
            let ok: Vec<String> = sqlx::query_scalar(
                "UPDATE minotaur_sessions s SET doc = w.bytes, journal = NULL, updated_at = now()
                 FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS w(id, epoch, bytes)
                 WHERE s.id = w.id AND s.owner = $4 AND s.epoch = w.epoch AND NOT s.ended
                 RETURNING s.id",
            )
            .bind(&full.ids)
            .bind(&full.epochs)
            .bind(&full.bytes)
            .bind(me)
            .fetch_all(&mut *tx)
            .await?;
            reset_chunks.extend(ok.iter().cloned());
            doc_written.extend(ok.iter().cloned());
            applied.extend(ok);
        }
        if !append.ids.is_empty() {
            let ok: Vec<String> = sqlx::query_scalar(
                "UPDATE minotaur_sessions s SET journal = NULL, updated_at = now()
                 FROM unnest($1::text[], $2::int8[]) AS w(id, epoch)
                 WHERE s.id = w.id AND s.owner = $3 AND s.epoch = w.epoch AND NOT s.ended
                   AND s.doc IS NOT NULL
                 RETURNING s.id",
            )
            .bind(&append.ids)
            .bind(&append.epochs)
            .bind(me)
            .fetch_all(&mut *tx)
            .await?;
            let okset: HashSet<&str> = ok.iter().map(String::as_str).collect();
            let (mut ids, mut chunks) = (Vec::new(), Vec::new());
            for (id, chunk) in append.ids.iter().zip(&append.bytes) {
                if okset.contains(id.as_str()) && !chunk.is_empty() {
                    ids.push(id.clone());
                    chunks.push(chunk.clone());
                }
            }
            if !ids.is_empty() {
                sqlx::query(
                    "INSERT INTO minotaur_session_chunks (session, chunk)
                     SELECT id, chunk FROM unnest($1::text[], $2::bytea[]) AS c(id, chunk)",
                )
                .bind(&ids)
                .bind(&chunks)
                .execute(&mut *tx)
                .await?;
            }
            doc_written.extend(ok.iter().cloned());
            applied.extend(ok);
        }
        if !journal.ids.is_empty() {
            applied.extend(append_journal(&mut *tx, me, &journal).await?);
        }
        if !delete.ids.is_empty() {
            let ok: Vec<String> = sqlx::query_scalar(
                "UPDATE minotaur_sessions s SET ended = true, doc = NULL, journal = NULL,
                        updated_at = now()
                 FROM unnest($1::text[], $2::int8[]) AS w(id, epoch)
                 WHERE s.id = w.id AND s.owner = $3 AND s.epoch = w.epoch AND NOT s.ended
                 RETURNING s.id",
            )
            .bind(&delete.ids)
            .bind(&delete.epochs)
            .bind(me)
            .fetch_all(&mut *tx)
            .await?;
            reset_chunks.extend(ok.iter().cloned());
            doc_written.extend(ok.iter().cloned());
            applied.extend(ok);
        }
        if !reset_chunks.is_empty() {
            sqlx::query("DELETE FROM minotaur_session_chunks WHERE session = ANY($1)")
                .bind(&reset_chunks)
                .execute(&mut *tx)
                .await?;
        }
        if !doc_written.is_empty() {
            sqlx::query("DELETE FROM minotaur_session_journal WHERE session = ANY($1)")
                .bind(&doc_written)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(writes
            .iter()
            .map(|w| applied.contains(w.write.session()))
            .collect())
    }
}

/// Appends journal records, each only if the directory still names `me` the owner at the
/// record's epoch. The append is fenced by a share lock on the directory row, taken with the
/// owner/epoch check (re-checked on the row's newest version if a claim committed
/// meanwhile); the row itself is not rewritten. Returns the sessions appended to.
async fn append_journal<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    me: &str,
    journal: &Columns,
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "WITH w AS (
             SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS w(id, epoch, bytes)
         ), fenced AS (
             SELECT s.id FROM minotaur_sessions s JOIN w ON s.id = w.id
             WHERE s.owner = $4 AND s.epoch = w.epoch AND NOT s.ended AND s.doc IS NOT NULL
             FOR SHARE OF s
         )
         INSERT INTO minotaur_session_journal (session, record)
         SELECT w.id, w.bytes FROM w JOIN fenced f ON f.id = w.id
         RETURNING session",
    )
    .bind(&journal.ids)
    .bind(&journal.epochs)
    .bind(&journal.bytes)
    .bind(me)
    .fetch_all(db)
    .await?)
}

/// One kind's writes as the parallel arrays `unnest` takes.
#[derive(Default)]
struct Columns {
    ids: Vec<String>,
    epochs: Vec<i64>,
    bytes: Vec<Vec<u8>>,
}

impl Columns {
    fn push(&mut self, id: &str, epoch: i64, bytes: Vec<u8>) {
        self.ids.push(id.to_owned());
        self.epochs.push(epoch);
        self.bytes.push(bytes);
    }
}
