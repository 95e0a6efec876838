//! The lobby HTTP API: list games, list sessions, create a session (charged to the
//! client's address: `super::creations`). Errors are JSON `{code, message}` with the
//! same stable codes as the player protocol.

use std::time::Duration;

use axum::{
    extract::{rejection::JsonRejection, Query, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde::{Deserialize, Serialize};

use super::{admission::Peer, AppState};
use crate::{
    protocol::{ErrorCode, GameValue},
    session::{registry::SessionInfo, SessionError},
};

/// A game as `GET /api/games` lists it.
#[derive(Debug, Serialize, Deserialize)]
pub struct GameEntry {
    /// The name to create or join sessions with.
    pub name: String,
    /// The name the module gives itself.
    pub module_name: String,
    pub rules_version: u32,
    pub min_players: u32,
    pub max_players: u32,
    pub tick_hz: u32,
    /// sha256 of the wasm module, hex.
    pub module_hash: String,
}

pub async fn games(State(app): State<AppState>) -> Json<Vec<GameEntry>> {
    Json(
        app.registry
            .catalog()
            .list()
            .into_iter()
            .map(|g| {
                let info = g.module.info();
                GameEntry {
                    name: g.name,
                    module_name: info.name.clone(),
                    rules_version: info.rules_version,
                    min_players: info.min_players,
                    max_players: info.max_players,
                    tick_hz: info.tick_hz,
                    module_hash: g.module.hash().to_hex(),
                }
            })
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub game: Option<String>,
}

pub async fn list_sessions(
    State(app): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Json<Vec<SessionInfo>> {
    Json(app.registry.list(q.game.as_deref()))
}

#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    pub game: String,
    #[serde(default)]
    pub config: Option<GameValue>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Created {
    pub session: String,
    pub game: String,
}

/// What a client over `--sessions-per-ip-per-min` is told.
pub fn creation_limit_message(wait: Duration) -> String {
    format!(
        "too many sessions created from your address; try again in {} s",
        retry_after_secs(wait)
    )
}

/// Whole seconds to wait, at least 1 (`Retry-After`).
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().clamp(1.0, 3600.0) as u64
}

pub async fn create_session(
    State(app): State<AppState>,
    peer: Option<Extension<Peer>>,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Created>), Response> {
    let Json(req) = body.map_err(|e| {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::BadRequest,
            message: e.body_text(),
        }
        .into_response()
    })?;
    if let Some(Err(wait)) = peer.map(|Extension(p)| app.creations.charge(p.key())) {
        let mut r = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: ErrorCode::SessionRateLimited,
            message: creation_limit_message(wait),
        }
        .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(wait)),
        );
        return Err(r);
    }
    create(app, req).await.map_err(IntoResponse::into_response)
}

async fn create(
    app: AppState,
    req: CreateRequest,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    if *app.shutdown.borrow() {
        return Err(SessionError::Overloaded.into());
    }
    if app
        .cluster
        .as_ref()
        .is_some_and(|c| c.state() == crate::cluster::NodeState::Draining)
    {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::Draining,
            message: "this node is draining and takes no new sessions".into(),
        });
    }
    if app.cluster.as_ref().is_some_and(|c| !c.gate().valid()) {
        // No lease: the database is out of reach, nothing new can become durable.
        return Err(SessionError::Unavailable.into());
    }
    let handle = app.registry.create(&req.game, req.config.as_ref()).await?;
    // Durable (in a cluster: in the directory) before the id is handed out.
    handle.persisted().await?;
    if let Some(cluster) = &app.cluster {
        // Still empty: a less loaded node takes it now, and joins are routed there.
        cluster.place_new(handle.id()).await;
    }
    Ok((
        StatusCode::CREATED,
        Json(Created {
            session: handle.id().to_owned(),
            game: req.game,
        }),
    ))
}

/// An API error: an HTTP status plus the JSON body `{code, message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: ErrorCode,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let status = match &e {
            SessionError::UnknownGame(_) | SessionError::UnknownSession(_) => StatusCode::NOT_FOUND,
            SessionError::Overloaded | SessionError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::Rejected(_) | SessionError::Failed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SessionError::Full | SessionError::Ended => StatusCode::CONFLICT,
            SessionError::BadToken => StatusCode::FORBIDDEN,
            SessionError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
        }
    }
}
