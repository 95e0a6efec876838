//! Drain: hand every session of this node to another one before it stops (SIGTERM, or
//! `POST /admin/drain`). The sequence per session, each step waiting for the previous:
//! freeze the actor after a durable batch → sync the target (the session's first replica
//! in rendezvous order over the *other serving* nodes) until it acknowledges the exact
//! heads → `Handoff(epoch + 1)` → on acceptance tell the players `moved{url}` and drop the
//! session here; on any failure the session resumes here at its old epoch and is reported.

use std::{collections::HashMap, time::Duration};

use futures_util::{stream, StreamExt};
use minotaur_cluster::ReplicaTarget;
use tokio::{sync::oneshot, time::Instant};

use super::{replicate::replica_targets, ClusterHandle};
use crate::session::Registry;

/// Sessions handed to one target in one `HandoffBatch` round trip (and so activated
/// together there, their documents written in one group commit). A session's pause is about
/// its whole batch's handoff, so this trades pause length against round trips: on the
/// benchmark machine (1,000 sessions, 4 in flight) 25 drained in 1.9-2.4 s with pauses p50
/// ≈ 200 ms, 12 in 2.3 s with p50 ≈ 100 ms, 8 in 2.8 s with p50 ≈ 90 ms.
const BATCH: usize = 12;

/// Batches in flight at once (spread over the targets).
const PARALLEL: usize = 4;

/// Gossip rounds a draining node stays announced as `draining` before the drain returns
/// (and the node leaves). Peers decide whether a departed node leaves the electorate by the
/// last status they saw; one that only ever saw it serving counts it as crashed and keeps
/// it as a voter. With batched handoffs a small drain takes ~50 ms, less than a gossip
/// round, so a peer that had joined a moment before (start-first rolling upgrade) missed
/// the draining state: it then counted 4 voters for 3 nodes and found no takeover
/// majority after the next crash (Docker e2e). Ten rounds: 1 s at the default interval.
const ANNOUNCE_ROUNDS: u32 = 10;

/// What a drain did.
#[derive(Debug, Default, Clone)]
pub struct DrainReport {
    pub handed_over: usize,
    /// Session id and why it stayed.
    pub failed: Vec<(String, String)>,
    /// Pause per handed-over session (freeze → players told), in order of completion.
    pub pauses: Vec<Duration>,
    pub took: Duration,
}

/// One batch: sessions going to the same target.
struct Batch {
    target: ReplicaTarget,
    url: String,
    /// The target understands `HandoffBatch` (protocol 2).
    batched: bool,
    sessions: Vec<String>,
}

/// Marks the node draining and hands over every session, within `grace`.
pub async fn drain(cluster: &ClusterHandle, registry: &Registry, grace: Duration) -> DrainReport {
    let start = Instant::now();
    let deadline = start + grace;
    cluster.set_draining().await;
    let ids: Vec<String> = registry.list(None).into_iter().map(|s| s.id).collect();
    tracing::info!(sessions = ids.len(), ?grace, "drain: handing sessions over");
    let mut results: Vec<(String, Result<Duration, String>)> = Vec::new();
    let batches = plan(cluster, ids, &mut results);
    let handed: Vec<Vec<(String, Result<Duration, String>)>> = stream::iter(batches)
        .map(|b| hand_over(cluster, registry, b, deadline))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results.extend(handed.into_iter().flatten());
    let mut report = DrainReport::default();
    for (id, r) in results {
        match r {
            Ok(pause) => {
                report.handed_over += 1;
                report.pauses.push(pause);
            }
            Err(why) => {
                tracing::warn!(session = %id, %why, "drain: session not handed over");
                report.failed.push((id, why));
            }
        }
    }
    report.took = start.elapsed();
    // Not a synchronisation with any one peer: a floor on how long the draining state is
    // gossiped, so every peer sees this node leave as drained (see `ANNOUNCE_ROUNDS`).
    tokio::time::sleep_until(start + cluster.config().gossip_interval() * ANNOUNCE_ROUNDS).await;
    let mut p = report.pauses.clone();
    p.sort();
    let pct = |q: f64| p.get(((p.len() as f64 * q) as usize).min(p.len().saturating_sub(1)));
    tracing::info!(
        handed_over = report.handed_over,
        failed = report.failed.len(),
        took_ms = report.took.as_millis() as u64,
        pause_p50_ms = pct(0.5).map_or(0, |d| d.as_millis() as u64),
        pause_p99_ms = pct(0.99).map_or(0, |d| d.as_millis() as u64),
        "drain finished"
    );
    report
}

/// Groups the sessions by target (each session's first replica in rendezvous order over the
/// other serving nodes) into batches of [`BATCH`], taking the targets in turn so that all of
/// them work at once. Sessions with no target go to `failed`.
fn plan(
    cluster: &ClusterHandle,
    ids: Vec<String>,
    failed: &mut Vec<(String, Result<Duration, String>)>,
) -> Vec<Batch> {
    let members = cluster.members();
    let mut by_target: Vec<Batch> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for id in ids {
        let Some(target) = replica_targets(cluster, &id).into_iter().next() else {
            failed.push((id, Err("no other serving node".into())));
            continue;
        };
        let Some(member) = members.iter().find(|m| m.id == target.node) else {
            failed.push((id, Err("target left".into())));
            continue;
        };
        let i = *index.entry(target.node.clone()).or_insert_with(|| {
            by_target.push(Batch {
                target: target.clone(),
                url: format!("ws://{}/ws", member.player_addr),
                batched: member.batches(),
                sessions: Vec::new(),
            });
            by_target.len() - 1
        });
        by_target[i].sessions.push(id);
    }
    let mut queues: Vec<std::vec::IntoIter<Batch>> = by_target
        .into_iter()
        .map(|all| {
            let chunks: Vec<Batch> = all
                .sessions
                .chunks(BATCH)
                .map(|c| Batch {
                    target: all.target.clone(),
                    url: all.url.clone(),
                    batched: all.batched,
                    sessions: c.to_vec(),
                })
                .collect();
            chunks.into_iter()
        })
        .collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for q in queues.iter_mut() {
            out.extend(q.next());
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Hands one batch over: freeze every session of it (each after a durable batch), sync and
/// hand them to the target together, then tell each session where its players go (or to
/// resume here).
async fn hand_over(
    cluster: &ClusterHandle,
    registry: &Registry,
    batch: Batch,
    deadline: Instant,
) -> Vec<(String, Result<Duration, String>)> {
    let mut out = Vec::with_capacity(batch.sessions.len());
    let Some(hook) = cluster.replication() else {
        return batch
            .sessions
            .into_iter()
            .map(|id| (id, Err("replication not started".into())))
            .collect();
    };
    let paused = Instant::now();
    let frozen = futures_util::future::join_all(batch.sessions.into_iter().map(|id| async {
        let r = match registry.get(&id) {
            None => Err("already gone".to_string()),
            Some(handle) => handle.freeze().await.map_err(|e| e.to_string()),
        };
        (id, r)
    }))
    .await;
    let mut decide: HashMap<String, oneshot::Sender<Option<String>>> = HashMap::new();
    for (id, r) in frozen {
        match r {
            Ok(d) => {
                decide.insert(id, d);
            }
            Err(why) => out.push((id, Err(why))),
        }
    }
    if decide.is_empty() {
        return out;
    }
    let ids: Vec<String> = decide.keys().cloned().collect();
    let froze = paused.elapsed();
    let results = hook
        .hand_off_batch(ids, batch.target.clone(), batch.batched, deadline)
        .await;
    tracing::info!(
        target = %batch.target.node,
        sessions = results.len(),
        freeze_ms = froze.as_millis() as u64,
        handoff_ms = (paused.elapsed() - froze).as_millis() as u64,
        "drain: batch done"
    );
    for (id, r) in results {
        let Some(d) = decide.remove(&id) else {
            continue;
        };
        match r {
            Ok(epoch) => {
                let _ = d.send(Some(batch.url.clone()));
                let pause = paused.elapsed();
                tracing::info!(
                    target: "minotaur::activation",
                    "handed_over session={id} from={} to={} epoch={epoch} pause_ms={}",
                    cluster.node_id(),
                    batch.target.node,
                    pause.as_millis()
                );
                out.push((id, Ok(pause)));
            }
            Err(e) => {
                let _ = d.send(None);
                out.push((id, Err(e.to_string())));
            }
        }
    }
    // Not in the answer (cannot happen): resume them here.
    for (id, d) in decide {
        let _ = d.send(None);
        out.push((id, Err("no handoff result".into())));
    }
    out
}
