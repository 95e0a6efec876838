//! The node's player-facing HTTP surface (axum): the player websocket ([`ws`]), the
//! lobby API ([`lobby`]), health checks ([`health`]) and the embedded web client.
//! `main` builds the router once with [`router`] and runs it with [`serve::serve`]
//! (header-read timeout, connection limits: [`admission`], refusals: [`refuse`]);
//! handlers reach sessions only through the [`Registry`]. Nothing for operators lives
//! here: the admin API and `/metrics` are on their own listener (`admin::listener`), so
//! a request for them on this one is a 404.

pub mod admission;
pub mod creations;
pub mod health;
pub mod keepalive;
pub mod lobby;
pub mod refuse;
pub mod serve;
pub mod ws;

use std::{sync::Arc, time::Duration};

use axum::{
    http::header,
    response::{Html, IntoResponse},
    routing::get,
    serve::{Listener, ListenerExt},
    Router,
};
use tokio::{net::TcpListener, sync::watch};

use crate::{config::Config, session::Registry};

/// Per-connection limits, from the [`Config`].
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_frame_bytes: usize,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    pub rate_abuse_limit: u32,
    pub outbound_queue: usize,
    /// Server pings on each websocket this often; `None`: no keepalive.
    pub ws_ping: Option<Duration>,
    /// A websocket silent this long is closed (4408).
    pub ws_idle_timeout: Duration,
}

impl From<&Config> for ConnLimits {
    fn from(c: &Config) -> Self {
        ConnLimits {
            max_frame_bytes: c.max_frame_bytes,
            rate_per_sec: c.rate_per_sec,
            rate_burst: c.rate_burst,
            rate_abuse_limit: c.rate_abuse_limit,
            outbound_queue: c.outbound_queue,
            ws_ping: (c.ws_ping_secs > 0).then(|| Duration::from_secs(c.ws_ping_secs)),
            ws_idle_timeout: Duration::from_secs(c.ws_idle_timeout_secs),
        }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub limits: Arc<ConnLimits>,
    /// Sessions created per client address.
    pub creations: Arc<creations::CreationLimiter>,
    pub node_id: Arc<str>,
    /// Becomes `true` once the node starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// The node's cluster side; `None` in single-node mode.
    pub cluster: Option<crate::cluster::ClusterHandle>,
}

/// The node's HTTP listener with `TCP_NODELAY` on every accepted socket.
///
/// Players send small frames and wait for small answers (`ack`, `view`): with
/// Nagle's algorithm on, a reply written while an earlier one is still
/// unacknowledged waits for the client's delayed ACK (tens of milliseconds).
/// [`serve::serve`] accepts on it.
pub fn player_listener(
    listener: TcpListener,
) -> impl Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted socket");
        }
    })
}

/// All routes of the player listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/ws", get(ws::upgrade))
        .route("/api/games", get(lobby::games))
        .route(
            "/api/sessions",
            get(lobby::list_sessions).post(lobby::create_session),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(axum::middleware::from_fn(refuse::refuse_over_limit))
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../../web/index.html"))
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../web/app.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every socket the player listener hands to axum has Nagle's algorithm off.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = player_listener(listener);
        for _ in 0..3 {
            let client = tokio::net::TcpStream::connect(addr);
            let ((accepted, _), client) = tokio::join!(listener.accept(), client);
            let client = client.unwrap();
            // The client side keeps the default: only the accepted side is changed.
            assert!(!client.nodelay().unwrap());
            assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is off");
        }
    }
}
