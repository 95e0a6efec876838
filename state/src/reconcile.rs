//! MessagePack ⇄ Automerge: [`reconcile`] writes a guest snapshot into a document field by
//! field, writing only what changed; [`read`] gives back the exact same MessagePack value.
//! Called by [`crate::SessionDoc`] for its `state` subtree; usable on any Automerge object.
//!
//! # Mapping
//!
//! | MessagePack                         | Automerge                                         |
//! |-------------------------------------|---------------------------------------------------|
//! | nil / bool                          | `Null` / `Boolean`                                |
//! | int ≥ 0 / int < 0                   | `Uint` / `Int` (so the whole u64 and i64 ranges)  |
//! | float 64                            | `F64` (bit-exact, NaN payloads included)          |
//! | str (valid UTF-8)                   | `Str` scalar                                      |
//! | bin                                 | `Bytes`                                           |
//! | array                               | list                                              |
//! | map                                 | map (keys below)                                  |
//! | float 32                            | `Timestamp` holding the f32's bits (see below)    |
//! | ext, str with bad UTF-8             | *tagged scalar*: a map `{"~x": Bytes(msgpack)}`   |
//!
//! **f32.** rmp-serde writes every `f32` field as MessagePack float 32, and games keep hot
//! fields (positions) in f32, so a tagged map (an object per field) would be costly. We never
//! store timestamps, so Automerge's `Timestamp` scalar carries the f32 bits instead: one plain
//! put per change. Other readers of the document must know this convention.
//!
//! **Map keys.** Automerge keys are strings. A string key is stored as-is unless it starts with
//! the marker `~`; any other key (integer, binary, nested value, `~…` string, bad UTF-8) is
//! stored as `~` + lowercase hex of the key's MessagePack encoding. Reserved keys (`~x`,
//! `~order`) contain a non-hex letter, so they never collide with an encoded key.
//!
//! **Key order.** MessagePack maps are ordered (the guest SDK writes structs in declaration
//! order); Automerge maps iterate sorted. When the stored keys in MessagePack order are not
//! already sorted, the order is kept in `~order` (Bytes: a MessagePack array of the stored
//! keys). For a struct that order never changes, so after the first write it costs nothing.
//!
//! **Not representable.** Maps with duplicate keys, and values nested deeper than
//! [`MAX_DEPTH`], are refused before anything is written, so a failed reconcile changes nothing.
//!
//! **Diffing in plain Rust.** [`reconcile`] reads each object's current children from the
//! document to find what changed, and Automerge reads cost about what its writes do.
//! [`reconcile_cached`] keeps what the previous call left at the same slot (a [`Written`]: the
//! value and the object ids of its maps and lists) and compares values in Rust instead: an
//! unchanged subtree costs a comparison, a changed leaf one Automerge write, and the document is
//! not read at all. The caller must guarantee nothing else wrote under that slot since.
//!
//! **Exactness** is of the MessagePack *value*: `read` re-encodes with the shortest encoding
//! (as `rmpv::encode::write_value` and rmp-serde do), so canonical input comes back byte-exact.
//! rmpv reads the never-used marker `0xc1` as nil instead of failing; we inherit that leniency.

use std::borrow::Cow;

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, Prop, ReadDoc, ScalarValue, ValueRef};
use rmpv::{Integer, Utf8String, Value};

use crate::StateError;

/// Deepest nesting accepted (maps and arrays). Reconcile and read recurse; at this depth a
/// debug build still fits in a 2 MiB thread stack (tokio's default).
pub const MAX_DEPTH: usize = 128;

const MARKER: char = '~';
/// Holds the MessagePack encoding of a scalar Automerge has no exact type for.
const TAG_KEY: &str = "~x";
/// Holds the MessagePack key order of a map when it is not the sorted order.
const ORDER_KEY: &str = "~order";

/// What one [`reconcile`] call wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileStats {
    /// Automerge operations written (puts, inserts, deletes, object creations).
    pub ops: usize,
}

/// Writes `value` at `parent[prop]`, changing only what differs from what is already there.
///
/// `prop` may be a map key or a list index; an index equal to the list length appends.
pub fn reconcile(
    tx: &mut impl Transactable,
    parent: &ObjId,
    prop: impl Into<Prop>,
    value: &Value,
) -> Result<ReconcileStats, StateError> {
    validate(value, 0)?;
    reconcile_unchecked(tx, parent, prop.into(), value).map(|(stats, _)| stats)
}

/// A value as [`reconcile_cached`] left it in a document: the value and the object id of each
/// of its maps and lists, for diffing the next value of the same slot against it.
#[derive(Debug, Clone)]
pub struct Written {
    value: Value,
    shape: Shape,
}

impl Written {
    /// The value written.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// Where a reconcile put the parts of a value: a tree parallel to the value.
#[derive(Debug, Clone)]
enum Shape {
    /// A plain scalar, stored in its parent.
    Scalar,
    /// A tagged scalar: the map holding `~x`.
    Tagged(ObjId),
    /// A map: the stored keys and their shapes, in MessagePack order; `ordered` when the
    /// map holds `~order`.
    Map {
        id: ObjId,
        keys: Vec<String>,
        children: Vec<Shape>,
        ordered: bool,
    },
    List {
        id: ObjId,
        children: Vec<Shape>,
    },
}

/// [`reconcile`] with a cache: `cache` is what the previous call left at this same slot, and
/// then the new value is diffed against it in plain Rust without reading the document; `None`
/// reads the document as [`reconcile`] does. Afterwards `cache` describes `value` (a refused
/// value leaves it as it was; an Automerge error leaves `None`).
///
/// The caller must guarantee that nothing else wrote under `parent[prop]` since the cache was
/// filled, or the document ends up wrong.
pub fn reconcile_cached(
    tx: &mut impl Transactable,
    parent: &ObjId,
    prop: impl Into<Prop>,
    cache: &mut Option<Written>,
    value: Value,
) -> Result<ReconcileStats, StateError> {
    validate(&value, 0)?;
    let prop = prop.into();
    let (stats, shape) = match cache.take() {
        None => reconcile_unchecked(tx, parent, prop, &value)?,
        Some(Written {
            value: old,
            shape: old_shape,
        }) => {
            let mut differ = Differ {
                writer: Writer {
                    tx,
                    stats: ReconcileStats::default(),
                },
            };
            let shape = differ.write(parent, Slot::Put(prop), Some((&old, old_shape)), &value)?;
            (differ.writer.stats, shape)
        }
    };
    *cache = Some(Written { value, shape });
    Ok(stats)
}

fn reconcile_unchecked(
    tx: &mut impl Transactable,
    parent: &ObjId,
    prop: Prop,
    value: &Value,
) -> Result<(ReconcileStats, Shape), StateError> {
    let (slot, existing) = match prop {
        Prop::Seq(i) if i >= tx.length(parent) => (Slot::Insert(i), None),
        prop => {
            let existing = tx.get(parent, prop.clone())?.map(|(v, id)| match v {
                automerge::Value::Object(ty) => Existing::Object(ty, id),
                automerge::Value::Scalar(s) => Existing::Scalar(s.into_owned()),
            });
            (Slot::Put(prop), existing)
        }
    };
    let mut writer = Writer {
        tx,
        stats: ReconcileStats::default(),
    };
    let shape = writer.write(parent, slot, existing, value)?;
    Ok((writer.stats, shape))
}

/// Reads the MessagePack value stored at `parent[prop]` by [`reconcile`].
pub fn read(
    doc: &impl ReadDoc,
    parent: &ObjId,
    prop: impl Into<Prop>,
) -> Result<Value, StateError> {
    let prop = prop.into();
    match doc.get(parent, prop.clone())? {
        None => Err(StateError::Missing(prop.to_string())),
        Some((automerge::Value::Scalar(s), _)) => from_scalar(&s),
        Some((automerge::Value::Object(ty), id)) => read_object(doc, &id, ty, 0),
    }
}

/// Where a value goes: over an existing property, or inserted into a list.
enum Slot {
    Put(Prop),
    Insert(usize),
}

/// What a slot holds before the write.
enum Existing {
    Scalar(ScalarValue),
    Object(ObjType, ObjId),
}

/// Refuses what cannot be stored, before the first write.
fn validate(value: &Value, depth: usize) -> Result<(), StateError> {
    if depth > MAX_DEPTH {
        return Err(StateError::TooDeep(MAX_DEPTH));
    }
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| validate(v, depth + 1)),
        Value::Map(entries) => {
            let keys: Vec<Cow<'_, str>> = entries.iter().map(|(k, _)| encode_key(k)).collect();
            if !is_strictly_sorted(&keys) {
                let mut sorted: Vec<&str> = keys.iter().map(|k| k.as_ref()).collect();
                sorted.sort_unstable();
                if let Some(dup) = sorted.windows(2).find(|w| w[0] == w[1]) {
                    return Err(StateError::DuplicateKey {
                        path: dup[0].to_string(),
                    });
                }
            }
            for ((_, v), k) in entries.iter().zip(&keys) {
                validate(v, depth + 1).map_err(|e| match e {
                    StateError::DuplicateKey { path } => StateError::DuplicateKey {
                        path: format!("{k}/{path}"),
                    },
                    e => e,
                })?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn is_strictly_sorted(keys: &[Cow<'_, str>]) -> bool {
    keys.windows(2).all(|w| w[0] < w[1])
}

struct Writer<'a, T: Transactable> {
    tx: &'a mut T,
    stats: ReconcileStats,
}

// Each object's current children are read in one `map_range`/`list_range` pass and handed down
// as `Existing`: with Automerge's columnar op set a scan costs about what a single `get` does.
impl<T: Transactable> Writer<'_, T> {
    fn write(
        &mut self,
        parent: &ObjId,
        slot: Slot,
        existing: Option<Existing>,
        value: &Value,
    ) -> Result<Shape, StateError> {
        match value {
            Value::Map(entries) => {
                let (obj, fresh) = self.object_at(parent, slot, existing, ObjType::Map)?;
                self.write_map(obj, fresh, entries)
            }
            Value::Array(items) => {
                let (obj, fresh) = self.object_at(parent, slot, existing, ObjType::List)?;
                self.write_list(obj, fresh, items)
            }
            scalar => match plain_scalar(scalar) {
                Some(s) => self
                    .put_scalar(parent, slot, existing, s)
                    .map(|()| Shape::Scalar),
                None => {
                    // Reuse the map only if it already is a tagged scalar, not a guest map.
                    let mut current = match &existing {
                        Some(Existing::Object(ObjType::Map, id)) => self.map_children(id),
                        _ => Vec::new(),
                    };
                    let tag = take_child(&mut current, TAG_KEY);
                    let existing = if tag.is_some() { existing } else { None };
                    let (obj, fresh) = self.object_at(parent, slot, existing, ObjType::Map)?;
                    if fresh {
                        current.clear();
                    }
                    let bytes = ScalarValue::Bytes(encode(scalar));
                    self.put_scalar(&obj, Slot::Put(TAG_KEY.into()), tag, bytes)?;
                    self.delete_keys(&obj, current.into_iter().map(|(k, _)| k))?;
                    Ok(Shape::Tagged(obj))
                }
            },
        }
    }

    /// The object of type `ty` at `slot` and whether it is new: the existing one when it has
    /// that type, else a new one.
    fn object_at(
        &mut self,
        parent: &ObjId,
        slot: Slot,
        existing: Option<Existing>,
        ty: ObjType,
    ) -> Result<(ObjId, bool), StateError> {
        if let Some(Existing::Object(kind, id)) = existing {
            let same_kind = kind == ty || (ty == ObjType::Map && kind == ObjType::Table);
            if same_kind {
                return Ok((id, false));
            }
        }
        self.stats.ops += 1;
        let id = match slot {
            Slot::Insert(i) => self.tx.insert_object(parent, i, ty)?,
            Slot::Put(prop) => self.tx.put_object(parent, prop, ty)?,
        };
        Ok((id, true))
    }

    fn write_map(
        &mut self,
        obj: ObjId,
        fresh: bool,
        entries: &[(Value, Value)],
    ) -> Result<Shape, StateError> {
        let mut current = if fresh {
            Vec::new()
        } else {
            self.map_children(&obj)
        };
        let keys: Vec<Cow<'_, str>> = entries.iter().map(|(k, _)| encode_key(k)).collect();
        let mut children = Vec::with_capacity(entries.len());
        for ((_, v), k) in entries.iter().zip(&keys) {
            let existing = take_child(&mut current, k);
            children.push(self.write(&obj, Slot::Put(Prop::Map(k.to_string())), existing, v)?);
        }
        let ordered = !is_strictly_sorted(&keys);
        let order = if !ordered {
            None
        } else {
            let list = keys.iter().map(|k| Value::from(k.as_ref())).collect();
            Some(ScalarValue::Bytes(encode(&Value::Array(list))))
        };
        let current_order = take_child(&mut current, ORDER_KEY);
        match order {
            Some(order) => {
                self.put_scalar(&obj, Slot::Put(ORDER_KEY.into()), current_order, order)?
            }
            None if current_order.is_some() => self.delete_keys(&obj, [ORDER_KEY.to_string()])?,
            None => {}
        }
        // Whatever was not taken above is a key the new value no longer has.
        self.delete_keys(&obj, current.into_iter().map(|(k, _)| k))?;
        Ok(Shape::Map {
            id: obj,
            keys: keys.into_iter().map(Cow::into_owned).collect(),
            children,
            ordered,
        })
    }

    fn write_list(
        &mut self,
        obj: ObjId,
        fresh: bool,
        items: &[Value],
    ) -> Result<Shape, StateError> {
        let current: Vec<Existing> = if fresh {
            Vec::new()
        } else {
            self.tx
                .list_range(&obj, ..)
                .map(|item| existing_child(item.value.clone(), || item.id()))
                .collect()
        };
        let len = current.len();
        let mut current = current.into_iter();
        let mut children = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            children.push(match current.next() {
                Some(existing) => {
                    self.write(&obj, Slot::Put(Prop::Seq(i)), Some(existing), item)?
                }
                None => self.write(&obj, Slot::Insert(i), None, item)?,
            });
        }
        self.truncate(&obj, items.len(), len)?;
        Ok(Shape::List { id: obj, children })
    }

    /// Deletes the items `new_len..len` of a list, from the end so indices stay valid.
    fn truncate(&mut self, obj: &ObjId, new_len: usize, len: usize) -> Result<(), StateError> {
        for i in (new_len..len).rev() {
            self.stats.ops += 1;
            self.tx.delete(obj, i)?;
        }
        Ok(())
    }

    /// A new object of type `ty` at `slot`.
    fn new_object(&mut self, parent: &ObjId, slot: Slot, ty: ObjType) -> Result<ObjId, StateError> {
        self.object_at(parent, slot, None, ty).map(|(id, _)| id)
    }

    fn put_scalar(
        &mut self,
        parent: &ObjId,
        slot: Slot,
        existing: Option<Existing>,
        value: ScalarValue,
    ) -> Result<(), StateError> {
        match slot {
            Slot::Insert(i) => self.tx.insert(parent, i, value)?,
            Slot::Put(prop) => {
                if let Some(Existing::Scalar(cur)) = &existing {
                    if same_scalar(cur, &value) {
                        return Ok(());
                    }
                }
                self.tx.put(parent, prop, value)?;
            }
        }
        self.stats.ops += 1;
        Ok(())
    }

    /// The children of a map, sorted by key (we sort rather than rely on Automerge's order).
    fn map_children(&self, obj: &ObjId) -> Vec<(String, Option<Existing>)> {
        let mut out: Vec<(String, Option<Existing>)> = self
            .tx
            .map_range(obj, ..)
            .map(|item| {
                (
                    item.key.to_string(),
                    Some(existing_child(item.value.clone(), || item.id())),
                )
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn delete_keys(
        &mut self,
        obj: &ObjId,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<(), StateError> {
        for key in keys {
            self.stats.ops += 1;
            self.tx.delete(obj, key)?;
        }
        Ok(())
    }
}

/// The plain-Rust diff of [`reconcile_cached`]: writes through a [`Writer`] but learns what the
/// document holds from the previous value and its [`Shape`] instead of reading it.
struct Differ<'a, T: Transactable> {
    writer: Writer<'a, T>,
}

impl<T: Transactable> Differ<'_, T> {
    /// Writes `value` at `slot`, where the document holds `old` (value and shape) or nothing.
    fn write(
        &mut self,
        parent: &ObjId,
        slot: Slot,
        old: Option<(&Value, Shape)>,
        value: &Value,
    ) -> Result<Shape, StateError> {
        if let Some((old_value, shape)) = old {
            if same_value(old_value, value) {
                return Ok(shape);
            }
            return match (old_value, shape, value) {
                (
                    Value::Map(old_entries),
                    Shape::Map {
                        id,
                        keys,
                        children,
                        ordered,
                    },
                    Value::Map(entries),
                ) => {
                    let old = OldMap {
                        entries: old_entries,
                        keys,
                        children,
                        ordered,
                    };
                    self.write_map(id, Some(old), entries)
                }
                (Value::Array(old_items), Shape::List { id, children }, Value::Array(items)) => {
                    self.write_list(id, old_items, children, items)
                }
                (_, Shape::Tagged(id), v) if plain_scalar(v).is_none() && !is_object(v) => {
                    let bytes = ScalarValue::Bytes(encode(v));
                    self.writer.stats.ops += 1;
                    self.writer.tx.put(&id, TAG_KEY, bytes)?;
                    Ok(Shape::Tagged(id))
                }
                // A different kind of value: write it over whatever was there.
                _ => self.write_new(parent, slot, value),
            };
        }
        self.write_new(parent, slot, value)
    }

    /// Writes `value` at `slot` without reusing anything there.
    fn write_new(
        &mut self,
        parent: &ObjId,
        slot: Slot,
        value: &Value,
    ) -> Result<Shape, StateError> {
        match value {
            Value::Map(entries) => {
                let id = self.writer.new_object(parent, slot, ObjType::Map)?;
                self.write_map(id, None, entries)
            }
            Value::Array(items) => {
                let id = self.writer.new_object(parent, slot, ObjType::List)?;
                self.write_list(id, &[], Vec::new(), items)
            }
            // A fresh write of a scalar has nothing to reuse: the reading writer reads nothing.
            scalar => self.writer.write(parent, slot, None, scalar),
        }
    }

    fn write_map(
        &mut self,
        id: ObjId,
        old: Option<OldMap<'_>>,
        entries: &[(Value, Value)],
    ) -> Result<Shape, StateError> {
        let keys: Vec<Cow<'_, str>> = entries.iter().map(|(k, _)| encode_key(k)).collect();
        let (old_entries, old_keys, mut old_children, old_ordered) = match old {
            Some(o) => {
                let children: Vec<Option<Shape>> = o.children.into_iter().map(Some).collect();
                (o.entries, o.keys, children, o.ordered)
            }
            None => (&[][..], Vec::new(), Vec::new(), false),
        };
        // Guest maps mostly keep their keys in place (structs, maps of players): look at the
        // same position first, and build an index only when that misses.
        let mut index: Option<std::collections::HashMap<&str, usize>> = None;
        let mut children = Vec::with_capacity(entries.len());
        for (i, ((_, v), k)) in entries.iter().zip(&keys).enumerate() {
            let at = if old_keys.get(i).is_some_and(|o| o == k) {
                Some(i)
            } else {
                let index = index.get_or_insert_with(|| {
                    old_keys
                        .iter()
                        .enumerate()
                        .map(|(j, k)| (k.as_str(), j))
                        .collect()
                });
                index.get(k.as_ref()).copied()
            };
            let old = at.and_then(|j| Some((&old_entries[j].1, old_children[j].take()?)));
            let slot = Slot::Put(Prop::Map(k.to_string()));
            children.push(self.write(&id, slot, old, v)?);
        }
        // Old keys whose child was not taken are keys the new value no longer has.
        let gone: Vec<String> = old_keys
            .iter()
            .zip(&old_children)
            .filter(|(_, c)| c.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        self.writer.delete_keys(&id, gone)?;
        let ordered = !is_strictly_sorted(&keys);
        let same_keys =
            old_keys.len() == keys.len() && old_keys.iter().zip(&keys).all(|(a, b)| a == b);
        if ordered && !(old_ordered && same_keys) {
            let list = keys.iter().map(|k| Value::from(k.as_ref())).collect();
            let order = ScalarValue::Bytes(encode(&Value::Array(list)));
            self.writer.stats.ops += 1;
            self.writer.tx.put(&id, ORDER_KEY, order)?;
        } else if !ordered && old_ordered {
            self.writer.delete_keys(&id, [ORDER_KEY.to_string()])?;
        }
        Ok(Shape::Map {
            id,
            keys: keys.into_iter().map(Cow::into_owned).collect(),
            children,
            ordered,
        })
    }

    fn write_list(
        &mut self,
        id: ObjId,
        old_items: &[Value],
        old_children: Vec<Shape>,
        items: &[Value],
    ) -> Result<Shape, StateError> {
        let len = old_children.len();
        let mut old = old_items.iter().zip(old_children);
        let mut children = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            children.push(match old.next() {
                Some(o) => self.write(&id, Slot::Put(Prop::Seq(i)), Some(o), item)?,
                None => self.write_new(&id, Slot::Insert(i), item)?,
            });
        }
        self.writer.truncate(&id, items.len(), len)?;
        Ok(Shape::List { id, children })
    }
}

/// The previous content of a map, for [`Differ::write_map`].
struct OldMap<'a> {
    entries: &'a [(Value, Value)],
    keys: Vec<String>,
    children: Vec<Shape>,
    ordered: bool,
}

fn is_object(v: &Value) -> bool {
    matches!(v, Value::Map(_) | Value::Array(_))
}

/// Equality of MessagePack values as the document stores them: floats by their bits (NaN,
/// -0.0), integers by value whatever their encoding, strings by their bytes.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Boolean(x), Value::Boolean(y)) => x == y,
        (Value::Integer(x), Value::Integer(y)) => {
            x.as_u64() == y.as_u64() && x.as_i64() == y.as_i64()
        }
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::String(x), Value::String(y)) => x.as_bytes() == y.as_bytes(),
        (Value::Binary(x), Value::Binary(y)) => x == y,
        (Value::Ext(t, x), Value::Ext(u, y)) => t == u && x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same_value(ka, kb) && same_value(va, vb))
        }
        _ => false,
    }
}

/// Removes `key` from the sorted child list, returning what it held.
fn take_child(children: &mut Vec<(String, Option<Existing>)>, key: &str) -> Option<Existing> {
    let at = children
        .binary_search_by(|(k, _)| k.as_str().cmp(key))
        .ok()?;
    children.remove(at).1
}

fn existing_child(value: ValueRef<'_>, id: impl FnOnce() -> ObjId) -> Existing {
    match value {
        ValueRef::Object(ty) => Existing::Object(ty, id()),
        ValueRef::Scalar(s) => Existing::Scalar(ScalarValue::from(&s)),
    }
}

/// Exact equality: same Automerge type and, for floats, the same bits (NaN, -0.0).
fn same_scalar(a: &ScalarValue, b: &ScalarValue) -> bool {
    match (a, b) {
        (ScalarValue::F64(x), ScalarValue::F64(y)) => x.to_bits() == y.to_bits(),
        (ScalarValue::Uint(x), ScalarValue::Uint(y)) => x == y,
        (ScalarValue::Int(x), ScalarValue::Int(y)) => x == y,
        (ScalarValue::Timestamp(x), ScalarValue::Timestamp(y)) => x == y,
        (ScalarValue::Str(x), ScalarValue::Str(y)) => x == y,
        (ScalarValue::Bytes(x), ScalarValue::Bytes(y)) => x == y,
        (ScalarValue::Boolean(x), ScalarValue::Boolean(y)) => x == y,
        (ScalarValue::Null, ScalarValue::Null) => true,
        _ => false,
    }
}

/// The Automerge scalar for a MessagePack scalar, or `None` when it needs a tagged scalar.
fn plain_scalar(value: &Value) -> Option<ScalarValue> {
    Some(match value {
        Value::Nil => ScalarValue::Null,
        Value::Boolean(b) => ScalarValue::Boolean(*b),
        Value::Integer(i) => match i.as_u64() {
            Some(u) => ScalarValue::Uint(u),
            None => ScalarValue::Int(i.as_i64()?),
        },
        Value::F64(f) => ScalarValue::F64(*f),
        Value::F32(f) => ScalarValue::Timestamp(i64::from(f.to_bits())),
        Value::String(s) => ScalarValue::Str(s.as_str()?.into()),
        Value::Binary(b) => ScalarValue::Bytes(b.clone()),
        Value::Ext(..) | Value::Array(_) | Value::Map(_) => return None,
    })
}

fn from_scalar(s: &ScalarValue) -> Result<Value, StateError> {
    Ok(match s {
        ScalarValue::Null => Value::Nil,
        ScalarValue::Boolean(b) => Value::Boolean(*b),
        ScalarValue::Uint(u) => Value::Integer(Integer::from(*u)),
        ScalarValue::Int(i) => Value::Integer(Integer::from(*i)),
        ScalarValue::Timestamp(bits) => match u32::try_from(*bits) {
            Ok(bits) => Value::F32(f32::from_bits(bits)),
            Err(_) => {
                return Err(StateError::Corrupt(format!(
                    "timestamp {bits} is not f32 bits"
                )))
            }
        },
        ScalarValue::Counter(c) => Value::Integer(Integer::from(i64::from(c))),
        ScalarValue::F64(f) => Value::F64(*f),
        ScalarValue::Str(s) => Value::String(Utf8String::from(s.as_str())),
        ScalarValue::Bytes(b) => Value::Binary(b.clone()),
        ScalarValue::Unknown { type_code, .. } => {
            return Err(StateError::Corrupt(format!(
                "unknown scalar type {type_code}"
            )))
        }
    })
}

fn read_object(
    doc: &impl ReadDoc,
    id: &ObjId,
    ty: ObjType,
    depth: usize,
) -> Result<Value, StateError> {
    if depth > MAX_DEPTH {
        return Err(StateError::TooDeep(MAX_DEPTH));
    }
    match ty {
        ObjType::Text => Ok(Value::from(doc.text(id)?)),
        ObjType::List => doc
            .list_range(id, ..)
            .map(|item| read_child(doc, item.value.clone(), || item.id(), depth))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        ObjType::Map | ObjType::Table => read_map(doc, id, depth),
    }
}

fn read_child(
    doc: &impl ReadDoc,
    value: ValueRef<'_>,
    id: impl FnOnce() -> ObjId,
    depth: usize,
) -> Result<Value, StateError> {
    match value {
        ValueRef::Scalar(s) => from_scalar(&ScalarValue::from(&s)),
        ValueRef::Object(ty) => read_object(doc, &id(), ty, depth + 1),
    }
}

fn read_map(doc: &impl ReadDoc, id: &ObjId, depth: usize) -> Result<Value, StateError> {
    let mut entries: Vec<(String, Value)> = Vec::with_capacity(doc.length(id));
    let mut order = None;
    for item in doc.map_range(id, ..) {
        match item.key.as_ref() {
            TAG_KEY => {
                let ValueRef::Scalar(automerge::ScalarValueRef::Bytes(bytes)) = &item.value else {
                    return Err(StateError::Corrupt("tagged scalar is not bytes".into()));
                };
                return decode(bytes);
            }
            ORDER_KEY => order = Some(item.value.clone()),
            key => {
                let value = read_child(doc, item.value.clone(), || item.id(), depth)?;
                entries.push((key.to_string(), value));
            }
        }
    }
    // Sort ourselves rather than trust Automerge's iteration order to match `str` order.
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(order) = order {
        let ValueRef::Scalar(automerge::ScalarValueRef::Bytes(bytes)) = &order else {
            return Err(StateError::Corrupt("map order is not bytes".into()));
        };
        let Value::Array(keys) = decode(bytes)? else {
            return Err(StateError::Corrupt("map order is not an array".into()));
        };
        if keys.len() != entries.len() {
            return Err(StateError::Corrupt(
                "map order does not match its keys".into(),
            ));
        }
        let (names, values): (Vec<String>, Vec<Value>) = entries.into_iter().unzip();
        let mut values: Vec<Option<Value>> = values.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in &keys {
            let missing = || StateError::Corrupt(format!("map order names a missing key {key}"));
            let key = key.as_str().ok_or_else(missing)?;
            let at = names
                .binary_search_by(|n| n.as_str().cmp(key))
                .map_err(|_| missing())?;
            let value = values[at].take().ok_or_else(missing)?;
            out.push((decode_key(key)?, value));
        }
        return Ok(Value::Map(out));
    }
    entries
        .into_iter()
        .map(|(k, v)| Ok((decode_key(&k)?, v)))
        .collect::<Result<Vec<_>, StateError>>()
        .map(Value::Map)
}

/// The Automerge key for a MessagePack map key (see the module doc).
fn encode_key(key: &Value) -> Cow<'_, str> {
    match key {
        Value::String(s) => match s.as_str() {
            Some(s) if !s.starts_with(MARKER) => Cow::Borrowed(s),
            _ => Cow::Owned(encoded_key(key)),
        },
        _ => Cow::Owned(encoded_key(key)),
    }
}

fn encoded_key(key: &Value) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = encode(key);
    let mut out = String::with_capacity(1 + 2 * bytes.len());
    out.push(MARKER);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

fn decode_key(key: &str) -> Result<Value, StateError> {
    let Some(hex) = key.strip_prefix(MARKER) else {
        return Ok(Value::from(key));
    };
    let bad = || StateError::Corrupt(format!("bad encoded map key {key:?}"));
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    decode(&bytes)
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

/// Decodes exactly one MessagePack value filling `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, StateError> {
    let mut rest = bytes;
    // Bound the decoder's own recursion too; deeper values are refused by `reconcile` anyway.
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH + 2)
        .map_err(|e| StateError::InvalidMsgpack(e.to_string()))?;
    if !rest.is_empty() {
        return Err(StateError::InvalidMsgpack(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}
