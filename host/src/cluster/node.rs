//! [`ClusterNode`]: the one task that owns this node's cluster state — its gossip
//! [`Membership`], the [`PeerNet`] inbox, the [`ReplicaSet`] (replicas persisted in their own
//! store under `<data-dir>/replicas`) and the ownership [`Voter`] — and the clonable
//! [`ClusterHandle`] the rest of the node (gateway, shutdown) talks to. Started by `main`.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Duration,
};

use minotaur_cluster::{
    Incoming, Member, Membership, MembershipConfig, ModuleSource, NodeStatus, PeerConfig, PeerMsg,
    PeerNet, ReplicaSet, ReplicaTarget, Voter,
};
use serde::Serialize;
use tokio::{
    sync::{mpsc, watch, Mutex},
    task::JoinHandle,
    time::Instant,
};

use super::{
    activate::Activator,
    lease::LeaseGate,
    replicate::{self, ReplicationHook},
    takeover::{self, NodeCmd},
    ClusterConfig, ClusterError,
};
use crate::session::Registry;

/// Most queued peer messages the node task takes in one go.
const INBOX_BATCH: usize = 64;

/// Where a node is in its life, as the gateway and orchestrators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Gossip started; no other node seen yet (and the join timeout has not passed).
    Joining,
    /// In the cluster and taking sessions: `/readyz` answers 200.
    Serving,
    /// Handing its sessions over; takes no new ones.
    Draining,
    /// Left the cluster.
    Stopped,
}

/// Talks to this node's cluster side. Cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Shared>,
}

struct Shared {
    node_id: String,
    player_addr: String,
    cfg: ClusterConfig,
    net: PeerNet,
    members: watch::Receiver<Vec<Member>>,
    state: watch::Sender<NodeState>,
    membership: Mutex<Option<Membership>>,
    /// The ownership lease and fencing every session actor checks.
    gate: Arc<LeaseGate>,
    replication: OnceLock<ReplicationHook>,
    cmds: mpsc::UnboundedSender<NodeCmd>,
}

/// A replica held here, as `GET /api/cluster` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    pub session: String,
    pub owner: String,
    pub epoch: u64,
    /// The copy's heads (hex, sorted, joined): equal on two reads = nothing arrived between.
    pub heads: String,
}

/// A member as `GET /api/cluster` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub id: String,
    /// Where players reach it (`host:port`).
    pub addr: String,
    pub peer_addr: String,
    pub version: String,
    pub status: &'static str,
    /// Sessions it owns.
    pub load: u64,
}

impl ClusterHandle {
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The `host:port` players are sent to for sessions on this node.
    pub fn player_addr(&self) -> &str {
        &self.inner.player_addr
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.cfg
    }

    pub fn net(&self) -> &PeerNet {
        &self.inner.net
    }

    pub fn state(&self) -> NodeState {
        *self.inner.state.borrow()
    }

    pub fn watch_state(&self) -> watch::Receiver<NodeState> {
        self.inner.state.subscribe()
    }

    /// Joined and serving (not joining, draining or stopped).
    pub fn is_ready(&self) -> bool {
        self.state() == NodeState::Serving
    }

    /// Live members (this node included), by id.
    pub fn members(&self) -> Vec<Member> {
        self.inner.members.borrow().clone()
    }

    pub fn watch_members(&self) -> watch::Receiver<Vec<Member>> {
        self.inner.members.clone()
    }

    /// Members as the API shows them.
    pub fn member_views(&self) -> Vec<MemberView> {
        self.members()
            .into_iter()
            .map(|m| MemberView {
                id: m.id,
                addr: m.player_addr,
                peer_addr: m.peer_addr.to_string(),
                version: m.version,
                status: m.status.as_str(),
                load: m.load,
            })
            .collect()
    }

    /// Serving members' ids (placement's input).
    pub fn serving_nodes(&self) -> Vec<String> {
        self.members()
            .into_iter()
            .filter(|m| m.status == NodeStatus::Serving)
            .map(|m| m.id)
            .collect()
    }

    /// Stop taking sessions and tell the cluster (placement skips this node from now on).
    pub async fn set_draining(&self) {
        self.inner.state.send_replace(NodeState::Draining);
        if let Some(m) = self.inner.membership.lock().await.as_ref() {
            m.set_status(NodeStatus::Draining).await;
        }
        tracing::info!(node = %self.inner.node_id, state = "draining", "node state");
    }

    /// The replicas this node holds.
    pub async fn replicas(&self) -> Vec<ReplicaView> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let _ = self.inner.cmds.send(NodeCmd::Replicas { reply });
        rx.await.unwrap_or_default()
    }

    /// The owner side of replication (set once the node has started).
    pub fn replication(&self) -> Option<&ReplicationHook> {
        self.inner.replication.get()
    }

    /// Where node `id` takes peer traffic, if it is a live member.
    pub fn target(&self, id: &str) -> Option<ReplicaTarget> {
        self.members()
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| ReplicaTarget {
                node: m.id,
                addr: m.peer_addr,
            })
    }

    /// The websocket URL of the node serving `session`, asking every other member at once
    /// (`WhereIs`); `None` if no one answers yes within half a second.
    pub async fn locate(&self, session: &str) -> Option<String> {
        let me = self.node_id().to_owned();
        let asks = self.members().into_iter().filter(|m| m.id != me).map(|m| {
            let net = self.net().clone();
            let msg = PeerMsg::WhereIs {
                session: session.to_owned(),
            };
            Box::pin(async move {
                match net
                    .request(&m.id, m.peer_addr, msg, Duration::from_millis(500))
                    .await
                {
                    Ok(PeerMsg::Owns { owned: true, .. }) => {
                        Ok(format!("ws://{}/ws", m.player_addr))
                    }
                    _ => Err(()),
                }
            })
        });
        let asks: Vec<_> = asks.collect();
        if asks.is_empty() {
            return None;
        }
        futures_util::future::select_ok(asks)
            .await
            .ok()
            .map(|(url, _)| url)
    }

    /// A replica answered with a newer epoch: this node must stop serving `session`.
    pub fn report_fenced(&self, session: &str, epoch: u64) {
        tracing::warn!(%session, epoch, node = %self.inner.node_id, "fenced: another node holds a newer epoch");
        self.inner.gate.mark_lost(session, epoch);
    }

    /// The ownership lease gate.
    pub fn gate(&self) -> &Arc<LeaseGate> {
        &self.inner.gate
    }

    /// Leave gracefully: gossip `leaving` for a few rounds, then stop gossip and peer links.
    pub async fn leave(&self) {
        if let Some(m) = self.inner.membership.lock().await.take() {
            m.shutdown().await;
        }
        self.inner.net.shutdown();
        self.inner.state.send_replace(NodeState::Stopped);
        tracing::info!(node = %self.inner.node_id, state = "stopped", "node state");
    }
}

/// The cluster task of a node (see the module doc).
pub struct ClusterNode {
    activator: Activator,
    handle: ClusterHandle,
    inbox: mpsc::Receiver<Incoming>,
    replicas: ReplicaSet,
    voter: Voter,
    votes_path: PathBuf,
    registry: Registry,
    started: Instant,
    cmds: mpsc::UnboundedSender<NodeCmd>,
    cmd_rx: mpsc::UnboundedReceiver<NodeCmd>,
    /// Members at the last membership change (with their status then), and the size of
    /// the electorate: the largest cluster seen, less the nodes that left after draining.
    known: Vec<(String, NodeStatus)>,
    voters: usize,
    /// Sessions with a takeover claim in flight.
    claims: std::collections::HashSet<String>,
    /// Every node seen since start: a replica's owner that was never seen may just not have
    /// been discovered yet, so it is not claimed from until the node has run a while.
    ever_seen: std::collections::HashSet<String>,
}

impl ClusterNode {
    /// Binds the peer transport and starts gossip; `listen` is the bound player address.
    /// Returns the handle and the running task.
    pub async fn start(
        cfg: ClusterConfig,
        node_id: String,
        listen: SocketAddr,
        data_dir: &Path,
        registry: Registry,
        runtime: minotaur_runtime::Runtime,
        gate: Arc<LeaseGate>,
    ) -> Result<(ClusterHandle, JoinHandle<()>), ClusterError> {
        let sessions_store = registry.persist().writer.store().clone();
        let modules: Arc<dyn ModuleSource> = Arc::new(sessions_store.clone());
        let host = advertise_ip(&cfg).await?;
        let with_host = |a: SocketAddr| {
            if a.ip().is_unspecified() {
                SocketAddr::new(host, a.port())
            } else {
                a
            }
        };
        let player_addr = cfg
            .advertise_addr
            .clone()
            .unwrap_or_else(|| with_host(listen).to_string());

        let mut peer_cfg = PeerConfig::new(node_id.clone(), cfg.peer_listen);
        if cfg.peer_listen.ip().is_unspecified() {
            peer_cfg.advertise = Some(with_host(cfg.peer_listen));
        }
        let (net, inbox) = PeerNet::bind(peer_cfg)
            .await
            .map_err(|source| ClusterError::Peer {
                addr: cfg.peer_listen,
                source,
            })?;

        let mut mcfg = MembershipConfig::new(node_id.clone(), cfg.gossip_listen, net.addr());
        mcfg.gossip_advertise = Some(with_host(cfg.gossip_listen));
        mcfg.seeds = cfg.seeds.clone();
        mcfg.player_addr = player_addr.clone();
        mcfg.gossip_interval = cfg.gossip_interval();
        let membership = Membership::start(mcfg)
            .await
            .map_err(|source| ClusterError::Gossip {
                addr: cfg.gossip_listen,
                source,
            })?;

        let replica_dir = data_dir.join("replicas");
        let store =
            minotaur_state::Store::open(&replica_dir).map_err(|source| ClusterError::Store {
                dir: replica_dir.clone(),
                source,
            })?;
        let replicas = ReplicaSet::new(node_id.clone(), Arc::new(store)).with_modules(modules);

        let votes_path = data_dir.join("cluster-votes.json");
        let started = Instant::now();
        let voter = Voter::new(cfg.lease(), started, load_votes(&votes_path));

        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let handle = ClusterHandle {
            inner: Arc::new(Shared {
                node_id: node_id.clone(),
                player_addr: player_addr.clone(),
                members: membership.watch(),
                cfg,
                net,
                state: watch::channel(NodeState::Joining).0,
                membership: Mutex::new(Some(membership)),
                gate: gate.clone(),
                replication: OnceLock::new(),
                cmds: cmds.clone(),
            }),
        };
        tracing::info!(
            node = %node_id,
            player_addr = %player_addr,
            peer_addr = %handle.net().addr(),
            seeds = ?handle.config().seeds,
            "cluster node started"
        );
        gate.attach(handle.clone());
        let hook = replicate::start(handle.clone(), sessions_store);
        registry.persist().writer.set_tap(hook.tap());
        let _ = handle.inner.replication.set(hook);
        let activator = Activator {
            cluster: handle.clone(),
            registry: registry.clone(),
            runtime,
            modules_stored: Default::default(),
        };
        let node = ClusterNode {
            activator,
            handle: handle.clone(),
            inbox,
            replicas,
            voter,
            votes_path,
            registry,
            started,
            cmds,
            cmd_rx,
            known: Vec::new(),
            voters: 1,
            claims: Default::default(),
            ever_seen: Default::default(),
        };
        let task = tokio::spawn(node.run());
        Ok((handle, task))
    }

    async fn run(mut self) {
        let mut members = self.handle.watch_members();
        let mut state = self.handle.watch_state();
        let mut load_tick = tokio::time::interval(Duration::from_millis(500));
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renew = tokio::time::interval(self.handle.gate().renew_every());
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let join_deadline = self.started + self.handle.config().join_timeout();
        self.check_joined();
        loop {
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(m) => {
                        // Whatever else is queued too, so that replica writes share a store write.
                        let mut batch = vec![m];
                        while batch.len() < INBOX_BATCH {
                            match self.inbox.try_recv() {
                                Ok(m) => batch.push(m),
                                Err(_) => break,
                            }
                        }
                        self.dispatch_all(batch);
                    }
                    None => break,
                },
                changed = members.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.check_joined();
                    self.on_members();
                }
                Some(cmd) = self.cmd_rx.recv() => self.on_cmd(cmd),
                _ = tokio::time::sleep_until(join_deadline), if self.handle.state() == NodeState::Joining => {
                    self.check_joined();
                }
                _ = renew.tick(), if self.handle.state() != NodeState::Joining => {
                    let own = self.voter.grant(self.handle.node_id(), Instant::now());
                    let handle = self.handle.clone();
                    tokio::spawn(async move { handle.gate().clone().renew(&handle, own).await });
                }
                _ = sweep.tick(), if self.handle.state() == NodeState::Serving => self.claim_orphans(),
                _ = load_tick.tick() => {
                    let load = self.registry.len() as u64;
                    if let Some(m) = self.handle.inner.membership.lock().await.as_ref() {
                        m.set_load(load).await;
                    }
                }
                // Map the guard away at once: it is not Send.
                _ = async { state.wait_for(|s| *s == NodeState::Stopped).await.is_ok() } => break,
            }
        }
    }

    /// Takeover trigger: for every node gone since the last change, claim the sessions it
    /// owned whose replica is here, when this node ranks first for them.
    fn on_members(&mut self) {
        let members: Vec<(String, NodeStatus)> = self
            .handle
            .members()
            .into_iter()
            .map(|m| (m.id, m.status))
            .collect();
        let now: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();
        let departed: Vec<&(String, NodeStatus)> = self
            .known
            .iter()
            .filter(|(id, _)| !now.contains(id))
            .collect();
        // A node that disappears while draining has handed its sessions over and exits:
        // it leaves the electorate. Without this, every start-first rolling upgrade grows
        // the electorate for good (4 nodes seen at once with 3 serving), and a later crash
        // leaves too few voters for any takeover majority.
        let drained = departed
            .iter()
            .filter(|(_, status)| *status != NodeStatus::Serving)
            .count();
        let gone: Vec<String> = departed.into_iter().map(|(id, _)| id.clone()).collect();
        self.voters = self.voters.saturating_sub(drained).max(now.len());
        self.handle.gate().set_voters(self.voters);
        self.ever_seen.extend(now.iter().cloned());
        self.known = members;
        if gone.is_empty() {
            return;
        }
        self.claim_orphans();
    }

    /// Takeover trigger (on membership changes and every second): claim every replica held
    /// here whose owner is no longer a member, when this node ranks first among the serving
    /// nodes for it and no claim for it is in flight.
    fn claim_orphans(&mut self) {
        let members: Vec<String> = self.handle.members().into_iter().map(|m| m.id).collect();
        let serving = self.handle.serving_nodes();
        // One claim per dead owner, carrying all of its sessions (batched votes).
        let mut by_owner: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        for session in self.replicas.sessions() {
            if self.claims.contains(&session) {
                continue;
            }
            let Some(doc) = self.replicas.doc(&session) else {
                continue;
            };
            let Ok(meta) = doc.meta() else { continue };
            if members.contains(&meta.owner_node) || meta.ended {
                continue;
            }
            let settled = self.started.elapsed() > Duration::from_secs(10);
            if !settled && !self.ever_seen.contains(&meta.owner_node) {
                continue;
            }
            let first = minotaur_cluster::placement::rank(&session, &serving)
                .first()
                .map(|s| s.to_string());
            if first.as_deref() != Some(self.handle.node_id()) {
                continue;
            }
            let epoch = meta.epoch.max(self.replicas.known_epoch(&session)) + 1;
            tracing::debug!(%session, owner = %meta.owner_node, epoch, "takeover: owner gone; claiming");
            self.claims.insert(session.clone());
            by_owner
                .entry(meta.owner_node)
                .or_default()
                .push((session, epoch));
        }
        for (owner, sessions) in by_owner {
            tracing::info!(%owner, sessions = sessions.len(), voters = self.voters, "takeover: owner gone; claiming its sessions");
            tokio::spawn(takeover::claim(
                self.handle.clone(),
                self.cmds.clone(),
                owner,
                sessions,
                self.voters,
            ));
        }
    }

    fn on_cmd(&mut self, cmd: NodeCmd) {
        match cmd {
            NodeCmd::Vote {
                owner,
                sessions,
                reply,
            } => {
                let me = self.handle.node_id().to_owned();
                let granted = self.vote(&owner, &sessions, &me);
                let _ = reply.send(granted);
            }
            NodeCmd::Replicas { reply } => {
                let mut out = Vec::new();
                for session in self.replicas.sessions() {
                    let epoch = self.replicas.epoch(&session).unwrap_or(0);
                    let Some(doc) = self.replicas.doc(&session) else {
                        continue;
                    };
                    let owner = doc.meta().map(|m| m.owner_node).unwrap_or_default();
                    let mut heads: Vec<String> =
                        doc.heads().iter().map(|h| h.to_string()).collect();
                    heads.sort();
                    out.push(ReplicaView {
                        session,
                        owner,
                        epoch,
                        heads: heads.join(","),
                    });
                }
                let _ = reply.send(out);
            }
            NodeCmd::ClaimDone { sessions } => {
                for session in sessions {
                    self.claims.remove(&session);
                }
            }
            NodeCmd::Promote { owner, sessions } => self.promote(&owner, sessions),
        }
    }

    /// A majority voted for taking `sessions` (at their new epochs) from `owner`: fence
    /// them here and at the other members, and start them (a few at a time).
    fn promote(&mut self, owner: &str, sessions: Vec<(String, u64)>) {
        let mut promoted = Vec::with_capacity(sessions.len());
        let mut docs = Vec::with_capacity(sessions.len());
        for (session, epoch) in sessions {
            // The replica may have moved on while the votes came in (a handoff to another
            // node synced a newer owner into it): then this claim is stale.
            let current = self.replicas.doc(&session).and_then(|d| d.meta().ok());
            let known = self.replicas.known_epoch(&session);
            let mut meta = match current {
                Some(m) if m.owner_node == owner && m.epoch < epoch && known < epoch => m,
                _ => {
                    tracing::warn!(%session, epoch, %owner, known, "takeover: the replica moved on while voting; not promoting");
                    continue;
                }
            };
            let Some(mut doc) = self.replicas.take(&session) else {
                tracing::warn!(%session, "takeover: the replica is gone");
                continue;
            };
            meta.owner_node = self.handle.node_id().to_owned();
            meta.epoch = epoch;
            doc.set_meta(&meta);
            doc.commit();
            self.replicas.fence(&session, epoch);
            promoted.push((session, epoch));
            docs.push(doc);
        }
        if promoted.is_empty() {
            return;
        }
        for m in self.handle.members() {
            if m.id == self.handle.node_id() {
                continue;
            }
            if m.batches() {
                let msg = PeerMsg::ActivateBatch {
                    sessions: promoted.clone(),
                };
                self.handle.net().tell(&m.id, m.peer_addr, msg);
            } else {
                for (session, epoch) in &promoted {
                    let msg = PeerMsg::Activate {
                        session: session.clone(),
                        epoch: *epoch,
                    };
                    self.handle.net().tell(&m.id, m.peer_addr, msg);
                }
            }
        }
        let source = self
            .handle
            .members()
            .into_iter()
            .find(|m| m.id != self.handle.node_id())
            .and_then(|m| self.handle.target(&m.id));
        let activator = self.activator.clone();
        tokio::spawn(async move {
            activator.activate_all(docs, source, "takeover").await;
        });
    }

    /// Votes (this node's own, or a peer's request) for `candidate` taking each of
    /// `sessions` (at its new epoch) from `owner`; returns the sessions granted, persisted
    /// (once for all of them) before they count. A session is refused outright if this node
    /// knows it at that epoch or newer (it serves it, or its replica or a fence says so):
    /// the candidate's copy is stale.
    fn vote(&mut self, owner: &str, sessions: &[(String, u64)], candidate: &str) -> Vec<String> {
        let mut granted = Vec::new();
        let now = Instant::now();
        for (session, epoch) in sessions {
            let served = self
                .registry
                .get(session)
                .map(|h| h.status())
                .filter(|s| !s.ended)
                .map_or(0, |s| s.epoch);
            let known = served.max(self.replicas.known_epoch(session));
            if known >= *epoch && candidate != self.handle.node_id() {
                tracing::debug!(%session, epoch, known, %candidate, "vote refused: a newer epoch is known here");
                continue;
            }
            match self.voter.vote(session, *epoch, owner, now) {
                Ok(()) => granted.push(session.clone()),
                Err(why) => {
                    tracing::debug!(%session, epoch, %candidate, ?why, "vote refused")
                }
            }
        }
        if granted.is_empty() {
            return granted;
        }
        match save_votes(&self.votes_path, self.voter.promised()) {
            Ok(()) => granted,
            Err(e) => {
                // A vote that is not durable must not leave the node.
                tracing::error!(error = %e, votes = granted.len(), "cannot persist votes; refusing them");
                Vec::new()
            }
        }
    }

    /// Joining → Serving once another node is seen or the join timeout has passed.
    fn check_joined(&mut self) {
        if self.handle.state() != NodeState::Joining {
            return;
        }
        let others = self.handle.members().len().saturating_sub(1);
        let timed_out = self.started.elapsed() >= self.handle.config().join_timeout();
        if others > 0 || timed_out {
            if others == 0 {
                tracing::warn!("no other node seen before the join timeout; serving alone");
            }
            self.handle.inner.state.send_replace(NodeState::Serving);
            tracing::info!(node = %self.handle.node_id(), others, state = "serving", "node state");
            tokio::spawn(restart_check(self.handle.clone(), self.registry.clone()));
        }
    }

    /// Answers queued messages in order; runs of replica writes (`Sync`, `FullDoc`) are
    /// persisted together ([`ReplicaSet::handle_writes`]) before any of them is answered.
    fn dispatch_all(&mut self, batch: Vec<Incoming>) {
        let mut writes = Vec::new();
        for inc in batch {
            if ReplicaSet::is_write(&inc.msg) {
                writes.push(inc);
                continue;
            }
            self.answer_writes(std::mem::take(&mut writes));
            self.dispatch(inc);
        }
        self.answer_writes(writes);
    }

    fn answer_writes(&mut self, writes: Vec<Incoming>) {
        if writes.is_empty() {
            return;
        }
        let mut replies = Vec::with_capacity(writes.len());
        let mut msgs = Vec::with_capacity(writes.len());
        for Incoming { from, msg, reply } in writes {
            match &msg {
                PeerMsg::Sync { data, .. } => crate::metrics::sync_bytes("received", data.len()),
                PeerMsg::FullDoc { bytes, .. } => {
                    crate::metrics::sync_bytes("received", bytes.len())
                }
                _ => {}
            }
            msgs.push((from, msg));
            replies.push(reply);
        }
        let answers = self.replicas.handle_writes(msgs);
        for (reply, answer) in replies.into_iter().zip(answers) {
            if let Some(reply) = reply {
                reply.send(answer);
            }
        }
    }

    /// Answers one message from another node.
    fn dispatch(&mut self, inc: Incoming) {
        let Incoming { from, msg, reply } = inc;
        let answer = match msg {
            PeerMsg::LeaseRequest { node } => {
                let (lease, taken) = self.voter.grant(&node, Instant::now());
                Some(PeerMsg::LeaseGranted {
                    millis: lease.as_millis() as u64,
                    taken,
                })
            }
            PeerMsg::VoteRequest {
                session,
                epoch,
                owner,
                candidate,
            } => {
                let granted = !self
                    .vote(&owner, &[(session, epoch)], &candidate)
                    .is_empty();
                Some(PeerMsg::Vote { granted })
            }
            PeerMsg::VoteBatch {
                owner,
                candidate,
                sessions,
            } => {
                let granted = self.vote(&owner, &sessions, &candidate);
                Some(PeerMsg::Votes { granted })
            }
            PeerMsg::ActivateBatch { sessions } => {
                for (session, epoch) in sessions {
                    self.replicas.fence(&session, epoch);
                }
                None
            }
            PeerMsg::WhereIs { session } => {
                let served = self.registry.get(&session).map(|h| h.status());
                let owned = served.as_ref().is_some_and(|s| !s.ended);
                let epoch = served
                    .map(|s| s.epoch)
                    .unwrap_or(0)
                    .max(self.replicas.epoch(&session).unwrap_or(0));
                Some(PeerMsg::Owns {
                    session,
                    owned,
                    epoch,
                })
            }
            PeerMsg::Activate { session, epoch } => {
                self.replicas.fence(&session, epoch);
                None
            }
            other => {
                match &other {
                    PeerMsg::Sync { data, .. } => {
                        crate::metrics::sync_bytes("received", data.len())
                    }
                    PeerMsg::FullDoc { bytes, .. } => {
                        crate::metrics::sync_bytes("received", bytes.len())
                    }
                    _ => {}
                }
                self.replicas.handle(&from, other)
            }
        };
        let answer = answer.unwrap_or(PeerMsg::Error {
            reason: "unsupported request".into(),
        });
        let activated = self.replicas.take_activated();
        if activated.is_empty() {
            if let Some(reply) = reply {
                reply.send(answer);
            }
            return;
        }
        // Accept the handoff only once the session serves here, so the old owner's
        // `moved` never sends a player to a node that does not know the session yet.
        let activator = self.activator.clone();
        let source = self.handle.target(&from);
        tokio::spawn(async move {
            for _ in &activated {
                crate::metrics::handoff("in", "accepted");
            }
            let docs = activated.into_iter().map(|(_, doc)| doc).collect();
            activator.activate_all(docs, source, "handoff").await;
            if let Some(reply) = reply {
                reply.send(answer);
            }
        });
    }
}

/// Fencing after a restart: before this node's sessions may serve, every session it holds
/// is checked against what the other members know; one that another node serves, or holds
/// a replica of, at a newer epoch was taken over while this node was down and is dropped
/// here. Then the gate opens (sessions still need a majority lease to serve).
async fn restart_check(cluster: ClusterHandle, registry: Registry) {
    let me = cluster.node_id().to_owned();
    let peers: Vec<Member> = cluster
        .members()
        .into_iter()
        .filter(|m| m.id != me)
        .collect();
    let mine: Vec<(String, u64)> = registry
        .list(None)
        .into_iter()
        .filter_map(|info| {
            let h = registry.get(&info.id)?;
            Some((info.id, h.status().epoch))
        })
        .collect();
    let net = cluster.net();
    let asks = mine.iter().flat_map(|(session, _)| {
        peers.iter().map(move |m| {
            let net = net.clone();
            let msg = PeerMsg::WhereIs {
                session: session.clone(),
            };
            async move {
                match net
                    .request(&m.id, m.peer_addr, msg, Duration::from_secs(1))
                    .await
                {
                    Ok(PeerMsg::Owns { session, epoch, .. }) => Some((session, epoch)),
                    _ => None,
                }
            }
        })
    });
    let mut newest: HashMap<String, u64> = HashMap::new();
    for (session, epoch) in futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
    {
        let e = newest.entry(session).or_default();
        *e = (*e).max(epoch);
    }
    let mut dropped = 0;
    for (session, epoch) in &mine {
        if let Some(&newer) = newest.get(session).filter(|&&e| e > *epoch) {
            tracing::warn!(%session, epoch, newer, "taken over while this node was down; dropping the stale copy");
            cluster.gate().mark_lost(session, newer);
            dropped += 1;
        }
    }
    tracing::info!(
        sessions = mine.len(),
        dropped,
        "restart check done; ownership gate open"
    );
    cluster.gate().open();
}

/// The IP other nodes reach this one at (see `--cluster-host`).
async fn advertise_ip(cfg: &ClusterConfig) -> Result<IpAddr, ClusterError> {
    if let Some(h) = &cfg.cluster_host {
        return resolve(h).await;
    }
    if !cfg.gossip_listen.ip().is_unspecified() {
        return Ok(cfg.gossip_listen.ip());
    }
    let name = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ClusterError::Advertise(
                "listening on 0.0.0.0 and no host name: set --cluster-host".into(),
            )
        })?;
    resolve(&name).await
}

async fn resolve(host: &str) -> Result<IpAddr, ClusterError> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| ClusterError::Advertise(format!("resolving {host}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() && !a.ip().is_loopback())
        .or_else(|| addrs.first())
        .map(|a| a.ip())
        .ok_or_else(|| ClusterError::Advertise(format!("{host} resolves to nothing")))
}

fn load_votes(path: &Path) -> HashMap<String, u64> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "vote record unreadable; starting empty");
            HashMap::new()
        }),
        Err(_) => HashMap::new(),
    }
}

/// Writes the votes durably (temp file, fsync, rename), like Raft's `votedFor`.
fn save_votes(path: &Path, votes: &HashMap<String, u64>) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(votes).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
