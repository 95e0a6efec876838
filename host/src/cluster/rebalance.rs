//! Gentle rebalancing: after a rolling upgrade the last node restarted holds nothing and the
//! others hold everything. Every few seconds a serving node compares its session count with
//! the live serving nodes' mean (the directory's exact counts of live sessions per owner,
//! not the counts nodes report at renewal, which lag a takeover); if it holds more than
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
    let Ok(counts) = h.db().session_counts().await else {
        return;
    };
    let counts: std::collections::HashMap<String, i64> = counts.into_iter().collect();
    let load = |id: &str| counts.get(id).copied().unwrap_or(0).max(0) as usize;
    let mine = load(h.node_id());
    let total: usize = nodes.iter().map(|n| load(&n.id)).sum();
    let mean = total as f64 / nodes.len() as f64;
    let limit = (mean * 1.25).ceil() as usize + 4;
    if mine <= limit {
        return;
    }
    let Some(target) = nodes
        .iter()
        .filter(|n| n.id != h.node_id() && (load(&n.id) as f64) < mean)
        .min_by_key(|n| load(&n.id))
    else {
        return;
    };
    let give = (mine - mean.ceil() as usize).min(STEP);
    // Those with the fewest players first: fewer people feel the pause.
    let mut listed = h.registry().list(None);
    listed.sort_by_key(|s| s.players);
    let sessions: Vec<String> = listed.into_iter().take(give).map(|s| s.id).collect();
    if sessions.is_empty() {
        return;
    }
    tracing::info!(mine, mean, target = %target.id, sessions = sessions.len(), "rebalance: handing sessions to a less loaded node");
    let batch = Batch {
        target: target.id.clone(),
        url: ws_url(&target.url),
        sessions,
    };
    let results = hand_over(h, h.registry(), batch, Some(super::drain::SERVING_WAIT)).await;
    let moved = results.iter().filter(|(_, r)| r.is_ok()).count();
    tracing::info!(moved, of = results.len(), "rebalance: round done");
}
