//! The cluster library of a Minotaur node: how sessions outlive any one node.
//!
//! - [`membership`]: who is in the cluster (chitchat gossip + phi-accrual failure detector);
//!   each node publishes its id, addresses, version, status (`serving`/`draining`) and load.
//! - [`placement`]: rendezvous hashing of a session id over the serving nodes → owner and
//!   replicas.
//! - [`peer`]: node-to-node TCP connections carrying MessagePack [`peer::PeerMsg`] frames.
//! - [`replication`]: the owner's [`replication::Replicator`] runs Automerge's sync protocol
//!   with each replica and can wait until a replica acknowledges *exact* heads (the core of a
//!   lossless handoff); the replica side is [`replication::ReplicaSet`].
//! - [`ownership`]: the fencing rules: `(owner_node, epoch)`, majority-granted leases and
//!   takeover votes, as pure functions over injected time.
//!
//! The path of a session's state: the session actor commits a batch to its `SessionDoc`, calls
//! `Replicator::sync` (every sync interval); each replica applies the sync messages, persists,
//! and acknowledges the heads it now holds. On drain the owner pauses inputs, calls
//! `sync_until_acked(final heads)`, then sends `Handoff { epoch + 1 }`; only an accepted
//! handoff lets it go.

pub mod membership;
pub mod ownership;
pub mod peer;
pub mod placement;
pub mod replication;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

/// One Automerge change hash on the wire (32 bytes as a MessagePack bin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Head(pub [u8; 32]);

impl From<ChangeHash> for Head {
    fn from(h: ChangeHash) -> Head {
        Head(h.0)
    }
}

impl From<Head> for ChangeHash {
    fn from(h: Head) -> ChangeHash {
        ChangeHash(h.0)
    }
}

impl Serialize for Head {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Head {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Head, D::Error> {
        let buf = serde_bytes::ByteBuf::deserialize(d)?;
        let arr: [u8; 32] = buf
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(buf.len(), &"32 bytes"))?;
        Ok(Head(arr))
    }
}

/// Heads as a sorted wire list, so two sets of heads compare with `==`.
pub fn wire_heads(heads: &[ChangeHash]) -> Vec<Head> {
    let mut out: Vec<Head> = heads.iter().copied().map(Head::from).collect();
    out.sort();
    out
}

pub use membership::{Member, Membership, MembershipConfig, MembershipError, NodeStatus, PROTOCOL};
pub use ownership::{Lease, LeaseConfig, Voter};
pub use peer::{HandoffItem, Incoming, PeerConfig, PeerError, PeerMsg, PeerNet};
pub use placement::{place, Placement};
pub use replication::{
    fetch_module, handoff_batch, HandoffBatchOutcome, ModuleSource, ReplicaSet, ReplicaStore,
    ReplicaTarget, ReplicationError, Replicator, SyncStats,
};
