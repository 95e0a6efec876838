//! The embedded durable store (redb, one file `minotaur.redb`): session documents as a base
//! save plus appended incremental chunks, quarantined corrupt documents, wasm modules by
//! content hash, game records, and each session's *journal*: the guest events of acknowledged
//! batches that the document does not hold yet (see [`crate::journal`]).
//! Used by the session actor (per-batch appends and journal entries) and by the node at
//! startup (load every session) and on publish.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::{Journal, JournalRecord, SessionDoc, StateError};

/// session → full save.
const BASES: TableDefinition<&str, &[u8]> = TableDefinition::new("session_base");
/// (session, sequence) → incremental save, in append order.
const CHUNKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("session_chunks");
/// (session, sequence) → the bytes of a quarantined document (base and chunks concatenated).
const QUARANTINE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("quarantine");
/// session → legacy journal snapshot (8 bytes of tick, then the raw guest snapshot), written
/// by stores before the event journal: read, and dropped by the next document write.
const JOURNAL: TableDefinition<&str, &[u8]> = TableDefinition::new("session_journal");
/// (session, sequence) → [`JournalRecord`], in append order: newer than the document.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("session_events");
/// module hash (hex) → wasm bytes.
const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
/// game name → MessagePack [`GameRecord`].
const GAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("games");

const FILE_NAME: &str = "minotaur.redb";

/// What happens to live sessions when a game gets new rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapPolicy {
    /// Running sessions keep their module; only new sessions use the new one.
    NewSessionsOnly,
    /// Running sessions are migrated at their next event boundary.
    MigrateLive,
}

/// A published game: its current module and every version it has had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameRecord {
    pub current_hash: String,
    pub policy: SwapPolicy,
    /// `(rules_version, module hash hex)`, oldest first.
    pub versions: Vec<(u32, String)>,
}

impl GameRecord {
    /// The stored form: MessagePack, structs as named maps.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a GameRecord always serializes")
    }

    /// The inverse of [`GameRecord::encode`]; `Err` is the decoder's reason.
    pub fn decode(bytes: &[u8]) -> Result<GameRecord, String> {
        rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// One session write of a [`Store::write_sessions`] group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionWrite {
    /// Replace the base with a full save and drop the chunks.
    Full { session: String, bytes: Vec<u8> },
    /// A new session's first write: enter it (in a cluster: into the directory, owned by
    /// the writer at the write's epoch) with this full save. Alone, the same as `Full`.
    Create {
        session: String,
        game: String,
        bytes: Vec<u8>,
    },
    /// Append an incremental save.
    Append { session: String, chunk: Vec<u8> },
    /// Forget the session.
    Delete { session: String },
    /// Append events the session acknowledged and its document does not hold yet. Any
    /// later `Full`/`Append`/`Delete` of the session drops every record (the document then
    /// holds that state or newer), so records that exist apply on top of the document.
    Journal {
        session: String,
        record: JournalRecord,
    },
}

impl SessionWrite {
    /// The session this write is about.
    pub fn session(&self) -> &str {
        match self {
            SessionWrite::Full { session, .. }
            | SessionWrite::Create { session, .. }
            | SessionWrite::Append { session, .. }
            | SessionWrite::Delete { session }
            | SessionWrite::Journal { session, .. } => session,
        }
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("store database: {0}")]
    Db(#[from] redb::Error),
    /// This session's bytes do not load; other sessions are unaffected.
    #[error("session {session} is corrupt: {source}")]
    Corrupt {
        session: String,
        #[source]
        source: Box<StateError>,
    },
    /// A stored game record does not decode.
    #[error("game record {game} is corrupt: {reason}")]
    BadGameRecord { game: String, reason: String },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// How the store commits.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Durability of [`Store::append_session_changes`], the per-batch hot path. `Immediate`
    /// (the default) fsyncs every append: nothing acknowledged is lost on power failure, at
    /// the cost of one fsync per batch. `None` skips the fsync: appends become durable with the
    /// next immediate commit (any other store method), so a power loss can drop the appends
    /// since then. A process crash loses
    /// nothing either way.
    pub append_durability: Durability,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            append_durability: Durability::Immediate,
        }
    }
}

/// Sets `path`'s permission bits (Unix; elsewhere nothing).
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// A handle on the store; cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    options: StoreOptions,
}

impl Store {
    /// Opens (creating if needed) `dir/minotaur.redb` with default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// The directory is made 0700 and the file 0600: sessions hold players' token hashes.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        restrict(dir, 0o700)?;
        let db = Database::create(dir.join(FILE_NAME))?;
        restrict(&dir.join(FILE_NAME), 0o600)?;
        // Create every table once so readers never meet a missing one.
        let tx = db.begin_write()?;
        tx.open_table(BASES)?;
        tx.open_table(CHUNKS)?;
        tx.open_table(QUARANTINE)?;
        tx.open_table(JOURNAL)?;
        tx.open_table(EVENTS)?;
        tx.open_table(MODULES)?;
        tx.open_table(GAMES)?;
        tx.commit()?;
        Ok(Store {
            db: Arc::new(db),
            options,
        })
    }

    /// Replaces the session's base with a full save and drops its chunks.
    pub fn save_session_full(&self, session: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(BASES)?.insert(session, bytes)?;
            tx.open_table(CHUNKS)?
                .retain_in((session, 0)..=(session, u64::MAX), |_, _| false)?;
            drop_journal(&tx, session)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends an incremental save after the session's base and earlier chunks.
    pub fn append_session_changes(&self, session: &str, chunk: &[u8]) -> Result<(), StoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write()?;
        tx.set_durability(self.options.append_durability)?;
        {
            let mut chunks = tx.open_table(CHUNKS)?;
            let next = chunks
                .range((session, 0)..=(session, u64::MAX))?
                .next_back()
                .transpose()?
                .map_or(0, |(k, _)| k.value().1 + 1);
            chunks.insert((session, next), chunk)?;
            drop_journal(&tx, session)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Applies many sessions' writes in ONE transaction (one fsync): the group commit of the
    /// node's store writer. Writes apply in order; empty appends are skipped.
    pub fn write_sessions(&self, writes: &[SessionWrite]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut bases = tx.open_table(BASES)?;
            let mut chunks = tx.open_table(CHUNKS)?;
            let mut legacy = tx.open_table(JOURNAL)?;
            let mut events = tx.open_table(EVENTS)?;
            for w in writes {
                if !matches!(w, SessionWrite::Journal { .. }) {
                    // The document now holds the journal's state or newer.
                    let s = w.session();
                    legacy.remove(s)?;
                    events.retain_in((s, 0)..=(s, u64::MAX), |_, _| false)?;
                }
                match w {
                    SessionWrite::Full { session, bytes }
                    | SessionWrite::Create { session, bytes, .. } => {
                        bases.insert(session.as_str(), bytes.as_slice())?;
                        let s = session.as_str();
                        chunks.retain_in((s, 0)..=(s, u64::MAX), |_, _| false)?;
                    }
                    SessionWrite::Append { session, chunk } if !chunk.is_empty() => {
                        let s = session.as_str();
                        let next = chunks
                            .range((s, 0)..=(s, u64::MAX))?
                            .next_back()
                            .transpose()?
                            .map_or(0, |(k, _)| k.value().1 + 1);
                        chunks.insert((s, next), chunk.as_slice())?;
                    }
                    SessionWrite::Append { .. } => {}
                    SessionWrite::Delete { session } => {
                        let s = session.as_str();
                        bases.remove(s)?;
                        chunks.retain_in((s, 0)..=(s, u64::MAX), |_, _| false)?;
                    }
                    SessionWrite::Journal { session, record } => {
                        let s = session.as_str();
                        let next = events
                            .range((s, 0)..=(s, u64::MAX))?
                            .next_back()
                            .transpose()?
                            .map_or(0, |(k, _)| k.value().1 + 1);
                        events.insert((s, next), record.encode().as_slice())?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The session's document (base followed by its chunks), or `None` if it has no base.
    pub fn load_session(&self, session: &str) -> Result<Option<SessionDoc>, StoreError> {
        let Some(bytes) = self.session_bytes(session)? else {
            return Ok(None);
        };
        SessionDoc::load(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                session: session.to_string(),
                source: Box::new(source),
            })
    }

    /// The session's journal: what it acknowledged after its stored document (empty when
    /// the document holds everything). A record that does not decode is reported as
    /// [`StoreError::Corrupt`].
    pub fn load_journal(&self, session: &str) -> Result<Journal, StoreError> {
        let tx = self.db.begin_read()?;
        let snapshot = tx
            .open_table(JOURNAL)?
            .get(session)?
            .map(|b| b.value().to_vec());
        let mut records = Vec::new();
        for entry in tx
            .open_table(EVENTS)?
            .range((session, 0)..=(session, u64::MAX))?
        {
            records.push(entry?.1.value().to_vec());
        }
        Journal::from_stored(snapshot.as_deref(), records).map_err(|source| StoreError::Corrupt {
            session: session.to_string(),
            source: Box::new(source),
        })
    }

    /// Every session with a stored base, sorted.
    pub fn list_sessions(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read()?;
        let bases = tx.open_table(BASES)?;
        let mut out = Vec::new();
        for entry in bases.iter()? {
            out.push(entry?.0.value().to_string());
        }
        Ok(out)
    }

    pub fn delete_session(&self, session: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(BASES)?.remove(session)?;
            tx.open_table(CHUNKS)?
                .retain_in((session, 0)..=(session, u64::MAX), |_, _| false)?;
            drop_journal(&tx, session)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves a session's bytes aside (kept for inspection) so it no longer loads or lists.
    pub fn quarantine_session(&self, session: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut bases = tx.open_table(BASES)?;
            let mut chunks = tx.open_table(CHUNKS)?;
            let mut bytes = bases
                .remove(session)?
                .map(|b| b.value().to_vec())
                .unwrap_or_default();
            for entry in chunks.range((session, 0)..=(session, u64::MAX))? {
                bytes.extend_from_slice(entry?.1.value());
            }
            chunks.retain_in((session, 0)..=(session, u64::MAX), |_, _| false)?;
            drop_journal(&tx, session)?;
            let mut quarantine = tx.open_table(QUARANTINE)?;
            let next = quarantine
                .range((session, 0)..=(session, u64::MAX))?
                .next_back()
                .transpose()?
                .map_or(0, |(k, _)| k.value().1 + 1);
            quarantine.insert((session, next), bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The bytes of every quarantine of `session`, oldest first.
    pub fn quarantined(&self, session: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let quarantine = tx.open_table(QUARANTINE)?;
        let mut out = Vec::new();
        for entry in quarantine.range((session, 0)..=(session, u64::MAX))? {
            out.push(entry?.1.value().to_vec());
        }
        Ok(out)
    }

    pub fn put_module(&self, hash_hex: &str, wasm: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(MODULES)?.insert(hash_hex, wasm)?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_module(&self, hash_hex: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let modules = tx.open_table(MODULES)?;
        Ok(modules.get(hash_hex)?.map(|v| v.value().to_vec()))
    }

    pub fn set_game(&self, game: &str, rec: &GameRecord) -> Result<(), StoreError> {
        let bytes = rec.encode();
        let tx = self.db.begin_write()?;
        tx.open_table(GAMES)?.insert(game, bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Every game record, sorted by name.
    pub fn games(&self) -> Result<Vec<(String, GameRecord)>, StoreError> {
        let tx = self.db.begin_read()?;
        let games = tx.open_table(GAMES)?;
        let mut out = Vec::new();
        for entry in games.iter()? {
            let (name, bytes) = entry?;
            let name = name.value().to_string();
            let rec =
                GameRecord::decode(bytes.value()).map_err(|reason| StoreError::BadGameRecord {
                    game: name.clone(),
                    reason,
                })?;
            out.push((name, rec));
        }
        Ok(out)
    }

    fn session_bytes(&self, session: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let Some(base) = tx
            .open_table(BASES)?
            .get(session)?
            .map(|b| b.value().to_vec())
        else {
            return Ok(None);
        };
        let mut bytes = base;
        // Automerge loads a full save followed by incremental saves as one stream.
        for entry in tx
            .open_table(CHUNKS)?
            .range((session, 0)..=(session, u64::MAX))?
        {
            bytes.extend_from_slice(entry?.1.value());
        }
        Ok(Some(bytes))
    }
}

/// Drops the session's journal (legacy snapshot and event records) in `tx`.
fn drop_journal(tx: &redb::WriteTransaction, session: &str) -> Result<(), StoreError> {
    tx.open_table(JOURNAL)?.remove(session)?;
    tx.open_table(EVENTS)?
        .retain_in((session, 0)..=(session, u64::MAX), |_, _| false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store written before the event journal holds a raw snapshot entry: it is read
    /// (with records appended after it) and dropped by the next document write.
    #[test]
    fn a_legacy_snapshot_entry_is_read_then_dropped_by_a_document_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tx = store.db.begin_write().unwrap();
        let mut legacy = 9u64.to_le_bytes().to_vec();
        legacy.extend_from_slice(&[0x91, 0x07]);
        tx.open_table(JOURNAL)
            .unwrap()
            .insert("s", legacy.as_slice())
            .unwrap();
        tx.commit().unwrap();
        let record = JournalRecord {
            tick: 10,
            events: vec![minotaur_abi::Event::Tick { n: 10, dt_ms: 50 }],
        };
        store
            .write_sessions(&[SessionWrite::Journal {
                session: "s".into(),
                record: record.clone(),
            }])
            .unwrap();
        let j = store.load_journal("s").unwrap();
        assert_eq!(j.snapshot, Some((9, vec![0x91, 0x07])));
        assert_eq!(j.records, vec![record]);
        assert_eq!(j.tick(), Some(10));
        store
            .write_sessions(&[SessionWrite::Full {
                session: "s".into(),
                bytes: b"doc".to_vec(),
            }])
            .unwrap();
        assert!(store.load_journal("s").unwrap().is_empty());
    }
}
