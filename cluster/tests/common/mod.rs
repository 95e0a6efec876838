//! Test harness for the cluster library: in-process nodes on loopback and waits on conditions
//! with deadlines (never bare sleeps).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use minotaur_cluster::peer::{Incoming, PeerConfig, PeerNet};
use minotaur_cluster::replication::{NoStore, ReplicaSet, ReplicaStore};
use minotaur_state::{SessionDoc, SessionMeta};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::time::Instant;

/// Polls `cond` every 10 ms until it holds; panics with `what` at the deadline. Returns how
/// long it took.
pub async fn wait_until<F: FnMut() -> bool>(what: &str, within: Duration, mut cond: F) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A free UDP port on loopback (chitchat must know its advertised address before binding).
pub fn free_udp() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

pub async fn net(node: &str) -> (PeerNet, mpsc::Receiver<Incoming>) {
    PeerNet::bind(PeerConfig::new(node, loopback()))
        .await
        .unwrap()
}

/// A replica node: its peer transport feeding a [`ReplicaSet`]. While `gate` is closed it
/// holds every request (counting them in `held`), as a slow or stuck replica would.
pub struct ReplicaNode {
    pub net: PeerNet,
    pub set: Arc<Mutex<ReplicaSet>>,
    pub gate: watch::Sender<bool>,
    pub held: Arc<AtomicUsize>,
}

impl ReplicaNode {
    pub async fn start(node: &str, store: Arc<dyn ReplicaStore>) -> ReplicaNode {
        let (net, mut rx) = net(node).await;
        let set = Arc::new(Mutex::new(ReplicaSet::new(node, store)));
        let (gate, mut open) = watch::channel(true);
        let held = Arc::new(AtomicUsize::new(0));
        let (set2, held2) = (set.clone(), held.clone());
        tokio::spawn(async move {
            while let Some(inc) = rx.recv().await {
                if !*open.borrow() {
                    held2.fetch_add(1, Ordering::SeqCst);
                    if open.wait_for(|o| *o).await.is_err() {
                        return;
                    }
                }
                let reply = set2.lock().await.handle(&inc.from, inc.msg);
                if let (Some(reply), Some(to)) = (reply, inc.reply) {
                    to.send(reply);
                }
            }
        });
        ReplicaNode {
            net,
            set,
            gate,
            held,
        }
    }

    pub async fn plain(node: &str) -> ReplicaNode {
        ReplicaNode::start(node, Arc::new(NoStore)).await
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

pub fn new_doc(session: &str, owner: &str) -> SessionDoc {
    let meta = SessionMeta {
        session: session.into(),
        game: "tictactoe".into(),
        owner_node: owner.into(),
        epoch: 1,
        tick_hz: 10,
        ..SessionMeta::default()
    };
    let mut doc = SessionDoc::new(&meta);
    doc.set_state(&msgpack_state(0)).unwrap();
    doc.commit();
    doc
}

/// A small guest-like state whose `tick` and one board cell change per batch.
pub fn msgpack_state(tick: u64) -> Vec<u8> {
    use rmpv::Value;
    let board: Vec<Value> = (0..9)
        .map(|i| Value::from(if i as u64 == tick % 9 { tick } else { 0 }))
        .collect();
    let v = Value::Map(vec![
        ("board".into(), Value::Array(board)),
        ("tick".into(), tick.into()),
        ("turn".into(), "x".into()),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).unwrap();
    out
}
