//! The lobby HTTP API, health checks, the web client, and a clean exit on SIGTERM.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::TestNode;

#[tokio::test]
async fn games_sessions_and_create() {
    let node = TestNode::start(&[]);
    let http = reqwest::Client::new();
    let games: Value = http
        .get(node.http("/api/games"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ttt = games
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "tictactoe")
        .unwrap_or_else(|| panic!("no tictactoe in {games}"));
    assert_eq!(ttt["max_players"], 2);
    assert_eq!(ttt["min_players"], 2);
    assert_eq!(ttt["tick_hz"], 0);
    assert_eq!(ttt["module_hash"].as_str().unwrap().len(), 64);

    let res = http
        .post(node.http("/api/sessions"))
        .json(&json!({"game": "tictactoe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["session"].as_str().unwrap().to_owned();

    // A player joins it over the websocket; the lobby shows the seat taken.
    let mut c = node.client().await;
    let joined = c
        .join(json!({"type": "join", "session": id, "name": "p"}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let list: Value = http
        .get(node.http("/api/sessions?game=tictactoe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!([{"id": id, "game": "tictactoe", "players": 1, "max_players": 2, "open": true,
            "rules_version": 1, "tick": 0}])
    );
    let none: Value = http
        .get(node.http("/api/sessions?game=arena"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!([]));

    let res = http
        .post(node.http("/api/sessions"))
        .json(&json!({"game": "chess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "unknown_game");

    let res = http
        .post(node.http("/api/sessions"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "bad_request");
}

#[tokio::test]
async fn max_sessions_answers_overloaded() {
    let node = TestNode::start(&["--max-sessions", "1"]);
    let http = reqwest::Client::new();
    let post = || {
        http.post(node.http("/api/sessions"))
            .json(&json!({"game": "tictactoe"}))
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 201);
    let res = post().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "overloaded");
    let mut c = node.client().await;
    c.send(json!({"type": "create", "game": "tictactoe"})).await;
    c.recv_error("overloaded").await;
}

#[tokio::test]
async fn health_and_web_client() {
    let node = TestNode::start(&[]);
    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/", "/app.js"] {
        let res = http.get(node.http(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    let page = http.get(node.http("/")).send().await.unwrap();
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

#[tokio::test]
async fn sigterm_closes_players_and_exits_zero() {
    let mut node = TestNode::start(&[]);
    let mut c = node.client().await;
    c.quick_match("tictactoe", "p").await;
    node.terminate();
    let close = c.recv_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    let status = node
        .wait_exit(Duration::from_secs(5))
        .expect("exited in time");
    assert!(status.success(), "exit status {status:?}");
}
