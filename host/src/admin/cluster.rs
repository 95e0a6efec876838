//! `GET /admin/cluster` (operator listener, bearer token): this node and, in a cluster,
//! every node row of the directory (id, player address, version, status, lease,
//! sessions). Operators' only: players never need node ids or the list of nodes (a
//! `moved` names the one address they need). Registered by `admin::http::router`; in
//! single-node mode it shows the node alone.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use crate::cluster::{ClusterHandle, NodeState};

/// What the view is made of: the node's id, its cluster side, and the shutdown signal.
#[derive(Clone)]
pub struct NodeInfo {
    pub node_id: Arc<str>,
    /// `None` in single-node mode.
    pub cluster: Option<ClusterHandle>,
    /// Becomes `true` once the node starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// One node as the directory shows it.
#[derive(Debug, Serialize)]
pub struct MemberView {
    pub id: String,
    pub url: String,
    pub version: String,
    pub status: &'static str,
    pub live: bool,
    pub lease_left_ms: i64,
    pub sessions: i32,
}

/// The body of `GET /admin/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub node: String,
    /// `cluster` or `single`.
    pub mode: &'static str,
    pub state: NodeState,
    pub lease_valid: bool,
    pub members: Vec<MemberView>,
}

/// `GET /admin/cluster`'s answer for the node `info` describes (the handler is in
/// `admin::http`, which owns the router's state).
pub async fn view(info: &NodeInfo) -> ClusterView {
    match &info.cluster {
        Some(c) => ClusterView {
            node: c.node_id().to_owned(),
            mode: "cluster",
            state: c.state(),
            lease_valid: c.gate().valid(),
            members: c
                .members()
                .await
                .into_iter()
                .map(|n| MemberView {
                    id: n.id,
                    url: n.url,
                    version: n.version,
                    status: n.status.as_str(),
                    live: n.live,
                    lease_left_ms: n.lease_left_ms,
                    sessions: n.sessions,
                })
                .collect(),
        },
        None => ClusterView {
            node: info.node_id.to_string(),
            mode: "single",
            state: if *info.shutdown.borrow() {
                NodeState::Stopped
            } else {
                NodeState::Serving
            },
            lease_valid: true,
            members: Vec::new(),
        },
    }
}
