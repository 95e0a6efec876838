//! Swapping a live session's rules at an event boundary (`Command::Migrate`),
//! and handing its current state to a publish's dry run (`Command::Snapshot`),
//! which restores it into a scratch instance of the new rules elsewhere
//! (`admin::trial`) without touching the session. Both run inside the batch's
//! guest-pool job, like every guest call; a failure keeps the old rules and
//! carries the guest's panic message, if any, to the publish report.

use minotaur_abi::Restore;
use minotaur_runtime::GuestError;
use tokio::sync::oneshot;

use super::Actor;
use super::Deferred;
use crate::{catalog::Game, protocol::ServerMsg, session::SwapFailure};

impl Actor {
    fn swap_failure(&self, code: &str, message: String, panic: Option<&str>) -> SwapFailure {
        SwapFailure {
            session: self.id.clone(),
            code: code.to_owned(),
            message,
            panic: panic.map(str::to_owned),
        }
    }

    /// The session's state as the guest gives it now, and the rules version
    /// that wrote it: what a dry run restores into the new rules.
    pub(super) fn share_snapshot(
        &mut self,
        reply: oneshot::Sender<Result<(Vec<u8>, u32), SwapFailure>>,
    ) {
        if self.ended {
            let f = self.swap_failure("session_ended", "the session is over".into(), None);
            let _ = reply.send(Err(f));
            return;
        }
        match self.instance.snapshot() {
            Ok(state) => {
                let _ = reply.send(Ok((state, self.rules_version)));
            }
            Err(e) => {
                let message = format!("snapshot of the current rules: {e}");
                let _ = reply.send(Err(self.swap_failure(e.code(), message, e.panic_message())));
                self.recover(&e, None, None);
            }
        }
    }

    /// Move the session to `game`'s module at this event boundary: snapshot
    /// the old instance, restore into a new one with `from_version` = the old
    /// rules version; only if that works does the new instance replace the old
    /// one. The reply waits for the commit; a failure keeps the old rules.
    pub(super) fn migrate(&mut self, game: Game, reply: oneshot::Sender<Result<u32, SwapFailure>>) {
        if self.ended {
            let f = self.swap_failure("session_ended", "the session is over".into(), None);
            let _ = reply.send(Err(f));
            return;
        }
        if game.module.hash() == self.game.module.hash() {
            let _ = reply.send(Ok(self.rules_version));
            return;
        }
        let guest_failed = |a: &Actor, e: &GuestError, what: &str| {
            a.swap_failure(e.code(), format!("{what}: {e}"), e.panic_message())
        };
        let state = match self.instance.snapshot() {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(guest_failed(self, &e, "snapshot of the old rules")));
                self.recover(&e, None, None);
                return;
            }
        };
        let mut fresh = match game.module.instantiate() {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(guest_failed(self, &e, "instantiating the new rules")));
                return;
            }
        };
        let restore = Restore {
            state,
            from_version: self.rules_version,
        };
        let out = match fresh.restore(&restore) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(
                    session = %self.id, game = %self.game.name, from = self.rules_version,
                    to = game.module.info().rules_version, code = e.code(),
                    panic = e.panic_message(), error = %e,
                    "new rules failed to restore; keeping the old ones"
                );
                let _ = reply.send(Err(guest_failed(self, &e, "restore into the new rules")));
                return;
            }
        };
        if let Some(reason) = out.reject {
            tracing::warn!(session = %self.id, %reason, "new rules rejected the state; keeping the old ones");
            let _ = reply.send(Err(self.swap_failure("restore_rejected", reason, None)));
            return;
        }
        let new_state = match fresh.snapshot() {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(guest_failed(self, &e, "snapshot of the new rules")));
                return;
            }
        };
        let from = self.rules_version;
        let info = game.module.info().clone();
        self.instance = fresh;
        self.game = game;
        self.rules_version = info.rules_version;
        self.max_players = info.max_players;
        self.last_good = new_state;
        self.replay.clear();
        self.state_dirty = true;
        self.failures_in_row = 0;
        tracing::info!(session = %self.id, from, to = self.rules_version, "rules swapped");
        self.broadcast(ServerMsg::Rules {
            rules_version: self.rules_version,
        });
        self.deliver(out.effects);
        self.publish_status();
        self.pending.push(Deferred::Migrated {
            reply,
            rules_version: self.rules_version,
        });
    }
}
