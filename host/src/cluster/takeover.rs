//! The sweep: every sixth of a lease a serving node with a valid lease (1) claims the
//! orphans it ranks first among the live serving nodes (rendezvous hashing, so the live
//! nodes split a dead node's sessions without talking to each other; an orphan nobody
//! claimed within two leases is claimed by anyone), and (2) starts every session the
//! directory names it the owner of but it does not run yet (hand-offs to it; the LISTEN
//! task wakes the sweep at once when one arrives). Claims are compare-and-set of
//! `(owner, epoch)` (`Db::claim`), so two claimants never both win.

use std::time::Duration;

use futures_util::StreamExt;
use minotaur_cluster::{placement, Announcement, Claim};

use super::{ClusterHandle, NodeState};

/// Sessions started at once (instantiation and restore are CPU work; loads overlap).
const ACTIVATE_PARALLEL: usize = 16;
/// Most orphans looked at in one sweep.
const SWEEP_LIMIT: i64 = 5000;

pub(super) async fn sweep_loop(h: ClusterHandle) {
    let every = h.timing().sweep_every();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = h.sweep_now().notified() => {}
        }
        match h.state() {
            NodeState::Stopped => return,
            NodeState::Serving if h.gate().valid() => {}
            _ => continue,
        }
        if let Err(e) = sweep(&h, h.gate().settled()).await {
            tracing::debug!(error = %e, "cluster: sweep failed; the next one tries again");
        }
    }
}

/// `claim`: this node's lease has been valid for a whole lease (see `LeaseGate::settled`);
/// until then it only starts what is handed to it.
async fn sweep(h: &ClusterHandle, claim: bool) -> Result<(), minotaur_cluster::DbError> {
    let timing = h.timing();
    let orphans = if claim {
        h.db().orphans(timing.takeover_grace(), SWEEP_LIMIT).await?
    } else {
        Vec::new()
    };
    if !orphans.is_empty() {
        let live: Vec<String> = h
            .db()
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.serving())
            .map(|n| n.id)
            .collect();
        let anyone_after = (timing.lease * 2).as_millis() as i64;
        let mine: Vec<Claim> = orphans
            .into_iter()
            .filter(|o| o.owner != h.node_id())
            .filter(|o| {
                o.orphaned_ms > anyone_after
                    || placement::rank(&o.session, &live).first() == Some(&h.node_id())
            })
            .map(|o| Claim {
                session: o.session,
                owner: o.owner,
                epoch: o.epoch,
            })
            .collect();
        if !mine.is_empty() {
            let from: Vec<String> = mine.iter().map(|c| c.owner.clone()).collect();
            let won = h
                .db()
                .claim(h.node_id(), &mine, timing.takeover_grace())
                .await?;
            if !won.is_empty() {
                let mut from = from;
                from.sort();
                from.dedup();
                tracing::info!(claimed = won.len(), of = mine.len(), from = ?from, "takeover: claimed sessions of nodes whose lease ran out");
                activate_all(h, won, "takeover").await;
            }
        }
    }
    // Hand-offs to this node (and anything it owns but does not run).
    let owned = h.db().owned(h.node_id()).await?;
    let missing: Vec<(String, i64)> = owned
        .into_iter()
        .filter(|(id, _)| h.registry().get(id).is_none())
        .collect();
    if !missing.is_empty() {
        activate_all(h, missing, "handoff").await;
    }
    Ok(())
}

/// Activates `sessions` (id, epoch held now), a few at a time; failures are logged. Hand-offs
/// are announced as served once started (in groups of [`ACTIVATE_PARALLEL`]), so the
/// sender's drain can pace itself on this node's progress.
pub(super) async fn activate_all(h: &ClusterHandle, sessions: Vec<(String, i64)>, why: &str) {
    let announce = why == "handoff";
    let started = futures_util::stream::iter(sessions)
        .map(|(id, epoch)| async move {
            let _guard = h.begin_activation(&id)?;
            match h.activate(&id, epoch, why).await {
                Ok(true) => Some(id),
                Ok(false) => None,
                Err(e) => {
                    tracing::warn!(session = %id, epoch, why, error = %e, "session not started here");
                    None
                }
            }
        })
        .buffer_unordered(ACTIVATE_PARALLEL)
        .filter_map(std::future::ready)
        .ready_chunks(ACTIVATE_PARALLEL);
    let mut started = std::pin::pin!(started);
    while let Some(ids) = started.next().await {
        if announce {
            // Spawned: the activations in the buffer progress only while it is polled.
            let db = h.db().clone();
            tokio::spawn(async move {
                if let Err(e) = db.announce_activated(&ids).await {
                    tracing::debug!(error = %e, "cluster: could not announce activations; the sender stops waiting at its deadline");
                }
            });
        }
    }
}

/// LISTENs for hand-off notifications naming this node and wakes the sweep at once
/// (the sweep's own period is the fallback for a lost notification).
pub(super) async fn listen_loop(h: ClusterHandle) {
    loop {
        if h.state() == NodeState::Stopped {
            return;
        }
        match listen(&h).await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: hand-off listener lost its connection; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn listen(h: &ClusterHandle) -> Result<(), minotaur_cluster::DbError> {
    let mut l = h.db().listener().await?;
    loop {
        let event = l.recv().await?;
        if h.state() == NodeState::Stopped {
            return Ok(());
        }
        match event {
            Announcement::Handoff { to, sessions, .. } if to == h.node_id() => {
                if sessions.is_empty() {
                    // Not listed (too many, or an older sender): look in the directory.
                    h.sweep_now().notify_one();
                } else {
                    // Start exactly these now, beside any sweep under way (an activation
                    // runs once per session either way).
                    let h = h.clone();
                    tokio::spawn(async move { activate_all(&h, sessions, "handoff").await });
                }
            }
            Announcement::Handoff { .. } => {}
            Announcement::Activated(sessions) => h.heard_activated(sessions),
            Announcement::Game(game) => {
                let h = h.clone();
                tokio::spawn(async move { super::publish::follow(&h, &game).await });
            }
        }
    }
}
