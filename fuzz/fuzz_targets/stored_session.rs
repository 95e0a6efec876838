//! Fuzz target `stored_session`: what a node reads back from its store (redb) or the
//! cluster's database when it brings a session back: the Automerge session document
//! (`SessionDoc::load`, then what recovery does with it), the journal (`JournalRecord`,
//! the legacy snapshot form) and a game record. The first byte picks which; the rest is
//! the stored bytes.
//!
//! Holds for any bytes: no panic (a bad document is `StateError`, which quarantines that
//! session only); a document that loads reads back the same meta, seats and state after
//! the actor's own writes, a save and a reload; journal and game records round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minotaur_state::{GameRecord, Journal, JournalRecord, SessionDoc};

#[path = "../common/worker_stack.rs"]
mod worker_stack;

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    worker_stack::on_worker_stack(move || check(&data));
});

fn check(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => document(bytes),
        1 => journal_record(bytes),
        2 => {
            let _ = Journal::decode_snapshot(bytes);
            let _ = Journal::from_stored(Some(bytes), [bytes]);
        }
        _ => game_record(bytes),
    }
}

fn document(bytes: &[u8]) {
    let Ok(mut doc) = SessionDoc::load(bytes) else {
        return;
    };
    // `load` checked these two.
    let meta = doc.meta().expect("a loaded document has its meta");
    let seats = doc.seats().expect("a loaded document has its seats");
    let state = doc.state().ok();

    // What the session actor does to a recovered document: rewrite its meta and seats,
    // store the guest's state, commit and save.
    doc.set_meta(&meta);
    for seat in &seats {
        doc.put_seat(seat);
    }
    if let Some(state) = &state {
        doc.set_state(state)
            .expect("a state read from a document writes back");
        assert_eq!(
            doc.state().ok().as_ref(),
            Some(state),
            "state changed on rewrite"
        );
    }
    doc.commit();
    let saved = doc.save();
    let again = SessionDoc::load(&saved).expect("a saved document loads");
    assert_eq!(again.meta().unwrap(), meta, "meta changed across a save");
    assert_eq!(again.seats().unwrap(), seats, "seats changed across a save");
    assert_eq!(again.state().ok(), state, "state changed across a save");
}

fn journal_record(bytes: &[u8]) {
    if let Ok(record) = JournalRecord::decode(bytes) {
        let again = JournalRecord::decode(&record.encode()).expect("a record re-decodes");
        assert_eq!(again, record, "journal record round trip changed it");
    }
}

fn game_record(bytes: &[u8]) {
    if let Ok(record) = GameRecord::decode(bytes) {
        let again = GameRecord::decode(&record.encode()).expect("a game record re-decodes");
        assert_eq!(again, record, "game record round trip changed it");
    }
}
