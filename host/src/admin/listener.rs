//! The operator listener (`--admin-listen`, default `127.0.0.1:7879`), apart from the
//! players': the admin API (`/admin/...`, bearer token, [`super::http`]) and the
//! Prometheus text on `/metrics`. `/metrics` needs no token, so that a scraper holds no
//! credential that could publish code or drain the node; it shows counts and timings
//! only, and is reachable only where the listener is (keep it private). `main` binds it
//! and runs [`serve`] beside the player server, on the same shutdown signal.

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use tokio::{net::TcpListener, sync::watch};

use super::http::{self, AdminState};

/// Every route of the operator listener.
pub fn router(state: AdminState) -> Router {
    crate::metrics::install();
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(http::router(state))
}

/// Serves `app` on `listener` until `shutdown` turns `true` (requests in flight finish).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|d| *d).await;
        })
        .await
}

/// Prometheus text format; sessions and players are read from the registry now.
async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let sessions = state.registry.list(None);
    let players = sessions.iter().map(|s| u64::from(s.players)).sum();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(sessions.len(), players),
    )
}
