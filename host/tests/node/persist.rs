//! Sessions survive the node: `kill -9` and SIGTERM restarts on the same data
//! directory bring every session back with its seats, tokens and state; no
//! acknowledged input is ever lost; tick-only progress is persisted without
//! any input (within `--persist-interval-ms`) and SIGTERM flushes what is
//! still pending; a corrupt stored document is quarantined while the others
//! load; an oversized snapshot is a rolled-back failure.

use serde_json::{json, Value};

use crate::common::{tictactoe_pair, Client, Incoming, TestNode, DEADLINE};

/// Node flags with both write intervals far longer than any test: progress
/// reaches the store only when something forces a write.
const NEVER_DUE: &[&str] = &[
    "--persist-interval-ms",
    "600000",
    "--doc-interval-ms",
    "600000",
];

/// The `ticks` of the first view a resumed seat gets on `node`, and the view.
async fn restored_ticks(node: &TestNode, token: &str) -> (u64, Value) {
    let (mut c, _) = resume(node, token).await;
    let view = c.recv_type("view").await;
    let ticks = view["data"]["ticks"].as_u64().expect("ticks");
    (ticks, view)
}

fn token_of(c: &Client) -> String {
    c.seen
        .iter()
        .find(|m| m["type"] == "joined")
        .and_then(|m| m["token"].as_str())
        .expect("joined with a token")
        .to_owned()
}

/// Connect to `node` and resume the seat of `token`.
async fn resume(node: &TestNode, token: &str) -> (Client, Value) {
    let mut c = node.client().await;
    let joined = c.join(json!({"type": "resume", "token": token})).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["resumed"], true, "{joined}");
    (c, joined)
}

async fn chaos_session(node: &TestNode) -> (Client, String) {
    node.seated("chaos", "c").await
}

#[tokio::test]
async fn tictactoe_survives_kill_9_and_finishes() {
    let node = TestNode::start_with(&["tictactoe"], &[]);
    let (mut x, mut o, session) = tictactoe_pair(&node).await;
    x.input_ok(json!({"cell": 0}), 1).await;
    o.input_ok(json!({"cell": 3}), 2).await;
    x.input_ok(json!({"cell": 1}), 3).await;
    let (tx, to) = (token_of(&x), token_of(&o));

    let node = node.restart(); // SIGKILL, then a new process on the same data dir
    let (mut x, jx) = resume(&node, &tx).await;
    let (mut o, jo) = resume(&node, &to).await;
    assert_eq!(jx["session"], session.as_str());
    assert_eq!(jo["session"], session.as_str());
    let view = o
        .recv_until(|m| m["type"] == "view" && m["data"]["board"][1] == "X")
        .await;
    assert_eq!(view["data"]["board"][0], "X", "{view}");
    assert_eq!(view["data"]["board"][3], "O", "{view}");
    assert_eq!(view["data"]["turn"], "O", "{view}");
    o.input_ok(json!({"cell": 4}), 4).await;
    x.input_ok(json!({"cell": 2}), 5).await;
    for c in [&mut x, &mut o] {
        let ended = c.recv_type("ended").await;
        assert_eq!(ended["detail"]["Win"]["line"], json!([0, 1, 2]), "{ended}");
    }
}

/// With intervals longer than the test, the session document never catches
/// up after the joins: every acknowledged move is durable only through the
/// store's journal, and a `kill -9` must still lose none of them.
#[tokio::test]
async fn kill_9_keeps_acked_inputs_from_the_journal() {
    let node = TestNode::start_with(&["tictactoe"], NEVER_DUE);
    let (mut x, mut o, session) = tictactoe_pair(&node).await;
    x.input_ok(json!({"cell": 4}), 1).await;
    o.input_ok(json!({"cell": 0}), 2).await;
    x.input_ok(json!({"cell": 8}), 3).await;
    let (tx, to) = (token_of(&x), token_of(&o));

    let node = node.restart(); // SIGKILL, then a new process on the same data dir
    let (_x, jx) = resume(&node, &tx).await;
    let (mut o, _) = resume(&node, &to).await;
    assert_eq!(jx["session"], session.as_str());
    let view = o.recv_type("view").await;
    let board = &view["data"]["board"];
    assert_eq!(
        (&board[4], &board[0], &board[8]),
        (&json!("X"), &json!("O"), &json!("X")),
        "{view}"
    );
    assert_eq!(view["data"]["turn"], "O", "{view}");
    o.input_ok(json!({"cell": 2}), 4).await;
}

#[tokio::test]
async fn sigterm_loses_no_acknowledged_input() {
    // The client sends 150 inputs before it reads anything (each answered by a message
    // and an ack): a queue that holds them all, so that a starved connection task on a
    // loaded machine is not dropped as a slow consumer (not what this test is about).
    let node = TestNode::start_with(
        &["chaos"],
        &[
            "--rate-per-sec",
            "10000",
            "--rate-burst",
            "10000",
            "--outbound-queue",
            "4096",
        ],
    );
    let (mut c, _) = chaos_session(&node).await;
    let token = token_of(&c);
    // Pipeline inputs; stop the node while they are in flight.
    let mut acks = 0u64;
    let mut sent = 0u64;
    for seq in 1..=400u64 {
        if !c
            .send_lossy(json!({"type": "input", "data": {"do": "echo", "n": 1}, "seq": seq}))
            .await
        {
            break;
        }
        sent += 1;
        if seq == 150 {
            // Some inputs acknowledged before the stop (on a fast machine the signal could
            // otherwise beat the first frame), the rest still in flight during it.
            while acks == 0 {
                match c.next(DEADLINE).await {
                    Some(Incoming::Msg(m)) if m["type"] == "ack" => acks += 1,
                    Some(Incoming::Msg(_)) => {}
                    other => panic!("no ack before the stop: {other:?}"),
                }
            }
            node.terminate();
        }
    }
    loop {
        match c.next(DEADLINE).await {
            Some(Incoming::Msg(m)) if m["type"] == "ack" => acks += 1,
            Some(Incoming::Msg(_)) => {}
            Some(Incoming::Closed(_)) => break,
            None => panic!("the node did not close the connection within {DEADLINE:?}"),
        }
    }
    let mut node = node;
    let status = node.wait_exit(DEADLINE).expect("node exited after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(acks > 0, "no input was acknowledged before the stop");

    let node = node.restart();
    let (mut c, _) = resume(&node, &token).await;
    let view = c.recv_type("view").await;
    // The promise is "no acknowledged input lost": every ack was sent only
    // after its batch was durable, so the restored counter holds at least the
    // acked inputs. Inputs applied and stored whose ack had not reached the
    // client before the connection closed may be there too, but never more
    // than were sent.
    let count = view["data"]["count"].as_u64().expect("counter");
    assert!(
        count >= acks && count <= sent,
        "{acks} acks of {sent} inputs sent, but the restored counter is {view}"
    );
}

/// The `tick` the admin API lists for `session`: the actor publishes it after
/// each store write, so it is the latest durable tick.
async fn durable_tick(node: &TestNode, session: &str) -> u64 {
    let sessions = node.admin_sessions().await;
    sessions
        .as_array()
        .expect("session list")
        .iter()
        .find(|s| s["id"] == session)
        .and_then(|s| s["tick"].as_u64())
        .unwrap_or_else(|| panic!("{session} not listed: {sessions}"))
}

/// A chaos session ticking at 50 Hz, its one player's client, and its id.
async fn ticking_chaos(node: &TestNode) -> (Client, String) {
    let (mut c, session) = chaos_session(node).await;
    // The ack of this input comes after a store write; from here on only
    // ticks change the state.
    c.input_ok(json!({"do": "tick_rate", "n": 50}), 1).await;
    (c, session)
}

#[tokio::test]
async fn tick_only_progress_is_persisted_without_inputs() {
    let node = TestNode::start_with(
        &["chaos"],
        &[
            "--persist-interval-ms",
            "100",
            "--doc-interval-ms",
            "600000",
        ],
    );
    let (c, session) = ticking_chaos(&node).await;
    let token = token_of(&c);
    // Tick-only batches are written (to the journal) at most every 100 ms,
    // so the durable tick keeps moving although no input arrives.
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut durable = durable_tick(&node, &session).await;
    while durable < 20 {
        assert!(
            tokio::time::Instant::now() < end,
            "tick-only progress not persisted within {DEADLINE:?}: durable tick {durable}"
        );
        // Polling interval of the condition, not a synchronisation.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        durable = durable_tick(&node, &session).await;
    }
    drop(c);

    let node = node.restart(); // SIGKILL: what was written survives
    let (ticks, view) = restored_ticks(&node, &token).await;
    assert!(
        ticks >= durable,
        "durable tick {durable} before kill -9, restored state has {view}"
    );
}

#[tokio::test]
async fn sigterm_persists_pending_tick_only_progress() {
    // Intervals far longer than the test: tick-only progress is never due,
    // so only the flush at shutdown can make it durable.
    let node = TestNode::start_with(&["chaos"], NEVER_DUE);
    let (mut c, _) = ticking_chaos(&node).await;
    let token = token_of(&c);
    let view = c
        .recv_until(|m| m["type"] == "view" && m["data"]["ticks"].as_u64() >= Some(20))
        .await;
    node.terminate();
    // Every view the node sent before closing: the last one is the last tick
    // the session applied.
    let mut seen = view["data"]["ticks"].as_u64().expect("ticks");
    loop {
        match c.next(DEADLINE).await {
            Some(Incoming::Msg(m)) if m["type"] == "view" => {
                seen = seen.max(m["data"]["ticks"].as_u64().expect("ticks"))
            }
            Some(Incoming::Msg(_)) => {}
            Some(Incoming::Closed(_)) => break,
            None => panic!("the node did not close the connection within {DEADLINE:?}"),
        }
    }
    let mut node = node;
    let status = node.wait_exit(DEADLINE).expect("node exited after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(seen >= 20, "last view seen: {seen} ticks");

    let node = node.restart();
    let (ticks, view) = restored_ticks(&node, &token).await;
    assert!(
        ticks >= seen,
        "the client saw {seen} ticks before SIGTERM, the restored state has {view}"
    );
}

#[tokio::test]
async fn a_corrupt_document_is_quarantined_and_the_others_load() {
    let node = TestNode::start_with(&["chaos"], &[]);
    let (mut a, _) = chaos_session(&node).await;
    a.input_ok(json!({"do": "echo", "n": 7}), 1).await;
    let token = token_of(&a);
    let (mut b, broken) = chaos_session(&node).await;
    b.input_ok(json!({"do": "echo", "n": 1}), 1).await;
    let mut node = node;
    node.kill9();

    // While the node is down: one document truncated, one garbage.
    let store = minotaur_state::Store::open(node.data_dir.path()).expect("open store");
    let mut doc = store.load_session(&broken).unwrap().expect("stored");
    let full = doc.save();
    store
        .save_session_full(&broken, &full[..full.len() / 2])
        .unwrap();
    store
        .save_session_full("garbage", b"definitely not automerge")
        .unwrap();
    drop(store);

    let node = node.restart();
    let (mut a, _) = resume(&node, &token).await;
    let view = a.recv_type("view").await;
    assert_eq!(view["data"]["count"], 7, "{view}");
    a.input_ok(json!({"do": "echo", "n": 1}), 2).await;
    let sessions = node.admin_sessions().await;
    let ids: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&broken.as_str()), "{sessions}");
    assert!(!ids.contains(&"garbage"), "{sessions}");
    assert_eq!(ids.len(), 1, "{sessions}");
    let mut node = node;
    node.kill9();
    let store = minotaur_state::Store::open(node.data_dir.path()).expect("open store");
    assert_eq!(store.quarantined(&broken).unwrap().len(), 1);
    assert_eq!(store.quarantined("garbage").unwrap().len(), 1);
}

#[tokio::test]
async fn an_oversized_snapshot_fails_and_rolls_back() {
    let node = TestNode::start_with(&["chaos"], &["--max-snapshot-bytes", "4096"]);
    let (mut c, _) = chaos_session(&node).await;
    c.input_ok(json!({"do": "echo", "n": 3}), 1).await;
    let answer = c.input(json!({"do": "grow", "n": 8000}), 2).await;
    assert_eq!(answer["code"], "session_failed", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("snapshot_too_large"),
        "{answer}"
    );
    // The session goes on from before the oversized batch.
    c.input_ok(json!({"do": "echo", "n": 1}), 3).await;
    c.recv_until(|m| m["type"] == "message" && m["data"]["count"] == 4)
        .await;
    let token = token_of(&c);
    let node = node.restart();
    let (mut c, _) = resume(&node, &token).await;
    let view = c.recv_type("view").await;
    assert_eq!(view["data"]["count"], 4, "{view}");
}
