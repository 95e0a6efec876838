//! The session actor's side of cluster ownership: before every batch it asks the node's
//! [`OwnerGate`] (serve; hold the batch while the node has no valid lease; or stop,
//! because another node owns the session now), and an idle actor wakes when the gate's
//! answers change, so a copy taken over elsewhere stops without waiting for a batch.
//! Stopping sends the players `moved` to the new owner; nothing of this copy is
//! acknowledged any more. Single-node mode has no gate.

use tokio::{sync::watch, time::Instant};

use super::Actor;
use crate::{
    protocol::{ErrorCode, ServerMsg},
    session::gate::Admission,
};

impl Actor {
    /// Asks the cluster's gate before a batch: serve, hold the batch while this node has no
    /// valid lease (the players see a pause), or — taken over elsewhere at a newer epoch —
    /// send the players to the new owner and stop (`false`; the stale copy is dropped).
    pub(super) async fn admitted(&mut self) -> bool {
        let Some(gate) = self.persist.gate.clone() else {
            return true;
        };
        let mut changed = gate.subscribe();
        let mut paused: Option<Instant> = None;
        loop {
            changed.borrow_and_update();
            match gate.check(&self.id, self.epoch) {
                Admission::Serve => {
                    if let Some(since) = paused {
                        tracing::info!(session = %self.id, paused_ms = since.elapsed().as_millis() as u64, "lease back; session resumes");
                    }
                    return true;
                }
                Admission::Lost => {
                    self.fenced(gate.locate(&self.id).await).await;
                    return false;
                }
                Admission::Wait => {
                    if paused.is_none() {
                        tracing::warn!(session = %self.id, epoch = self.epoch, "no ownership lease; session paused");
                        paused = Some(Instant::now());
                    }
                    if changed.changed().await.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    /// The gate says another node owns this session now: stop like [`Actor::fenced`].
    pub(super) async fn lost_now(&mut self) -> bool {
        let Some(gate) = self.persist.gate.clone() else {
            return false;
        };
        if gate.check(&self.id, self.epoch) != Admission::Lost {
            return false;
        }
        self.fenced(gate.locate(&self.id).await).await;
        true
    }

    /// Another node serves this session at a newer epoch: nothing more happens here. The
    /// players are sent there (or, if it cannot be found yet, disconnected so that they
    /// resume through any node) and this node's stale copy is removed.
    pub(super) async fn fenced(&mut self, url: Option<String>) {
        tracing::warn!(session = %self.id, epoch = self.epoch, url = ?url, "fenced: served elsewhere at a newer epoch; stopping here");
        crate::metrics::handoff("out", "fenced");
        self.moved_to = url.clone();
        let msg = match url {
            Some(url) => ServerMsg::Moved {
                session: self.id.clone(),
                url,
            },
            None => ServerMsg::error(
                ErrorCode::SessionMoved,
                "the session moved to another node; resume there with your token",
                None,
            ),
        };
        for conn in self.seats.values().filter_map(|s| s.conn.as_ref()) {
            conn.send(msg.clone());
        }
        // Pending replies are dropped unanswered: nothing of this copy is acknowledged.
        self.pending.clear();
        self.owned_elsewhere = true;
        self.ended = true;
    }
}

/// Waits until the gate's answers may have changed (never without a gate, or once the
/// gate is gone).
pub(super) async fn gate_changed(gate: &mut Option<watch::Receiver<u64>>) {
    match gate {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *gate = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
