//! Node-to-node transport: one TCP connection per pair of nodes on their peer addresses,
//! length-delimited frames of MessagePack [`PeerMsg`]s, request/response correlated by id,
//! reconnection with exponential backoff. Used by replication, handoff and module fetch.
//!
//! Each remote node has one *link* task that owns the connection and its outbox. Either node
//! may dial; when both dial at once, both keep the connection dialled by the lower node id and
//! retire the other (it stays readable for a grace period so no frame in flight is lost).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::Head;

/// Messages between nodes. Requests and their replies are paired by the transport, so a
/// reply variant only says what it is, not what it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMsg {
    /// One Automerge sync message from the owner. `reset` asks the replica to start a fresh
    /// sync state (the owner lost its own, e.g. after a reconnect).
    Sync {
        session: String,
        generation: u64,
        epoch: u64,
        reset: bool,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The replica's answer to `Sync`: its next sync message (if any) and the heads it now
    /// holds **durably** (applied and persisted); these heads are the acknowledgement.
    SyncReply {
        session: String,
        data: Option<serde_bytes::ByteBuf>,
        heads: Vec<Head>,
    },
    /// The replica has no document of this generation; send `FullDoc`.
    NeedFullDoc {
        session: String,
    },
    /// The whole document (first contact, or a new generation after compaction).
    FullDoc {
        session: String,
        generation: u64,
        epoch: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The heads a replica holds durably (reply to `FullDoc`).
    HeadsAck {
        session: String,
        heads: Vec<Head>,
    },
    /// Fencing: the sender of a request holds an epoch older than `epoch`.
    Stale {
        session: String,
        epoch: u64,
    },
    /// "Take this session at `epoch` (old epoch + 1); you hold exactly `heads`."
    Handoff {
        session: String,
        epoch: u64,
        heads: Vec<Head>,
    },
    HandoffAccepted {
        session: String,
        epoch: u64,
    },
    HandoffRejected {
        session: String,
        reason: String,
    },
    /// Ask for a game module by content hash (hex).
    FetchModule {
        hash: String,
    },
    /// The module's bytes, or `None` when the node does not have it.
    Module {
        hash: String,
        bytes: Option<serde_bytes::ByteBuf>,
    },
    /// Tell a replica the session is now served by the sender at `epoch` (after takeover).
    Activate {
        session: String,
        epoch: u64,
    },
    /// Tell a node to drop its copy (it is no longer a replica).
    Deactivate {
        session: String,
        epoch: u64,
    },
    /// Lease renewal for the ownership rule (see `ownership`): "grant me a lease".
    LeaseRequest {
        node: String,
    },
    /// Granted for `millis` from receipt; `taken` lists sessions of the requester whose
    /// takeover this voter approved since, with their new epochs.
    LeaseGranted {
        millis: u64,
        taken: Vec<(String, u64)>,
    },
    /// A takeover vote request: `candidate` wants `session` at `epoch` from `owner`.
    VoteRequest {
        session: String,
        epoch: u64,
        owner: String,
        candidate: String,
    },
    Vote {
        granted: bool,
    },
    /// Routing: "do you serve `session`?" (a player reached a node that does not).
    WhereIs {
        session: String,
    },
    Owns {
        session: String,
        owned: bool,
        /// The newest epoch the answering node knows for the session (the one it serves
        /// it at, or its replica's); 0 if none.
        #[serde(default)]
        epoch: u64,
    },
    /// The request could not be served (a bug or an unknown request kind).
    Error {
        reason: String,
    },
    // Protocol 2 (`membership::PROTOCOL`): batched forms, sent only to nodes that publish
    // protocol ≥ 2. New variants go last so older variants keep their encoding.
    /// Several `Handoff`s to one target in one round trip; each is judged on its own.
    HandoffBatch {
        sessions: Vec<HandoffItem>,
    },
    /// The answer to `HandoffBatch`: the accepted `(session, epoch)`s (started on the
    /// target before it answers) and the rejected ones with the reason.
    HandoffBatchResult {
        accepted: Vec<(String, u64)>,
        rejected: Vec<(String, String)>,
    },
    /// Takeover votes for several sessions of one dead `owner` at once; each `(session,
    /// epoch)` is voted on as a `VoteRequest` would be, and the grants persisted once.
    VoteBatch {
        owner: String,
        candidate: String,
        sessions: Vec<(String, u64)>,
    },
    /// The sessions of a `VoteBatch` whose vote was granted.
    Votes {
        granted: Vec<String>,
    },
    /// `Activate` for several sessions (after a batched takeover).
    ActivateBatch {
        sessions: Vec<(String, u64)>,
    },
}

/// One session of a [`PeerMsg::HandoffBatch`]: "take `session` at `epoch`; you hold exactly
/// `heads`" — or, with `doc`, "here is the whole document, at exactly `heads`" (sent when
/// the target's copy is behind or missing: one round trip instead of a sync exchange and a
/// replica write per session; the target makes it durable when it activates it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffItem {
    pub session: String,
    pub epoch: u64,
    pub heads: Vec<Head>,
    #[serde(default)]
    pub doc: Option<serde_bytes::ByteBuf>,
}

/// How the transport behaves.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// This node's id, sent in the hello of each connection.
    pub node: String,
    /// Where to listen for peers (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// The address peers should dial (defaults to the bound address).
    pub advertise: Option<SocketAddr>,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Frames larger than this are refused (modules travel in one frame).
    pub max_frame: usize,
    /// Frames queued for an unreachable peer beyond this are dropped, oldest first.
    pub max_queue: usize,
}

impl PeerConfig {
    pub fn new(node: impl Into<String>, listen: SocketAddr) -> PeerConfig {
        PeerConfig {
            node: node.into(),
            listen,
            advertise: None,
            connect_timeout: Duration::from_millis(500),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
            max_frame: 64 << 20,
            max_queue: 4096,
        }
    }
}

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer transport i/o: {0}")]
    Io(#[from] std::io::Error),
    /// No reply before the deadline (the peer is unreachable, slow, or the frame was lost
    /// with a broken connection).
    #[error("no reply from {node} in time")]
    Timeout { node: String },
    #[error("peer transport is shut down")]
    Closed,
    #[error("cannot encode peer message: {0}")]
    Encode(String),
}

/// A request or one-way message from another node.
pub struct Incoming {
    pub from: String,
    pub msg: PeerMsg,
    /// Present for requests: the caller waits for exactly one reply.
    pub reply: Option<Responder>,
}

/// Sends the one reply to a request.
pub struct Responder {
    net: Weak<Shared>,
    to: String,
    id: u64,
}

impl Responder {
    pub fn send(self, msg: PeerMsg) {
        if let Some(shared) = self.net.upgrade() {
            let frame = Frame::Response { id: self.id, msg };
            shared.enqueue(&self.to, None, frame);
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Frame {
    Hello { node: String, addr: SocketAddr },
    Request { id: u64, msg: PeerMsg },
    Response { id: u64, msg: PeerMsg },
    Tell { msg: PeerMsg },
}

fn encode(frame: &Frame) -> Result<Bytes, PeerError> {
    rmp_serde::to_vec_named(frame)
        .map(Bytes::from)
        .map_err(|e| PeerError::Encode(e.to_string()))
}

/// The transport handle; cheap to clone.
#[derive(Clone)]
pub struct PeerNet {
    shared: Arc<Shared>,
}

struct Shared {
    cfg: PeerConfig,
    addr: SocketAddr,
    links: Mutex<HashMap<String, mpsc::UnboundedSender<LinkCmd>>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<PeerMsg>>>,
    next_id: AtomicU64,
    incoming: mpsc::Sender<Incoming>,
    shutdown: watch::Sender<bool>,
}

enum LinkCmd {
    Send(Bytes),
    SetAddr(SocketAddr),
    Adopt(Conn),
    Closed(u64),
}

struct Conn {
    writer: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    dialled_by_me: bool,
    id: u64,
}

fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max)
        .new_codec()
}

impl PeerNet {
    /// Binds the listener and starts accepting. Requests and one-way messages from other
    /// nodes arrive on the returned receiver.
    pub async fn bind(cfg: PeerConfig) -> Result<(PeerNet, mpsc::Receiver<Incoming>), PeerError> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = cfg.advertise.unwrap_or(listener.local_addr()?);
        let (incoming, rx) = mpsc::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            cfg,
            addr,
            links: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            incoming,
            shutdown,
        });
        tokio::spawn(accept_loop(Arc::downgrade(&shared), listener));
        Ok((PeerNet { shared }, rx))
    }

    /// The address peers dial to reach this node.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn node(&self) -> &str {
        &self.shared.cfg.node
    }

    /// Sends `msg` to `node` at `addr` and waits for its reply until `timeout`.
    pub async fn request(
        &self,
        node: &str,
        addr: SocketAddr,
        msg: PeerMsg,
        timeout: Duration,
    ) -> Result<PeerMsg, PeerError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .expect("pending lock")
            .insert(id, tx);
        let frame = Frame::Request { id, msg };
        self.shared.enqueue(node, Some(addr), frame);
        let out = tokio::time::timeout(timeout, rx).await;
        self.shared
            .pending
            .lock()
            .expect("pending lock")
            .remove(&id);
        match out {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(PeerError::Closed),
            Err(_) => Err(PeerError::Timeout { node: node.into() }),
        }
    }

    /// Sends a one-way message (no reply, no delivery guarantee).
    pub fn tell(&self, node: &str, addr: SocketAddr, msg: PeerMsg) {
        self.shared.enqueue(node, Some(addr), Frame::Tell { msg });
    }

    /// Stops accepting and closes every link.
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
        self.shared.links.lock().expect("links lock").clear();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl Shared {
    fn enqueue(self: &Arc<Self>, node: &str, addr: Option<SocketAddr>, frame: Frame) {
        let bytes = match encode(&frame) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "dropping a peer frame that does not encode");
                return;
            }
        };
        let link = self.link(node, addr);
        if let Some(addr) = addr {
            let _ = link.send(LinkCmd::SetAddr(addr));
        }
        let _ = link.send(LinkCmd::Send(bytes));
    }

    fn link(
        self: &Arc<Self>,
        node: &str,
        addr: Option<SocketAddr>,
    ) -> mpsc::UnboundedSender<LinkCmd> {
        let mut links = self.links.lock().expect("links lock");
        if let Some(tx) = links.get(node).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        links.insert(node.to_string(), tx.clone());
        let link = Link {
            shared: Arc::downgrade(self),
            me: self.cfg.node.clone(),
            peer: node.to_string(),
            addr,
            cmds: tx.downgrade(),
            current: None,
            retired: VecDeque::new(),
            queue: VecDeque::new(),
            backoff: self.cfg.backoff_min,
            next_dial: Instant::now(),
        };
        tokio::spawn(link.run(rx, self.shutdown.subscribe()));
        tx
    }

    fn dispatch(self: &Arc<Self>, from: &str, frame: Frame) {
        match frame {
            Frame::Response { id, msg } => {
                if let Some(tx) = self.pending.lock().expect("pending lock").remove(&id) {
                    let _ = tx.send(msg);
                }
            }
            Frame::Request { id, msg } => {
                let reply = Responder {
                    net: Arc::downgrade(self),
                    to: from.to_string(),
                    id,
                };
                self.deliver(Incoming {
                    from: from.to_string(),
                    msg,
                    reply: Some(reply),
                });
            }
            Frame::Tell { msg } => self.deliver(Incoming {
                from: from.to_string(),
                msg,
                reply: None,
            }),
            Frame::Hello { .. } => {}
        }
    }

    fn deliver(&self, msg: Incoming) {
        if self.incoming.try_send(msg).is_err() {
            // The node is overloaded or gone; the sender's deadline handles the loss.
            tracing::warn!("peer inbox full, dropping a message");
        }
    }
}

async fn accept_loop(shared: Weak<Shared>, listener: TcpListener) {
    let Some(mut stop) = shared.upgrade().map(|s| s.shutdown.subscribe()) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let Some(max) = shared.upgrade().map(|s| s.cfg.max_frame) else {
                return;
            };
            let (r, w) = stream.into_split();
            let mut reader = FramedRead::new(r, codec(max));
            let hello = tokio::time::timeout(Duration::from_secs(5), reader.next()).await;
            let Ok(Some(Ok(bytes))) = hello else { return };
            let Ok(Frame::Hello { node, addr }) = rmp_serde::from_slice(&bytes) else {
                return;
            };
            let Some(s) = shared.upgrade() else { return };
            let link = s.link(&node, Some(addr));
            let id = s.next_id.fetch_add(1, Ordering::Relaxed);
            let conn = Conn {
                writer: FramedWrite::new(w, codec(max)),
                dialled_by_me: false,
                id,
            };
            drop(s);
            tokio::spawn(read_loop(shared, node, reader, link.downgrade(), id));
            let _ = link.send(LinkCmd::Adopt(conn));
        });
    }
}

async fn read_loop(
    shared: Weak<Shared>,
    peer: String,
    mut reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    link: mpsc::WeakUnboundedSender<LinkCmd>,
    conn: u64,
) {
    while let Some(Ok(bytes)) = reader.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match rmp_serde::from_slice::<Frame>(&bytes) {
            Ok(frame) => shared.dispatch(&peer, frame),
            Err(e) => tracing::warn!(%peer, error = %e, "undecodable peer frame"),
        }
    }
    if let Some(link) = link.upgrade() {
        let _ = link.send(LinkCmd::Closed(conn));
    }
}

/// How long a connection that lost the dial race stays readable.
const RETIRE_GRACE: Duration = Duration::from_secs(10);

struct Link {
    shared: Weak<Shared>,
    me: String,
    peer: String,
    addr: Option<SocketAddr>,
    cmds: mpsc::WeakUnboundedSender<LinkCmd>,
    current: Option<Conn>,
    retired: VecDeque<(Instant, Conn)>,
    queue: VecDeque<Bytes>,
    backoff: Duration,
    next_dial: Instant,
}

impl Link {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<LinkCmd>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            self.flush().await;
            while self
                .retired
                .front()
                .is_some_and(|(t, _)| *t <= Instant::now())
            {
                self.retired.pop_front();
            }
            let wake = if !self.queue.is_empty() && self.current.is_none() {
                self.next_dial
            } else {
                self.retired
                    .front()
                    .map(|(t, _)| *t)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
            };
            let cmd = tokio::select! {
                c = rx.recv() => c,
                _ = tokio::time::sleep_until(wake) => continue,
                _ = stop.changed() => return,
            };
            let Some(cmd) = cmd else { return };
            match cmd {
                LinkCmd::Send(bytes) => {
                    let max = self.shared.upgrade().map_or(0, |s| s.cfg.max_queue);
                    if self.queue.len() >= max {
                        self.queue.pop_front();
                    }
                    self.queue.push_back(bytes);
                }
                LinkCmd::SetAddr(addr) => self.addr = Some(addr),
                LinkCmd::Adopt(conn) => self.adopt(conn),
                LinkCmd::Closed(id) => {
                    if self.current.as_ref().is_some_and(|c| c.id == id) {
                        self.current = None;
                    }
                    self.retired.retain(|(_, c)| c.id != id);
                }
            }
        }
    }

    /// Keeps the connection dialled by the lower node id; both ends apply the same rule.
    fn adopt(&mut self, conn: Conn) {
        self.backoff = self
            .shared
            .upgrade()
            .map_or(self.backoff, |s| s.cfg.backoff_min);
        let Some(cur) = self.current.take() else {
            self.current = Some(conn);
            return;
        };
        let lower_is_me = self.me < self.peer;
        let (keep, retire) =
            if cur.dialled_by_me == conn.dialled_by_me || conn.dialled_by_me == lower_is_me {
                (conn, cur)
            } else {
                (cur, conn)
            };
        self.current = Some(keep);
        self.retired
            .push_back((Instant::now() + RETIRE_GRACE, retire));
    }

    async fn flush(&mut self) {
        while !self.queue.is_empty() {
            if self.current.is_none() && !self.dial().await {
                return;
            }
            let Some(conn) = self.current.as_mut() else {
                return;
            };
            let bytes = self.queue.front().cloned().expect("queue is not empty");
            if conn.writer.send(bytes).await.is_ok() {
                self.queue.pop_front();
            } else {
                // The frame may or may not have left; the caller's deadline covers both.
                self.current = None;
            }
        }
    }

    async fn dial(&mut self) -> bool {
        let (Some(addr), Some(shared)) = (self.addr, self.shared.upgrade()) else {
            return false;
        };
        if Instant::now() < self.next_dial {
            return false;
        }
        let cfg = shared.cfg.clone();
        let (me_addr, id) = (shared.addr, shared.next_id.fetch_add(1, Ordering::Relaxed));
        drop(shared);
        let stream = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await;
        let stream = match stream {
            Ok(Ok(s)) => s,
            _ => {
                tracing::debug!(peer = %self.peer, %addr, backoff = ?self.backoff, "peer dial failed");
                self.next_dial = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(cfg.backoff_max);
                return false;
            }
        };
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        let mut writer = FramedWrite::new(w, codec(cfg.max_frame));
        let hello = Frame::Hello {
            node: self.me.clone(),
            addr: me_addr,
        };
        let Ok(hello) = encode(&hello) else {
            return false;
        };
        if writer.send(hello).await.is_err() {
            self.next_dial = Instant::now() + self.backoff;
            return false;
        }
        let reader = FramedRead::new(r, codec(cfg.max_frame));
        tokio::spawn(read_loop(
            self.shared.clone(),
            self.peer.clone(),
            reader,
            self.cmds.clone(),
            id,
        ));
        self.adopt(Conn {
            writer,
            dialled_by_me: true,
            id,
        });
        true
    }
}
