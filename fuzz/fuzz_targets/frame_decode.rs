//! Fuzz target `frame_decode`: a player's websocket frame, as the gateway reads it
//! (`minotaur_protocol::decode_client` and `peek_input_seq`), as text (JSON) and as binary
//! (MessagePack), and the JSON ⇄ MessagePack transcoding of the game values it carries.
//!
//! Holds for any bytes: no panic; a decoded message re-encodes in the same encoding and
//! decodes back to itself; a game value survives JSON → guest MessagePack → value; the
//! `seq` read undecoded by the rate limiter is the decoded one's; a message re-encodes to
//! the other encoding when its values allow it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minotaur_protocol::{
    decode_client, encode_client, encode_server, msgpack_to_value, peek_input_seq,
    value_to_msgpack, ClientMsg, Encoding, GameValue, ServerMsg,
};

#[path = "../common/worker_stack.rs"]
mod worker_stack;

fuzz_target!(|frame: &[u8]| {
    let frame = frame.to_vec();
    worker_stack::on_worker_stack(move || {
        for enc in [Encoding::Json, Encoding::MsgPack] {
            check_frame(&frame, enc);
        }
    });
});

fn check_frame(frame: &[u8], enc: Encoding) {
    let peeked = peek_input_seq(frame, enc);
    let Ok(msg) = decode_client(frame, enc) else {
        return;
    };
    if let ClientMsg::Input { seq: Some(seq), .. } = &msg {
        assert_eq!(
            peeked,
            Some(*seq),
            "rate limiter's seq differs from the frame's"
        );
    }

    // Same encoding: decode → encode → decode is the identity (compared as bytes, so
    // that a NaN in a MessagePack float still compares equal to itself).
    let bytes = encode_client(&msg, enc).expect("a decoded message re-encodes");
    let again = decode_client(&bytes, enc).expect("a re-encoded message decodes");
    assert_eq!(
        encode_client(&again, enc).unwrap(),
        bytes,
        "round trip changed the message"
    );

    // The other encoding: JSON always becomes MessagePack; MessagePack becomes JSON unless
    // a value has no JSON form (a map keyed by a non-string): an `Err`, never a panic.
    let other = match enc {
        Encoding::Json => Encoding::MsgPack,
        Encoding::MsgPack => Encoding::Json,
    };
    match encode_client(&msg, other) {
        Ok(bytes) => {
            let decoded = decode_client(&bytes, other);
            if enc == Encoding::Json {
                // Every JSON value has a MessagePack form that decodes to the same value.
                assert_eq!(
                    decoded.ok().as_ref(),
                    Some(&msg),
                    "JSON → MessagePack changed it"
                );
            }
        }
        Err(e) => assert_eq!(enc, Encoding::MsgPack, "JSON message not MessagePack: {e}"),
    }

    // The game value as the guest reads it, and back as the node sends it to players.
    let data = match &msg {
        ClientMsg::Input { data, .. } => Some(data),
        ClientMsg::Create { config, .. } => config.as_ref(),
        ClientMsg::Ping { nonce } => nonce.as_ref(),
        _ => None,
    };
    if let Some(data) = data {
        check_value(data);
    }
}

/// A game value → guest MessagePack → value is the identity; as a server message it
/// encodes in MessagePack always, and in JSON or with an error.
fn check_value(value: &GameValue) {
    let packed = value_to_msgpack(value);
    let back = msgpack_to_value(&packed).expect("a game value's MessagePack decodes");
    assert_eq!(
        value_to_msgpack(&back),
        packed,
        "transcoding changed a game value"
    );
    let view = ServerMsg::View { data: back };
    encode_server(&view, Encoding::MsgPack).expect("a view encodes as MessagePack");
    if let Ok(json) = encode_server(&view, Encoding::Json) {
        serde_json::from_slice::<serde_json::Value>(&json).expect("the node writes valid JSON");
    }
}
