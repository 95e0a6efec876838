//! Modules by content hash and the games catalogue in the cluster database, so that any
//! node can load any session's module and every node offers the same games. Written on
//! publish and when a node brings a module from its games directory; read at start and
//! when a session arrives whose module this node has not seen.

use minotaur_state::GameRecord;

use crate::db::{Db, DbError};

impl Db {
    /// Stores `wasm` under its hash (a no-op if present: content-addressed).
    pub async fn put_module(&self, hash: &str, wasm: &[u8]) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO minotaur_modules (hash, wasm) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(hash)
        .bind(wasm)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn get_module(&self, hash: &str) -> Result<Option<Vec<u8>>, DbError> {
        Ok(
            sqlx::query_scalar("SELECT wasm FROM minotaur_modules WHERE hash = $1")
                .bind(hash)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Writes the game's record and announces it (NOTIFY on the games channel, delivered at
    /// commit), so every node picks up a publish.
    pub async fn set_game(&self, name: &str, rec: &GameRecord) -> Result<(), DbError> {
        let bytes = rec.encode();
        // One statement (the notification is delivered at its commit): no transaction is
        // left open between statements, where a starved process would meet the
        // idle-in-transaction timeout.
        sqlx::query_scalar::<_, i64>(
            "WITH up AS (
                 INSERT INTO minotaur_games (name, record) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, updated_at = now()
                 RETURNING name
             )
             SELECT count(*) FROM (SELECT pg_notify($3, name) FROM up) n",
        )
        .bind(name)
        .bind(bytes)
        .bind(crate::announce::GAMES_CHANNEL)
        .fetch_one(self.pool())
        .await?;
        Ok(())
    }

    /// Every game record, by name.
    pub async fn games(&self) -> Result<Vec<(String, GameRecord)>, DbError> {
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT name, record FROM minotaur_games ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        rows.into_iter()
            .map(|(name, bytes)| {
                let rec = GameRecord::decode(&bytes).map_err(|reason| DbError::Corrupt {
                    what: format!("game record {name}"),
                    reason,
                })?;
                Ok((name, rec))
            })
            .collect()
    }
}
