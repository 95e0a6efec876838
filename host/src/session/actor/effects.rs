//! The session actor's outputs: carrying out a guest's effects (views,
//! messages, end of game, tick rate, logs) and telling players and the
//! registry what happened. Never blocks: a player's queue that is full kicks
//! that player (see `Outbound::send`), so a slow client cannot stall its
//! session.

use minotaur_abi::Effect;

use super::Actor;
use crate::{
    protocol::{msgpack_to_value, GameValue, ServerMsg},
    session::{PlayerId, SessionStatus},
};

impl Actor {
    /// Carry out the guest's effects, in order.
    pub(super) fn deliver(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to, msg } => {
                    if let Some(data) = self.transcode(&msg) {
                        self.send_to(to, ServerMsg::Message { data });
                    }
                }
                Effect::Broadcast { msg } => {
                    if let Some(data) = self.transcode(&msg) {
                        self.broadcast(ServerMsg::Message { data });
                    }
                }
                Effect::View { to, data } => {
                    let Some(data) = self.transcode(&data) else {
                        continue;
                    };
                    if let Some(seat) = self.seats.get_mut(&to) {
                        seat.last_view = Some(data.clone());
                        if let Some(conn) = &seat.conn {
                            conn.send(ServerMsg::View { data });
                        }
                    }
                }
                Effect::End { winners, detail } => {
                    let detail = self.transcode(&detail).unwrap_or(GameValue::Nil);
                    tracing::info!(session = %self.id, ?winners, "game over");
                    self.broadcast(ServerMsg::Ended { winners, detail });
                    self.end();
                }
                Effect::SetTickRate { hz } => self.ticker.set_rate(hz),
                Effect::Log { level, msg } => match level {
                    0 => tracing::error!(session = %self.id, "guest: {msg}"),
                    1 => tracing::warn!(session = %self.id, "guest: {msg}"),
                    2 => tracing::info!(session = %self.id, "guest: {msg}"),
                    _ => tracing::debug!(session = %self.id, "guest: {msg}"),
                },
            }
        }
    }

    fn transcode(&self, bytes: &[u8]) -> Option<GameValue> {
        msgpack_to_value(bytes)
            .inspect_err(|e| {
                tracing::warn!(session = %self.id, error = %e, "guest sent invalid MessagePack; dropped")
            })
            .ok()
    }

    pub(super) fn send_to(&self, player: PlayerId, msg: ServerMsg) {
        if let Some(conn) = self.seats.get(&player).and_then(|s| s.conn.as_ref()) {
            conn.send(msg);
        }
    }

    pub(super) fn broadcast(&self, msg: ServerMsg) {
        for conn in self.seats.values().filter_map(|s| s.conn.as_ref()) {
            conn.send(msg.clone());
        }
    }

    pub(super) fn publish_status(&self) {
        self.status.send_replace(SessionStatus {
            players: self.seats.len() as u32,
            max_players: self.max_players,
            ended: self.ended,
            rules_version: self.rules_version,
            tick: self.ticker.n,
            epoch: self.epoch,
        });
    }
}
