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
                Effect::Log { level, msg } => {
                    // Untrusted text: one escaped line, capped, so a guest cannot forge log
                    // lines or flood the log with one message.
                    let msg = guest_log_line(&msg);
                    match level {
                        0 => tracing::error!(session = %self.id, "guest: {msg}"),
                        1 => tracing::warn!(session = %self.id, "guest: {msg}"),
                        2 => tracing::info!(session = %self.id, "guest: {msg}"),
                        _ => tracing::debug!(session = %self.id, "guest: {msg}"),
                    }
                }
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

/// Most characters of a guest's log message that reach the node's log.
const MAX_GUEST_LOG_CHARS: usize = 1024;

/// A guest's log message as one printable line: control and other non-printable
/// characters (newlines, ANSI escapes, bidi overrides) escaped, at most
/// [`MAX_GUEST_LOG_CHARS`] characters, `…` if cut.
fn guest_log_line(msg: &str) -> String {
    let mut out: String = msg
        .chars()
        .take(MAX_GUEST_LOG_CHARS)
        .flat_map(|c| {
            let plain = !c.is_control() && !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
            let escaped: Vec<char> = if plain { vec![c] } else { c.escape_default().collect() };
            escaped
        })
        .collect();
    if msg.chars().nth(MAX_GUEST_LOG_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod log_tests {
    use super::guest_log_line;

    #[test]
    fn guest_log_messages_become_one_capped_printable_line() {
        assert_eq!(guest_log_line("plain"), "plain");
        assert_eq!(
            guest_log_line("x\nINFO forged\x1b[31m"),
            "x\\nINFO forged\\u{1b}[31m"
        );
        assert_eq!(guest_log_line("a\u{202E}b"), "a\\u{202e}b");
        let long = "é".repeat(5000);
        let line = guest_log_line(&long);
        assert_eq!(line.chars().count(), 1025);
        assert!(line.ends_with('…'));
    }
}
