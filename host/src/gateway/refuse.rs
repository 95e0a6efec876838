//! Telling a connection over a limit why it is refused ([`refuse_over_limit`], a
//! middleware on every player route). The accept loop has already decided
//! ([`super::admission`]); this answers the connection's first request and closes it:
//!
//! - an HTTP request gets the lobby's JSON error `{code, message}` — 429
//!   `too_many_connections` or 503 `node_busy` — with `Retry-After` and
//!   `Connection: close`;
//! - a websocket upgrade is accepted, gets one `error` message (no `welcome`) and a
//!   close frame — 1008 for `too_many_connections`, 1013 (try again later) for
//!   `node_busy` — because a browser's `WebSocket` cannot read an HTTP refusal (it sees
//!   only 1006), while it does see a close code and reason.

use axum::{
    extract::{
        ws::{CloseFrame, Message},
        FromRequestParts, Request, WebSocketUpgrade,
    },
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Extension,
};

use super::admission::{Admission, Peer};
use super::lobby::ApiError;
use crate::protocol::{encode_server, Encoding, ErrorCode, ServerMsg};

/// Close codes of a refused websocket.
mod close {
    pub const POLICY: u16 = 1008;
    /// RFC 6455 registry: "Try Again Later".
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Seconds a refused client is asked to wait (`Retry-After`).
const RETRY_AFTER_SECS: u32 = 5;

/// Pass admitted connections on; answer the others (see the module doc).
pub async fn refuse_over_limit(
    peer: Option<Extension<Peer>>,
    req: Request,
    next: Next,
) -> Response {
    let admission = peer.map_or(Admission::Admitted, |Extension(p)| p.admission);
    let (status, code, close_code, message) = match admission {
        Admission::Admitted => return next.run(req).await,
        Admission::TooManyFromIp => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyConnections,
            close::POLICY,
            "too many open connections from your address; close one and try again",
        ),
        // `Drop` never reaches a route: the socket was closed at accept.
        Admission::NodeBusy | Admission::Drop => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NodeBusy,
            close::TRY_AGAIN_LATER,
            "this node has as many connections as it takes; try again later or another node",
        ),
    };
    let (mut parts, _body) = req.into_parts();
    let mut response = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws.on_upgrade(move |mut socket| async move {
            let error = ServerMsg::error(code, message, None);
            if let Ok(bytes) = encode_server(&error, Encoding::Json) {
                let text = String::from_utf8(bytes).unwrap_or_default();
                let _ = socket.send(Message::Text(text.into())).await;
            }
            let frame = CloseFrame {
                code: close_code,
                reason: code.code().into(),
            };
            let _ = socket.send(Message::Close(Some(frame))).await;
        }),
        Err(_) => ApiError {
            status,
            code,
            message: message.into(),
        }
        .into_response(),
    };
    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    if !upgraded {
        // hyper closes the connection after this response.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
