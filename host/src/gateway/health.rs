//! Health checks for orchestrators: `/healthz` (the process runs) and
//! `/readyz` (the node takes players; 503 once shutdown has begun, and in a
//! cluster also while joining, draining, or without a valid lease — the database
//! unreachable or the node just woken from a pause).

use axum::{extract::State, http::StatusCode};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<AppState>) -> (StatusCode, &'static str) {
    if *app.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if let Some(c) = app.cluster.as_ref().filter(|c| !c.is_ready()) {
        let why = match c.state() {
            crate::cluster::NodeState::Joining => "joining the cluster",
            crate::cluster::NodeState::Serving => "no valid lease (cluster database unreachable?)",
            crate::cluster::NodeState::Draining => "draining",
            crate::cluster::NodeState::Stopped => "stopped",
        };
        (StatusCode::SERVICE_UNAVAILABLE, why)
    } else {
        (StatusCode::OK, "ready")
    }
}
