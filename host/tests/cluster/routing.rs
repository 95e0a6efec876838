//! Routing over real processes: a player who reaches a node that does not serve the
//! session (by id or by resume token) is told where it lives (`moved`), and resumes there.

use std::time::Duration;

use serde_json::json;

use crate::{
    common::{Client, Enc},
    harness::{wait_until, TestCluster},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_redirects_to_the_owner() {
    let cluster = TestCluster::start(2, &[]);
    let c = &cluster;
    wait_until(
        Duration::from_secs(10),
        "both nodes joined",
        || async move {
            c.members(0).await.is_some_and(|m| m.len() == 2)
                && c.members(1).await.is_some_and(|m| m.len() == 2)
        },
    )
    .await;
    let owner = cluster.nodes[0].ws_url();
    let mut x = Client::connect_url(&owner, Enc::Json).await;
    x.send(json!({"type": "create", "game": "tictactoe"})).await;
    let session = x.recv_type("created").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let jx = x
        .join(json!({"type": "join", "session": session, "name": "x"}))
        .await;
    let token = jx["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with(&format!("{session}.")), "{token}");

    let mut o = Client::connect_url(&cluster.nodes[1].ws_url(), Enc::Json).await;
    o.send(json!({"type": "join", "session": session, "name": "o"}))
        .await;
    let moved = o.recv_type("moved").await;
    assert_eq!(moved["url"], owner.as_str(), "{moved}");

    // x's connection drops; x comes back through the other node with its token.
    drop(x);
    let mut x2 = Client::connect_url(&cluster.nodes[1].ws_url(), Enc::Json).await;
    x2.send(json!({"type": "resume", "token": token})).await;
    let moved = x2.recv_type("moved").await;
    assert_eq!(moved["url"], owner.as_str(), "{moved}");
    let mut x3 = Client::connect_url(moved["url"].as_str().unwrap(), Enc::Json).await;
    let r = x3.join(json!({"type": "resume", "token": token})).await;
    assert_eq!(r["type"], "joined", "{r}");

    // A token of an unknown session is still refused.
    let mut z = Client::connect_url(&cluster.nodes[1].ws_url(), Enc::Json).await;
    z.send(json!({"type": "resume", "token": "nosuchsession.00"}))
        .await;
    z.recv_error("bad_token").await;
}
