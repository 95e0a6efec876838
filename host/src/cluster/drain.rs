//! Drain: hand every session of this node to another one before it stops (SIGTERM, or
//! `POST /admin/drain`). The sequence per session, each step waiting for the previous:
//! freeze the actor after a durable batch → sync the target (the session's first replica
//! in rendezvous order over the *other serving* nodes) until it acknowledges the exact
//! heads → `Handoff(epoch + 1)` → on acceptance tell the players `moved{url}` and drop the
//! session here; on any failure the session resumes here at its old epoch and is reported.

use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::time::Instant;

use super::{replicate::replica_targets, ClusterHandle};
use crate::session::Registry;

/// Sessions handed over at once.
const PARALLEL: usize = 16;

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

/// Marks the node draining and hands over every session, within `grace`.
pub async fn drain(cluster: &ClusterHandle, registry: &Registry, grace: Duration) -> DrainReport {
    let start = Instant::now();
    let deadline = start + grace;
    cluster.set_draining().await;
    let ids: Vec<String> = registry.list(None).into_iter().map(|s| s.id).collect();
    tracing::info!(sessions = ids.len(), ?grace, "drain: handing sessions over");
    let results: Vec<(String, Result<Duration, String>)> = stream::iter(ids)
        .map(|id| async move {
            let r = hand_over(cluster, registry, &id, deadline).await;
            (id, r)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
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

async fn hand_over(
    cluster: &ClusterHandle,
    registry: &Registry,
    id: &str,
    deadline: Instant,
) -> Result<Duration, String> {
    let handle = registry.get(id).ok_or("already gone")?;
    let target = replica_targets(cluster, id)
        .into_iter()
        .next()
        .ok_or("no other serving node")?;
    let url = cluster
        .members()
        .into_iter()
        .find(|m| m.id == target.node)
        .map(|m| format!("ws://{}/ws", m.player_addr))
        .ok_or("target left")?;
    let hook = cluster.replication().ok_or("replication not started")?;
    let paused = Instant::now();
    let decide = handle.freeze().await.map_err(|e| e.to_string())?;
    match hook.hand_off(id, target.clone(), deadline).await {
        Ok(epoch) => {
            let _ = decide.send(Some(url));
            let pause = paused.elapsed();
            tracing::info!(
                target: "minotaur::activation",
                "handed_over session={id} from={} to={} epoch={epoch} pause_ms={}",
                cluster.node_id(),
                target.node,
                pause.as_millis()
            );
            Ok(pause)
        }
        Err(e) => {
            let _ = decide.send(None);
            Err(e.to_string())
        }
    }
}
