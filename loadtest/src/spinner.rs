//! Hostile guests for the isolation bench (`scripts/bench-isolation.sh`): a
//! spinner creates a session of the `chaos` test game (its own session, not a
//! quick-match) and keeps one guest call looping until the node's call
//! timeout cuts it off — `{"do":"spin"}`, then an `echo` that succeeds so the
//! session never reaches its failures-in-a-row limit, again and again until
//! the deadline. The bots of the same run measure what that does to everyone
//! else. Only runs when `minotaur-loadtest --spinners N` asks for it.

use std::time::Duration;

use serde::de::IgnoredAny;
use serde_json::json;
use tokio::time::Instant;

use crate::client::{ClientError, ClientMsg, Connection, Encoding, Kind};

/// What one spinner got done.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spun {
    /// Spin inputs answered (with `session_failed`/`guest_timeout`, normally).
    pub spins: u64,
    /// Sessions created (a new one when the last one ended).
    pub sessions: u64,
}

/// Spin against `url` until `stop_at`.
pub async fn spin(url: String, stop_at: Instant, connect_timeout: Duration) -> Spun {
    let mut done = Spun::default();
    while Instant::now() < stop_at {
        match tokio::time::timeout_at(stop_at, one_session(&url, connect_timeout, &mut done)).await
        {
            Ok(Ok(())) | Err(_) => {}
            // Refused or cut off: try again shortly with a new connection.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    done
}

/// One connection and one chaos session, spinning until the session ends.
async fn one_session(url: &str, timeout: Duration, done: &mut Spun) -> Result<(), ClientError> {
    let mut conn = Connection::connect(url, Encoding::Json, timeout).await?;
    conn.send(&ClientMsg::Create { game: "chaos" }).await?;
    let session = loop {
        let Some(m) = conn.recv::<IgnoredAny>().await? else {
            return Ok(());
        };
        match (m.kind, m.session) {
            (Kind::Created, Some(s)) => break s,
            (Kind::Error, _) => return Ok(()),
            _ => {}
        }
    };
    conn.send(&ClientMsg::JoinSession {
        session: &session,
        name: "spinner",
    })
    .await?;
    done.sessions += 1;
    let (spin, echo) = (json!({"do": "spin"}), json!({"do": "echo", "n": 1}));
    for seq in 1u64.. {
        let data = if seq % 2 == 1 { &spin } else { &echo };
        conn.send(&ClientMsg::Input { data, seq }).await?;
        loop {
            let Some(m) = conn.recv::<IgnoredAny>().await? else {
                return Ok(());
            };
            if m.code.as_deref() == Some("session_ended") {
                return Ok(());
            }
            if m.seq == Some(seq) && matches!(m.kind, Kind::Ack | Kind::Error) {
                break;
            }
        }
        if seq % 2 == 1 {
            done.spins += 1;
        }
    }
    Ok(())
}
