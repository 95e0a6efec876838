//! `GET /api/cluster`: this node and, in a cluster, every node row of the directory (id,
//! player address, version, status, lease, sessions). Registered by `gateway::router`; in
//! single-node mode it shows the node alone.

use axum::{extract::State, Json};
use serde::Serialize;

use super::AppState;
use crate::cluster::NodeState;

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

/// The body of `GET /api/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub node: String,
    /// `cluster` or `single`.
    pub mode: &'static str,
    pub state: NodeState,
    pub lease_valid: bool,
    pub members: Vec<MemberView>,
}

pub async fn cluster(State(app): State<AppState>) -> Json<ClusterView> {
    Json(match &app.cluster {
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
            node: app.node_id.to_string(),
            mode: "single",
            state: if *app.shutdown.borrow() {
                NodeState::Stopped
            } else {
                NodeState::Serving
            },
            lease_valid: true,
            members: Vec::new(),
        },
    })
}
