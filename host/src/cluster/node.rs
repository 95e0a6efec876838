//! The cluster node: registers this process in `minotaur_nodes` (a new incarnation), keeps
//! its lease renewed, watches for hand-offs (LISTEN), and runs the sweep that claims
//! orphaned sessions and starts the ones handed here ([`super::takeover`]). The state
//! machine is `joining → serving → draining → stopped`, logged at each step.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use minotaur_cluster::{Db, LeaseTiming, NodeRow, NodeStatus};
use minotaur_runtime::Runtime;
use serde::Serialize;
use tokio::{
    sync::{broadcast, watch, Notify},
    time::Instant,
};

use super::{ClusterConfig, ClusterError, LeaseGate};
use crate::session::Registry;

/// Where this node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Registered; taking back what its id owned before a restart.
    Joining,
    Serving,
    /// Handing its sessions over; takes no new ones.
    Draining,
    Stopped,
}

/// A handle on the running cluster node; cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Inner>,
}

struct Inner {
    timing: LeaseTiming,
    node_id: Arc<str>,
    /// Where players reach this node (`host:port`).
    url: String,
    incarnation: i64,
    db: Db,
    /// One connection of its own for the lease renewal.
    lease_db: Db,
    gate: Arc<LeaseGate>,
    state: watch::Sender<NodeState>,
    registry: Registry,
    runtime: Runtime,
    /// Sessions being activated now (one activation per session at a time).
    activating: Mutex<HashSet<String>>,
    /// Wakes the sweep at once (a hand-off notification arrived).
    sweep_now: Notify,
    /// Sessions some target announced it serves now (a drain or rebalance waits on these
    /// to pace its hand-offs).
    activated: broadcast::Sender<Arc<Vec<String>>>,
    /// Every serving node's load, for placing new sessions.
    loads: tokio::sync::Mutex<super::placement::Loads>,
    /// `--placement-margin` (0: new sessions stay here).
    placement_margin: i64,
}

/// Starts the cluster side of a node.
pub struct ClusterNode;

impl ClusterNode {
    /// Connects, migrates (refusing a newer schema), registers, starts the lease, listener
    /// and sweep tasks, takes back what this node id owned, and turns `serving`.
    pub async fn start(
        config: &ClusterConfig,
        node_id: Arc<str>,
        player_addr: SocketAddr,
        db: Db,
        gate: Arc<LeaseGate>,
        registry: Registry,
        runtime: Runtime,
    ) -> Result<ClusterHandle, ClusterError> {
        let timing = config.timing();
        let url = advertise(config, player_addr)?;
        let sent = Instant::now();
        let incarnation = db
            .register_node(&node_id, &url, crate::release(), timing.lease)
            .await?;
        gate.renewed(sent);
        tracing::info!(node = %node_id, incarnation, %url, lease_ms = timing.lease.as_millis() as u64, "cluster: registered; joining");
        let handle = ClusterHandle {
            inner: Arc::new(Inner {
                timing,
                node_id,
                url,
                incarnation,
                lease_db: db.dedicated(1),
                db,
                gate,
                state: watch::channel(NodeState::Joining).0,
                registry,
                runtime,
                activating: Mutex::new(HashSet::new()),
                sweep_now: Notify::new(),
                activated: broadcast::channel(1024).0,
                loads: Default::default(),
                placement_margin: i64::from(config.placement_margin),
            }),
        };
        tokio::spawn(renew_loop(handle.clone()));
        tokio::spawn(super::takeover::listen_loop(handle.clone()));
        // What this id owned before a restart comes back here, at a new epoch.
        let own = handle.db().reclaim_own(handle.node_id()).await?;
        if !own.is_empty() {
            tracing::info!(
                sessions = own.len(),
                "cluster: taking back this node's sessions"
            );
            super::takeover::activate_all(&handle, own, "restart").await;
        }
        handle.set_state(NodeState::Serving);
        tokio::spawn(super::takeover::sweep_loop(handle.clone()));
        tokio::spawn(super::rebalance::rebalance_loop(handle.clone()));
        Ok(handle)
    }
}

impl ClusterHandle {
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// This node's player address (`host:port`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn gate(&self) -> &LeaseGate {
        &self.inner.gate
    }

    pub fn timing(&self) -> LeaseTiming {
        self.inner.timing
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn incarnation(&self) -> i64 {
        self.inner.incarnation
    }

    pub fn state(&self) -> NodeState {
        *self.inner.state.borrow()
    }

    /// Serving with a valid lease: `/readyz` says yes.
    pub fn is_ready(&self) -> bool {
        self.state() == NodeState::Serving && self.inner.gate.valid()
    }

    pub(super) fn set_state(&self, s: NodeState) {
        let old = self.inner.state.send_replace(s);
        if old != s {
            tracing::info!(from = ?old, to = ?s, "cluster: node state");
        }
    }

    pub(super) fn sweep_now(&self) -> &Notify {
        &self.inner.sweep_now
    }

    /// Announcements of sessions now served by their targets, from now on.
    pub(super) fn activations(&self) -> broadcast::Receiver<Arc<Vec<String>>> {
        self.inner.activated.subscribe()
    }

    /// Passes on a target's announcement (from the LISTEN task).
    pub(super) fn heard_activated(&self, sessions: Vec<String>) {
        let _ = self.inner.activated.send(Arc::new(sessions));
    }

    /// Claims `session` for activation; `None` if another activation of it is running.
    pub(super) fn begin_activation(&self, session: &str) -> Option<ActivationGuard> {
        let mut a = self.inner.activating.lock().expect("activating");
        a.insert(session.to_owned()).then(|| ActivationGuard {
            handle: self.clone(),
            session: session.to_owned(),
        })
    }

    /// Marks the node draining (in the database too: no new sessions are placed here).
    pub async fn set_draining(&self) {
        self.set_state(NodeState::Draining);
        if let Err(e) = self
            .db()
            .set_node_status(self.node_id(), self.incarnation(), NodeStatus::Draining)
            .await
        {
            tracing::warn!(error = %e, "cluster: could not mark the node draining");
        }
    }

    /// The node is leaving: `stopped` ends its lease now, so any session it still owns is
    /// claimed by the others at once.
    pub async fn leave(&self) {
        self.set_state(NodeState::Stopped);
        self.inner.gate.revoke();
        if let Err(e) = self
            .db()
            .set_node_status(self.node_id(), self.incarnation(), NodeStatus::Stopped)
            .await
        {
            tracing::warn!(error = %e, "cluster: could not mark the node stopped; its lease runs out instead");
        }
    }

    /// Every node row (for `/api/cluster` and hand-off targets).
    /// Every serving node's load as last read, for placing new sessions.
    pub(super) fn loads(&self) -> &tokio::sync::Mutex<super::placement::Loads> {
        &self.inner.loads
    }

    /// `--placement-margin` (0: new sessions stay where they are created).
    pub(super) fn placement_margin(&self) -> i64 {
        self.inner.placement_margin
    }

    pub async fn members(&self) -> Vec<NodeRow> {
        self.db().nodes().await.unwrap_or_default()
    }

    /// Where a session this node's registry does not know is, per the directory: another
    /// node (its websocket URL), or this one — then it is started here before answering
    /// (a hand-off whose notification has not been swept yet). `None`: ended or unknown.
    /// `Unavailable`: the directory could not be read, or the session it names here could
    /// not be started — never reported as unknown (a client gives up on those).
    pub async fn route(&self, session: &str) -> Option<Route> {
        let at = match self.db().locate(session).await {
            Ok(at) => at?,
            Err(e) => {
                tracing::debug!(%session, error = %e, "route: directory unreachable");
                return Some(Route::Unavailable);
            }
        };
        if at.ended {
            return None;
        }
        if at.owner != self.node_id() {
            return at.url.map(|u| Route::Moved(super::ws_url(&u)));
        }
        if self.state() != NodeState::Serving {
            return None;
        }
        let Some(_guard) = self.begin_activation(session) else {
            // Being started by the sweep right now: wait for it (bounded).
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.registry().get(session).is_some() {
                    return Some(Route::Here);
                }
                if !self
                    .inner
                    .activating
                    .lock()
                    .expect("activating")
                    .contains(session)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return self.registry().get(session).map(|_| Route::Here);
        };
        match self.activate(session, at.epoch, "routed").await {
            Ok(true) => Some(Route::Here),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(%session, error = %e, "session routed here did not start");
                Some(Route::Unavailable)
            }
        }
    }
}

/// See [`ClusterHandle::route`].
pub enum Route {
    Here,
    Moved(String),
    /// Not known now (the database is unreachable): try again.
    Unavailable,
}

/// Held while a session is being activated.
pub(super) struct ActivationGuard {
    handle: ClusterHandle,
    session: String,
}

impl Drop for ActivationGuard {
    fn drop(&mut self) {
        if let Ok(mut a) = self.handle.inner.activating.lock() {
            a.remove(&self.session);
        }
    }
}

/// Renews the lease every quarter of it (every 100 ms while renewals fail). After a lapse —
/// the process was paused, or the database unreachable — it re-reads the directory for
/// every session it runs before the gate opens again, so a session taken over meanwhile is
/// dropped here without serving one more batch.
async fn renew_loop(h: ClusterHandle) {
    let timing = h.timing();
    let mut failing = false;
    loop {
        tokio::time::sleep(if failing {
            Duration::from_millis(100)
        } else {
            timing.renew_every()
        })
        .await;
        if h.state() == NodeState::Stopped {
            return;
        }
        let lapsed = !h.gate().valid();
        let sent = Instant::now();
        let renewal = tokio::time::timeout(
            timing.lease / 2,
            h.inner.lease_db.renew_lease(
                h.node_id(),
                h.incarnation(),
                timing.lease,
                h.registry().len(),
            ),
        )
        .await;
        match renewal {
            Ok(Ok(true)) => {
                if lapsed {
                    if let Err(e) = recheck_directory(&h).await {
                        tracing::warn!(error = %e, "cluster: lease renewed but the directory could not be re-read; still paused");
                        failing = true;
                        continue;
                    }
                    tracing::info!("cluster: lease renewed after a lapse; directory re-read");
                }
                h.gate().renewed(sent);
                failing = false;
            }
            Ok(Ok(false)) => {
                tracing::error!(node = %h.node_id(), incarnation = h.incarnation(), "cluster: a newer process with this node id registered; this one stops serving");
                h.gate().revoke();
                h.set_state(NodeState::Stopped);
                return;
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "cluster: lease renewal failed; retrying");
                }
                failing = true;
            }
            Err(_) => {
                if !failing {
                    tracing::warn!("cluster: lease renewal timed out; retrying");
                }
                failing = true;
            }
        }
    }
}

/// Asks the directory who owns each session this node runs; marks those that moved lost.
async fn recheck_directory(h: &ClusterHandle) -> Result<(), minotaur_cluster::DbError> {
    let ids: Vec<String> = h.registry().list(None).into_iter().map(|s| s.id).collect();
    let owners = h.db().owners(&ids).await?;
    let mut moved = 0;
    for (id, owner, epoch, ended) in owners {
        let local = h.registry().get(&id).map(|s| s.status().epoch);
        let gone = ended || owner != h.node_id() || local.is_some_and(|e| e != epoch as u64);
        if gone {
            moved += 1;
            let owner = if owner == h.node_id() {
                String::from("(newer epoch)")
            } else {
                owner
            };
            h.gate().directory_says(&id, &owner, epoch.max(0) as u64);
        }
    }
    if moved > 0 {
        tracing::warn!(
            sessions = moved,
            "cluster: sessions moved while this node was away; dropping them here"
        );
    }
    Ok(())
}

/// The `host:port` players use to reach this node.
fn advertise(config: &ClusterConfig, bound: SocketAddr) -> Result<String, ClusterError> {
    if let Some(a) = &config.advertise_addr {
        return Ok(a.clone());
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound.to_string());
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            ClusterError::Advertise(
                "listening on an unspecified address and no host name; set --advertise-addr".into(),
            )
        })?;
    Ok(format!("{host}:{}", bound.port()))
}
