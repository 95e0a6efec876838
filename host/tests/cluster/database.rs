//! The database restarts under load: once cleanly (`pg_ctl restart -m fast`: every
//! connection cut, the server back at once) and once as a crash with an outage longer
//! than the lease (`-m immediate`, started again only after every node has stopped
//! serving). Meanwhile the nodes hold their writes and so their acks (a pause for the
//! players), `/readyz` says 503 while the lease is gone, and afterwards everything serves
//! again with every acknowledged input in place.

use std::time::Duration;

use crate::{
    bots::Fleet,
    harness::{wait_until, TestCluster},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restarts_pause_the_players_and_lose_nothing() {
    let cluster = TestCluster::start(3).await;
    let mut fleet = Fleet::new(cluster.urls());
    for i in 0..3 {
        let url = cluster.nodes[i].ws_url();
        fleet.tictactoe(&url, 1).await;
        fleet.chaos(&url, 1).await;
    }
    fleet.arena(&cluster.nodes[0].ws_url(), 1).await;
    fleet
        .wait_acks(40, Duration::from_secs(30), "before the restarts")
        .await;

    // 1. A clean restart.
    tokio::task::block_in_place(|| cluster.pg.restart());
    all_ready(&cluster).await;
    fleet
        .wait_acks(40, Duration::from_secs(30), "after the clean restart")
        .await;

    // 2. A crash, and the database stays away until no node holds a lease.
    tokio::task::block_in_place(|| cluster.pg.stop());
    let c = &cluster;
    wait_until(
        Duration::from_secs(15),
        "every node stopped serving (no lease without the database)",
        || async move {
            for i in 0..3 {
                if c.status(i, "/readyz").await == 200 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    tokio::task::block_in_place(|| cluster.pg.start_server());
    all_ready(&cluster).await;
    fleet
        .wait_acks(40, Duration::from_secs(30), "after the crash")
        .await;

    fleet.finish(&cluster).await;
    let claimed: Vec<_> = cluster
        .activations()
        .into_iter()
        .filter(|a| a.why == "takeover")
        .collect();
    eprintln!(
        "database restarts: {} sessions claimed from live nodes on the way back: {claimed:?}",
        claimed.len()
    );
}

async fn all_ready(cluster: &TestCluster) {
    for i in 0..cluster.nodes.len() {
        cluster.wait_ready(i, Duration::from_secs(30)).await;
    }
}

/// Short database outages, each just past the lease: every node stops serving, the
/// database comes back, and each node renews and re-reads the directory. No node may then
/// claim a session whose owner has renewed meanwhile (a claim decided on what it read
/// before the outage): afterwards every session is served by exactly the owner the
/// directory names — idle ones included, which no write would ever fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_database_outages_leave_every_session_with_one_server() {
    let cluster = TestCluster::start(3).await;
    let mut fleet = Fleet::new(cluster.urls());
    // Idle tictactoe games (two each, then the bots wait) and busy chaos counters.
    fleet.ctx.tictactoe_games = 2;
    for i in 0..3 {
        let url = cluster.nodes[i].ws_url();
        fleet.tictactoe(&url, 2).await;
        fleet.chaos(&url, 1).await;
    }
    fleet
        .wait_acks(60, Duration::from_secs(30), "before the outages")
        .await;
    for round in 1..=4 {
        tokio::task::block_in_place(|| cluster.pg.stop());
        let c = &cluster;
        wait_until(
            Duration::from_secs(15),
            "every node stopped serving",
            || async move {
                for i in 0..3 {
                    if c.status(i, "/readyz").await == 200 {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        tokio::task::block_in_place(|| cluster.pg.start_server());
        all_ready(&cluster).await;
        let live: Vec<String> = cluster
            .directory()
            .await
            .into_values()
            .filter(|r| !r.ended)
            .map(|r| r.id)
            .collect();
        cluster
            .wait_served_once(&live, Duration::from_secs(20))
            .await;
        eprintln!(
            "outage {round}: {} sessions, each served by its owner alone",
            live.len()
        );
    }
    fleet.finish(&cluster).await;
}

/// While the database is down a node cannot tell where a session it does not serve is:
/// `resume` and `join` by id through it answer `unavailable` (try again) — never
/// `bad_token` or `unknown_session`, which a client takes as final — and `create` answers
/// `unavailable` instead of hanging. Once the database is back, the same requests are sent
/// on to the owner (`moved`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_the_database_says_unavailable_not_unknown() {
    use serde_json::json;

    use crate::common::{Client, Enc};

    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.nodes[0].ws_url(), cluster.nodes[1].ws_url());
    let mut p = Client::connect_url(&a, Enc::Json).await;
    p.send(json!({"type": "create", "game": "tictactoe"})).await;
    let session = p.recv_type("created").await["session"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let joined = p
        .join(json!({"type": "join", "session": session, "name": "x"}))
        .await;
    let token = joined["token"].as_str().expect("a token").to_owned();
    // Served by n1 (placement is off in the harness).
    assert_eq!(cluster.directory().await[&session].owner, "n1", "{joined}");

    tokio::task::block_in_place(|| cluster.pg.stop());
    let mut q = Client::connect_url(&b, Enc::Json).await;
    q.send(json!({"type": "resume", "token": token})).await;
    let r = q.recv_type("error").await;
    assert_eq!(r["code"], "unavailable", "resume through n2: {r}");
    q.send(json!({"type": "join", "session": session, "name": "o"}))
        .await;
    let r = q.recv_type("error").await;
    assert_eq!(r["code"], "unavailable", "join through n2: {r}");
    // A create needs the database to become durable: refused at once once the node's
    // lease has lapsed (or its writer found the database gone), never left hanging.
    let b_url = b.clone();
    wait_until(
        Duration::from_secs(30),
        "a create through n2 answered `unavailable`",
        || {
            let b_url = b_url.clone();
            async move {
                let mut x = Client::connect_url(&b_url, Enc::Json).await;
                x.send(json!({"type": "create", "game": "tictactoe"})).await;
                match tokio::time::timeout(Duration::from_secs(3), x.recv_type("error")).await {
                    Ok(e) => {
                        assert_eq!(e["code"], "unavailable", "{e}");
                        true
                    }
                    Err(_) => false,
                }
            }
        },
    )
    .await;

    tokio::task::block_in_place(|| cluster.pg.start_server());
    all_ready(&cluster).await;
    let mut q = Client::connect_url(&b, Enc::Json).await;
    q.send(json!({"type": "resume", "token": token})).await;
    let m = q.recv_type("moved").await;
    assert_eq!(m["url"], a.as_str(), "{m}");
}
