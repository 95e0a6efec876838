//! The admin HTTP API, every route behind `Authorization: Bearer <token>`
//! (anything else is 401 `{code:"unauthorized"}`):
//! `POST /admin/games/{game}/modules?policy=new|migrate[&dry_run=true][&force=true]`
//! (body: the wasm; 409 `migration_failed` when a migrate's dry run failed),
//! `GET /admin/sessions`, `POST /admin/drain` (hand every session to other nodes, then
//! stop: answers with the drain's report) and `GET /admin/cluster`. Served on the
//! operator listener only (`admin::listener`), never on the players'.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use minotaur_runtime::Runtime;
use minotaur_state::SwapPolicy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{cluster::NodeInfo, publish, AdminToken, PublishError, PublishOptions, PublishReport};
use crate::session::Registry;

/// Largest module body accepted (the runtime applies its own limit after).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What the admin handlers reach.
#[derive(Clone)]
pub struct AdminState {
    pub registry: Registry,
    pub runtime: Runtime,
    /// sha256 of the token, compared in constant time.
    token_hash: Arc<[u8; 32]>,
    /// Asks `main` to drain and stop the node; the report comes back on the oneshot.
    drain: Option<mpsc::Sender<oneshot::Sender<DrainSummary>>>,
    /// For `GET /admin/cluster`.
    node: NodeInfo,
}

/// What `POST /admin/drain` answers: the drain's outcome, just before the node stops.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DrainSummary {
    pub handed_over: usize,
    /// `{session, reason}` of each session that could not be handed over.
    pub failed: Vec<DrainFailure>,
    pub took_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainFailure {
    pub session: String,
    pub reason: String,
}

impl AdminState {
    pub fn new(
        registry: Registry,
        runtime: Runtime,
        token: &AdminToken,
        node: NodeInfo,
    ) -> AdminState {
        AdminState {
            registry,
            runtime,
            token_hash: Arc::new(Sha256::digest(token.as_str().as_bytes()).into()),
            drain: None,
            node,
        }
    }

    /// The node's id, cluster side and shutdown signal.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// Enables `POST /admin/drain`: each request sends a reply channel to `main`.
    pub fn with_drain(mut self, drain: mpsc::Sender<oneshot::Sender<DrainSummary>>) -> Self {
        self.drain = Some(drain);
        self
    }
}

/// The `/admin` routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/games/{game}/modules", post(publish_module))
        .route("/admin/sessions", get(sessions))
        .route("/admin/drain", post(drain))
        .route("/admin/cluster", get(cluster))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// An admin error: status plus `{code, message}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminError {
    pub code: String,
    pub message: String,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = AdminError {
        code: code.to_owned(),
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

async fn authorize(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 7235 §2.1): `bearer`, `BEARER` work too.
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(|t| -> [u8; 32] { Sha256::digest(t.trim().as_bytes()).into() });
    // Comparing hashes byte by byte without early exit leaks nothing useful.
    let ok = given.is_some_and(|g| {
        g.iter()
            .zip(state.token_hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if !ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token",
        );
    }
    next.run(req).await
}

#[derive(Debug, Deserialize)]
pub struct PublishQuery {
    #[serde(default)]
    pub policy: Option<String>,
    /// Only validate and restore every live session into a scratch instance.
    #[serde(default)]
    pub dry_run: bool,
    /// Make a `migrate` current even if its dry run failed for some sessions.
    #[serde(default)]
    pub force: bool,
}

/// The 409 answer of a `migrate` whose dry run failed: `{code, message, report}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PublishRefused {
    pub code: String,
    pub message: String,
    pub report: PublishReport,
}

async fn publish_module(
    State(state): State<AdminState>,
    Path(game): Path<String>,
    Query(q): Query<PublishQuery>,
    body: Bytes,
) -> Result<Json<PublishReport>, Response> {
    let policy = match q.policy.as_deref().unwrap_or("new") {
        "new" => SwapPolicy::NewSessionsOnly,
        "migrate" => SwapPolicy::MigrateLive,
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("policy must be `new` or `migrate`, not `{other}`"),
            ))
        }
    };
    let opts = PublishOptions {
        policy,
        dry_run: q.dry_run,
        force: q.force,
    };
    let cluster = state.node.cluster.as_ref();
    publish(
        &state.registry,
        &state.runtime,
        cluster,
        &game,
        body.to_vec(),
        opts,
    )
    .await
    .map(Json)
    .map_err(|e| {
        let (code, message) = (e.code(), e.to_string());
        match e {
            PublishError::MigrationFailed(report) => {
                let body = PublishRefused {
                    code: code.to_owned(),
                    message,
                    report: *report,
                };
                (StatusCode::CONFLICT, Json(body)).into_response()
            }
            PublishError::Store(_) => error(StatusCode::INTERNAL_SERVER_ERROR, code, message),
            _ => error(StatusCode::BAD_REQUEST, code, message),
        }
    })
}

/// A session as `GET /admin/sessions` lists it.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminSession {
    pub id: String,
    pub game: String,
    pub rules_version: u32,
    pub players: u32,
    pub tick: u64,
}

/// `GET /admin/cluster`: this node's view of the cluster (`admin::cluster`).
async fn cluster(State(state): State<AdminState>) -> Json<super::cluster::ClusterView> {
    Json(super::cluster::view(state.node()).await)
}

async fn sessions(State(state): State<AdminState>) -> Json<Vec<AdminSession>> {
    Json(
        state
            .registry
            .list(None)
            .into_iter()
            .map(|s| AdminSession {
                id: s.id,
                game: s.game,
                rules_version: s.rules_version,
                players: s.players,
                tick: s.tick,
            })
            .collect(),
    )
}

/// `POST /admin/drain`: the node stops taking sessions, hands each over (in a cluster) and
/// exits; the answer is the drain's report. Repeated requests get the same report.
async fn drain(State(state): State<AdminState>) -> Response {
    let Some(tx) = state.drain.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this node cannot be drained through the API",
        );
    };
    let (reply, report) = oneshot::channel();
    if tx.send(reply).await.is_err() {
        return error(
            StatusCode::CONFLICT,
            "stopping",
            "the node is already stopping",
        );
    }
    match report.await {
        Ok(r) => Json(r).into_response(),
        Err(_) => error(
            StatusCode::CONFLICT,
            "stopping",
            "the node stopped before reporting",
        ),
    }
}
