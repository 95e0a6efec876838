//! A publish on one node reaches every node: the publishing node writes the game's record
//! (and the module by hash) to the database, which announces it (NOTIFY); each node's
//! listener calls [`follow`], which makes the new module current here too and, with the
//! `migrate` policy, swaps this node's live sessions of the game at their next event
//! boundary, exactly as a local publish does. The publishing node finds its catalog
//! already current and does nothing more. (The publishing node's dry run already
//! restored this node's sessions, read from the database, into the new rules:
//! `admin::trial`; a record is only written if that passed or was forced.)

use minotaur_state::SwapPolicy;

use super::ClusterHandle;
use crate::catalog::{self, Game};

pub(super) async fn follow(h: &ClusterHandle, game: &str) {
    let records = h.registry().persist().records.clone();
    let rec = match records.games().await {
        Ok(all) => all.into_iter().find(|(n, _)| n == game).map(|(_, r)| r),
        Err(e) => {
            tracing::warn!(%game, error = %e, "publish announced but the game record could not be read");
            return;
        }
    };
    let Some(rec) = rec else { return };
    let catalog = h.registry().catalog();
    if catalog
        .get(game)
        .is_some_and(|g| g.module.hash().to_hex() == rec.current_hash)
    {
        return;
    }
    let module = match catalog::load_module(h.runtime(), &records, &rec.current_hash).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(%game, hash = %rec.current_hash, error = %e, "published module does not load here; keeping the previous one");
            return;
        }
    };
    let new = Game {
        name: game.to_owned(),
        module,
    };
    catalog.set_current(new.clone());
    tracing::info!(%game, rules_version = new.module.info().rules_version, policy = ?rec.policy, "publish on another node: new rules current here");
    if rec.policy != SwapPolicy::MigrateLive {
        return;
    }
    let (mut migrated, mut failed) = (0, 0);
    for handle in h.registry().handles_of(game) {
        match handle.migrate(new.clone()).await {
            Ok(_) => migrated += 1,
            Err(f) => {
                failed += 1;
                tracing::warn!(session = %f.session, %game, code = %f.code, panic = f.panic.as_deref(), error = %f.message, "session stays on the old rules");
            }
        }
    }
    tracing::info!(%game, migrated, failed, "publish on another node: live sessions migrated here");
}
