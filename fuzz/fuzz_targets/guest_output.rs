//! Fuzz target `guest_output`: what a guest hands back to the host, decoded as the runtime
//! decodes it (`minotaur_abi::decode` of an `Output` after every call, of a `GameInfo`
//! once per module), then carried out as the session actor does (each effect's payload
//! through `minotaur_protocol::msgpack_to_value`, then encoded for players in both
//! encodings).
//!
//! Holds for any bytes: no panic; a decoded `Output`/`GameInfo` re-encodes and decodes
//! back to itself; a payload that decodes re-encodes to a value that decodes the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minotaur_abi::{decode, encode, Effect, GameInfo, Output};
use minotaur_protocol::{
    encode_server, msgpack_to_value, value_to_msgpack, Encoding, GameValue, ServerMsg,
};

#[path = "../common/worker_stack.rs"]
mod worker_stack;

fuzz_target!(|bytes: &[u8]| {
    let bytes = bytes.to_vec();
    worker_stack::on_worker_stack(move || check(&bytes));
});

fn check(bytes: &[u8]) {
    if let Ok(out) = decode::<Output>(bytes) {
        let again: Output =
            decode(&encode(&out).expect("an Output encodes")).expect("a re-encoded Output decodes");
        assert_eq!(again, out, "Output round trip changed it");
        for effect in &out.effects {
            carry_out(effect);
        }
    }
    if let Ok(info) = decode::<GameInfo>(bytes) {
        let again: GameInfo = decode(&encode(&info).expect("a GameInfo encodes"))
            .expect("a re-encoded GameInfo decodes");
        assert_eq!(again, info, "GameInfo round trip changed it");
    }
    // A raw payload, as an effect would carry it.
    transcode(bytes);
}

/// What `session::actor::effects` does with one effect's bytes.
fn carry_out(effect: &Effect) {
    match effect {
        Effect::Send { msg, .. } | Effect::Broadcast { msg } => {
            if let Some(data) = transcode(msg) {
                send(ServerMsg::Message { data });
            }
        }
        Effect::View { data, .. } => {
            if let Some(data) = transcode(data) {
                send(ServerMsg::View { data });
            }
        }
        Effect::End { winners, detail } => {
            let detail = transcode(detail).unwrap_or(GameValue::Nil);
            send(ServerMsg::Ended {
                winners: winners.clone(),
                detail,
            });
        }
        Effect::SetTickRate { .. } | Effect::Log { .. } => {}
    }
}

/// Guest MessagePack → game value; a value that decodes re-encodes to bytes that decode to
/// the same value (compared as bytes: NaN floats).
fn transcode(bytes: &[u8]) -> Option<GameValue> {
    let value = msgpack_to_value(bytes).ok()?;
    let packed = value_to_msgpack(&value);
    let back = msgpack_to_value(&packed).expect("a re-encoded value decodes");
    assert_eq!(
        value_to_msgpack(&back),
        packed,
        "transcoding changed a value"
    );
    Some(value)
}

/// Both encodings a player may read: MessagePack always works, JSON may refuse a value
/// with no JSON form (an `Err` the gateway answers `internal`), never panics.
fn send(msg: ServerMsg) {
    encode_server(&msg, Encoding::MsgPack).expect("a server message encodes as MessagePack");
    if let Ok(json) = encode_server(&msg, Encoding::Json) {
        serde_json::from_slice::<serde_json::Value>(&json).expect("the node writes valid JSON");
    }
}
