//! Drain: hand every session of this node to another one before it stops (SIGTERM, or
//! `POST /admin/drain`). The node turns `draining` (no new sessions here), then per batch
//! of sessions going to one target: freeze each actor after a durable batch (its final
//! state written, fenced, at its epoch) → one compare-and-set moving the batch to the
//! target at `epoch + 1`, with a NOTIFY the target hears at commit → tell each moved
//! session's players `moved{url}`; a session the compare-and-set did not move resumes here
//! and is reported. Targets are the live serving nodes, the least loaded first.
//!
//! Pacing: a batch's slot is held until its target announces it serves the batch (or
//! [`SERVING_WAIT`] passes), so at most `PARALLEL × BATCH` sessions are frozen-but-not-
//! served at once and a player's pause is one batch's hand-off plus its activation — not
//! the queue of every session frozen before it. A target that never confirms (an older
//! build) is not waited on again in this drain.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use futures_util::{stream, StreamExt};
use tokio::{sync::oneshot, time::Instant};

use super::{ws_url, ClusterHandle};
use crate::session::Registry;

/// Sessions moved by one compare-and-set (and so frozen together).
const BATCH: usize = 16;
/// Batches in flight at once (frozen, or handed over and not yet served by the target).
const PARALLEL: usize = 4;
/// Longest wait for a target to announce it serves a batch.
pub(super) const SERVING_WAIT: Duration = Duration::from_secs(2);

/// What a drain did.
#[derive(Debug, Default, Clone)]
pub struct DrainReport {
    pub handed_over: usize,
    /// Session id and why it stayed.
    pub failed: Vec<(String, String)>,
    /// Pause per handed-over session (freeze → players told), in order of completion.
    pub pauses: Vec<Duration>,
    /// Freeze → the target announced it serves the session, for those it confirmed.
    pub serving: Vec<Duration>,
    pub took: Duration,
}

/// Sessions going to one target together.
pub(super) struct Batch {
    pub target: String,
    /// The target's websocket URL.
    pub url: String,
    pub sessions: Vec<String>,
}

/// Marks the node draining and hands over every session, within `grace`.
pub async fn drain(cluster: &ClusterHandle, registry: &Registry, grace: Duration) -> DrainReport {
    let start = Instant::now();
    cluster.set_draining().await;
    let ids: Vec<String> = registry.list(None).into_iter().map(|s| s.id).collect();
    tracing::info!(sessions = ids.len(), ?grace, "drain: handing sessions over");
    let mut report = DrainReport::default();
    let batches = plan(cluster, ids, &mut report).await;
    // Targets that let a batch pass SERVING_WAIT unconfirmed: not waited on again.
    let silent: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let results: Vec<Vec<(String, Result<Handed, String>)>> = stream::iter(batches)
        .map(|b| {
            let silent = &silent;
            async move {
                let target = b.target.clone();
                let wait = (!silent.lock().expect("silent").contains(&target))
                    .then_some(SERVING_WAIT);
                let out = hand_over(cluster, registry, b, wait).await;
                let moved = out.iter().filter(|(_, r)| r.is_ok()).count();
                let confirmed = out
                    .iter()
                    .filter(|(_, r)| matches!(r, Ok(h) if h.serving.is_some()))
                    .count();
                if wait.is_some() && moved > 0 && confirmed == 0 {
                    tracing::warn!(%target, "drain: the target did not confirm serving a batch; not waiting on it again");
                    silent.lock().expect("silent").insert(target);
                }
                out
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for (id, r) in results.into_iter().flatten() {
        match r {
            Ok(h) => {
                report.handed_over += 1;
                report.pauses.push(h.pause);
                report.serving.extend(h.serving);
            }
            Err(why) => {
                tracing::warn!(session = %id, %why, "drain: session not handed over");
                report.failed.push((id, why));
            }
        }
    }
    report.took = start.elapsed();
    let (pause, serving) = (percentiles(&report.pauses), percentiles(&report.serving));
    tracing::info!(
        handed_over = report.handed_over,
        failed = report.failed.len(),
        took_ms = report.took.as_millis() as u64,
        pause_p50_ms = pause.0,
        pause_p99_ms = pause.1,
        confirmed = report.serving.len(),
        serving_p50_ms = serving.0,
        serving_p99_ms = serving.1,
        "drain finished"
    );
    report
}

/// p50 and p99 in milliseconds (0 when empty).
fn percentiles(d: &[Duration]) -> (u64, u64) {
    let mut v = d.to_vec();
    v.sort();
    let at = |q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .map_or(0, |d| d.as_millis() as u64)
    };
    (at(0.5), at(0.99))
}

/// A session handed over: its pause until its players were told, and until its target
/// announced serving it (`None`: not waited for, or not confirmed in time).
#[derive(Debug, Clone, Copy)]
pub(super) struct Handed {
    pub pause: Duration,
    pub serving: Option<Duration>,
}

/// Spreads the sessions over the live serving nodes other than this one, the least loaded
/// first (counting what this drain gives each), in batches of [`BATCH`] taken from the
/// targets in turn.
async fn plan(cluster: &ClusterHandle, ids: Vec<String>, report: &mut DrainReport) -> Vec<Batch> {
    let mut targets: Vec<(String, String, usize)> = cluster
        .members()
        .await
        .into_iter()
        .filter(|n| n.serving() && n.id != cluster.node_id())
        .map(|n| (n.id, n.url, n.sessions.max(0) as usize))
        .collect();
    if targets.is_empty() {
        for id in ids {
            tracing::warn!(session = %id, why = "no other serving node", "drain: session not handed over");
            report.failed.push((id, "no other serving node".into()));
        }
        return Vec::new();
    }
    let mut by_target: HashMap<String, Vec<String>> = HashMap::new();
    for id in ids {
        let t = targets
            .iter_mut()
            .min_by_key(|(_, _, load)| *load)
            .expect("targets is not empty");
        t.2 += 1;
        by_target.entry(t.0.clone()).or_default().push(id);
    }
    let mut queues: Vec<std::vec::IntoIter<Batch>> = targets
        .iter()
        .filter_map(|(id, url, _)| {
            let sessions = by_target.remove(id)?;
            let batches: Vec<Batch> = sessions
                .chunks(BATCH)
                .map(|c| Batch {
                    target: id.clone(),
                    url: ws_url(url),
                    sessions: c.to_vec(),
                })
                .collect();
            Some(batches.into_iter())
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

/// Hands one batch over: freeze every session (each after a durable batch), move them in
/// one compare-and-set, then tell each where its players go (or to resume here). With
/// `wait_serving`, returns only once the target has announced it serves the moved sessions
/// (or that long has passed).
pub(super) async fn hand_over(
    cluster: &ClusterHandle,
    registry: &Registry,
    batch: Batch,
    wait_serving: Option<Duration>,
) -> Vec<(String, Result<Handed, String>)> {
    let mut out = Vec::with_capacity(batch.sessions.len());
    // Subscribed before the compare-and-set: the target may answer before it returns.
    let mut activations = cluster.activations();
    let paused = Instant::now();
    let frozen = futures_util::future::join_all(batch.sessions.into_iter().map(|id| async {
        let r = match registry.get(&id) {
            None => Err("already gone".to_string()),
            Some(handle) => {
                let epoch = handle.status().epoch;
                handle
                    .freeze()
                    .await
                    .map(|d| (d, epoch))
                    .map_err(|e| e.to_string())
            }
        };
        (id, r)
    }))
    .await;
    let mut decide: HashMap<String, oneshot::Sender<Option<String>>> = HashMap::new();
    let mut held: Vec<(String, i64)> = Vec::new();
    for (id, r) in frozen {
        match r {
            Ok((d, epoch)) => {
                held.push((id.clone(), epoch as i64));
                decide.insert(id, d);
            }
            Err(why) => out.push((id, Err(why))),
        }
    }
    if held.is_empty() {
        return out;
    }
    let froze = paused.elapsed();
    let moved = cluster
        .db()
        .hand_off(cluster.node_id(), &batch.target, &held)
        .await;
    let moved = match moved {
        Ok(m) => m,
        Err(e) => {
            for (id, d) in decide {
                let _ = d.send(None);
                out.push((id, Err(format!("hand-off not written: {e}"))));
            }
            return out;
        }
    };
    tracing::info!(
        target = %batch.target,
        sessions = moved.len(),
        freeze_ms = froze.as_millis() as u64,
        handoff_ms = (paused.elapsed() - froze).as_millis() as u64,
        "drain: batch done"
    );
    let mut handed: Vec<(String, Duration)> = Vec::with_capacity(moved.len());
    for (id, epoch) in moved {
        let Some(d) = decide.remove(&id) else {
            continue;
        };
        let _ = d.send(Some(batch.url.clone()));
        let pause = paused.elapsed();
        tracing::info!(
            target: "minotaur::activation",
            "handed_over session={id} from={} to={} epoch={epoch} pause_ms={}",
            cluster.node_id(),
            batch.target,
            pause.as_millis()
        );
        handed.push((id, pause));
    }
    // Not moved (the directory changed under us): resume them here.
    for (id, d) in decide {
        let _ = d.send(None);
        out.push((id, Err("the directory refused the hand-off".into())));
    }
    let mut serving: HashMap<String, Duration> = HashMap::new();
    if let Some(wait) = wait_serving.filter(|_| !handed.is_empty()) {
        let mut pending: HashSet<&str> = handed.iter().map(|(id, _)| id.as_str()).collect();
        let deadline = paused + wait;
        while !pending.is_empty() {
            match tokio::time::timeout_at(deadline, activations.recv()).await {
                Ok(Ok(ids)) => {
                    for id in ids.iter() {
                        if pending.remove(id.as_str()) {
                            serving.insert(id.clone(), paused.elapsed());
                        }
                    }
                }
                // Missed some announcements: the rest end at the deadline.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
    }
    for (id, pause) in handed {
        let serving = serving.get(&id).copied();
        out.push((id, Ok(Handed { pause, serving })));
    }
    out
}
