//! Crash takeover: when a node disappears from membership, every session whose replica is
//! held here with that node as owner, and for which this node ranks first among the live
//! serving nodes, is claimed at epoch + 1 with a majority of votes ([`may_promote`]; this
//! node's own vote is cast by the node task, which owns the [`minotaur_cluster::Voter`]).
//! With a majority the node task promotes the replica and starts the session. The node
//! task re-checks every second (`sweep`), so a round that found no majority is retried.

use std::time::Duration;

use minotaur_cluster::{ownership::may_promote, PeerMsg};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::ClusterHandle;

/// Requests from takeover tasks to the node task.
pub enum NodeCmd {
    /// Cast this node's own vote.
    Vote {
        session: String,
        epoch: u64,
        owner: String,
        reply: oneshot::Sender<bool>,
    },
    /// A majority voted: promote the replica to `(this node, epoch)` and serve it, if it
    /// still names `owner` at an older epoch.
    Promote {
        session: String,
        epoch: u64,
        owner: String,
    },
    /// A claim task ended (promoted or gave up): the sweep may claim the session again.
    ClaimDone { session: String },
    /// List the replicas held here (for `/api/cluster`).
    Replicas {
        reply: oneshot::Sender<Vec<super::node::ReplicaView>>,
    },
}

/// Gives up on a takeover round after this long; the node's sweep starts a new one while the
/// owner is still gone.
const GIVE_UP: Duration = Duration::from_secs(15);

/// Asks for votes until a majority of `voters` granted `(session, epoch)`, then tells the
/// node task to promote.
pub async fn claim(
    cluster: ClusterHandle,
    cmds: mpsc::UnboundedSender<NodeCmd>,
    session: String,
    epoch: u64,
    owner: String,
    voters: usize,
) {
    let started = Instant::now();
    let mut granted: Vec<String> = Vec::new();
    while started.elapsed() < GIVE_UP {
        if !granted.iter().any(|n| n == cluster.node_id()) {
            let (reply, rx) = oneshot::channel();
            let _ = cmds.send(NodeCmd::Vote {
                session: session.clone(),
                epoch,
                owner: owner.clone(),
                reply,
            });
            if rx.await.unwrap_or(false) {
                granted.push(cluster.node_id().to_owned());
            }
        }
        for m in cluster.members() {
            if m.id == cluster.node_id() || m.id == owner || granted.contains(&m.id) {
                continue;
            }
            let msg = PeerMsg::VoteRequest {
                session: session.clone(),
                epoch,
                owner: owner.clone(),
                candidate: cluster.node_id().to_owned(),
            };
            let reply = cluster
                .net()
                .request(&m.id, m.peer_addr, msg, Duration::from_millis(500))
                .await;
            if let Ok(PeerMsg::Vote { granted: true }) = reply {
                granted.push(m.id.clone());
            }
        }
        if may_promote(granted.len(), voters) {
            tracing::info!(%session, epoch, votes = granted.len(), voters, took_ms = started.elapsed().as_millis() as u64, "takeover: majority reached");
            let _ = cmds.send(NodeCmd::Promote {
                session: session.clone(),
                epoch,
                owner,
            });
            let _ = cmds.send(NodeCmd::ClaimDone { session });
            return;
        }
        // Voters refuse while they may still owe the dead owner a lease; ask again soon.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(%session, epoch, votes = granted.len(), voters, "takeover: no majority yet; the next sweep tries again");
    let _ = cmds.send(NodeCmd::ClaimDone { session });
}
