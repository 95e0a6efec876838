//! Gentle rebalancing: after a rolling upgrade the last node restarted holds nothing and the
//! others hold everything. Every few seconds a serving node compares its session count with
//! the live serving nodes' mean (from the directory's node rows); if it holds more than
//! `mean · 1.25 + 4`, it hands a few of its excess sessions (at most [`STEP`] per round) to
//! the least loaded node, exactly as a drain does (freeze after a durable batch, one
//! compare-and-set, players told `moved`). Small steps keep the pauses rare and avoid two
//! nodes pushing sessions back and forth: a node only ever gives to one below the mean.

use std::time::Duration;

use super::{
    drain::{hand_over, Batch},
    ws_url, ClusterHandle, NodeState,
};

/// Sessions handed over per round at most.
const STEP: usize = 8;
/// Between rounds.
const EVERY: Duration = Duration::from_secs(5);

pub(super) async fn rebalance_loop(h: ClusterHandle) {
    loop {
        tokio::time::sleep(EVERY).await;
        match h.state() {
            NodeState::Stopped => return,
            NodeState::Serving if h.gate().valid() => {}
            _ => continue,
        }
        round(&h).await;
    }
}

async fn round(h: &ClusterHandle) {
    let nodes: Vec<_> = h
        .members()
        .await
        .into_iter()
        .filter(|n| n.serving())
        .collect();
    if nodes.len() < 2 {
        return;
    }
    let mine = h.registry().len();
    // The node rows carry each node's count as of its last renewal; ours is exact.
    let total: usize = nodes
        .iter()
        .map(|n| {
            if n.id == h.node_id() {
                mine
            } else {
                n.sessions.max(0) as usize
            }
        })
        .sum();
    let mean = total as f64 / nodes.len() as f64;
    let limit = (mean * 1.25).ceil() as usize + 4;
    if mine <= limit {
        return;
    }
    let Some(target) = nodes
        .iter()
        .filter(|n| n.id != h.node_id() && (n.sessions.max(0) as f64) < mean)
        .min_by_key(|n| n.sessions)
    else {
        return;
    };
    let give = (mine - mean.ceil() as usize).min(STEP);
    let sessions: Vec<String> = h
        .registry()
        .list(None)
        .into_iter()
        .rev()
        .take(give)
        .map(|s| s.id)
        .collect();
    if sessions.is_empty() {
        return;
    }
    tracing::info!(mine, mean, target = %target.id, sessions = sessions.len(), "rebalance: handing sessions to a less loaded node");
    let batch = Batch {
        target: target.id.clone(),
        url: ws_url(&target.url),
        sessions,
    };
    let results = hand_over(h, h.registry(), batch).await;
    let moved = results.iter().filter(|(_, r)| r.is_ok()).count();
    tracing::info!(moved, of = results.len(), "rebalance: round done");
}
