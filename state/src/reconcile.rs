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
    let (slot, existing) = match prop.into() {
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
    writer.write(parent, slot, existing, value)?;
    Ok(writer.stats)
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
    ) -> Result<(), StateError> {
        match value {
            Value::Map(entries) => {
                let (obj, fresh) = self.object_at(parent, slot, existing, ObjType::Map)?;
                self.write_map(&obj, fresh, entries)
            }
            Value::Array(items) => {
                let (obj, fresh) = self.object_at(parent, slot, existing, ObjType::List)?;
                self.write_list(&obj, fresh, items)
            }
            scalar => match plain_scalar(scalar) {
                Some(s) => self.put_scalar(parent, slot, existing, s),
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
                    self.delete_keys(&obj, current.into_iter().map(|(k, _)| k))
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
        obj: &ObjId,
        fresh: bool,
        entries: &[(Value, Value)],
    ) -> Result<(), StateError> {
        let mut current = if fresh {
            Vec::new()
        } else {
            self.map_children(obj)
        };
        let keys: Vec<Cow<'_, str>> = entries.iter().map(|(k, _)| encode_key(k)).collect();
        for ((_, v), k) in entries.iter().zip(&keys) {
            let existing = take_child(&mut current, k);
            self.write(obj, Slot::Put(Prop::Map(k.to_string())), existing, v)?;
        }
        let order = if is_strictly_sorted(&keys) {
            None
        } else {
            let list = keys.iter().map(|k| Value::from(k.as_ref())).collect();
            Some(ScalarValue::Bytes(encode(&Value::Array(list))))
        };
        let current_order = take_child(&mut current, ORDER_KEY);
        match order {
            Some(order) => {
                self.put_scalar(obj, Slot::Put(ORDER_KEY.into()), current_order, order)?
            }
            None if current_order.is_some() => self.delete_keys(obj, [ORDER_KEY.to_string()])?,
            None => {}
        }
        // Whatever was not taken above is a key the new value no longer has.
        self.delete_keys(obj, current.into_iter().map(|(k, _)| k))
    }

    fn write_list(&mut self, obj: &ObjId, fresh: bool, items: &[Value]) -> Result<(), StateError> {
        let current: Vec<Existing> = if fresh {
            Vec::new()
        } else {
            self.tx
                .list_range(obj, ..)
                .map(|item| existing_child(item.value.clone(), || item.id()))
                .collect()
        };
        let len = current.len();
        let mut current = current.into_iter();
        for (i, item) in items.iter().enumerate() {
            match current.next() {
                Some(existing) => self.write(obj, Slot::Put(Prop::Seq(i)), Some(existing), item)?,
                None => self.write(obj, Slot::Insert(i), None, item)?,
            }
        }
        // Truncate from the end so indices stay valid.
        for i in (items.len()..len).rev() {
            self.stats.ops += 1;
            self.tx.delete(obj, i)?;
        }
        Ok(())
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
