//! Idle sessions against a real node: an empty one (or one whose players are all gone)
//! is ended and removed from the store, a seated one is left alone and its disconnected
//! players can resume; and a session nobody is seated in does not tick.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{tictactoe_pair, TestNode, DEADLINE};

/// The lobby's list of live sessions.
async fn sessions(node: &TestNode) -> Vec<Value> {
    let list: Value = reqwest::get(node.http("/api/sessions"))
        .await
        .expect("list sessions")
        .json()
        .await
        .expect("sessions JSON");
    list.as_array().expect("a list").clone()
}

fn listed(list: &[Value], id: &str) -> Option<Value> {
    list.iter().find(|s| s["id"] == id).cloned()
}

/// Polls the session list until `cond` holds for it; fails at the deadline.
async fn wait_for(node: &TestNode, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let end = Instant::now() + DEADLINE;
    loop {
        let list = sessions(node).await;
        if cond(&list) {
            return list;
        }
        assert!(Instant::now() < end, "{what} within {DEADLINE:?}: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /api/sessions` for `game`: the new session's id.
async fn create(node: &TestNode, game: &str) -> String {
    let r = reqwest::Client::new()
        .post(node.http("/api/sessions"))
        .json(&json!({"game": game}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    body["session"].as_str().unwrap().to_owned()
}

/// Created and reaped: a session created now disappears, so the reaper has run at
/// least its limit past this moment.
async fn canary_reaped(node: &TestNode) {
    let canary = create(node, "tictactoe").await;
    let what = format!("the empty canary {canary} reaped");
    wait_for(node, &what, |l| listed(l, &canary).is_none()).await;
}

#[tokio::test]
async fn an_empty_session_is_reaped_and_seated_ones_are_not() {
    // Empty sessions go after 1 s; abandoned ones never.
    let node = TestNode::start(&["--empty-session-secs", "1", "--abandoned-session-secs", "0"]);
    let (mut x, mut o, playing) = tictactoe_pair(&node).await;
    // A session whose only player disconnects: seated, so not empty.
    let mut d = node.client().await;
    d.send(json!({"type": "create", "game": "tictactoe"})).await;
    let away = d.recv_type("created").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = d
        .join(json!({"type": "join", "session": away, "name": "d"}))
        .await;
    let token = joined["token"].as_str().expect("token").to_owned();
    drop(d);

    let empty = create(&node, "tictactoe").await;
    let list = wait_for(&node, "the empty session reaped", |l| {
        listed(l, &empty).is_none()
    })
    .await;
    assert!(listed(&list, &playing).is_some(), "{list:?}");
    // A second canary, created after the first was reaped: by the time it goes, the
    // disconnected seat has been disconnected for longer than the limit.
    canary_reaped(&node).await;
    let list = sessions(&node).await;
    assert!(
        listed(&list, &playing).is_some(),
        "the seated game was reaped: {list:?}"
    );
    assert!(
        listed(&list, &away).is_some(),
        "the disconnected seat was reaped: {list:?}"
    );

    // The game goes on, and the disconnected player takes the seat back.
    x.input_ok(json!({"cell": 4}), 1).await;
    o.input_ok(json!({"cell": 0}), 1).await;
    let mut back = node.client().await;
    let resumed = back.join(json!({"type": "resume", "token": token})).await;
    assert_eq!(resumed["type"], "joined", "{resumed}");
    assert_eq!(resumed["resumed"], true);

    // Removed from the store, not just from this process: a restart brings back the
    // seated sessions only.
    drop((x, o, back));
    let node = node.restart();
    let list = sessions(&node).await;
    assert!(
        listed(&list, &empty).is_none(),
        "the reaped session came back: {list:?}"
    );
    assert!(listed(&list, &playing).is_some(), "{list:?}");
    assert!(listed(&list, &away).is_some(), "{list:?}");
}

#[tokio::test]
async fn an_abandoned_session_is_reaped() {
    // Abandoned sessions go after 1 s; empty ones never.
    let node = TestNode::start(&["--empty-session-secs", "0", "--abandoned-session-secs", "1"]);
    let (mut x, mut o, playing) = tictactoe_pair(&node).await;
    let empty = create(&node, "tictactoe").await;
    let mut d = node.client().await;
    d.send(json!({"type": "create", "game": "tictactoe"})).await;
    let abandoned = d.recv_type("created").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = d
        .join(json!({"type": "join", "session": abandoned, "name": "d"}))
        .await;
    let token = joined["token"].as_str().expect("token").to_owned();
    drop(d);

    let what = "the abandoned session reaped";
    let list = wait_for(&node, what, |l| listed(l, &abandoned).is_none()).await;
    assert!(listed(&list, &playing).is_some(), "{list:?}");
    assert!(
        listed(&list, &empty).is_some(),
        "empty sessions are kept: {list:?}"
    );
    // Its token went with it.
    let mut back = node.client().await;
    let e = back.join(json!({"type": "resume", "token": token})).await;
    assert_eq!(e["code"], "bad_token", "{e}");
    // The connected game is untouched.
    x.input_ok(json!({"cell": 4}), 1).await;
    o.input_ok(json!({"cell": 0}), 1).await;
}

fn tick(list: &[Value], id: &str) -> u64 {
    listed(list, id)
        .and_then(|s| s["tick"].as_u64())
        .unwrap_or_else(|| panic!("{id} not listed: {list:?}"))
}

#[tokio::test]
async fn a_session_with_no_seat_taken_does_not_tick() {
    // Arena ticks at 20 Hz; the listed tick is the durable one (written every 50 ms).
    let node = TestNode::start(&["--persist-interval-ms", "50"]);
    let empty = create(&node, "arena").await;
    let seated = create(&node, "arena").await;
    let mut p = node.client().await;
    let joined = p
        .join(json!({"type": "join", "session": seated, "name": "p"}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");

    let list = wait_for(&node, "the seated arena ticks", |l| tick(l, &seated) >= 20).await;
    assert_eq!(tick(&list, &empty), 0, "an empty arena ticked: {list:?}");

    // Once its player leaves, a session stops ticking; the numbering goes on when
    // someone joins again.
    p.send(json!({"type": "leave"})).await;
    p.recv_type("left").await;
    let left_at = tick(&sessions(&node).await, &seated);
    let mut other = node.client().await;
    let clock = create(&node, "arena").await;
    let joined = other
        .join(json!({"type": "join", "session": clock, "name": "o"}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let list = wait_for(&node, "another arena ticks 20 times", |l| {
        tick(l, &clock) >= 20
    })
    .await;
    assert_eq!(
        tick(&list, &seated),
        left_at,
        "ticked with nobody seated: {list:?}"
    );
    assert_eq!(tick(&list, &empty), 0, "an empty arena ticked: {list:?}");

    let rejoined = p
        .join(json!({"type": "join", "session": seated, "name": "p"}))
        .await;
    assert_eq!(rejoined["type"], "joined", "{rejoined}");
    wait_for(&node, "the rejoined arena ticks on", |l| {
        tick(l, &seated) >= left_at + 10
    })
    .await;
}
