//! Turn-based play through the whole stack: wins, draws, quick-match,
//! resuming a seat, and a MessagePack client.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::common::{tictactoe_pair, Client, Enc, TestNode};

/// Play `cells` alternately, X first, each acknowledged.
async fn play(x: &mut Client, o: &mut Client, cells: &[u64]) {
    for (i, cell) in cells.iter().enumerate() {
        let who = if i % 2 == 0 { &mut *x } else { &mut *o };
        who.input_ok(json!({"cell": cell}), i as u64 + 1).await;
    }
}

fn player(joined: &Value) -> u64 {
    joined["player"].as_u64().expect("player id")
}

#[tokio::test]
async fn a_full_game_to_a_win() {
    let node = TestNode::start(&[]);
    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    let px = x
        .seen
        .iter()
        .find(|m| m["type"] == "joined")
        .map(player)
        .unwrap();
    play(&mut x, &mut o, &[0, 3, 1, 4, 2]).await;
    for c in [&mut x, &mut o] {
        let ended = c.recv_type("ended").await;
        assert_eq!(ended["winners"], json!([px]), "{ended}");
        assert_eq!(ended["detail"]["Win"]["line"], json!([0, 1, 2]), "{ended}");
    }
    // The session is over: a further input is refused as such.
    let late = x.input(json!({"cell": 8}), 99).await;
    assert_eq!(late["code"], "session_ended", "{late}");
}

#[tokio::test]
async fn a_full_game_to_a_draw() {
    let node = TestNode::start(&[]);
    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    play(&mut x, &mut o, &[0, 1, 2, 4, 3, 5, 7, 6, 8]).await;
    for c in [&mut x, &mut o] {
        let ended = c.recv_type("ended").await;
        assert_eq!(ended["winners"], json!([]), "{ended}");
        assert_eq!(ended["detail"], "Draw", "{ended}");
    }
}

#[tokio::test]
async fn views_follow_the_moves_and_wrong_turns_are_rejected() {
    let node = TestNode::start(&[]);
    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    x.input_ok(json!({"cell": 4}), 1).await;
    let view = o
        .recv_until(|m| m["type"] == "view" && m["data"]["board"][4] == "X")
        .await;
    assert_eq!(view["data"]["you"], "O");
    assert_eq!(view["data"]["turn"], "O");
    // Not X's turn: the game refuses, with the input's seq.
    let refused = x.input(json!({"cell": 0}), 2).await;
    assert_eq!(refused["code"], "rejected", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("turn"),
        "{refused}"
    );
}

#[tokio::test]
async fn quick_match_pairs_two_players() {
    let node = TestNode::start(&[]);
    let mut a = node.client().await;
    let mut b = node.client().await;
    let ja = a.quick_match("tictactoe", "a").await;
    let jb = b.quick_match("tictactoe", "b").await;
    assert_eq!(ja["session"], jb["session"]);
    assert_ne!(ja["player"], jb["player"]);
    // The session is full now: a third player gets a new one.
    let mut c = node.client().await;
    let jc = c.quick_match("tictactoe", "c").await;
    assert_ne!(jc["session"], ja["session"]);
    // And the pair can play.
    a.input_ok(json!({"cell": 0}), 1).await;
    b.input_ok(json!({"cell": 1}), 1).await;
}

/// Quick-matches arriving together (they no longer wait for each other's
/// join) still pair up exactly: every session gets two players, none is
/// started for one player while another has a free seat.
#[tokio::test]
async fn concurrent_quick_matches_fill_sessions_exactly() {
    const PLAYERS: usize = 24;
    let node = TestNode::start(&[]);
    let mut clients = Vec::new();
    for _ in 0..PLAYERS {
        clients.push(node.client().await);
    }
    let joins = clients.iter_mut().enumerate().map(|(i, c)| async move {
        let j = c.quick_match("tictactoe", &format!("p{i}")).await;
        j["session"].as_str().expect("session id").to_owned()
    });
    let sessions = futures_util::future::join_all(joins).await;
    let mut per_session = std::collections::BTreeMap::<String, usize>::new();
    for s in sessions {
        *per_session.entry(s).or_default() += 1;
    }
    assert_eq!(per_session.len(), PLAYERS / 2, "{per_session:?}");
    assert!(per_session.values().all(|&n| n == 2), "{per_session:?}");
}

/// Two quick-matches sent at the same instant share one session, round after
/// round on one node. Every round starts with no open session (the earlier
/// ones are full), so the first of the pair starts one and the second must
/// find it, also while the first's join is still being made durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_quick_match_pairs_share_a_session() {
    const ROUNDS: usize = 50;
    let node = TestNode::start(&[]);
    let mut sessions = std::collections::BTreeSet::new();
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(2));
        let mut tasks = Vec::new();
        for name in ["a", "b"] {
            let mut client = node.client().await;
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                client.quick_match("tictactoe", name).await
            }));
        }
        let mut joined = Vec::new();
        for t in tasks {
            joined.push(t.await.expect("quick-match task"));
        }
        let (ja, jb) = (&joined[0], &joined[1]);
        assert_eq!(ja["session"], jb["session"], "round {round}: {ja} / {jb}");
        assert_ne!(ja["player"], jb["player"], "round {round}: {ja} / {jb}");
        let session = ja["session"].as_str().expect("session id").to_owned();
        assert!(
            sessions.insert(session),
            "round {round}: matched into a full session: {ja}"
        );
    }
}

#[tokio::test]
async fn resume_after_a_dropped_connection_gives_the_same_seat_and_view() {
    let node = TestNode::start(&[]);
    let (mut x, mut o, session) = tictactoe_pair(&node).await;
    let jx = x
        .seen
        .iter()
        .find(|m| m["type"] == "joined")
        .cloned()
        .unwrap();
    let token = jx["token"].as_str().unwrap().to_owned();
    // `<session>.<secret>`: the session routes the token cluster-wide, the
    // 128-bit secret (32 hex digits) proves the seat.
    let (token_session, secret) = token.split_once('.').expect("session.secret");
    assert_eq!(token_session, session.as_str());
    assert_eq!(secret.len(), 32, "{token}");
    x.input_ok(json!({"cell": 4}), 1).await;
    drop(x);

    // O can still play while X is away: the seat is kept, not given up.
    o.input_ok(json!({"cell": 0}), 1).await;

    let mut x2 = node.client().await;
    let resumed = x2.join(json!({"type": "resume", "token": token})).await;
    assert_eq!(resumed["type"], "joined", "{resumed}");
    assert_eq!(resumed["player"], jx["player"]);
    assert_eq!(resumed["session"], session.as_str());
    assert_eq!(resumed["resumed"], true);
    // The current view arrives at once, with both moves in it.
    let view = x2.recv_type("view").await;
    assert_eq!(view["data"]["board"][4], "X", "{view}");
    assert_eq!(view["data"]["board"][0], "O", "{view}");
    assert_eq!(view["data"]["you"], "X", "{view}");
    x2.input_ok(json!({"cell": 8}), 2).await;
}

#[tokio::test]
async fn a_msgpack_client_plays_tictactoe() {
    let node = TestNode::start(&[]);
    let mut x = Client::connect(&node, Enc::MsgPack).await;
    let mut o = node.client().await;
    let jx = x.quick_match("tictactoe", "bin").await;
    let jo = o.quick_match("tictactoe", "txt").await;
    assert_eq!(jx["session"], jo["session"]);
    play(&mut x, &mut o, &[0, 3, 1, 4, 2]).await;
    let view = x
        .recv_until(|m| m["type"] == "view" && m["data"]["board"][2] == "X")
        .await;
    assert_eq!(view["data"]["board"][0], "X");
    let ended = x.recv_type("ended").await;
    assert_eq!(ended["winners"], json!([player(&jx)]));
    let ended = o.recv_type("ended").await;
    assert_eq!(ended["winners"], json!([player(&jx)]));
}

#[tokio::test]
async fn leave_gives_the_seat_up_and_the_token_stops_working() {
    let node = TestNode::start(&[]);
    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    let token = x.seen.iter().find(|m| m["type"] == "joined").unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    x.input_ok(json!({"cell": 4}), 1).await;
    x.send(json!({"type": "leave"})).await;
    x.recv_type("left").await;
    // Leaving a started game forfeits it.
    let ended = o.recv_type("ended").await;
    assert_eq!(ended["detail"]["Forfeit"]["mark"], "O", "{ended}");
    let mut again = node.client().await;
    let answer = again.join(json!({"type": "resume", "token": token})).await;
    assert_eq!(answer["code"], "bad_token", "{answer}");
}
