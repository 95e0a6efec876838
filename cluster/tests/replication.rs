//! Replication between in-process nodes on loopback: convergence, exact-heads acknowledgement
//! (also with a replica that holds or fails its acks), full documents after compaction,
//! handoff with epoch fencing, and module fetch by hash.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use minotaur_cluster::replication::{
    fetch_module, module_hash, ReplicaStore, ReplicaTarget, ReplicationError, Replicator,
};
use minotaur_cluster::{wire_heads, PeerMsg};
use minotaur_state::SessionDoc;
use tokio::time::Instant;

const SECS: Duration = Duration::from_secs(5);

fn target(r: &ReplicaNode, node: &str) -> ReplicaTarget {
    ReplicaTarget {
        node: node.into(),
        addr: r.net.addr(),
    }
}

async fn replica_state(r: &ReplicaNode, session: &str) -> Option<(Vec<u8>, u64)> {
    let mut set = r.set.lock().await;
    let doc = set.doc(session)?;
    Some((doc.state().ok()?, doc.meta().ok()?.generation))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_and_only_deltas_travel() {
    let (owner, _rx) = net("owner").await;
    let r1 = ReplicaNode::plain("r1").await;
    let r2 = ReplicaNode::plain("r2").await;
    let mut doc = new_doc("s1", "owner");
    let mut rep = Replicator::new("s1", owner, vec![target(&r1, "r1"), target(&r2, "r2")]);

    assert!(rep.sync(&mut doc).await.unwrap().is_empty());
    assert_eq!(
        rep.stats().full_docs,
        2,
        "first contact sends the whole document"
    );
    let full = rep.stats().bytes_sent;

    for tick in 1..=20 {
        doc.set_state(&msgpack_state(tick)).unwrap();
        assert!(rep.sync(&mut doc).await.unwrap().is_empty());
    }
    let heads = wire_heads(&doc.heads());
    for (r, name) in [(&r1, "r1"), (&r2, "r2")] {
        let (state, _) = replica_state(r, "s1").await.unwrap();
        assert_eq!(state, doc.state().unwrap());
        assert_eq!(wire_heads(&r.set.lock().await.heads("s1").unwrap()), heads);
        assert_eq!(rep.acked(name).unwrap().0, heads.as_slice());
    }
    let per_batch = (rep.stats().bytes_sent - full) / 20 / 2;
    assert!(
        per_batch < 600,
        "a one-cell change should sync in a few hundred bytes, got {per_batch} per replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_until_acked_waits_for_a_held_replica() {
    let (owner, _rx) = net("owner").await;
    let r1 = ReplicaNode::plain("r1").await;
    let mut doc = new_doc("s1", "owner");
    let mut rep = Replicator::new("s1", owner, vec![target(&r1, "r1")])
        .with_request_timeout(Duration::from_millis(300));
    rep.sync(&mut doc).await.unwrap();

    // The replica stops answering; a new batch must not count as acknowledged.
    r1.gate.send_replace(false);
    doc.set_state(&msgpack_state(7)).unwrap();
    let heads = doc.commit();
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        let out = rep.sync_until_acked(&mut doc, &heads, deadline).await;
        (out, rep, doc)
    });
    // Wait until the replica holds the owner's message, then well past the request timeout:
    // the owner must still be waiting.
    wait_until("replica holds a sync message", SECS, || r1.held() > 0).await;
    let early = tokio::time::timeout(Duration::from_millis(800), async {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(early.is_err(), "sync_until_acked returned before the ack");

    r1.gate.send_replace(true);
    let (out, rep, mut doc) = tokio::time::timeout(SECS, task).await.unwrap().unwrap();
    out.unwrap();
    let acked = rep.acked("r1").unwrap().0.to_vec();
    assert_eq!(acked, wire_heads(&doc.heads()));
    assert_eq!(
        replica_state(&r1, "s1").await.unwrap().0,
        doc.state().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_until_acked_times_out_on_a_stuck_replica() {
    let (owner, _rx) = net("owner").await;
    let r1 = ReplicaNode::plain("r1").await;
    let mut doc = new_doc("s1", "owner");
    let mut rep = Replicator::new("s1", owner, vec![target(&r1, "r1")])
        .with_request_timeout(Duration::from_millis(200));
    rep.sync(&mut doc).await.unwrap();
    r1.gate.send_replace(false);
    doc.set_state(&msgpack_state(3)).unwrap();
    let heads = doc.commit();
    let started = Instant::now();
    let err = rep
        .sync_until_acked(&mut doc, &heads, started + Duration::from_millis(700))
        .await
        .unwrap_err();
    assert!(matches!(err, ReplicationError::Timeout { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(700));
}

/// Persists the first document, then fails every later write (full saves included).
#[derive(Default)]
struct FailingStore(std::sync::atomic::AtomicBool);
impl ReplicaStore for FailingStore {
    fn persist(&self, _: &str, _: &mut SessionDoc, _: bool) -> Result<(), String> {
        if self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Err("disk full".into())
        } else {
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_persist_never_acks_the_new_heads() {
    let (owner, _rx) = net("owner").await;
    let r1 = ReplicaNode::start("r1", Arc::new(FailingStore::default())).await;
    let mut doc = new_doc("s1", "owner");
    let mut rep = Replicator::new("s1", owner, vec![target(&r1, "r1")]);
    let first = doc.commit();
    rep.sync_until_acked(&mut doc, &first, Instant::now() + SECS)
        .await
        .unwrap();
    doc.set_state(&msgpack_state(9)).unwrap();
    let heads = doc.commit();
    let err = rep
        .sync_until_acked(
            &mut doc,
            &heads,
            Instant::now() + Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ReplicationError::Timeout { .. }), "{err}");
    assert_eq!(rep.acked("r1").unwrap().0, wire_heads(&first).as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_sends_the_full_document() {
    let (owner, _rx) = net("owner").await;
    let r1 = ReplicaNode::plain("r1").await;
    let mut doc = new_doc("s1", "owner");
    let mut rep = Replicator::new("s1", owner, vec![target(&r1, "r1")]);
    for tick in 1..=5 {
        doc.set_state(&msgpack_state(tick)).unwrap();
        rep.sync(&mut doc).await.unwrap();
    }
    assert_eq!(rep.stats().full_docs, 1);
    doc.compact().unwrap();
    doc.set_state(&msgpack_state(6)).unwrap();
    let heads = doc.commit();
    rep.sync_until_acked(&mut doc, &heads, Instant::now() + SECS)
        .await
        .unwrap();
    assert_eq!(rep.stats().full_docs, 2, "a new generation travels whole");
    let (state, generation) = replica_state(&r1, "s1").await.unwrap();
    assert_eq!(generation, 1);
    assert_eq!(state, doc.state().unwrap());
    // And deltas again afterwards.
    doc.set_state(&msgpack_state(7)).unwrap();
    rep.sync(&mut doc).await.unwrap();
    assert_eq!(rep.stats().full_docs, 2);
    assert_eq!(
        replica_state(&r1, "s1").await.unwrap().0,
        doc.state().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_raises_the_epoch_and_fences_the_old_owner() {
    let (owner, _rx) = net("owner").await;
    let r1 = ReplicaNode::plain("r1").await;
    let t = target(&r1, "r1");
    let mut doc = new_doc("s1", "owner");
    let mut rep = Replicator::new("s1", owner.clone(), vec![t.clone()]);
    doc.set_state(&msgpack_state(4)).unwrap();
    let heads = doc.commit();

    // A handoff of heads the target does not hold is refused.
    rep.sync(&mut doc).await.unwrap();
    doc.set_state(&msgpack_state(5)).unwrap();
    let newer = doc.commit();
    let err = rep.handoff(&t, 2, &newer, SECS).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::HandoffRejected { .. }),
        "{err}"
    );
    let _ = heads;

    rep.sync_until_acked(&mut doc, &newer, Instant::now() + SECS)
        .await
        .unwrap();
    // The epoch must rise.
    let err = rep.handoff(&t, 1, &newer, SECS).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::HandoffRejected { .. }),
        "{err}"
    );
    rep.handoff(&t, 2, &newer, SECS).await.unwrap();

    let activated = r1.set.lock().await.take_activated();
    assert_eq!(activated.len(), 1);
    let (session, new_doc) = activated.into_iter().next().unwrap();
    assert_eq!(session, "s1");
    let meta = new_doc.meta().unwrap();
    assert_eq!((meta.owner_node.as_str(), meta.epoch), ("r1", 2));
    assert_eq!(new_doc.state().unwrap(), doc.state().unwrap());

    // The old owner, still at epoch 1, is fenced: no sync, no re-seeding, no second handoff.
    doc.set_state(&msgpack_state(6)).unwrap();
    let err = rep.sync(&mut doc).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::Fenced { epoch: 2, .. }),
        "{err}"
    );
    let mut fresh = Replicator::new("s1", owner, vec![t.clone()]);
    let err = fresh.sync(&mut doc).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::Fenced { epoch: 2, .. }),
        "{err}"
    );
    let err = rep.handoff(&t, 2, &doc.heads(), SECS).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::HandoffRejected { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_travel_by_content_hash() {
    let (owner, _rx) = net("owner").await;
    let (net_r, mut rx) = net("r1").await;
    let wasm = b"\0asm\x01\0\0\0 pretend rules".to_vec();
    let hash = module_hash(&wasm);
    let mut modules = HashMap::new();
    modules.insert(hash.clone(), wasm.clone());
    modules.insert("f".repeat(64), b"not what the hash says".to_vec());
    let mut set =
        minotaur_cluster::ReplicaSet::new("r1", Arc::new(minotaur_cluster::replication::NoStore))
            .with_modules(Arc::new(modules));
    tokio::spawn(async move {
        while let Some(inc) = rx.recv().await {
            if let (Some(reply), Some(to)) = (set.handle(&inc.from, inc.msg), inc.reply) {
                to.send(reply);
            }
        }
    });
    let got = fetch_module(&owner, "r1", net_r.addr(), &hash, SECS)
        .await
        .unwrap();
    assert_eq!(got, wasm);
    let err = fetch_module(&owner, "r1", net_r.addr(), &"0".repeat(64), SECS)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::ModuleMissing { .. }),
        "{err}"
    );
    let err = fetch_module(&owner, "r1", net_r.addr(), &"f".repeat(64), SECS)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::ModuleCorrupt { .. }),
        "{err}"
    );
    let _ = PeerMsg::FetchModule { hash };
}
