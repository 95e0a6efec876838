//! The session document: one Automerge document per session holding `meta`, `seats` and the
//! guest's `state`, with incremental saves and history compaction. Owned by the session actor;
//! the store persists its saves and the cluster syncs it through [`SessionDoc::automerge`].
//!
//! Schema: `{ meta: {..SessionMeta fields}, seats: {"<player>": {name, token_hash, connected}},
//! state: <guest snapshot, see crate::reconcile> }`.

use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
use rmpv::Value;

use crate::reconcile::{self, ReconcileStats, Written};
use crate::StateError;

/// Everything about a session except its players and the game's own state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionMeta {
    pub session: String,
    pub game: String,
    /// Hex of the module's content hash.
    pub module_hash: String,
    pub rules_version: u32,
    pub owner_node: String,
    /// Ownership fence: only the holder of `(owner_node, epoch)` may write.
    pub epoch: u64,
    pub created_at_ms: u64,
    pub tick: u64,
    pub tick_hz: u32,
    pub seed: u64,
    pub next_player: u64,
    pub ended: bool,
    /// Bumped by every [`SessionDoc::compact`]; a reader that sees a new generation takes the
    /// whole document instead of syncing changes into its old history.
    pub generation: u64,
}

/// One player's seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRecord {
    pub player: u64,
    pub name: String,
    /// Hex SHA-256 of the player's resume token.
    pub token_hash: String,
    pub connected: bool,
}

/// When [`SessionDoc::should_compact`] says yes.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionPolicy {
    /// Compact once the history holds more changes than this.
    pub max_changes: u64,
    /// Compact once the saved history is this many times the size of a fresh save.
    pub max_history_ratio: u32,
    /// Below this many saved bytes the ratio rule does not apply (tiny docs compact for nothing).
    pub min_history_bytes: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            max_changes: 1000,
            max_history_ratio: 8,
            min_history_bytes: 16 * 1024,
        }
    }
}

/// A session's Automerge document.
///
/// Saving: store [`SessionDoc::save`] as the base, then append each
/// [`SessionDoc::save_incremental`]. After [`SessionDoc::compact`] the history is new, so the
/// next save **must** be a full one ([`SessionDoc::needs_full_save`]): appending the new history
/// to the old base would merge two unrelated documents.
pub struct SessionDoc {
    doc: AutoCommit,
    /// Heads covered by the last save or incremental save.
    saved_heads: Vec<ChangeHash>,
    /// Bytes of the last full save plus every incremental save since.
    history_bytes: usize,
    /// Size of a fresh (history-free) save, measured at the last compaction; `None` until known.
    fresh_bytes: Option<usize>,
    needs_full_save: bool,
    /// What the last `set_state` wrote under `state`, so the next one diffs against it in
    /// plain Rust instead of reading the document (`reconcile::reconcile_cached`). `None` after
    /// a load or a compaction (new object ids).
    state_cache: Option<Written>,
    /// Set by [`SessionDoc::automerge`] while `state_cache` is held: the heads when the
    /// document was handed out. Someone else may have changed `state` through it (a merge,
    /// a sync), so the next `set_state` keeps the cache only if the heads did not move.
    handed_out_at: Option<Vec<ChangeHash>>,
}

const META: &str = "meta";
const SEATS: &str = "seats";
const STATE: &str = "state";

// Writes only fail if Automerge rejects an operation on an object this module created and
// checked the type of; that is a bug, not a runtime condition.
const OWN_WRITE: &str = "automerge rejected a write to an object of the session schema";

impl SessionDoc {
    pub fn new(meta: &SessionMeta) -> SessionDoc {
        let mut doc = SessionDoc {
            doc: AutoCommit::new(),
            saved_heads: Vec::new(),
            history_bytes: 0,
            fresh_bytes: None,
            needs_full_save: false,
            state_cache: None,
            handed_out_at: None,
        };
        doc.set_meta(meta);
        doc.map_at_root(SEATS);
        doc.doc.commit();
        // A new document is its own fresh save; measuring it now lets the ratio rule apply
        // from the first tick instead of only after the first compaction.
        doc.fresh_bytes = Some(doc.doc.save().len());
        doc
    }

    /// Loads a full save, optionally followed by incremental saves. Bytes that do not load, or
    /// a document without a valid `meta`, are [`StateError::Corrupt`].
    pub fn load(bytes: &[u8]) -> Result<SessionDoc, StateError> {
        let doc = AutoCommit::load(bytes).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let mut doc = SessionDoc {
            doc,
            saved_heads: Vec::new(),
            history_bytes: bytes.len(),
            fresh_bytes: None,
            needs_full_save: false,
            state_cache: None,
            handed_out_at: None,
        };
        doc.meta()?;
        doc.seats()?;
        doc.saved_heads = doc.doc.get_heads();
        if doc.doc.stats().num_changes <= 1 {
            doc.fresh_bytes = Some(bytes.len());
        }
        Ok(doc)
    }

    pub fn meta(&self) -> Result<SessionMeta, StateError> {
        let meta = self.object(META)?;
        let f = Fields {
            doc: &self.doc,
            obj: &meta,
        };
        Ok(SessionMeta {
            session: f.string("session")?,
            game: f.string("game")?,
            module_hash: f.string("module_hash")?,
            rules_version: f.u32("rules_version")?,
            owner_node: f.string("owner_node")?,
            epoch: f.u64("epoch")?,
            created_at_ms: f.u64("created_at_ms")?,
            tick: f.u64("tick")?,
            tick_hz: f.u32("tick_hz")?,
            seed: f.u64("seed")?,
            next_player: f.u64("next_player")?,
            ended: f.bool("ended")?,
            generation: f.u64("generation")?,
        })
    }

    /// Writes only the fields that differ; keys this version does not know are left alone.
    pub fn set_meta(&mut self, m: &SessionMeta) {
        let meta = self.map_at_root(META);
        let fields: [(&str, Value); 13] = [
            ("session", m.session.as_str().into()),
            ("game", m.game.as_str().into()),
            ("module_hash", m.module_hash.as_str().into()),
            ("rules_version", m.rules_version.into()),
            ("owner_node", m.owner_node.as_str().into()),
            ("epoch", m.epoch.into()),
            ("created_at_ms", m.created_at_ms.into()),
            ("tick", m.tick.into()),
            ("tick_hz", m.tick_hz.into()),
            ("seed", m.seed.into()),
            ("next_player", m.next_player.into()),
            ("ended", m.ended.into()),
            ("generation", m.generation.into()),
        ];
        for (key, value) in &fields {
            reconcile::reconcile(&mut self.doc, &meta, *key, value).expect(OWN_WRITE);
        }
    }

    /// All seats, by player id.
    pub fn seats(&self) -> Result<Vec<SeatRecord>, StateError> {
        let seats = self.object(SEATS)?;
        let mut out = Vec::new();
        for key in self.doc.keys(&seats) {
            let bad = || StateError::Corrupt(format!("seat {key:?}"));
            let player = key.parse::<u64>().map_err(|_| bad())?;
            let Some((automerge::Value::Object(ObjType::Map), seat)) =
                self.doc.get(&seats, &key)?
            else {
                return Err(bad());
            };
            let f = Fields {
                doc: &self.doc,
                obj: &seat,
            };
            out.push(SeatRecord {
                player,
                name: f.string("name")?,
                token_hash: f.string("token_hash")?,
                connected: f.bool("connected")?,
            });
        }
        out.sort_by_key(|s| s.player);
        Ok(out)
    }

    /// Adds or updates a seat, writing only the fields that changed.
    pub fn put_seat(&mut self, s: &SeatRecord) {
        let seats = self.map_at_root(SEATS);
        // Keys in sorted order, so the reconcile needs no `~order`.
        let seat = Value::Map(vec![
            ("connected".into(), s.connected.into()),
            ("name".into(), s.name.as_str().into()),
            ("token_hash".into(), s.token_hash.as_str().into()),
        ]);
        reconcile::reconcile(&mut self.doc, &seats, s.player.to_string(), &seat).expect(OWN_WRITE);
    }

    pub fn remove_seat(&mut self, player: u64) {
        let seats = self.map_at_root(SEATS);
        let key = player.to_string();
        if self.doc.get(&seats, &key).expect(OWN_WRITE).is_some() {
            automerge::transaction::Transactable::delete(&mut self.doc, &seats, key)
                .expect(OWN_WRITE);
        }
    }

    /// Reconciles the guest snapshot into `state`. Bad MessagePack (or a value the mapping
    /// refuses) is an error and leaves the document unchanged.
    ///
    /// Unchanged parts cost a comparison with the previous state in plain Rust: the document
    /// is only written where the value changed, and not read at all (except for the first
    /// call after a load or a compaction).
    pub fn set_state(&mut self, msgpack: &[u8]) -> Result<ReconcileStats, StateError> {
        let value = reconcile::decode(msgpack)?;
        if let Some(heads) = self.handed_out_at.take() {
            if self.doc.get_heads() != heads {
                self.state_cache = None;
            }
        }
        reconcile::reconcile_cached(&mut self.doc, &ROOT, STATE, &mut self.state_cache, value)
    }

    /// `set_state` without the plain-Rust diff: reads the document to find what changed, as
    /// every `set_state` did before the cache. Kept for the benchmarks' same-run comparison.
    #[doc(hidden)]
    pub fn set_state_reading(&mut self, msgpack: &[u8]) -> Result<ReconcileStats, StateError> {
        let value = reconcile::decode(msgpack)?;
        self.state_cache = None;
        reconcile::reconcile(&mut self.doc, &ROOT, STATE, &value)
    }

    /// The guest snapshot as MessagePack; [`StateError::Missing`] before the first `set_state`.
    pub fn state(&self) -> Result<Vec<u8>, StateError> {
        let value = reconcile::read(&self.doc, &ROOT, STATE)?;
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &value).expect("writing to a Vec cannot fail");
        Ok(out)
    }

    /// Commits pending writes (if any) and returns the heads.
    pub fn commit(&mut self) -> Vec<ChangeHash> {
        self.doc.commit();
        self.doc.get_heads()
    }

    /// The heads; commits pending writes first.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// A full, compressed save; resets the incremental cursor.
    pub fn save(&mut self) -> Vec<u8> {
        let bytes = self.doc.save();
        self.saved_heads = self.doc.get_heads();
        self.history_bytes = bytes.len();
        self.needs_full_save = false;
        bytes
    }

    /// The changes since the last `save`/`save_incremental` (empty when there are none).
    /// Loading a full save followed by its incremental saves gives the live document.
    pub fn save_incremental(&mut self) -> Vec<u8> {
        let bytes = self.doc.save_after(&self.saved_heads);
        self.saved_heads = self.doc.get_heads();
        self.history_bytes += bytes.len();
        bytes
    }

    /// True after [`SessionDoc::compact`] until the next [`SessionDoc::save`].
    pub fn needs_full_save(&self) -> bool {
        self.needs_full_save
    }

    /// Whether the history has outgrown `policy` (changes since the last compaction, or saved
    /// bytes against the size of a fresh save measured at the last compaction).
    pub fn should_compact(&self, policy: &CompactionPolicy) -> bool {
        if self.doc.stats().num_changes > policy.max_changes {
            return true;
        }
        let ratio = usize::try_from(policy.max_history_ratio).unwrap_or(usize::MAX);
        self.history_bytes > policy.min_history_bytes
            && self
                .fresh_bytes
                .is_some_and(|fresh| self.history_bytes > fresh.saturating_mul(ratio))
    }

    /// Rebuilds the document from its current content as one change of a new actor, and bumps
    /// `meta.generation`. Persist with a full [`SessionDoc::save`] afterwards.
    pub fn compact(&mut self) -> Result<(), StateError> {
        let mut meta = self.meta()?;
        meta.generation += 1;
        let automerge::hydrate::Value::Map(root) = self.doc.hydrate(&ROOT, None)? else {
            return Err(StateError::Corrupt("root is not a map".into()));
        };
        let mut fresh = AutoCommit::new();
        automerge::transaction::Transactable::init_root_from_hydrate(&mut fresh, &root)?;
        let mut next = SessionDoc {
            doc: fresh,
            saved_heads: Vec::new(),
            history_bytes: self.history_bytes,
            fresh_bytes: None,
            needs_full_save: true,
            state_cache: None,
            handed_out_at: None,
        };
        next.set_meta(&meta);
        next.doc.commit();
        // A compressed save of a one-change document is exactly the fresh size the ratio
        // rule compares against; the bytes themselves are not kept.
        next.fresh_bytes = Some(next.doc.save().len());
        *self = next;
        Ok(())
    }

    /// The underlying document, for the sync protocol. Changes made through it to `state`
    /// are seen by the next `set_state` (it then reads the document again).
    pub fn automerge(&mut self) -> &mut AutoCommit {
        if self.state_cache.is_some() && self.handed_out_at.is_none() {
            self.handed_out_at = Some(self.doc.get_heads());
        }
        &mut self.doc
    }

    /// The map at `ROOT[key]`, created (or replacing a non-map) if needed.
    fn map_at_root(&mut self, key: &str) -> ObjId {
        match self.doc.get(&ROOT, key).expect(OWN_WRITE) {
            Some((automerge::Value::Object(ObjType::Map), id)) => id,
            _ => automerge::transaction::Transactable::put_object(
                &mut self.doc,
                &ROOT,
                key,
                ObjType::Map,
            )
            .expect(OWN_WRITE),
        }
    }

    fn object(&self, key: &str) -> Result<ObjId, StateError> {
        match self.doc.get(&ROOT, key)? {
            Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(StateError::Corrupt(format!("no `{key}` map"))),
        }
    }
}

/// Typed reads of the scalar fields of one schema map; anything off is `Corrupt`.
struct Fields<'a> {
    doc: &'a AutoCommit,
    obj: &'a ObjId,
}

impl Fields<'_> {
    fn scalar(&self, key: &str) -> Result<ScalarValue, StateError> {
        match self.doc.get(self.obj, key)? {
            Some((automerge::Value::Scalar(s), _)) => Ok(s.into_owned()),
            _ => Err(StateError::Corrupt(format!(
                "field `{key}` missing or not a scalar"
            ))),
        }
    }

    fn bad(key: &str) -> StateError {
        StateError::Corrupt(format!("field `{key}` has the wrong type"))
    }

    fn string(&self, key: &str) -> Result<String, StateError> {
        match self.scalar(key)? {
            ScalarValue::Str(s) => Ok(s.to_string()),
            _ => Err(Self::bad(key)),
        }
    }

    fn u64(&self, key: &str) -> Result<u64, StateError> {
        match self.scalar(key)? {
            ScalarValue::Uint(u) => Ok(u),
            ScalarValue::Int(i) => u64::try_from(i).map_err(|_| Self::bad(key)),
            _ => Err(Self::bad(key)),
        }
    }

    fn u32(&self, key: &str) -> Result<u32, StateError> {
        u32::try_from(self.u64(key)?).map_err(|_| Self::bad(key))
    }

    fn bool(&self, key: &str) -> Result<bool, StateError> {
        match self.scalar(key)? {
            ScalarValue::Boolean(b) => Ok(b),
            _ => Err(Self::bad(key)),
        }
    }
}
