//! Reconcile round trips (property-based) and change sizes, through the public API.

use automerge::{AutoCommit, ReadDoc, ROOT};
use minotaur_state::reconcile::{read, reconcile, reconcile_cached, Written, MAX_DEPTH};
use minotaur_state::StateError;
use proptest::prelude::*;
use rmpv::Value;

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

/// A MessagePack str whose bytes are not UTF-8 (rmpv only builds those by decoding).
fn raw_str(bytes: &[u8]) -> Value {
    let mut buf = vec![0xd9, u8::try_from(bytes.len()).unwrap()];
    buf.extend_from_slice(bytes);
    rmpv::decode::read_value(&mut buf.as_slice()).unwrap()
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(u64::MAX),
            Just(0),
            Just(i64::MAX as u64),
            Just(i64::MAX as u64 + 1)
        ]
        .prop_map(Value::from),
        prop_oneof![Just(i64::MIN), Just(-1), Just(i64::MIN + 1)].prop_map(Value::from),
        // From bits: every NaN payload, infinities, -0.0, subnormals.
        any::<u64>().prop_map(|b| Value::F64(f64::from_bits(b))),
        any::<u32>().prop_map(|b| Value::F32(f32::from_bits(b))),
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)].prop_map(Value::F64),
        ".{0,12}".prop_map(Value::from),
        "~[a-z0-9]{0,6}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| raw_str(&b)),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::Binary),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(t, b)| Value::Ext(t, b)),
    ]
}

fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[a-c~]{0,3}".prop_map(Value::from),
        2 => any::<u8>().prop_map(Value::from),
        1 => prop_oneof![Just("~order"), Just("~x")].prop_map(Value::from),
        1 => scalar(),
    ]
}

/// Maps keep their first entry per key: duplicate keys are refused by design.
fn dedup(entries: Vec<(Value, Value)>) -> Value {
    let mut seen = std::collections::HashSet::new();
    Value::Map(
        entries
            .into_iter()
            .filter(|(k, _)| seen.insert(enc(k)))
            .collect(),
    )
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8).prop_map(dedup),
        ]
    })
}

fn write(doc: &mut AutoCommit, v: &Value) -> usize {
    reconcile(doc, &ROOT, "v", v).unwrap().ops
}

fn read_bytes(doc: &impl ReadDoc) -> Vec<u8> {
    enc(&read(doc, &ROOT, "v").unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn write_then_read_is_exact(v in value()) {
        let mut doc = AutoCommit::new();
        write(&mut doc, &v);
        prop_assert_eq!(read_bytes(&doc), enc(&v));
        // Also through Automerge's storage format (floats, bytes, key order survive a save).
        let loaded = AutoCommit::load(&doc.save()).unwrap();
        prop_assert_eq!(read_bytes(&loaded), enc(&v));
    }

    #[test]
    fn update_reads_back_the_new_value(a in value(), b in value()) {
        let mut doc = AutoCommit::new();
        write(&mut doc, &a);
        doc.commit();
        write(&mut doc, &b);
        prop_assert_eq!(read_bytes(&doc), enc(&b));
        // A value nested inside a map and a list slot works the same way.
        let wrapped = |x: &Value| Value::Map(vec![("k".into(), Value::Array(vec![x.clone()]))]);
        write(&mut doc, &wrapped(&a));
        write(&mut doc, &wrapped(&b));
        prop_assert_eq!(read_bytes(&doc), enc(&wrapped(&b)));
    }

    #[test]
    fn cached_diffs_give_the_document_a_reading_reconcile_would(
        a in value(), b in value(), c in value()
    ) {
        let m = |entries: Vec<(&str, &Value)>| {
            Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k), v.clone())).collect())
        };
        // Whole values replaced, maps growing, reordering (`~order`), shrinking, lists
        // growing and shrinking, kinds changing, and the same value again.
        let steps = [
            a.clone(),
            m(vec![("x", &a), ("y", &b)]),
            m(vec![("y", &b), ("x", &c)]),
            m(vec![("y", &b), ("x", &c)]),
            m(vec![("x", &c)]),
            Value::Array(vec![c.clone(), a.clone(), b.clone()]),
            Value::Array(vec![c.clone(), b.clone()]),
            m(vec![("x", &Value::Array(vec![a.clone()]))]),
            m(vec![("x", &Value::Array(vec![b.clone(), c.clone()]))]),
            b.clone(),
        ];
        let mut doc = AutoCommit::new();
        let mut cache: Option<Written> = None;
        for (i, v) in steps.iter().enumerate() {
            reconcile_cached(&mut doc, &ROOT, "v", &mut cache, v.clone()).unwrap();
            prop_assert!(cache.is_some());
            prop_assert_eq!(read_bytes(&doc), enc(v), "step {}", i);
            doc.commit();
            // The reading reconcile finds nothing to change: same content, same layout.
            prop_assert_eq!(write(&mut doc, v), 0, "step {}", i);
        }
        let loaded = AutoCommit::load(&doc.save()).unwrap();
        prop_assert_eq!(read_bytes(&loaded), enc(&b));
    }

    #[test]
    fn same_value_twice_writes_nothing(v in value()) {
        let mut doc = AutoCommit::new();
        write(&mut doc, &v);
        doc.commit();
        prop_assert_eq!(write(&mut doc, &v), 0);
        prop_assert_eq!(doc.commit(), None, "no change was recorded");
    }
}

#[test]
fn struct_key_order_is_kept_and_costs_nothing_after_the_first_write() {
    let player = |score: u64| {
        Value::Map(vec![
            ("name".into(), "ann".into()),
            ("score".into(), score.into()),
            ("alive".into(), true.into()),
        ])
    };
    let mut doc = AutoCommit::new();
    write(&mut doc, &player(1));
    assert_eq!(read_bytes(&doc), enc(&player(1)));
    assert_eq!(write(&mut doc, &player(2)), 1, "only the score is written");
    assert_eq!(read_bytes(&doc), enc(&player(2)));
}

#[test]
fn integer_keys_round_trip_like_rmp_serde_writes_them() {
    let map: std::collections::BTreeMap<u64, String> = [
        (3, "c".to_string()),
        (10, "j".to_string()),
        (u64::MAX, "max".to_string()),
    ]
    .into();
    let bytes = rmp_serde::to_vec_named(&map).unwrap();
    let value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
    let mut doc = AutoCommit::new();
    write(&mut doc, &value);
    assert_eq!(
        read_bytes(&doc),
        bytes,
        "byte-identical to rmp-serde's output"
    );
}

#[test]
fn duplicate_keys_are_refused_and_nothing_is_written() {
    let mut doc = AutoCommit::new();
    write(&mut doc, &Value::from("before"));
    doc.commit();
    let dup = Value::Array(vec![Value::Map(vec![
        (1.into(), Value::Nil),
        ("x".into(), Value::Nil),
        (1.into(), Value::Nil),
    ])]);
    let err = reconcile(&mut doc, &ROOT, "v", &dup).unwrap_err();
    assert!(matches!(err, StateError::DuplicateKey { .. }), "{err}");
    assert_eq!(doc.commit(), None);
    assert_eq!(read_bytes(&doc), enc(&Value::from("before")));
}

#[test]
fn deep_nesting_round_trips_up_to_the_limit() {
    let nest = |depth: usize| {
        (0..depth).fold(Value::from(7), |v, i| {
            if i % 2 == 0 {
                Value::Array(vec![v])
            } else {
                Value::Map(vec![(Value::from(i as u64), v)])
            }
        })
    };
    let mut doc = AutoCommit::new();
    write(&mut doc, &nest(MAX_DEPTH));
    assert_eq!(read_bytes(&doc), enc(&nest(MAX_DEPTH)));
    let err = reconcile(&mut doc, &ROOT, "v", &nest(MAX_DEPTH + 2)).unwrap_err();
    assert!(matches!(err, StateError::TooDeep(_)), "{err}");
}

#[test]
fn empty_containers_and_kind_changes() {
    let mut doc = AutoCommit::new();
    for v in [
        Value::Map(vec![]),
        Value::Array(vec![]),
        Value::F32(1.5),
        Value::Map(vec![("~x".into(), Value::Nil)]),
        Value::Ext(-3, vec![]),
        Value::Array(vec![Value::Map(vec![])]),
        Value::Nil,
    ] {
        write(&mut doc, &v);
        assert_eq!(read_bytes(&doc), enc(&v), "{v}");
    }
}

#[test]
fn one_score_change_among_64_players_is_a_tiny_change() {
    let state = |bumped: Option<usize>| {
        let players = (0..64u64)
            .map(|i| {
                let score = i * 10 + u64::from(bumped == Some(i as usize));
                Value::Map(vec![
                    ("id".into(), i.into()),
                    ("name".into(), format!("player-{i}").into()),
                    ("x".into(), Value::F32(i as f32 * 1.5)),
                    ("y".into(), Value::F64(i as f64 * -2.25)),
                    ("score".into(), score.into()),
                ])
            })
            .collect();
        Value::Map(vec![
            ("tick".into(), 1.into()),
            ("players".into(), Value::Array(players)),
        ])
    };
    let mut doc = AutoCommit::new();
    write(&mut doc, &state(None));
    doc.commit();
    let ops = write(&mut doc, &state(Some(40)));
    assert_eq!(ops, 1);
    doc.commit();
    let change = doc.get_last_local_change().unwrap();
    let full = enc(&state(Some(40))).len();
    let change_bytes = change.raw_bytes().len();
    assert!(
        change_bytes * 20 < full,
        "change {change_bytes} B vs full msgpack {full} B"
    );
    assert_eq!(read_bytes(&doc), enc(&state(Some(40))));
}
