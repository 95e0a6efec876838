//! Cluster membership over chitchat (UDP gossip, Scuttlebutt anti-entropy, phi-accrual
//! failure detector). Each node publishes its id, player address, peer address, version,
//! status and load; [`Membership::watch`] tells the node (placement, takeover, routing) who is
//! live. Seeds are `host:port` strings; DNS names (`tasks.minotaur:7946`) are re-resolved by
//! chitchat periodically, so a Swarm service's tasks find each other.
//!
//! Why chitchat over foca: it carries a versioned key/value state per node (exactly what we
//! publish), resolves DNS seeds itself, and exposes a live-nodes watch; foca would leave the
//! state dissemination and the UDP/timer loop to us.
//!
//! Detection bound (see [`MembershipConfig::detection_bound`]): with gossip every `interval`
//! and threshold `phi`, a silent node is declared dead after about `phi × mean heartbeat
//! interval` (≈ `phi × interval`) plus one round to evaluate it; a joining node is live once
//! two of its heartbeats were seen (two or three rounds); a node that leaves with
//! [`Membership::shutdown`] gossips `status = leaving` for a few rounds first, so it is gone
//! from every view within about three rounds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    NodeState,
};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

const KEY_PLAYER_ADDR: &str = "player_addr";
const KEY_PEER_ADDR: &str = "peer_addr";
const KEY_VERSION: &str = "version";
const KEY_STATUS: &str = "status";
const KEY_LOAD: &str = "load";
const KEY_PROTOCOL: &str = "protocol";

/// The peer protocol revision this build speaks, published in gossip so that a node uses
/// batched messages (`HandoffBatch`, `VoteBatch`, `ActivateBatch`) only with peers that
/// understand them. A node that publishes no revision (older builds) is revision 1.
/// - 1: one message per session for handoff, votes and fencing.
/// - 2: the batched forms as well.
pub const PROTOCOL: u32 = 2;

/// What a node says it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Takes new sessions and may be chosen by placement.
    Serving,
    /// Handing its sessions over; placement skips it.
    Draining,
    /// About to stop gossiping; treated as gone.
    Leaving,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Serving => "serving",
            NodeStatus::Draining => "draining",
            NodeStatus::Leaving => "leaving",
        }
    }

    pub fn parse(s: &str) -> Option<NodeStatus> {
        match s {
            "serving" => Some(NodeStatus::Serving),
            "draining" => Some(NodeStatus::Draining),
            "leaving" => Some(NodeStatus::Leaving),
            _ => None,
        }
    }
}

/// A live node as seen through gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Where players (HTTP/websocket) reach it.
    pub player_addr: String,
    /// Where other nodes reach its peer transport.
    pub peer_addr: SocketAddr,
    pub gossip_addr: SocketAddr,
    pub version: String,
    pub status: NodeStatus,
    /// Sessions it owns.
    pub load: u64,
    /// Incarnation (start time in ms); a restarted node has a newer one.
    pub generation: u64,
    /// The peer protocol revision it speaks ([`PROTOCOL`]; 1 when it publishes none).
    pub protocol: u32,
}

impl Member {
    /// Does it understand the batched peer messages (protocol 2)?
    pub fn batches(&self) -> bool {
        self.protocol >= 2
    }
}

/// Membership settings. [`MembershipConfig::new`] gives loopback-friendly defaults
/// (detection in ~1–1.5 s).
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub node_id: String,
    /// Nodes of other clusters sharing the network are ignored.
    pub cluster_id: String,
    pub gossip_listen: SocketAddr,
    /// The gossip address others use (defaults to `gossip_listen`).
    pub gossip_advertise: Option<SocketAddr>,
    /// `host:port` of some other nodes; DNS names are resolved (and re-resolved).
    pub seeds: Vec<String>,
    pub player_addr: String,
    pub peer_addr: SocketAddr,
    pub version: String,
    /// Incarnation; defaults to the start time in milliseconds.
    pub generation: u64,
    pub gossip_interval: Duration,
    /// Phi-accrual threshold: a node is dead after ≈ `phi × mean heartbeat interval` of silence.
    pub phi_threshold: f64,
    /// A dead node is forgotten after this long (it may come back before that).
    pub dead_node_grace: Duration,
}

impl MembershipConfig {
    pub fn new(
        node_id: impl Into<String>,
        gossip_listen: SocketAddr,
        peer_addr: SocketAddr,
    ) -> Self {
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        MembershipConfig {
            node_id: node_id.into(),
            cluster_id: "minotaur".into(),
            gossip_listen,
            gossip_advertise: None,
            seeds: Vec::new(),
            player_addr: String::new(),
            peer_addr,
            version: env!("CARGO_PKG_VERSION").into(),
            generation,
            gossip_interval: Duration::from_millis(100),
            phi_threshold: 10.0,
            dead_node_grace: Duration::from_secs(30),
        }
    }

    /// The time within which every live node sees a death (a silent node removed from its
    /// view): `phi × interval` of silence, one round to evaluate, and four rounds of slack for
    /// heartbeat jitter on a busy machine. 1.5 s with the defaults (measured ≈ 0.8 s).
    pub fn detection_bound(&self) -> Duration {
        self.gossip_interval.mul_f64(self.phi_threshold + 5.0)
    }

    /// The time within which a join or a graceful leave is seen by all: a few gossip rounds
    /// (seed contact, two heartbeats, dissemination), with slack for scheduling.
    pub fn join_bound(&self) -> Duration {
        self.gossip_interval * 10
    }
}

/// Errors of membership.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("cannot start gossip: {0}")]
    Start(String),
}

/// The membership handle of this node.
pub struct Membership {
    node_id: String,
    chitchat: Arc<Mutex<Chitchat>>,
    handle: ChitchatHandle,
    members: watch::Receiver<Vec<Member>>,
    forwarder: JoinHandle<()>,
    interval: Duration,
}

impl Membership {
    /// Binds the UDP socket and starts gossiping with the seeds.
    pub async fn start(cfg: MembershipConfig) -> Result<Membership, MembershipError> {
        let advertise = cfg.gossip_advertise.unwrap_or(cfg.gossip_listen);
        let chitchat_id = ChitchatId::new(cfg.node_id.clone(), cfg.generation, advertise);
        let failure_detector_config = FailureDetectorConfig {
            phi_threshold: cfg.phi_threshold,
            sampling_window_size: 1000,
            max_interval: Duration::from_secs(10),
            // The prior for the mean heartbeat interval: our own gossip interval, so a new
            // node's first detection timeout is already about `phi × interval`.
            initial_interval: cfg.gossip_interval,
            dead_node_grace_period: cfg.dead_node_grace,
        };
        let config = ChitchatConfig {
            chitchat_id,
            cluster_id: cfg.cluster_id.clone(),
            gossip_interval: cfg.gossip_interval,
            listen_addr: cfg.gossip_listen,
            seed_nodes: cfg.seeds.clone(),
            failure_detector_config,
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let initial = vec![
            (KEY_PLAYER_ADDR.to_string(), cfg.player_addr.clone()),
            (KEY_PEER_ADDR.to_string(), cfg.peer_addr.to_string()),
            (KEY_VERSION.to_string(), cfg.version.clone()),
            (
                KEY_STATUS.to_string(),
                NodeStatus::Serving.as_str().to_string(),
            ),
            (KEY_LOAD.to_string(), "0".to_string()),
            (KEY_PROTOCOL.to_string(), PROTOCOL.to_string()),
        ];
        let handle = spawn_chitchat(config, initial, &UdpTransport)
            .await
            .map_err(|e| MembershipError::Start(e.to_string()))?;
        let chitchat = handle.chitchat();
        let mut live = chitchat.lock().await.live_nodes_watcher();
        let first = to_members(&live.borrow_and_update());
        let (tx, members) = watch::channel(first);
        let forwarder = tokio::spawn(async move {
            while live.changed().await.is_ok() {
                let next = to_members(&live.borrow_and_update());
                tx.send_if_modified(|cur| {
                    let changed = *cur != next;
                    *cur = next;
                    changed
                });
            }
        });
        Ok(Membership {
            node_id: cfg.node_id,
            chitchat,
            handle,
            members,
            forwarder,
            interval: cfg.gossip_interval,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The live members (this node included), by id.
    pub fn members(&self) -> Vec<Member> {
        self.members.borrow().clone()
    }

    /// Changes to the live members; the value is the same list as [`Membership::members`].
    pub fn watch(&self) -> watch::Receiver<Vec<Member>> {
        self.members.clone()
    }

    pub async fn set_status(&self, status: NodeStatus) {
        self.set(KEY_STATUS, status.as_str()).await;
    }

    pub async fn set_load(&self, sessions: u64) {
        self.set(KEY_LOAD, &sessions.to_string()).await;
    }

    async fn set(&self, key: &str, value: &str) {
        let mut cc = self.chitchat.lock().await;
        cc.self_node_state().set(key, value);
    }

    /// Leaves gracefully: gossips `status = leaving` for three rounds (so peers drop this node
    /// at once instead of waiting for the failure detector), then stops.
    pub async fn shutdown(self) {
        self.set_status(NodeStatus::Leaving).await;
        tokio::time::sleep(self.interval * 3).await;
        self.forwarder.abort();
        if let Err(e) = self.handle.shutdown().await {
            tracing::warn!(error = %e, "chitchat did not shut down cleanly");
        }
    }

    /// Stops gossiping at once, like a crash (for tests of failure detection).
    pub fn kill(self) {
        self.forwarder.abort();
        let _ = self.handle.initiate_shutdown();
    }
}

fn to_members(live: &BTreeMap<ChitchatId, NodeState>) -> Vec<Member> {
    let mut by_id: BTreeMap<String, Member> = BTreeMap::new();
    for (id, state) in live {
        let Some(m) = to_member(id, state) else {
            continue;
        };
        // A restarted node may linger under its old generation until detected dead.
        if by_id
            .get(&m.id)
            .is_none_or(|old| old.generation < m.generation)
        {
            by_id.insert(m.id.clone(), m);
        }
    }
    by_id
        .into_values()
        .filter(|m| m.status != NodeStatus::Leaving)
        .collect()
}

fn to_member(id: &ChitchatId, state: &NodeState) -> Option<Member> {
    // A node whose keys have not all arrived yet is not reported half-known.
    Some(Member {
        id: id.node_id.to_string(),
        player_addr: state.get(KEY_PLAYER_ADDR)?.to_string(),
        peer_addr: state.get(KEY_PEER_ADDR)?.parse().ok()?,
        gossip_addr: id.gossip_advertise_addr,
        version: state.get(KEY_VERSION)?.to_string(),
        status: NodeStatus::parse(state.get(KEY_STATUS)?)?,
        load: state.get(KEY_LOAD)?.parse().ok()?,
        generation: id.generation_id,
        protocol: state
            .get(KEY_PROTOCOL)
            .and_then(|p| p.parse().ok())
            .unwrap_or(1),
    })
}
