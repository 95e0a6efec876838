//! Crash takeover: when a node disappears from membership, every session whose replica is
//! held here with that node as owner, and for which this node ranks first among the live
//! serving nodes, is claimed at epoch + 1 with a majority of votes ([`may_promote`]; this
//! node's own vote is cast by the node task, which owns the [`minotaur_cluster::Voter`]).
//! The sessions of one dead owner are claimed together: one vote request per voter and
//! round carries all of them (`VoteBatch`; one `VoteRequest` each for voters that speak
//! only protocol 1), and the voter persists its grants once per request. Sessions with a
//! majority go to the node task to be promoted and started; the rest are asked again every
//! [`RETRY`] (voters refuse until their lease promise to the dead owner has run out). The
//! node task re-checks every second (`sweep`), so a claim that gave up is started again.

use std::{collections::HashMap, time::Duration};

use futures_util::{stream, StreamExt};
use minotaur_cluster::{ownership::may_promote, Member, PeerMsg};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::ClusterHandle;

/// Requests from takeover tasks to the node task.
pub enum NodeCmd {
    /// Cast this node's own votes for taking `sessions` (with their new epochs) from
    /// `owner`; answers with the sessions granted (persisted before the answer).
    Vote {
        owner: String,
        sessions: Vec<(String, u64)>,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// A majority voted: promote each replica to `(this node, epoch)` and serve it, if it
    /// still names `owner` at an older epoch.
    Promote {
        owner: String,
        sessions: Vec<(String, u64)>,
    },
    /// Claims ended (promoted or gave up): the sweep may claim these sessions again.
    ClaimDone { sessions: Vec<String> },
    /// List the replicas held here (for `/api/cluster`).
    Replicas {
        reply: oneshot::Sender<Vec<super::node::ReplicaView>>,
    },
}

/// Gives up on a takeover claim after this long; the node's sweep starts a new one while the
/// owner is still gone.
const GIVE_UP: Duration = Duration::from_secs(15);

/// Pause between vote rounds for the sessions still short of a majority.
const RETRY: Duration = Duration::from_millis(50);

/// How long one vote request waits for its answer.
const VOTE_TIMEOUT: Duration = Duration::from_millis(500);

/// Asks for votes until a majority of `voters` granted each of `sessions` (`(session, new
/// epoch)`, all owned by `owner`), telling the node task to promote them as they get there.
pub async fn claim(
    cluster: ClusterHandle,
    cmds: mpsc::UnboundedSender<NodeCmd>,
    owner: String,
    sessions: Vec<(String, u64)>,
    voters: usize,
) {
    let started = Instant::now();
    let me = cluster.node_id().to_owned();
    // session → (epoch, voters that granted it)
    let mut open: HashMap<String, (u64, Vec<String>)> = sessions
        .into_iter()
        .map(|(s, e)| (s, (e, Vec::new())))
        .collect();
    let mut rounds = 0u32;
    while !open.is_empty() && started.elapsed() < GIVE_UP {
        rounds += 1;
        let wanted_by = |node: &str| -> Vec<(String, u64)> {
            open.iter()
                .filter(|(_, (_, granted))| !granted.iter().any(|g| g == node))
                .map(|(s, (e, _))| (s.clone(), *e))
                .collect()
        };
        let own = wanted_by(&me);
        let own = async {
            if own.is_empty() {
                return Vec::new();
            }
            let (reply, rx) = oneshot::channel();
            let _ = cmds.send(NodeCmd::Vote {
                owner: owner.clone(),
                sessions: own,
                reply,
            });
            rx.await.unwrap_or_default()
        };
        let remote = cluster
            .members()
            .into_iter()
            .filter(|m| m.id != me && m.id != owner)
            .map(|m| {
                let want = wanted_by(&m.id);
                let (cluster, owner) = (cluster.clone(), owner.clone());
                async move {
                    let granted = ask(&cluster, &m, &owner, want).await;
                    (m.id, granted)
                }
            })
            .collect::<Vec<_>>();
        let (own, remote) = tokio::join!(own, futures_util::future::join_all(remote));
        for (voter, granted) in std::iter::once((me.clone(), own)).chain(remote) {
            for s in granted {
                if let Some((_, g)) = open.get_mut(&s) {
                    if !g.contains(&voter) {
                        g.push(voter.clone());
                    }
                }
            }
        }
        let ready: Vec<(String, u64)> = open
            .iter()
            .filter(|(_, (_, g))| may_promote(g.len(), voters))
            .map(|(s, (e, _))| (s.clone(), *e))
            .collect();
        if !ready.is_empty() {
            for (s, _) in &ready {
                open.remove(s);
            }
            tracing::info!(
                %owner,
                sessions = ready.len(),
                left = open.len(),
                voters,
                rounds,
                took_ms = started.elapsed().as_millis() as u64,
                "takeover: majority reached"
            );
            let done = ready.iter().map(|(s, _)| s.clone()).collect();
            let _ = cmds.send(NodeCmd::Promote {
                owner: owner.clone(),
                sessions: ready,
            });
            let _ = cmds.send(NodeCmd::ClaimDone { sessions: done });
        }
        if open.is_empty() {
            return;
        }
        // Voters refuse while they may still owe the dead owner a lease; ask again soon.
        tokio::time::sleep(RETRY).await;
    }
    tracing::warn!(%owner, sessions = open.len(), voters, "takeover: no majority yet; the next sweep tries again");
    let _ = cmds.send(NodeCmd::ClaimDone {
        sessions: open.into_keys().collect(),
    });
}

/// One voter's grants among `want`: one `VoteBatch` if it speaks protocol 2, else one
/// `VoteRequest` per session (a few in flight at once). Unanswered requests grant nothing.
async fn ask(
    cluster: &ClusterHandle,
    voter: &Member,
    owner: &str,
    want: Vec<(String, u64)>,
) -> Vec<String> {
    if want.is_empty() {
        return Vec::new();
    }
    let net = cluster.net();
    let candidate = cluster.node_id().to_owned();
    if voter.batches() {
        let msg = PeerMsg::VoteBatch {
            owner: owner.to_owned(),
            candidate,
            sessions: want,
        };
        return match net
            .request(&voter.id, voter.peer_addr, msg, VOTE_TIMEOUT)
            .await
        {
            Ok(PeerMsg::Votes { granted }) => granted,
            _ => Vec::new(),
        };
    }
    stream::iter(want)
        .map(|(session, epoch)| {
            let msg = PeerMsg::VoteRequest {
                session: session.clone(),
                epoch,
                owner: owner.to_owned(),
                candidate: candidate.clone(),
            };
            async move {
                match net
                    .request(&voter.id, voter.peer_addr, msg, VOTE_TIMEOUT)
                    .await
                {
                    Ok(PeerMsg::Vote { granted: true }) => Some(session),
                    _ => None,
                }
            }
        })
        .buffer_unordered(16)
        .filter_map(|s| async move { s })
        .collect()
        .await
}
