//! The owner side of the ownership lease, wired to the session actors: [`LeaseGate`] holds
//! this node's [`Lease`] (grants from a majority of the electorate, sessions lost to newer
//! epochs) and answers each actor's per-batch [`OwnerGate::check`]. The node task renews
//! the lease every quarter lease period ([`LeaseGate::renew`]); a node cut off from a
//! majority sees its lease run out and pauses its sessions before any other node may take
//! them over (`minotaur_cluster::ownership` has the timing argument).
//!
//! The gate stays shut until the node has joined and checked, after a restart, which of
//! its stored sessions other nodes took over meanwhile ([`LeaseGate::open`]).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use minotaur_cluster::{Lease, LeaseConfig, PeerMsg};
use tokio::{sync::watch, time::Instant};

use super::ClusterHandle;
use crate::session::gate::{Admission, OwnerGate};

/// See the module doc. Shared by the node task and every session actor.
pub struct LeaseGate {
    cfg: LeaseConfig,
    lease: Mutex<Lease>,
    /// Shut until the node joined and ran its restart check.
    open: AtomicBool,
    changed: watch::Sender<u64>,
    cluster: OnceLock<ClusterHandle>,
}

impl LeaseGate {
    pub fn new(cfg: LeaseConfig) -> Arc<LeaseGate> {
        Arc::new(LeaseGate {
            cfg,
            lease: Mutex::new(Lease::new(cfg, 1)),
            open: AtomicBool::new(false),
            changed: watch::channel(0).0,
            cluster: OnceLock::new(),
        })
    }

    /// Connects the gate to the running cluster side (for `locate`).
    pub fn attach(&self, cluster: ClusterHandle) {
        let _ = self.cluster.set(cluster);
    }

    /// How often the node asks for grants: a quarter of the lease, so that three renewals
    /// in a row may fail before the lease runs out.
    pub fn renew_every(&self) -> Duration {
        self.cfg.lease / 4
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Lets sessions serve (once a majority has granted a lease).
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.bump();
    }

    pub fn set_voters(&self, voters: usize) {
        self.lease.lock().expect("lease").set_voters(voters);
        self.bump();
    }

    /// `session` runs elsewhere at `epoch`: the actor holding an older epoch stops.
    pub fn mark_lost(&self, session: &str, epoch: u64) {
        self.lease.lock().expect("lease").mark_lost(session, epoch);
        self.bump();
    }

    /// A grant from `voter` for the request sent at `sent_at`.
    pub fn granted(
        &self,
        voter: &str,
        sent_at: Instant,
        granted: Duration,
        taken: &[(String, u64)],
    ) {
        let lost = self
            .lease
            .lock()
            .expect("lease")
            .on_granted(voter, sent_at, granted, taken);
        for (session, epoch) in lost {
            tracing::debug!(%session, epoch, %voter, "lease grant: session taken over elsewhere");
        }
        self.bump();
    }

    /// Whether the lease is valid now (for `/api/cluster` and tests).
    pub fn valid(&self) -> bool {
        self.open.load(Ordering::SeqCst)
            && self.lease.lock().expect("lease").is_valid(Instant::now())
    }

    /// One renewal round: a grant from this node's own voter (`own`), then a `LeaseRequest`
    /// to every other member at once. Each grant counts from when it was asked for.
    pub async fn renew(&self, cluster: &ClusterHandle, own: (Duration, Vec<(String, u64)>)) {
        let sent_at = Instant::now();
        self.granted(cluster.node_id(), sent_at, own.0, &own.1);
        let me = cluster.node_id().to_owned();
        let asks = cluster
            .members()
            .into_iter()
            .filter(|m| m.id != me)
            .map(|m| {
                let net = cluster.net().clone();
                let node = me.clone();
                let timeout = self.renew_every();
                async move {
                    let sent_at = Instant::now();
                    let r = net
                        .request(&m.id, m.peer_addr, PeerMsg::LeaseRequest { node }, timeout)
                        .await;
                    (m.id, sent_at, r)
                }
            });
        for (voter, sent_at, reply) in futures_util::future::join_all(asks).await {
            match reply {
                Ok(PeerMsg::LeaseGranted { millis, taken }) => {
                    self.granted(&voter, sent_at, Duration::from_millis(millis), &taken)
                }
                Ok(other) => tracing::debug!(%voter, ?other, "unexpected reply to a lease request"),
                Err(e) => tracing::debug!(%voter, error = %e, "lease request failed"),
            }
        }
    }
}

impl OwnerGate for LeaseGate {
    fn check(&self, session: &str, epoch: u64) -> Admission {
        let lease = self.lease.lock().expect("lease");
        if lease.is_lost(session, epoch) {
            Admission::Lost
        } else if self.open.load(Ordering::SeqCst) && lease.is_valid(Instant::now()) {
            Admission::Serve
        } else {
            Admission::Wait
        }
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn locate(&self, session: &str) -> BoxFuture<'static, Option<String>> {
        let cluster = self.cluster.get().cloned();
        let session = session.to_owned();
        Box::pin(async move { cluster?.locate(&session).await })
    }
}
