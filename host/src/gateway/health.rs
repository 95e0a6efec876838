//! Health checks for orchestrators: `/healthz` (the process runs) and
//! `/readyz` (the node takes players; 503 once shutdown has begun).

use axum::{extract::State, http::StatusCode};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<AppState>) -> (StatusCode, &'static str) {
    if *app.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else {
        (StatusCode::OK, "ready")
    }
}
