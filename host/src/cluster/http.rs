//! `GET /api/cluster`: this node's view of the cluster (members with id, player address,
//! version, status and load). Registered by `gateway::router`; in single-node mode it shows
//! the node alone.

use axum::{extract::State, Json};
use serde::Serialize;

use super::node::{MemberView, NodeState, ReplicaView};
use crate::gateway::AppState;

/// The body of `GET /api/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub node: String,
    /// `cluster` or `single`.
    pub mode: &'static str,
    pub state: NodeState,
    pub members: Vec<MemberView>,
    /// Copies of other nodes' sessions held here.
    pub replicas: Vec<ReplicaView>,
}

pub async fn cluster(State(app): State<AppState>) -> Json<ClusterView> {
    Json(match &app.cluster {
        Some(c) => ClusterView {
            node: c.node_id().to_owned(),
            mode: "cluster",
            state: c.state(),
            members: c.member_views(),
            replicas: c.replicas().await,
        },
        None => ClusterView {
            node: app.node_id.to_string(),
            mode: "single",
            state: if *app.shutdown.borrow() {
                NodeState::Stopped
            } else {
                NodeState::Serving
            },
            members: Vec::new(),
            replicas: Vec::new(),
        },
    })
}
