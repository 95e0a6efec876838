//! Placement of new sessions by load. A session is created where its creator's request
//! landed; before its id is handed out, if a serving node holds at least `--placement-margin`
//! (default 4) fewer
//! live sessions than this one, the new session — still empty, so nobody feels the pause —
//! is handed to the least loaded node exactly as a drain hands one over (freeze after a
//! durable batch, one compare-and-set, the target starts it on notification or on the
//! first join routed to it). The creator gets the id as usual; its `join` on any node is
//! routed to the owner (`moved`). So after a rolling upgrade new sessions fill the node
//! that restarted empty, and [`super::rebalance`] only has to move old ones.
//!
//! Loads are the directory's counts of live sessions per owner (exact), read at most once
//! per [`REFRESH`] and adjusted locally for every placement made since, so that a burst
//! of creates does not send them all to the node that was least loaded at the last read.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

use super::{
    drain::{hand_over, Batch},
    ws_url, ClusterHandle, NodeState,
};

/// The directory's counts are read again after this long.
const REFRESH: Duration = Duration::from_secs(1);

/// The cached view of every serving node's load.
#[derive(Default)]
pub struct Loads {
    read: Option<Instant>,
    /// Serving node id → (live sessions it owns, player address).
    nodes: HashMap<String, (i64, String)>,
}

impl Loads {
    /// The least loaded serving node other than `me`, if it holds at least `margin` fewer
    /// sessions than `me`.
    fn pick(&self, me: &str, margin: i64) -> Option<(String, String)> {
        let mine = self.nodes.get(me).map_or(0, |(n, _)| *n);
        self.nodes
            .iter()
            .filter(|(id, (n, _))| id.as_str() != me && n + margin <= mine)
            .min_by_key(|(id, (n, _))| (*n, id.as_str()))
            .map(|(id, (_, url))| (id.clone(), url.clone()))
    }

    /// One session moved from `from` to `to` (until the next read shows it).
    fn moved(&mut self, from: &str, to: &str) {
        if let Some((n, _)) = self.nodes.get_mut(from) {
            *n -= 1;
        }
        if let Some((n, _)) = self.nodes.get_mut(to) {
            *n += 1;
        }
    }
}

impl ClusterHandle {
    /// Places the session this node just created (durable, no player yet): hands it to a
    /// less loaded node when one holds at least `--placement-margin` fewer sessions. Best
    /// effort: on any failure the session stays here, which is always correct.
    pub async fn place_new(&self, session: &str) {
        let margin = self.placement_margin();
        if margin == 0 || self.state() != NodeState::Serving || !self.gate().valid() {
            return;
        }
        let Some((target, url)) = self.placement_target(margin).await else {
            return;
        };
        let batch = Batch {
            target: target.clone(),
            url: ws_url(&url),
            sessions: vec![session.to_owned()],
        };
        let placed = hand_over(self, self.registry(), batch, None)
            .await
            .into_iter()
            .all(|(_, r)| r.is_ok());
        if placed {
            let me = self.node_id().to_owned();
            self.loads().lock().await.moved(&me, &target);
            tracing::debug!(%session, %target, "placement: new session placed on a less loaded node");
        }
    }

    /// The node to place a session just created here on, if any. The directory is read
    /// again when the last read is older than [`REFRESH`] (it then counts the new session
    /// already); otherwise the cached counts get it added.
    async fn placement_target(&self, margin: i64) -> Option<(String, String)> {
        let me = self.node_id();
        let mut loads = self.loads().lock().await;
        if loads.read.is_none_or(|at| at.elapsed() >= REFRESH) {
            let counts: HashMap<String, i64> =
                self.db().session_counts().await.ok()?.into_iter().collect();
            loads.nodes = self
                .members()
                .await
                .into_iter()
                .filter(|n| n.serving())
                .map(|n| {
                    (
                        n.id.clone(),
                        (counts.get(&n.id).copied().unwrap_or(0), n.url),
                    )
                })
                .collect();
            loads.read = Some(Instant::now());
        } else if let Some((n, _)) = loads.nodes.get_mut(me) {
            *n += 1;
        }
        loads.pick(me, margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(nodes: &[(&str, i64)]) -> Loads {
        Loads {
            read: Some(Instant::now()),
            nodes: nodes
                .iter()
                .map(|(id, n)| (id.to_string(), (*n, format!("{id}:7878"))))
                .collect(),
        }
    }

    #[test]
    fn a_new_session_goes_to_the_least_loaded_node_only_past_the_margin() {
        let l = loads(&[("a", 10), ("b", 7), ("c", 3)]);
        assert_eq!(l.pick("a", 4).map(|t| t.0).as_deref(), Some("c"));
        assert_eq!(l.pick("c", 4), None, "the least loaded keeps its own");
        let l = loads(&[("a", 10), ("b", 7)]);
        assert_eq!(l.pick("a", 4), None, "3 fewer is within the margin");
        assert_eq!(l.pick("a", 3).map(|t| t.0).as_deref(), Some("b"));
    }

    #[test]
    fn placements_since_the_last_read_count() {
        let mut l = loads(&[("a", 10), ("b", 0)]);
        let mut placed = 0;
        while let Some((to, _)) = l.pick("a", 4) {
            l.moved("a", &to);
            placed += 1;
        }
        // 10 vs 0: moves until b is within the margin of a (6 vs 4).
        assert_eq!(placed, 4);
    }
}
