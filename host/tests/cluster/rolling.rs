//! Rolling restart of all three nodes under continuous load: each node in turn gets
//! SIGTERM (it drains: its sessions move to the others, the bots follow `moved`), exits,
//! and comes back on the same data dir and ports. Afterwards every session is alive and
//! its counter equals the number of inputs its bot got an `ack` for: zero sessions lost,
//! zero acknowledged inputs lost. The activation log must never show two owners.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{
    common::{Client, Enc, Incoming},
    harness::TestCluster,
};

const SESSIONS_PER_NODE: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_loses_nothing() {
    let mut cluster = TestCluster::start_with_games(
        3,
        &["chaos"],
        &[
            "--lease-ms",
            "800",
            "--rate-per-sec",
            "10000",
            "--rate-burst",
            "10000",
        ],
    );
    cluster.wait_all_joined(Duration::from_secs(15)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.ws_url()).collect();
    let mut bots = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        for _ in 0..SESSIONS_PER_NODE {
            let (c, session, token) = new_session(url).await;
            let _ = i;
            bots.push(tokio::spawn(bot(
                c,
                session,
                token,
                urls.clone(),
                stop.clone(),
            )));
        }
    }
    for i in 0..3 {
        // Some load on every node before each restart.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.terminate(i);
        let exited = cluster.wait_exit(i, Duration::from_secs(20)).await;
        assert!(exited.is_some(), "n{} did not exit after its drain", i + 1);
        cluster.spawn(i);
        cluster.wait_all_joined(Duration::from_secs(15)).await;
        cluster.assert_single_owner();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for b in bots {
        let (session, token, acked) = b.await.expect("bot");
        total += acked;
        // Read the counter through any node.
        let mut c = resume_anywhere(&urls, &token).await;
        let view = c
            .recv_until(|m| m["type"] == "view" && m["data"]["count"].is_u64())
            .await;
        assert_eq!(
            view["data"]["count"].as_u64(),
            Some(acked),
            "session {session}: {acked} acked inputs but {view}"
        );
    }
    cluster.assert_single_owner();
    for l in cluster.log_lines() {
        if l.text.contains("drain finished") {
            eprintln!("[{}] {}", l.node, l.text);
        }
    }
    let handovers = cluster.activations().len();
    eprintln!(
        "rolling restart: {} sessions, {total} acknowledged inputs, {handovers} activations, all intact",
        3 * SESSIONS_PER_NODE
    );
    assert!(
        handovers >= 3 * SESSIONS_PER_NODE,
        "every session moved at least once"
    );
}

async fn new_session(url: &str) -> (Client, String, String) {
    let mut c = Client::connect_url(url, Enc::Json).await;
    c.send(json!({"type": "create", "game": "chaos"})).await;
    let session = c.recv_type("created").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let j = c
        .join(json!({"type": "join", "session": session, "name": "bot"}))
        .await;
    assert_eq!(j["type"], "joined", "{j}");
    let token = j["token"].as_str().unwrap().to_owned();
    (c, session, token)
}

/// Resume `token` through the nodes in turn, following `moved`, for up to 15 s.
async fn resume_anywhere(urls: &[String], token: &str) -> Client {
    let start = Instant::now();
    let mut next: Option<String> = None;
    let mut k = 0;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "cannot resume {token}"
        );
        let url = next.take().unwrap_or_else(|| {
            k += 1;
            urls[k % urls.len()].clone()
        });
        let Some(mut c) = try_connect(&url).await else {
            continue;
        };
        c.send(json!({"type": "resume", "token": token})).await;
        // The node may be going away right now: a close is a retry, not a failure.
        let r = loop {
            match c.next(Duration::from_secs(5)).await {
                Some(Incoming::Msg(m))
                    if ["joined", "moved", "error"].contains(&m["type"].as_str().unwrap_or("")) =>
                {
                    break m
                }
                Some(Incoming::Msg(_)) => {}
                _ => break Value::Null,
            }
        };
        match r["type"].as_str() {
            Some("joined") => return c,
            Some("moved") => next = r["url"].as_str().map(str::to_owned),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn try_connect(url: &str) -> Option<Client> {
    Client::try_connect_url(url, Enc::Json).await
}

/// One player sending `echo` inputs one at a time; follows `moved` and reconnects after a
/// dropped connection. Returns the inputs acknowledged.
async fn bot(
    mut c: Client,
    session: String,
    token: String,
    urls: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (String, String, u64) {
    let mut acked = 0u64;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        c.send(json!({"type": "input", "data": {"do": "echo", "n": 1}, "seq": seq}))
            .await;
        let answer: Option<Value> = loop {
            match c.next(Duration::from_secs(5)).await {
                Some(Incoming::Msg(m)) => {
                    let t = m["type"].as_str().unwrap_or("");
                    if (t == "ack" || t == "error") && m["seq"] == seq || t == "moved" {
                        break Some(m);
                    }
                }
                _ => break None,
            }
        };
        match answer {
            Some(m) if m["type"] == "ack" => acked += 1,
            // Not applied (moved, dropped, or refused while frozen): resume and go on.
            _ => c = resume_anywhere(&urls, &token).await,
        }
    }
    (session, token, acked)
}
