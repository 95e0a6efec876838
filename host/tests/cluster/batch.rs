//! Many sessions at once, so that drain and takeover go through their batched paths
//! (`HandoffBatch` to each target, `VoteBatch` per dead owner) with several batches per
//! target: every session moves to one of the two other nodes exactly once, at epoch 2, with
//! its acknowledged move, and the activation log never shows two owners.

use std::{collections::HashMap, time::Duration};

use serde_json::{json, Value};

use crate::{
    common::{tictactoe_pair_at, Client, Enc},
    harness::{wait_until, TestCluster},
};

/// More than a few drain batches (25 sessions each) for the two targets together.
const SESSIONS: usize = 60;

/// A game on node 0 with both seats taken and x's move on cell 4 acknowledged.
struct Game {
    session: String,
    /// o's reconnect token (o is to move).
    token: Value,
    x: Client,
    o: Client,
}

async fn games_on_node0(cluster: &TestCluster) -> Vec<Game> {
    let url = cluster.nodes[0].ws_url();
    let mut games = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let (mut x, o, session) = tictactoe_pair_at(&url).await;
        let token = o
            .seen
            .iter()
            .find(|m| m["type"] == "joined")
            .map(|m| m["token"].clone())
            .expect("o joined with a token");
        x.input_ok(json!({"cell": 4}), 1).await;
        games.push(Game {
            session,
            token,
            x,
            o,
        });
    }
    games
}

/// Sessions each node lists in `/api/sessions`.
async fn listed(cluster: &TestCluster, i: usize) -> Vec<String> {
    cluster
        .get_json(i, "/api/sessions")
        .await
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Waits until nodes 1 and 2 together hold a replica of every game and no replica's heads
/// moved for 10 polls 20 ms apart (four sync intervals): every acknowledged move is there.
async fn replicas_settled(cluster: &TestCluster, games: &[Game]) {
    let start = std::time::Instant::now();
    let (mut last, mut same) = (HashMap::new(), 0);
    while same < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the replicas never settled"
        );
        let mut heads: HashMap<String, String> = HashMap::new();
        for i in [1, 2] {
            let Some(v) = cluster.get_json(i, "/api/cluster").await else {
                continue;
            };
            for r in v["replicas"].as_array().into_iter().flatten() {
                if let (Some(s), Some(h)) = (r["session"].as_str(), r["heads"].as_str()) {
                    heads.insert(s.to_owned(), h.to_owned());
                }
            }
        }
        let all = games.iter().all(|g| heads.contains_key(&g.session));
        same = if all && heads == last { same + 1 } else { 0 };
        last = heads;
        // Polling other processes' state: there is nothing to be notified by.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every session activated exactly once, at epoch 2, on node 1 or 2 (`n2`/`n3`), and both
/// of them got some; returns session → node.
fn moved_once(cluster: &TestCluster, games: &[Game]) -> HashMap<String, String> {
    cluster.assert_single_owner();
    let mut at: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for (s, n, e) in cluster.activations() {
        at.entry(s).or_default().push((n, e));
    }
    let mut owner = HashMap::new();
    for g in games {
        let acts = at.get(&g.session).cloned().unwrap_or_default();
        assert_eq!(acts.len(), 1, "session {}: {acts:?}", g.session);
        let (node, epoch) = acts[0].clone();
        assert_eq!(epoch, 2, "session {}: {acts:?}", g.session);
        assert!(
            node == "n2" || node == "n3",
            "session {}: {acts:?}",
            g.session
        );
        owner.insert(g.session.clone(), node);
    }
    for n in ["n2", "n3"] {
        assert!(
            owner.values().any(|o| o == n),
            "no session went to {n}: {owner:?}"
        );
    }
    owner
}

/// o resumes at `url` (following one `moved`), finds cell 4 taken and plays cell 0.
async fn resume_and_check(url: &str, g: &Game) {
    let mut c = Client::connect_url(url, Enc::Json).await;
    c.send(json!({"type": "resume", "token": g.token})).await;
    let mut r = c
        .recv_until(|m| m["type"] == "joined" || m["type"] == "error" || m["type"] == "moved")
        .await;
    if r["type"] == "moved" {
        c = Client::connect_url(r["url"].as_str().unwrap(), Enc::Json).await;
        r = c.join(json!({"type": "resume", "token": g.token})).await;
    }
    assert_eq!(r["type"], "joined", "session {}: {r}", g.session);
    let taken = c.input(json!({"cell": 4}), 1).await;
    assert_eq!(
        taken["type"], "error",
        "session {}: cell 4 should be taken: {taken}",
        g.session
    );
    c.input_ok(json!({"cell": 0}), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_many_sessions_over_in_batches() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_all_joined(Duration::from_secs(10)).await;
    let mut games = games_on_node0(&cluster).await;

    cluster.terminate(0);
    let mut urls = HashMap::new();
    for g in games.iter_mut() {
        let m = g.o.recv_type("moved").await;
        assert_eq!(m["session"], g.session.as_str(), "{m}");
        let mx = g.x.recv_type("moved").await;
        assert_eq!(mx["url"], m["url"], "{mx}");
        urls.insert(g.session.clone(), m["url"].as_str().unwrap().to_owned());
    }
    assert!(
        cluster
            .wait_exit(0, Duration::from_secs(20))
            .await
            .is_some(),
        "the drained node did not exit"
    );
    let owner = moved_once(&cluster, &games);
    for g in &games {
        let i = if owner[&g.session] == "n2" { 1 } else { 2 };
        assert_eq!(urls[&g.session], cluster.nodes[i].ws_url());
        resume_and_check(&urls[&g.session], g).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_the_survivors_take_many_sessions_over() {
    // A short lease keeps the voters' start-up quiet period (lease + margin) short.
    let mut cluster = TestCluster::start(3, &["--lease-ms", "800"]);
    cluster.wait_all_joined(Duration::from_secs(10)).await;
    let games = games_on_node0(&cluster).await;
    replicas_settled(&cluster, &games).await;

    cluster.kill(0);
    let c = &cluster;
    wait_until(
        Duration::from_secs(20),
        "nodes 2 and 3 serve every session",
        || async move {
            let mut all = listed(c, 1).await;
            all.extend(listed(c, 2).await);
            all.len() >= SESSIONS
        },
    )
    .await;
    let owner = moved_once(&cluster, &games);
    for g in &games {
        let i = if owner[&g.session] == "n2" { 1 } else { 2 };
        resume_and_check(&cluster.nodes[i].ws_url(), g).await;
    }
}
