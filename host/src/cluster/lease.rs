//! The node's [`OwnerGate`]: a session actor may apply a batch only while this node's lease
//! is valid on its own clock ([`LeaseClock`]) and the directory has not moved the session
//! away. After the lease lapsed (a pause, a database outage) the gate stays shut until the
//! node task has renewed *and* re-read the directory for every session it runs, marking
//! those that moved as lost; their actors then send the players on and stop.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures_util::future::BoxFuture;
use minotaur_cluster::{Db, LeaseClock, LeaseTiming};
use tokio::{sync::watch, time::Instant};

use crate::session::gate::{Admission, OwnerGate};

/// See the module doc. Shared by the node task (writes) and every actor (reads).
pub struct LeaseGate {
    timing: LeaseTiming,
    clock: Mutex<LeaseClock>,
    /// Since when the lease has been valid without a lapse (`None`: not valid now).
    valid_since: Mutex<Option<Instant>>,
    /// Sessions the directory gives to another owner or epoch: session → (owner, epoch).
    lost: Mutex<HashMap<String, (String, u64)>>,
    changed: watch::Sender<u64>,
    db: Db,
    node: Arc<str>,
}

impl LeaseGate {
    pub fn new(timing: LeaseTiming, db: Db, node: Arc<str>) -> Arc<LeaseGate> {
        Arc::new(LeaseGate {
            timing,
            clock: Mutex::new(LeaseClock::default()),
            valid_since: Mutex::new(None),
            lost: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            db,
            node,
        })
    }

    /// The lease is valid now.
    pub fn valid(&self) -> bool {
        self.clock().valid_at(Instant::now())
    }

    /// A renewal sent at `sent` succeeded (and, after a lapse, the directory was re-read).
    pub fn renewed(&self, sent: Instant) {
        let was = self.valid();
        self.clock().renewed(sent, self.timing);
        if !was {
            *self.valid_since.lock().expect("valid since") = Some(Instant::now());
            self.bump();
        }
    }

    /// The lease has been valid without a lapse for at least a whole lease. Only then
    /// does this node claim others' sessions: after a database outage every lease looks
    /// expired, and the first node back must give the others time to renew theirs.
    pub fn settled(&self) -> bool {
        self.valid()
            && self
                .valid_since
                .lock()
                .expect("valid since")
                .is_some_and(|t| t.elapsed() >= self.timing.lease)
    }

    /// This process may no longer serve anything (a newer incarnation of its id exists).
    pub fn revoke(&self) {
        self.clock().revoke();
        self.bump();
    }

    /// The directory names `owner` at `epoch` for `session`; if that is not this node, the
    /// local copy is lost.
    pub fn directory_says(&self, session: &str, owner: &str, epoch: u64) {
        let mut lost = self.lost.lock().expect("lost sessions");
        if owner == &*self.node {
            lost.remove(session);
        } else {
            lost.insert(session.to_owned(), (owner.to_owned(), epoch));
        }
        drop(lost);
        self.bump();
    }

    /// A session was (re)activated here at `epoch`: forget an older loss.
    pub fn activated(&self, session: &str) {
        self.lost.lock().expect("lost sessions").remove(session);
    }

    fn clock(&self) -> std::sync::MutexGuard<'_, LeaseClock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

impl OwnerGate for LeaseGate {
    fn check(&self, session: &str, epoch: u64) -> Admission {
        if let Some((_, e)) = self.lost.lock().expect("lost sessions").get(session) {
            if *e >= epoch {
                return Admission::Lost;
            }
        }
        if self.valid() {
            Admission::Serve
        } else {
            Admission::Wait
        }
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn locate(&self, session: &str) -> BoxFuture<'static, Option<String>> {
        let (db, session, me) = (self.db.clone(), session.to_owned(), self.node.clone());
        Box::pin(async move {
            let at = db.locate(&session).await.ok().flatten()?;
            (at.owner != *me && !at.ended)
                .then(|| at.url.map(|u| super::ws_url(&u)))
                .flatten()
        })
    }
}
