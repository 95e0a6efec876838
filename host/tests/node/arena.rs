//! A real-time game under load: 32 bot players in one arena session get a
//! stream of views driven by the node's tick clock, each through its own fog
//! of war.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::{games_dir, TestNode};

const BOTS: usize = 32;
/// Arena's default view radius, plus float slack.
const VIEW_RADIUS: f64 = 200.0 + 0.01;

struct BotReport {
    session: Value,
    others: BTreeSet<u64>,
}

fn pos(view: &Value) -> (f64, f64) {
    let you = &view["data"]["you"];
    (you["x"].as_f64().unwrap(), you["y"].as_f64().unwrap())
}

/// Every player a view shows must be within the view radius.
fn check_fog(view: &Value) -> BTreeSet<u64> {
    let (x, y) = pos(view);
    let mut seen = BTreeSet::new();
    for o in view["data"]["others"].as_array().unwrap() {
        let (ox, oy) = (o["x"].as_f64().unwrap(), o["y"].as_f64().unwrap());
        let d = ((ox - x).powi(2) + (oy - y).powi(2)).sqrt();
        assert!(d <= VIEW_RADIUS, "sees a player {d} away: {view}");
        seen.insert(o["id"].as_u64().unwrap());
    }
    seen
}

async fn bot(node: &TestNode, i: usize) -> BotReport {
    let mut c = node.client().await;
    let joined = c.quick_match("arena", &format!("bot{i}")).await;
    let first = c
        .recv_until(|m| m["type"] == "view" && !m["data"]["you"].is_null())
        .await;
    // Head for the far side so the walk is long enough to observe.
    let (x0, _) = pos(&first);
    let dx = if x0 < 500.0 { 1.0 } else { -1.0 };
    c.input_ok(json!({"dir": [dx, 0.0]}), 1).await;
    c.clear();
    let mut last_x = x0;
    let mut moved = 0;
    let mut others = BTreeSet::new();
    // Views keep coming, tick after tick, and show us walking. (Other
    // players' joins and moves send views too, so count only our steps;
    // `recv_type` fails the test if they stop coming.)
    while moved < 10 {
        let view = c.recv_type("view").await;
        let (x, _) = pos(&view);
        assert!(
            (x - last_x) * dx >= 0.0,
            "bot {i} walked backwards: {last_x} -> {x}"
        );
        if x != last_x {
            moved += 1;
        }
        last_x = x;
        others = check_fog(&view);
    }
    assert!(
        (last_x - x0).abs() >= 10.0,
        "bot {i} walked only from {x0} to {last_x}"
    );
    BotReport {
        session: joined["session"].clone(),
        others,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_bots_play_one_arena_with_fog_of_war() {
    games_dir(&["arena"]);
    let node = TestNode::start(&[]);
    let node = std::sync::Arc::new(node);
    let mut tasks = Vec::new();
    for i in 0..BOTS {
        let node = node.clone();
        tasks.push(tokio::spawn(async move { bot(&node, i).await }));
    }
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await.expect("bot task"));
    }
    let sessions: BTreeSet<String> = reports
        .iter()
        .map(|r| r.session.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sessions.len(),
        1,
        "quick-match split the bots: {sessions:?}"
    );
    // On a 1000×1000 field with a 200 radius nobody sees everyone, and the
    // bots do not all see the same crowd.
    assert!(reports.iter().all(|r| r.others.len() < BOTS - 1));
    let distinct: BTreeSet<&BTreeSet<u64>> = reports.iter().map(|r| &r.others).collect();
    assert!(distinct.len() > 1, "every bot saw the same players");
}
