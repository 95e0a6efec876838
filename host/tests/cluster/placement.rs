//! Placement by load: every session is created through one node while another serves
//! nothing; once the creating node holds `--placement-margin` more sessions than the other,
//! new sessions go to the other node before their ids are handed out. The creator joins
//! through the node it asked and is sent on (`moved`) to the owner, where the game plays;
//! every session is served by exactly its owner and no `(session, epoch)` had two owners.

use std::time::Duration;

use serde_json::json;

use crate::{
    common::{Client, Enc},
    harness::TestCluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_go_to_the_less_loaded_node() {
    let cluster = TestCluster::start_with(2, 1000, &["--placement-margin", "2"]).await;
    let (a, b) = (cluster.nodes[0].ws_url(), cluster.nodes[1].ws_url());
    let mut created = Vec::new();
    for _ in 0..10 {
        let mut c = Client::connect_url(&a, Enc::Json).await;
        c.send(json!({"type": "create", "game": "tictactoe"})).await;
        let id = c.recv_type("created").await["session"]
            .as_str()
            .expect("a session id")
            .to_owned();
        created.push(id);
    }
    let dir = cluster
        .wait_served_once(&created, Duration::from_secs(20))
        .await;
    let on = |node: &str| created.iter().filter(|s| dir[*s].owner == node).count();
    let (on_a, on_b) = (on("n1"), on("n2"));
    assert_eq!(on_a + on_b, created.len());
    // With a margin of 2, the creating node keeps at most 2 more than the other.
    assert!(
        on_b >= 4 && on_a <= on_b + 2,
        "placement left n1 {on_a} and n2 {on_b} of {}",
        created.len()
    );
    let handed: Vec<_> = cluster.handovers().into_iter().map(|h| h.session).collect();
    for s in created.iter().filter(|s| dir[*s].owner == "n2") {
        assert!(handed.contains(s), "{s} is on n2 without a hand-over line");
        assert_eq!(
            dir[s].epoch, 2,
            "placed once, at creation: {:?}",
            dir[s].epoch
        );
    }

    // A placed session, joined through the node that created it: moved to its owner,
    // where both seats are taken and the game plays.
    let placed = created
        .iter()
        .find(|s| dir[*s].owner == "n2")
        .expect("a placed session");
    let mut x = Client::connect_url(&a, Enc::Json).await;
    x.send(json!({"type": "join", "session": placed, "name": "x"}))
        .await;
    let moved = x.recv_type("moved").await;
    assert_eq!(moved["url"], b.as_str(), "{moved}");
    let mut x = Client::connect_url(&b, Enc::Json).await;
    let jx = x
        .join(json!({"type": "join", "session": placed, "name": "x"}))
        .await;
    assert_eq!(jx["type"], "joined", "{jx}");
    let mut o = Client::connect_url(&b, Enc::Json).await;
    let jo = o
        .join(json!({"type": "join", "session": placed, "name": "o"}))
        .await;
    assert_eq!(jo["type"], "joined", "{jo}");
    x.input_ok(json!({"cell": 4}), 1).await;
    // o's views until the move shows (the first may be the empty board of its join).
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|v: &serde_json::Value| v["data"]["board"][4] == "X")
    {
        assert!(seen.len() < 5, "o never saw x's move: {seen:?}");
        seen.push(o.recv_type("view").await);
    }

    let at_creation: Vec<(String, String)> = created
        .iter()
        .map(|s| (s.clone(), "n1".to_string()))
        .collect();
    cluster.assert_single_owner(&at_creation);
}
