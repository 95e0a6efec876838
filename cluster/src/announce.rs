//! What nodes tell each other through the database (LISTEN/NOTIFY; no node-to-node data
//! plane): a hand-off to a node, a target serving what it was handed, a publish. A
//! notification is delivered at the commit of the statement that sends it, to every
//! listening node; it is a hint that makes things fast, never the only way to learn them
//! (a node's sweep reads the directory every sixth of a lease, and a drain stops waiting
//! for a target's confirmation after a deadline). Payloads are plain text, one item per
//! line, fields separated by a tab; a payload this build cannot read is treated as "go and
//! look in the directory".

use crate::db::{Db, DbError};

/// Hand-offs: `to \t from`, then one `session \t epoch` line per session moved (left out
/// when the list would not fit a notification: the target then sweeps the directory).
/// Schema-1 nodes sent `to` alone.
pub const HANDOFF_CHANNEL: &str = "minotaur_handoff";
/// A target serves sessions it was handed: one session id per line.
pub const ACTIVATED_CHANNEL: &str = "minotaur_activated";
/// A publish: the game's name.
pub const GAMES_CHANNEL: &str = "minotaur_games";

/// PostgreSQL refuses notification payloads of 8000 bytes or more.
pub(crate) const MAX_PAYLOAD: usize = 7000;

/// What another node announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// Node `from` handed sessions (id, epoch at `to`) to node `to`. `sessions` is empty
    /// when the sender did not list them: look in the directory.
    Handoff {
        to: String,
        from: String,
        sessions: Vec<(String, i64)>,
    },
    /// A node now serves these sessions, handed to it.
    Activated(Vec<String>),
    /// This game's record (current module, policy) changed.
    Game(String),
}

impl Announcement {
    fn parse(channel: &str, payload: &str) -> Announcement {
        match channel {
            GAMES_CHANNEL => Announcement::Game(payload.to_owned()),
            ACTIVATED_CHANNEL => Announcement::Activated(
                payload
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => {
                let mut lines = payload.lines();
                let head = lines.next().unwrap_or_default();
                let (to, from) = head.split_once('\t').unwrap_or((head, ""));
                let sessions: Option<Vec<(String, i64)>> = lines
                    .map(|l| {
                        let (id, epoch) = l.split_once('\t')?;
                        Some((id.to_owned(), epoch.parse().ok()?))
                    })
                    .collect();
                Announcement::Handoff {
                    to: to.to_owned(),
                    from: from.to_owned(),
                    sessions: sessions.unwrap_or_default(),
                }
            }
        }
    }
}

/// Hand-off, activation and publish notifications, on a connection of its own.
pub struct ClusterListener(sqlx::postgres::PgListener);

impl ClusterListener {
    pub async fn recv(&mut self) -> Result<Announcement, DbError> {
        let n = self.0.recv().await?;
        Ok(Announcement::parse(n.channel(), n.payload()))
    }
}

impl Db {
    /// LISTENs on every announcement channel (its own connection, outside the pool's
    /// count).
    pub async fn listener(&self) -> Result<ClusterListener, DbError> {
        let mut l = sqlx::postgres::PgListener::connect_with(self.pool()).await?;
        l.listen_all([HANDOFF_CHANNEL, ACTIVATED_CHANNEL, GAMES_CHANNEL])
            .await?;
        Ok(ClusterListener(l))
    }

    /// Announces that this node serves `sessions` (handed to it), in as few notifications
    /// as fit.
    pub async fn announce_activated(&self, sessions: &[String]) -> Result<(), DbError> {
        let mut payloads: Vec<String> = Vec::new();
        let mut current = String::new();
        for id in sessions {
            if !current.is_empty() && current.len() + id.len() + 1 > MAX_PAYLOAD {
                payloads.push(std::mem::take(&mut current));
            }
            current.push_str(id);
            current.push('\n');
        }
        if !current.is_empty() {
            payloads.push(current);
        }
        if payloads.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p")
            .bind(ACTIVATED_CHANNEL)
            .bind(&payloads)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_old_or_odd_ones_mean_look_in_the_directory() {
        assert_eq!(
            Announcement::parse(HANDOFF_CHANNEL, "b\ta\ns1\t4\ns2\t9"),
            Announcement::Handoff {
                to: "b".into(),
                from: "a".into(),
                sessions: vec![("s1".into(), 4), ("s2".into(), 9)],
            }
        );
        // A schema-1 sender names the target only.
        assert_eq!(
            Announcement::parse(HANDOFF_CHANNEL, "b"),
            Announcement::Handoff {
                to: "b".into(),
                from: String::new(),
                sessions: vec![],
            }
        );
        // An unreadable line: nothing listed, so the target sweeps.
        assert_eq!(
            Announcement::parse(HANDOFF_CHANNEL, "b\ta\ns1\tnot-a-number"),
            Announcement::Handoff {
                to: "b".into(),
                from: "a".into(),
                sessions: vec![],
            }
        );
        assert_eq!(
            Announcement::parse(ACTIVATED_CHANNEL, "s1\ns2\n"),
            Announcement::Activated(vec!["s1".into(), "s2".into()])
        );
        assert_eq!(
            Announcement::parse(GAMES_CHANNEL, "arena"),
            Announcement::Game("arena".into())
        );
    }
}
