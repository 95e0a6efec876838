//! Unit tests of the protocol crate: decoding, transcoding, error codes and the
//! regressions the fuzz targets found (`fuzz/`).

use super::*;

#[test]
fn the_seq_of_an_input_is_read_without_decoding_it() {
    let json = br#"{"type":"input","data":{"cell":[1,{"x":null}]},"seq":7}"#;
    assert_eq!(peek_input_seq(json, Encoding::Json), Some(7));
    let msg = ClientMsg::Input {
        data: GameValue::from(4),
        seq: Some(9),
        player: None,
    };
    let packed = encode_client(&msg, Encoding::MsgPack).unwrap();
    assert_eq!(peek_input_seq(&packed, Encoding::MsgPack), Some(9));
    // No seq, not an input, not a message at all.
    assert_eq!(
        peek_input_seq(br#"{"type":"input","data":1}"#, Encoding::Json),
        None
    );
    assert_eq!(
        peek_input_seq(br#"{"type":"ping","seq":3}"#, Encoding::Json),
        None
    );
    assert_eq!(peek_input_seq(b"{not json", Encoding::Json), None);
    assert_eq!(peek_input_seq(&[0xc1], Encoding::MsgPack), None);
}

#[test]
fn json_input_becomes_guest_msgpack() {
    let msg = decode_client(
        br#"{"type":"input","data":{"cell":4},"seq":7}"#,
        Encoding::Json,
    )
    .unwrap();
    let ClientMsg::Input { data, seq, player } = msg else {
        panic!("not an input: {msg:?}")
    };
    assert_eq!((seq, player), (Some(7), None));
    #[derive(Deserialize, PartialEq, Debug)]
    struct Move {
        cell: u8,
    }
    let m: Move = rmp_serde::from_slice(&value_to_msgpack(&data)).unwrap();
    assert_eq!(m, Move { cell: 4 });
}

#[test]
fn msgpack_frame_decodes_like_json() {
    let json = ClientMsg::Input {
        data: rmpv::Value::Map(vec![(
            "dir".into(),
            rmpv::Value::Array(vec![1.into(), (-1).into()]),
        )]),
        seq: Some(3),
        player: Some(2),
    };
    let bin = encode_client(&json, Encoding::MsgPack).unwrap();
    assert_eq!(decode_client(&bin, Encoding::MsgPack).unwrap(), json);
    let txt = encode_client(&json, Encoding::Json).unwrap();
    assert_eq!(decode_client(&txt, Encoding::Json).unwrap(), json);
}

#[test]
fn guest_view_becomes_json() {
    #[derive(Serialize)]
    struct View {
        board: Vec<Option<u8>>,
        turn: u64,
    }
    let bytes = rmp_serde::to_vec_named(&View {
        board: vec![None, Some(1)],
        turn: 2,
    })
    .unwrap();
    let msg = ServerMsg::View {
        data: msgpack_to_value(&bytes).unwrap(),
    };
    let json: serde_json::Value =
        serde_json::from_slice(&encode_server(&msg, Encoding::Json).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type":"view","data":{"board":[null,1],"turn":2}})
    );
}

#[test]
fn server_msgpack_is_a_named_map() {
    let msg = ServerMsg::error(ErrorCode::SessionFull, "no free seat", Some(9));
    let bytes = encode_server(&msg, Encoding::MsgPack).unwrap();
    let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    let get = |k: &str| {
        v.as_map()
            .unwrap()
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("type").unwrap().as_str(), Some("error"));
    assert_eq!(get("code").unwrap().as_str(), Some("session_full"));
    assert_eq!(get("seq").unwrap().as_u64(), Some(9));
    let back: ServerMsg = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, msg);
}

#[test]
fn bad_frames_and_unknown_types_are_told_apart() {
    let code = |f: &[u8], e| decode_client(f, e).unwrap_err().code();
    assert_eq!(code(b"{not json", Encoding::Json), ErrorCode::BadFrame);
    assert_eq!(code(b"[1,2]", Encoding::Json), ErrorCode::BadFrame);
    assert_eq!(
        code(br#"{"no":"type"}"#, Encoding::Json),
        ErrorCode::BadFrame
    );
    assert_eq!(
        code(br#"{"type":"dance"}"#, Encoding::Json),
        ErrorCode::UnknownType
    );
    // A known type with a missing field is a bad frame, not an unknown type.
    assert_eq!(
        code(br#"{"type":"resume"}"#, Encoding::Json),
        ErrorCode::BadFrame
    );
    assert_eq!(code(&[0xc1], Encoding::MsgPack), ErrorCode::BadFrame);
    assert_eq!(code(&[0x81, 0xa1], Encoding::MsgPack), ErrorCode::BadFrame);
}

/// `[[[…1]]]` as MessagePack, `depth` arrays deep.
fn nested(depth: usize) -> Vec<u8> {
    let mut v = vec![0x91; depth];
    v.push(0x01);
    v
}

/// Regression (fuzzing): a 520-byte binary frame nesting 500 arrays overflowed the
/// 2 MiB stack of a (debug) worker thread while it became a `ClientMsg`, which aborts
/// the node. Deep frames are now `bad_frame` before anything recursive runs; this
/// test runs on a 2 MiB test thread, as it did when it crashed.
#[test]
fn deeply_nested_frames_are_bad_frames_not_stack_overflows() {
    for depth in [500, 1000, 5000] {
        let mut frame = b"\x82\xa4type\xa5input\xa4data".to_vec();
        frame.extend(nested(depth));
        let err = decode_client(&frame, Encoding::MsgPack).unwrap_err();
        assert!(matches!(err, DecodeError::TooDeep), "{err:?}");
        assert_eq!(err.code(), ErrorCode::BadFrame);
        frame.extend(b"\xa3seq\x07");
        frame[0] = 0x83;
        assert_eq!(peek_input_seq(&frame, Encoding::MsgPack), None);
        let json = format!(
            r#"{{"type":"input","data":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(decode_client(json.as_bytes(), Encoding::Json).is_err());
    }
    // Guest payloads: the same bound.
    assert!(matches!(
        msgpack_to_value(&nested(1000)),
        Err(ValueError::TooDeep)
    ));
    // What a game really sends still goes through, JSON and MessagePack alike.
    let mut frame = b"\x83\xa4type\xa5input\xa3seq\x07\xa4data".to_vec();
    frame.extend(nested(100));
    assert!(decode_client(&frame, Encoding::MsgPack).is_ok());
    assert_eq!(peek_input_seq(&frame, Encoding::MsgPack), Some(7));
    assert!(msgpack_to_value(&nested(100)).is_ok());
    // The deepest message JSON takes is also taken as MessagePack (the bounds agree).
    let deepest = (1..MAX_DEPTH * 2)
        .map(|d| {
            format!(
                r#"{{"type":"input","data":{}"x"{}}}"#,
                "[".repeat(d),
                "]".repeat(d)
            )
        })
        .take_while(|json| decode_client(json.as_bytes(), Encoding::Json).is_ok())
        .last()
        .unwrap();
    let msg = decode_client(deepest.as_bytes(), Encoding::Json).unwrap();
    let packed = encode_client(&msg, Encoding::MsgPack).unwrap();
    assert_eq!(decode_client(&packed, Encoding::MsgPack).unwrap(), msg);
    let ClientMsg::Input { data, .. } = msg else {
        unreachable!()
    };
    assert!(msgpack_to_value(&value_to_msgpack(&data)).is_ok());
}

/// Regression (fuzzing, frame_decode): `{type: input, 1: 0, 0: 0}` decoded as an input
/// with `seq` 0 (serde reads an integer key as a field's position) while the rate
/// limiter's peek saw no `seq`. Keys must be field names.
#[test]
fn fields_keyed_by_position_are_bad_frames() {
    let crash = b"\x84\xa4type\xa5input\xa4d\xa5fl\x61\x01\x00\x00\x00";
    let err = decode_client(crash, Encoding::MsgPack).unwrap_err();
    assert!(matches!(err, DecodeError::UnnamedField), "{err:?}");
    assert_eq!(err.code(), ErrorCode::BadFrame);
    let positional = b"\x83\xa4type\xa5input\x00\x05\x01\x07";
    assert!(matches!(
        decode_client(positional, Encoding::MsgPack),
        Err(DecodeError::UnnamedField)
    ));
    let named = b"\x83\xa4type\xa5input\xa4data\x05\xa3seq\x07";
    assert!(decode_client(named, Encoding::MsgPack).is_ok());
    assert_eq!(peek_input_seq(named, Encoding::MsgPack), Some(7));
}

/// Regressions (fuzzing): the never-used marker `0xc1` inside a frame was read as
/// `nil` by the decoder but refused by the rate limiter's peek (frame_decode); a guest
/// view as deep as a frame may be became a JSON message one level too deep for a
/// client reading with the same bound (guest_output).
#[test]
fn reserved_markers_and_views_too_deep_for_a_client_are_refused() {
    let frame = b"\x83\xa4type\xa5input\xa4data\x92\x01\xc1\xa3seq\x07";
    assert!(matches!(
        decode_client(frame, Encoding::MsgPack),
        Err(DecodeError::BadFrame(_))
    ));
    assert_eq!(peek_input_seq(frame, Encoding::MsgPack), None);
    assert!(matches!(
        msgpack_to_value(&[0x92, 0x01, 0xc1]),
        Err(ValueError::Invalid(_))
    ));
    for depth in 1..MAX_DEPTH * 2 {
        let Ok(data) = msgpack_to_value(&nested(depth)) else {
            assert!(depth >= MAX_DEPTH - 2, "refused at {depth}");
            break;
        };
        let json = encode_server(&ServerMsg::View { data }, Encoding::Json).unwrap();
        let back: ServerMsg = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("a view {depth} deep does not read back: {e}"));
        assert!(matches!(back, ServerMsg::View { .. }));
    }
}

#[test]
fn every_error_code_serializes_as_its_code() {
    for c in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(c).unwrap(), c.code());
    }
}

/// Client authors match on codes: each one is in docs/PROTOCOL.md's table.
#[test]
fn every_error_code_is_documented() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    for c in ErrorCode::ALL {
        let row = format!("| `{}` |", c.code());
        assert!(doc.contains(&row), "docs/PROTOCOL.md has no row for `{c}`");
    }
}

#[test]
fn unit_messages_round_trip() {
    let leave = decode_client(br#"{"type":"leave"}"#, Encoding::Json).unwrap();
    assert_eq!(leave, ClientMsg::Leave);
    let left = encode_server(&ServerMsg::Left, Encoding::Json).unwrap();
    assert_eq!(left, br#"{"type":"left"}"#);
}

/// Regression (fuzzing, frame_decode): `"data":8222…24444` (45 digits) was read one ulp
/// off, so the node's own JSON of it read back as another number: a relayed value
/// changed. JSON numbers are now read exactly (serde_json `float_roundtrip`).
#[test]
fn json_floats_survive_a_round_trip() {
    let frame = format!(
        r#"{{"type":"input","data":8{}{}}}"#,
        "2".repeat(37),
        "4".repeat(7)
    );
    let msg = decode_client(frame.as_bytes(), Encoding::Json).unwrap();
    let again = encode_client(&msg, Encoding::Json).unwrap();
    assert_eq!(decode_client(&again, Encoding::Json).unwrap(), msg);
    for text in [
        "0.1",
        "1e308",
        "2.2250738585072014e-308",
        "8.222222222222222e44",
    ] {
        let frame = format!(r#"{{"type":"input","data":{text}}}"#);
        let ClientMsg::Input { data, .. } =
            decode_client(frame.as_bytes(), Encoding::Json).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(data.as_f64(), Some(text.parse::<f64>().unwrap()), "{text}");
    }
}
