//! Membership bounds with three in-process nodes gossiping over loopback UDP: all see all,
//! statuses and loads propagate, a crashed node and a leaving node disappear, all within the
//! bounds `MembershipConfig` states.

mod common;

use std::net::SocketAddr;

use common::*;
use minotaur_cluster::membership::{Member, Membership, MembershipConfig, NodeStatus};

fn config(i: usize, gossip: &[SocketAddr]) -> MembershipConfig {
    let mut cfg = MembershipConfig::new(format!("node-{i}"), gossip[i], loopback());
    cfg.peer_addr = format!("127.0.0.1:{}", 17000 + i).parse().unwrap();
    cfg.player_addr = format!("127.0.0.1:{}", 18000 + i);
    cfg.cluster_id = format!("test-{}", gossip[0].port());
    // Every node seeds from the others, as a peer list (or one DNS name) would give it.
    cfg.seeds = gossip
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, a)| a.to_string())
        .collect();
    cfg
}

fn ids(members: &[Member]) -> Vec<String> {
    members.iter().map(|m| m.id.clone()).collect()
}

fn find(m: &Membership, id: &str) -> Option<Member> {
    m.members().into_iter().find(|x| x.id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_see_each_other_and_departures_within_the_bound() {
    let gossip: Vec<SocketAddr> = (0..3).map(|_| free_udp()).collect();
    let cfg = config(0, &gossip);
    let (join_bound, detection_bound) = (cfg.join_bound(), cfg.detection_bound());
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Membership::start(config(i, &gossip)).await.unwrap());
    }
    let all = vec!["node-0", "node-1", "node-2"];
    let took = wait_until("all three see all three", join_bound, || {
        nodes.iter().all(|n| ids(&n.members()) == all)
    })
    .await;
    eprintln!("join seen by all in {took:?} (bound {join_bound:?})");
    let m = find(&nodes[0], "node-2").unwrap();
    assert_eq!(
        m.peer_addr,
        "127.0.0.1:17002".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(m.player_addr, "127.0.0.1:18002");
    assert_eq!(m.status, NodeStatus::Serving);
    assert_eq!(m.version, env!("CARGO_PKG_VERSION"));

    // Status and load propagate.
    nodes[1].set_status(NodeStatus::Draining).await;
    nodes[1].set_load(42).await;
    let took = wait_until(
        "node-1 is draining with load 42 everywhere",
        join_bound,
        || {
            nodes.iter().all(|n| {
                find(n, "node-1").is_some_and(|m| m.status == NodeStatus::Draining && m.load == 42)
            })
        },
    )
    .await;
    eprintln!("status seen by all in {took:?}");

    // The watch reports the same list.
    let mut w = nodes[0].watch();
    assert_eq!(ids(&w.borrow_and_update()), all);

    // A crash (no goodbye): gone from every view within the detection bound.
    let crashed = nodes.pop().unwrap();
    crashed.kill();
    let took = wait_until("node-2's death seen by all", detection_bound, || {
        nodes
            .iter()
            .all(|n| ids(&n.members()) == ["node-0", "node-1"])
    })
    .await;
    eprintln!("death seen by all in {took:?} (bound {detection_bound:?})");
    assert!(w.has_changed().unwrap());

    // A graceful leave: gone within the (shorter) join bound.
    let leaving = nodes.pop().unwrap();
    let left = tokio::spawn(leaving.shutdown());
    let took = wait_until("node-1's leave seen by node-0", join_bound, || {
        ids(&nodes[0].members()) == ["node-0"]
    })
    .await;
    eprintln!("leave seen in {took:?}");
    left.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_later_is_seen_by_all() {
    let gossip: Vec<SocketAddr> = (0..3).map(|_| free_udp()).collect();
    let bound = config(0, &gossip).join_bound();
    let a = Membership::start(config(0, &gossip)).await.unwrap();
    let b = Membership::start(config(1, &gossip)).await.unwrap();
    wait_until("two nodes", bound, || {
        a.members().len() == 2 && b.members().len() == 2
    })
    .await;
    // The third node seeds from a DNS name for node-0 ("localhost" resolves to loopback).
    let mut cfg = config(2, &gossip);
    cfg.seeds = vec![format!("localhost:{}", gossip[0].port())];
    let c = Membership::start(cfg).await.unwrap();
    let took = wait_until("the newcomer is seen by all", bound, || {
        [&a, &b, &c].iter().all(|n| n.members().len() == 3)
    })
    .await;
    eprintln!("late join seen by all in {took:?}");
}
