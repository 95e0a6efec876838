//! Partition: three nodes, each in its own network namespace; the node serving a session is
//! cut off from the other two while its player (in the test's namespace) can still reach it
//! and keeps sending inputs. The invariant: never two owners at once. The cut-off owner's
//! lease runs out and it stops acknowledging before the majority side takes the session over
//! at epoch + 1 (the activation is timestamped from the log); when the partition heals, the
//! old owner learns of the takeover from its next lease grant, sends its player to the new
//! owner and drops its stale copy, so exactly one node serves the session.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{
    common::{Client, Enc, Incoming},
    harness::{wait_until, TestCluster},
};

const LEASE_MS: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_owner_stops_before_the_majority_takes_over() {
    let cluster = TestCluster::start_in_netns(
        3,
        &["chaos"],
        &[
            "--lease-ms",
            &LEASE_MS.to_string(),
            "--rate-per-sec",
            "10000",
            "--rate-burst",
            "10000",
        ],
    );
    cluster.wait_all_joined(Duration::from_secs(20)).await;

    // A session on n3, with a player who stays connected to n3 throughout.
    let owner = 2;
    let mut p = Client::connect_url(&cluster.nodes[owner].ws_url(), Enc::Json).await;
    p.send(json!({"type": "create", "game": "chaos"})).await;
    let session = p.recv_type("created").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = p
        .join(json!({"type": "join", "session": session, "name": "p"}))
        .await;
    let token = joined["token"].as_str().unwrap().to_owned();
    let mut seq = 0;
    for _ in 0..5 {
        seq += 1;
        p.input_ok(json!({"do": "echo", "n": 1}), seq).await;
    }
    // Its replica (on a majority-side node) has every acked input.
    cluster.wait_replica_settled(&[0, 1], &session).await;

    let lab = cluster.lab.as_ref().expect("netns lab");
    lab.cut(owner, 0);
    lab.cut(owner, 1);
    let cut_at = Instant::now();

    // Keep playing on the old owner: it acknowledges until its lease runs out, then holds
    // the inputs (a pause), and never acknowledges again once the session moved.
    let mut acks_after_cut: Vec<Instant> = Vec::new();
    let mut resumed: Option<(Client, Instant)> = None;
    let mut k = 0;
    while resumed.is_none() {
        assert!(
            cut_at.elapsed() < Duration::from_secs(40),
            "the majority never took the session over; cluster log: {:#?}",
            cluster
                .log_lines()
                .iter()
                .filter(|l| !l.text.contains("chitchat"))
                .map(|l| format!("[{}] {}", l.node, l.text))
                .collect::<Vec<_>>()
        );
        seq += 1;
        p.send(json!({"type": "input", "data": {"do": "echo", "n": 1}, "seq": seq}))
            .await;
        let deadline = Instant::now() + Duration::from_millis(100);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match p.next(left).await {
                Some(Incoming::Msg(m)) if m["type"] == "ack" => acks_after_cut.push(Instant::now()),
                Some(Incoming::Msg(_)) => {}
                Some(Incoming::Closed(f)) => panic!("the old owner closed the player: {f:?}"),
                None => break,
            }
        }
        // Meanwhile: is the session served on the majority side yet?
        k += 1;
        if let Some(c) = try_resume(&cluster.nodes[k % 2].ws_url(), &token).await {
            resumed = Some((c, Instant::now()));
        }
    }
    let (mut q, resumed_at) = resumed.unwrap();
    let activation = cluster
        .log_lines()
        .into_iter()
        .find(|l| {
            l.text.contains(&format!("activated session={session}")) && l.text.contains("epoch=2")
        })
        .expect("an activation at epoch 2 was logged");
    assert_ne!(activation.node, "n3", "{}", activation.text);
    let last_ack = acks_after_cut.last().copied();
    eprintln!(
        "partition: {} acks on the old owner after the cut, the last {:?} after it; takeover \
         activated {:?} after the cut, served {:?} after it",
        acks_after_cut.len(),
        last_ack.map(|t| t - cut_at),
        activation.at - cut_at,
        resumed_at - cut_at,
    );
    // Never two owners: the old owner's last acknowledgement came before the new owner
    // started, with the lease margin to spare.
    if let Some(last) = last_ack {
        assert!(
            last < activation.at,
            "the old owner acknowledged an input {:?} after the new owner started",
            last - activation.at
        );
    }
    // The new owner serves: an input goes through there.
    let data = q.recv_type("view").await;
    let count = data["data"]["count"].as_u64().expect("count");
    assert!(count >= 5, "the replicated inputs were lost: {data}");
    q.input_ok(json!({"do": "echo", "n": 1}), 1).await;

    // Heal: the old owner hears of the takeover with its next lease grant, sends the player
    // on and drops its copy. The player on n3 still has inputs queued there: none of them
    // may be acknowledged by n3.
    lab.heal(owner, 0);
    lab.heal(owner, 1);
    let healed = Instant::now();
    let told: Value = loop {
        assert!(
            healed.elapsed() < Duration::from_secs(20),
            "the old owner never let the player go"
        );
        match p.next(Duration::from_millis(200)).await {
            Some(Incoming::Msg(m)) if m["type"] == "ack" => {
                panic!("the old owner acknowledged an input after the takeover: {m}")
            }
            Some(Incoming::Msg(m)) if m["type"] == "moved" || m["code"] == "session_moved" => {
                break m
            }
            Some(Incoming::Msg(_)) | None => {}
            Some(Incoming::Closed(f)) => panic!("closed without being told where to go: {f:?}"),
        }
    };
    if told["type"] == "moved" {
        let url = told["url"].as_str().unwrap();
        assert_eq!(
            url,
            cluster.nodes[activation_index(&activation.node)].ws_url(),
            "{told}"
        );
    }
    let (c, s) = (&cluster, session.clone());
    wait_until(Duration::from_secs(10), "n3 dropped its stale copy", || {
        let s = s.clone();
        async move { !served_on(c, owner, &s).await }
    })
    .await;
    let mut owners = Vec::new();
    for i in 0..3 {
        if served_on(&cluster, i, &session).await {
            owners.push(i);
        }
    }
    assert_eq!(
        owners,
        vec![activation_index(&activation.node)],
        "serving nodes"
    );
    cluster.assert_single_owner();
}

fn activation_index(node: &str) -> usize {
    node.trim_start_matches('n').parse::<usize>().unwrap() - 1
}

/// Does node `i` list `session` among the sessions it serves?
async fn served_on(cluster: &TestCluster, i: usize, session: &str) -> bool {
    let Some(list) = cluster.get_json(i, "/api/sessions").await else {
        return false;
    };
    list.as_array()
        .is_some_and(|a| a.iter().any(|s| s["id"] == session))
}

/// Resume `token` at `url`, following one `moved`; `None` if the session is not served
/// there yet.
async fn try_resume(url: &str, token: &str) -> Option<Client> {
    let mut c = Client::try_connect_url(url, Enc::Json).await?;
    c.send(json!({"type": "resume", "token": token})).await;
    let r = loop {
        match c.next(Duration::from_secs(2)).await {
            Some(Incoming::Msg(m))
                if ["joined", "error", "moved"].contains(&m["type"].as_str().unwrap_or("")) =>
            {
                break m
            }
            Some(Incoming::Msg(_)) => {}
            _ => return None,
        }
    };
    match r["type"].as_str() {
        Some("joined") => Some(c),
        Some("moved") => {
            let mut d = Client::try_connect_url(r["url"].as_str()?, Enc::Json).await?;
            d.send(json!({"type": "resume", "token": token})).await;
            loop {
                match d.next(Duration::from_secs(2)).await {
                    Some(Incoming::Msg(m)) if m["type"] == "joined" => return Some(d),
                    Some(Incoming::Msg(m)) if m["type"] == "error" => return None,
                    Some(Incoming::Msg(_)) => {}
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}
