//! Routing: a player who reaches a node that does not serve the session — joining by id
//! or resuming with a token — is told where it lives (`moved`, a redirect to the owner the
//! directory names) and takes the seat there; a node's lobby lists only its own sessions.

use std::time::Duration;

use serde_json::json;

use crate::{
    common::{Client, Enc},
    harness::TestCluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_redirects_to_the_owner() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (cluster.nodes[0].ws_url(), cluster.nodes[1].ws_url());
    let view = cluster
        .admin_get_json(1, "/admin/cluster")
        .await
        .expect("/admin/cluster");
    assert_eq!(view["mode"], "cluster", "{view}");
    assert_eq!(view["node"], "n2", "{view}");
    assert_eq!(view["lease_valid"], true, "{view}");
    let members: Vec<&str> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["live"] == true && m["status"] == "serving")
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(members, ["n1", "n2"], "{view}");

    // A game on A, both seats taken there (so the directory has it).
    let (mut x, _o, session) = crate::common::tictactoe_pair_at(&a).await;
    x.input_ok(json!({"cell": 4}), 1).await;
    let token = x
        .seen
        .iter()
        .find(|m| m["type"] == "joined")
        .and_then(|m| m["token"].as_str())
        .expect("x's token")
        .to_owned();
    assert!(token.starts_with(&format!("{session}.")), "{token}");

    // Joining it on B: moved to A (it is full there, but B does not decide that).
    let mut p = Client::connect_url(&b, Enc::Json).await;
    p.send(json!({"type": "join", "session": session, "name": "p"}))
        .await;
    let moved = p.recv_type("moved").await;
    assert_eq!(moved["session"], session.as_str(), "{moved}");
    assert_eq!(moved["url"], a.as_str(), "{moved}");

    // x comes back through B with its token: moved to A, and the seat is there.
    drop(x);
    let mut x2 = Client::connect_url(&b, Enc::Json).await;
    x2.send(json!({"type": "resume", "token": token})).await;
    let moved = x2.recv_type("moved").await;
    assert_eq!(moved["url"], a.as_str(), "{moved}");
    let mut x3 = Client::connect_url(&a, Enc::Json).await;
    let r = x3.join(json!({"type": "resume", "token": token})).await;
    assert_eq!(r["type"], "joined", "{r}");
    assert_eq!(r["resumed"], true, "{r}");
    let v = x3.recv_type("view").await;
    assert_eq!(v["data"]["board"][4], "X", "{v}");

    // Each lobby lists its own sessions only; B's own session stays on B.
    let mut q = Client::connect_url(&b, Enc::Json).await;
    q.send(json!({"type": "create", "game": "tictactoe"})).await;
    let own = q.recv_type("created").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let jq = q
        .join(json!({"type": "join", "session": own, "name": "q"}))
        .await;
    assert_eq!(jq["type"], "joined", "{jq}");
    let on_a = cluster.sessions_on(0).await.unwrap();
    let on_b = cluster.sessions_on(1).await.unwrap();
    assert!(
        on_a.contains(&session) && !on_a.contains(&own),
        "A lists {on_a:?}"
    );
    assert!(
        on_b.contains(&own) && !on_b.contains(&session),
        "B lists {on_b:?}"
    );
    let dir = cluster.directory().await;
    assert_eq!(
        (dir[&session].owner.as_str(), dir[&session].epoch),
        ("n1", 1)
    );
    assert_eq!((dir[&own].owner.as_str(), dir[&own].epoch), ("n2", 1));

    // Unknown sessions and tokens are refused, not redirected.
    let mut z = Client::connect_url(&b, Enc::Json).await;
    z.send(json!({"type": "resume", "token": "nosuchsession.00"}))
        .await;
    z.recv_error("bad_token").await;
    z.send(json!({"type": "join", "session": "nosuchsession", "name": "z"}))
        .await;
    z.recv_error("unknown_session").await;

    // Nothing moved: no activation, no hand-off, one owner each.
    assert!(
        cluster.activations().is_empty(),
        "{:?}",
        cluster.activations()
    );
    cluster.assert_single_owner(&[(session.clone(), "n1".into()), (own, "n2".into())]);
    assert_eq!(cluster.status(0, "/readyz").await, 200);
    let _ = Duration::ZERO;
}
