//! Pins the byte-level examples printed in `docs/GUEST_ABI.md`, so the document
//! cannot drift from what the SDK and the host really exchange.

use minotaur_abi::{encode, Effect, Event, GameInfo, Init, Output, Restore};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn documented_bytes_are_what_is_exchanged() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "info",
            encode(&GameInfo {
                name: "tictactoe".into(),
                rules_version: 1,
                min_players: 2,
                max_players: 2,
                tick_hz: 0,
            })
            .unwrap(),
        ),
        (
            "init",
            encode(&Init {
                session: "s1".into(),
                seed: 7,
                config: vec![],
            })
            .unwrap(),
        ),
        (
            "join",
            encode(&Event::Join {
                player: 1,
                name: "ann".into(),
            })
            .unwrap(),
        ),
        ("leave", encode(&Event::Leave { player: 1 }).unwrap()),
        (
            "input",
            encode(&Event::Input {
                player: 1,
                data: vec![0x81, 0xa4, b'c', b'e', b'l', b'l', 0x04],
            })
            .unwrap(),
        ),
        ("tick", encode(&Event::Tick { n: 3, dt_ms: 50 }).unwrap()),
        (
            "restore",
            encode(&Restore {
                state: vec![0x80],
                from_version: 1,
            })
            .unwrap(),
        ),
        ("out-empty", encode(&Output::default()).unwrap()),
        (
            "out-reject",
            encode(&Output {
                reject: Some("not your turn".into()),
                effects: vec![],
            })
            .unwrap(),
        ),
        (
            "out-view",
            encode(&Output {
                reject: None,
                effects: vec![Effect::View {
                    to: 1,
                    data: vec![0xc0],
                }],
            })
            .unwrap(),
        ),
        (
            "send",
            encode(&Effect::Send {
                to: 2,
                msg: vec![0xc3],
            })
            .unwrap(),
        ),
        (
            "bcast",
            encode(&Effect::Broadcast { msg: vec![0xc3] }).unwrap(),
        ),
        (
            "end",
            encode(&Effect::End {
                winners: vec![1],
                detail: vec![0xa4, b'D', b'r', b'a', b'w'],
            })
            .unwrap(),
        ),
        ("rate", encode(&Effect::SetTickRate { hz: 20 }).unwrap()),
        (
            "log",
            encode(&Effect::Log {
                level: 2,
                msg: "hi".into(),
            })
            .unwrap(),
        ),
    ];
    let expected: &[(&str, &str)] = &[
        ("info", "85 a4 6e 61 6d 65 a9 74 69 63 74 61 63 74 6f 65 ad 72 75 6c 65 73 5f 76 65 72 73 69 6f 6e 01 ab 6d 69 6e 5f 70 6c 61 79 65 72 73 02 ab 6d 61 78 5f 70 6c 61 79 65 72 73 02 a7 74 69 63 6b 5f 68 7a 00"),
        ("init", "83 a7 73 65 73 73 69 6f 6e a2 73 31 a4 73 65 65 64 07 a6 63 6f 6e 66 69 67 c4 00"),
        ("join", "81 a4 4a 6f 69 6e 82 a6 70 6c 61 79 65 72 01 a4 6e 61 6d 65 a3 61 6e 6e"),
        ("leave", "81 a5 4c 65 61 76 65 81 a6 70 6c 61 79 65 72 01"),
        ("input", "81 a5 49 6e 70 75 74 82 a6 70 6c 61 79 65 72 01 a4 64 61 74 61 c4 07 81 a4 63 65 6c 6c 04"),
        ("tick", "81 a4 54 69 63 6b 82 a1 6e 03 a5 64 74 5f 6d 73 32"),
        ("restore", "82 a5 73 74 61 74 65 c4 01 80 ac 66 72 6f 6d 5f 76 65 72 73 69 6f 6e 01"),
        ("out-empty", "82 a6 72 65 6a 65 63 74 c0 a7 65 66 66 65 63 74 73 90"),
        ("out-reject", "82 a6 72 65 6a 65 63 74 ad 6e 6f 74 20 79 6f 75 72 20 74 75 72 6e a7 65 66 66 65 63 74 73 90"),
        ("out-view", "82 a6 72 65 6a 65 63 74 c0 a7 65 66 66 65 63 74 73 91 81 a4 56 69 65 77 82 a2 74 6f 01 a4 64 61 74 61 c4 01 c0"),
        ("send", "81 a4 53 65 6e 64 82 a2 74 6f 02 a3 6d 73 67 c4 01 c3"),
        ("bcast", "81 a9 42 72 6f 61 64 63 61 73 74 81 a3 6d 73 67 c4 01 c3"),
        ("end", "81 a3 45 6e 64 82 a7 77 69 6e 6e 65 72 73 91 01 a6 64 65 74 61 69 6c c4 05 a4 44 72 61 77"),
        ("rate", "81 ab 53 65 74 54 69 63 6b 52 61 74 65 81 a2 68 7a 14"),
        ("log", "81 a3 4c 6f 67 82 a5 6c 65 76 65 6c 02 a3 6d 73 67 a2 68 69"),
    ];
    assert_eq!(cases.len(), expected.len());
    for ((name, bytes), (doc_name, doc_hex)) in cases.iter().zip(expected) {
        assert_eq!(name, doc_name);
        assert_eq!(&hex(bytes), doc_hex, "{name}: the encoding changed");
    }
    // Every pinned dump appears in the document (its dumps wrap at spaces).
    let doc = include_str!("../../docs/GUEST_ABI.md").replace('\n', " ");
    for (name, doc_hex) in expected {
        assert!(
            doc.contains(doc_hex),
            "{name} is not shown as `{doc_hex}` in the docs"
        );
    }
}
