//! One player connection on `/ws`: decodes client frames (JSON text or
//! MessagePack binary), enforces the frame size, rate and session-creation limits,
//! keeps the connection alive with pings ([`super::keepalive`]), turns each
//! message into a registry or session call, and writes the session's outbound
//! queue back in the client's encoding. Spawned by axum per upgrade.

use std::{net::IpAddr, sync::Arc, time::Instant};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket},
        State, WebSocketUpgrade,
    },
    response::Response,
    Extension,
};
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use tokio::sync::{mpsc, Notify};

use super::{
    admission::Peer,
    keepalive::{Due, Keepalive},
    AppState,
};
use crate::cluster::node::Route;
use crate::{
    protocol::{
        decode_client, encode_server, peek_input_seq, value_to_msgpack, ClientMsg, Encoding,
        ErrorCode, ServerMsg, PROTOCOL_VERSION,
    },
    ratelimit::{RateLimiter, Verdict},
    session::{token_session, Joined, Outbound, PlayerId, SessionError, SessionHandle, TokenHash},
};

/// axum's own frame limit sits this far above ours, so an oversized frame
/// still reaches us and the client gets a `frame_too_large` before the close.
const FRAME_SLACK: usize = 64 * 1024;

/// Longest a connection waits for the sessions to stop at shutdown.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

mod close {
    pub const GOING_AWAY: u16 = 1001;
    /// RFC 6455 §7.4.1: data inconsistent with the message type (a text frame
    /// that is not UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    /// Application range (RFC 6455 §7.4.2): nothing heard within the idle timeout.
    pub const IDLE: u16 = 4408;
}

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    peer: Option<Extension<Peer>>,
) -> Response {
    let max = app.limits.max_frame_bytes + FRAME_SLACK;
    let client = peer.map(|Extension(p)| p.key());
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| Connection::run(app, socket, client))
}

/// A read failed because a text frame (or a close reason) is not UTF-8: the
/// websocket layer validates it before we see the frame.
fn is_invalid_utf8(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Utf8(_)))
}

/// Which seat this connection holds.
enum SeatState {
    None,
    Seated {
        handle: SessionHandle,
        player: PlayerId,
        token_hash: TokenHash,
    },
    /// The seat's session is over; inputs get `session_ended`.
    Ended,
}

/// What the loop does after a frame.
enum Flow {
    Continue,
    Close(u16, &'static str),
}

struct Connection {
    app: AppState,
    sink: SplitSink<WebSocket, Message>,
    enc: Encoding,
    seat: SeatState,
    limiter: RateLimiter,
    out: Outbound,
    /// The client's address as limits count it; `None` if unknown (not served by
    /// `serve::serve`), which no per-address limit applies to.
    client: Option<IpAddr>,
}

impl Connection {
    async fn run(app: AppState, socket: WebSocket, client: Option<IpAddr>) {
        let (sink, mut stream) = socket.split();
        let limits = app.limits.clone();
        let (out, mut rx, kick): (Outbound, mpsc::Receiver<ServerMsg>, Arc<Notify>) =
            Outbound::new(limits.outbound_queue);
        let mut shutdown = app.shutdown.clone();
        let mut keepalive = Keepalive::new(limits.ws_ping, limits.ws_idle_timeout);
        let mut conn = Connection {
            limiter: RateLimiter::new(
                limits.rate_per_sec,
                limits.rate_burst,
                limits.rate_abuse_limit,
                Instant::now(),
            ),
            app,
            sink,
            enc: Encoding::Json,
            seat: SeatState::None,
            out,
            client,
        };
        let welcome = ServerMsg::Welcome {
            node: conn.app.node_id.to_string(),
            version: crate::release().to_owned(),
            protocol: PROTOCOL_VERSION,
        };
        if !conn.send(welcome).await {
            return;
        }
        loop {
            let flow = tokio::select! {
                frame = stream.next() => {
                    if let Some(Ok(_)) = &frame {
                        keepalive.heard();
                    }
                    match frame {
                    Some(Ok(Message::Text(t))) => conn.on_frame(t.as_bytes(), Encoding::Json).await,
                    Some(Ok(Message::Binary(b))) => conn.on_frame(&b, Encoding::MsgPack).await,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Flow::Continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    // The websocket layer checks text frames itself and fails
                    // the read; the connection is still writable, so the client
                    // is told why (RFC 6455 §8.1) instead of losing the socket.
                    Some(Err(e)) if is_invalid_utf8(&e) => {
                        tracing::debug!(conn = conn.out.conn_id, error = %e, "text frame not UTF-8");
                        Flow::Close(close::INVALID_DATA, "text frame is not valid UTF-8")
                    }
                    Some(Err(e)) => {
                        tracing::debug!(conn = conn.out.conn_id, error = %e, "websocket error");
                        break;
                    }
                }},
                due = keepalive.due() => match due {
                    Due::Ping => match conn.sink.send(Message::Ping(Default::default())).await {
                        Ok(()) => Flow::Continue,
                        Err(_) => break,
                    },
                    Due::TimedOut => {
                        tracing::debug!(conn = conn.out.conn_id, "websocket silent past the idle timeout");
                        Flow::Close(close::IDLE, "idle timeout")
                    }
                },
                Some(msg) = rx.recv() => conn.on_outbound(msg).await,
                () = kick.notified() => Flow::Close(close::POLICY, "slow consumer"),
                // Map the guard away at once: it is not Send.
                _ = async { shutdown.wait_for(|down| *down).await.is_ok() } => {
                    conn.drain(&mut rx).await;
                    Flow::Close(close::GOING_AWAY, "node shutting down")
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Close(code, reason) => {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = conn.sink.send(Message::Close(Some(frame))).await;
                    break;
                }
            }
        }
        if let SeatState::Seated { handle, player, .. } = &conn.seat {
            handle.disconnect(*player, conn.out.conn_id).await;
        }
    }

    /// The node is stopping: read no more frames, but keep forwarding what the
    /// session sends (the acks of inputs it still applies and persists) until
    /// every session has stopped, so no applied input goes unacknowledged.
    async fn drain(&mut self, rx: &mut mpsc::Receiver<ServerMsg>) {
        let mut drained = self.app.registry.drained();
        let wait = async { drained.wait_for(|d| *d).await.is_ok() };
        tokio::pin!(wait);
        let deadline = tokio::time::sleep(DRAIN_LIMIT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                () = &mut deadline => break,
                Some(msg) = rx.recv() => {
                    if let Flow::Close(..) = self.on_outbound(msg).await {
                        return;
                    }
                }
            }
        }
        while let Ok(msg) = rx.try_recv() {
            if let Flow::Close(..) = self.on_outbound(msg).await {
                return;
            }
        }
    }

    /// Write one message in the client's encoding; `false` if the socket is gone.
    async fn send(&mut self, msg: ServerMsg) -> bool {
        let frame = match encode_server(&msg, self.enc) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a server message");
                let err = ServerMsg::error(ErrorCode::Internal, "cannot encode a message", None);
                match encode_server(&err, self.enc) {
                    Ok(b) => b,
                    Err(_) => return true,
                }
            }
        };
        let msg = match self.enc {
            // serde_json writes UTF-8.
            Encoding::Json => Message::Text(String::from_utf8(frame).unwrap_or_default().into()),
            Encoding::MsgPack => Message::Binary(frame.into()),
        };
        self.sink.send(msg).await.is_ok()
    }

    async fn send_flow(&mut self, msg: ServerMsg) -> Flow {
        if self.send(msg).await {
            Flow::Continue
        } else {
            Flow::Close(close::GOING_AWAY, "write failed")
        }
    }

    async fn error(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        seq: Option<u64>,
    ) -> Flow {
        self.send_flow(ServerMsg::error(code, message, seq)).await
    }

    /// A message from the session: forward it, and track the seat's fate.
    async fn on_outbound(&mut self, msg: ServerMsg) -> Flow {
        match &msg {
            ServerMsg::Ended { .. } => self.seat = SeatState::Ended,
            // Our seat was taken over by a resume on another connection.
            ServerMsg::Left => self.seat = SeatState::None,
            // The session lives elsewhere now; the client resumes there.
            ServerMsg::Moved { .. } => self.seat = SeatState::None,
            _ => {}
        }
        self.send_flow(msg).await
    }

    async fn on_frame(&mut self, frame: &[u8], enc: Encoding) -> Flow {
        self.enc = enc;
        let max = self.app.limits.max_frame_bytes;
        if frame.len() > max {
            let msg = format!("frame of {} bytes is over the limit of {max}", frame.len());
            let _ = self.error(ErrorCode::FrameTooLarge, msg, None).await;
            return Flow::Close(close::TOO_BIG, "frame too large");
        }
        // Every frame is charged before it is decoded, so undecodable ones
        // count too (and a dropped frame costs no full decode): the answer to
        // a dropped input still names its `seq`.
        match self.limiter.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Drop => {
                let seq = peek_input_seq(frame, enc);
                return self
                    .error(ErrorCode::RateLimited, "too many messages; dropped", seq)
                    .await;
            }
            Verdict::Close => {
                let seq = peek_input_seq(frame, enc);
                let _ = self
                    .error(ErrorCode::RateLimited, "sustained flooding; closing", seq)
                    .await;
                return Flow::Close(close::POLICY, "rate limit");
            }
        }
        let msg = match decode_client(frame, enc) {
            Ok(m) => m,
            Err(e) => return self.error(e.code(), e.to_string(), None).await,
        };
        self.on_message(msg).await
    }

    async fn on_message(&mut self, msg: ClientMsg) -> Flow {
        match msg {
            ClientMsg::Ping { nonce } => self.send_flow(ServerMsg::Pong { nonce }).await,
            ClientMsg::Create { game, config } => {
                if self.draining() {
                    return self.draining_error().await;
                }
                if self.cut_off() {
                    return self.unavailable_error().await;
                }
                if let Some(wait) = self
                    .client
                    .and_then(|ip| self.app.creations.charge(ip).err())
                {
                    let msg = super::lobby::creation_limit_message(wait);
                    return self.error(ErrorCode::SessionRateLimited, msg, None).await;
                }
                // Answered once the session is durable, so that a join through any node of
                // a cluster finds it.
                let created = match self.app.registry.create(&game, config.as_ref()).await {
                    Ok(h) => h.persisted().await.map(|()| h),
                    Err(e) => Err(e),
                };
                if let (Ok(h), Some(cluster)) = (&created, &self.app.cluster) {
                    // Still empty: a less loaded node takes it now; the join is routed there.
                    cluster.place_new(h.id()).await;
                }
                match created {
                    Ok(h) => {
                        let session = h.id().to_owned();
                        self.send_flow(ServerMsg::Created { session, game }).await
                    }
                    Err(e) => self.session_error(e, None).await,
                }
            }
            ClientMsg::Join {
                session,
                game,
                name,
            } => {
                if let SeatState::Seated { .. } = self.seat {
                    return self
                        .error(ErrorCode::AlreadySeated, "leave your seat first", None)
                        .await;
                }
                let registry = self.app.registry.clone();
                let conn = self.out.clone();
                let result = match (session, game) {
                    (Some(id), _) => {
                        let r = registry.join(&id, name.clone(), conn.clone()).await;
                        // `Ended` too: a copy that stopped a moment ago because the session
                        // moved (hand-off, takeover) answers so until it is gone.
                        if matches!(
                            r,
                            Err(SessionError::UnknownSession(_) | SessionError::Ended)
                        ) {
                            match self.elsewhere(Some(&id)).await {
                                Some(Elsewhere::Moved(flow)) => return flow,
                                // Handed here a moment ago: started now.
                                Some(Elsewhere::Here) => registry.join(&id, name, conn).await,
                                None => r,
                            }
                        } else {
                            r
                        }
                    }
                    // Quick-match may start a session: not on a draining node.
                    (None, Some(_)) if self.draining() => return self.draining_error().await,
                    (None, Some(_)) if self.cut_off() => return self.unavailable_error().await,
                    (None, Some(game)) => registry.quick_match(&game, name, conn).await,
                    (None, None) => {
                        return self
                            .error(ErrorCode::BadFrame, "join needs `session` or `game`", None)
                            .await
                    }
                };
                self.seated(result, None).await
            }
            ClientMsg::Resume { token } => {
                if let SeatState::Seated { .. } = self.seat {
                    return self
                        .error(ErrorCode::AlreadySeated, "leave your seat first", None)
                        .await;
                }
                let mut result = self.app.registry.resume(&token, self.out.clone()).await;
                if matches!(result, Err(SessionError::BadToken | SessionError::Ended)) {
                    match self.elsewhere(token_session(&token)).await {
                        Some(Elsewhere::Moved(flow)) => return flow,
                        Some(Elsewhere::Here) => {
                            result = self.app.registry.resume(&token, self.out.clone()).await
                        }
                        None => {}
                    }
                }
                self.seated(result, Some(token)).await
            }
            ClientMsg::Input { data, seq, player } => {
                let (handle, me) = match &self.seat {
                    SeatState::Seated { handle, player, .. } => (handle.clone(), *player),
                    SeatState::Ended => {
                        return self
                            .error(ErrorCode::SessionEnded, "the session is over", seq)
                            .await
                    }
                    SeatState::None => {
                        return self
                            .error(ErrorCode::NotSeated, "join a session first", seq)
                            .await
                    }
                };
                if player.is_some_and(|p| p != me) {
                    let msg = format!("you are player {me}");
                    return self.error(ErrorCode::NotYourSeat, msg, seq).await;
                }
                match handle.input(me, value_to_msgpack(&data), seq).await {
                    Ok(()) => Flow::Continue,
                    Err(e) => self.session_error(e, seq).await,
                }
            }
            ClientMsg::Leave => {
                let SeatState::Seated {
                    handle,
                    player,
                    token_hash,
                } = std::mem::replace(&mut self.seat, SeatState::None)
                else {
                    return self
                        .error(ErrorCode::NotSeated, "no seat to leave", None)
                        .await;
                };
                match self.app.registry.leave(&handle, player, token_hash).await {
                    Ok(()) => self.send_flow(ServerMsg::Left).await,
                    Err(e) => self.session_error(e, None).await,
                }
            }
        }
    }

    /// Finish a join or resume: remember the seat and answer `joined`.
    async fn seated(
        &mut self,
        result: Result<(SessionHandle, Joined), SessionError>,
        resume_token: Option<String>,
    ) -> Flow {
        match result {
            Ok((handle, joined)) => {
                self.seat = SeatState::Seated {
                    handle,
                    player: joined.player,
                    token_hash: joined.token_hash,
                };
                let msg = ServerMsg::Joined {
                    session: joined.session,
                    game: joined.game,
                    player: joined.player,
                    token: joined.token.or(resume_token).unwrap_or_default(),
                    rules_version: joined.rules_version,
                    resumed: joined.resumed,
                };
                self.send_flow(msg).await
            }
            Err(e) => self.session_error(e, None).await,
        }
    }

    /// This node is handing its sessions over and takes no new ones.
    fn draining(&self) -> bool {
        self.app
            .cluster
            .as_ref()
            .is_some_and(|c| c.state() == crate::cluster::NodeState::Draining)
    }

    /// Cluster mode without a valid lease (the database is out of reach): nothing new can
    /// become durable here now.
    fn cut_off(&self) -> bool {
        self.app.cluster.as_ref().is_some_and(|c| !c.gate().valid())
    }

    /// Refuses a new session on a draining node; the client should go to another node.
    async fn draining_error(&mut self) -> Flow {
        let msg = "this node is draining and takes no new sessions; connect to another node";
        self.error(ErrorCode::Draining, msg, None).await
    }

    /// In a cluster, a session this node does not serve may live on another node: then
    /// the player is told to go there (`moved`; a redirect, not a proxy). If the directory
    /// names this node (a hand-off that just arrived) it is started here first (`Here`: try
    /// again). `None`: the directory does not know it live.
    async fn elsewhere(&mut self, session: Option<&str>) -> Option<Elsewhere> {
        let cluster = self.app.cluster.clone()?;
        let session = session?.to_owned();
        match cluster.route(&session).await? {
            Route::Here => Some(Elsewhere::Here),
            Route::Moved(url) => Some(Elsewhere::Moved(
                self.send_flow(ServerMsg::Moved { session, url }).await,
            )),
            Route::Unavailable => Some(Elsewhere::Moved(self.unavailable_error().await)),
        }
    }

    /// The cluster's database cannot be reached: where a session is (or whether one can be
    /// created) is not known now; nothing changed, the client tries again.
    async fn unavailable_error(&mut self) -> Flow {
        let msg = "the cluster's database cannot be reached right now; nothing was changed, try again in a moment";
        self.error(ErrorCode::Unavailable, msg, None).await
    }

    async fn session_error(&mut self, e: SessionError, seq: Option<u64>) -> Flow {
        if matches!(e, SessionError::Ended) {
            if let SeatState::Seated { .. } = self.seat {
                self.seat = SeatState::Ended;
            }
        }
        self.error(e.code(), e.to_string(), seq).await
    }
}

/// Where a session unknown to this node's registry turned out to be.
enum Elsewhere {
    /// Another node serves it: `moved` was sent (or `unavailable`: nobody can tell now).
    Moved(Flow),
    /// This node owns it and has just started it.
    Here,
}
