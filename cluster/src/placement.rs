//! Placement: which nodes own and replicate a session. Rendezvous (highest-random-weight)
//! hashing of the session id over the **serving** nodes; used by the node to pick where a new
//! session lives, where a drained session goes, and which replica promotes after a crash.
//!
//! The hash is written out here (FNV-1a + a SplitMix64 finaliser), not `std`'s `DefaultHasher`,
//! because every node of a rolling upgrade (two different binaries) must agree on it.

/// Where one session lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The only writer.
    pub owner: String,
    /// Nodes holding a synced copy, best first; never contains the owner.
    pub replicas: Vec<String>,
}

/// Picks the owner and up to `replication_factor` replicas of `session` among `nodes` (node
/// ids; pass only the serving ones). `None` when `nodes` is empty. Duplicate ids count once.
///
/// Deterministic, and minimally disruptive: removing a node moves only the sessions that had
/// it as owner or replica, since every other node keeps its weight for every session.
pub fn place<S: AsRef<str>>(
    session: &str,
    nodes: &[S],
    replication_factor: usize,
) -> Option<Placement> {
    let ranked = rank(session, nodes);
    let (owner, rest) = ranked.split_first()?;
    Some(Placement {
        owner: owner.to_string(),
        replicas: rest
            .iter()
            .take(replication_factor)
            .map(|n| n.to_string())
            .collect(),
    })
}

/// All of `nodes` ordered by their weight for `session`, highest first (ties, which need a
/// 64-bit collision, break by id). The first is the owner, the next ones the replicas.
pub fn rank<'a, S: AsRef<str>>(session: &str, nodes: &'a [S]) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = nodes
        .iter()
        .map(|n| (weight(session, n.as_ref()), n.as_ref()))
        .collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// The rendezvous weight of `node` for `session`.
pub fn weight(session: &str, node: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for part in [node.as_bytes(), &[0xff], session.as_bytes()] {
        for &b in part {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    splitmix64(h)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV alone mixes its last bytes poorly; the finaliser spreads them over all 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn empty_cluster_places_nothing() {
        assert_eq!(place::<String>("s", &[], 1), None);
    }

    #[test]
    fn single_node_owns_without_replicas() {
        let p = place("s", &["a"], 1).unwrap();
        assert_eq!(p.owner, "a");
        assert!(p.replicas.is_empty());
    }

    #[test]
    fn weight_is_pinned() {
        // Every node of a mixed-version cluster must compute the same weights.
        assert_eq!(weight("session-1", "node-a"), weight("session-1", "node-a"));
        assert_ne!(weight("session-1", "node-a"), weight("session-1", "node-b"));
        assert_eq!(
            weight("", ""),
            splitmix64((FNV_OFFSET ^ 0xff).wrapping_mul(FNV_PRIME))
        );
    }

    #[test]
    fn balance_within_tolerance() {
        let cluster = nodes(5);
        let sessions = 20_000;
        let mut owners: HashMap<String, usize> = HashMap::new();
        let mut replicas: HashMap<String, usize> = HashMap::new();
        for s in 0..sessions {
            let p = place(&format!("session-{s}"), &cluster, 1).unwrap();
            *owners.entry(p.owner).or_default() += 1;
            *replicas.entry(p.replicas[0].clone()).or_default() += 1;
        }
        let fair = sessions / cluster.len();
        for node in &cluster {
            for (what, counts) in [("owner", &owners), ("replica", &replicas)] {
                let got = counts.get(node).copied().unwrap_or(0);
                let off = got.abs_diff(fair) as f64 / fair as f64;
                assert!(off < 0.05, "{node} is {what} of {got}, fair is {fair}");
            }
        }
    }

    proptest! {
        #[test]
        fn deterministic_and_order_free(session in "[a-z0-9-]{1,24}", n in 1usize..8, rf in 0usize..4) {
            let cluster = nodes(n);
            let mut shuffled = cluster.clone();
            shuffled.reverse();
            let a = place(&session, &cluster, rf).unwrap();
            prop_assert_eq!(&a, &place(&session, &shuffled, rf).unwrap());
            prop_assert!(!a.replicas.contains(&a.owner));
            prop_assert_eq!(a.replicas.len(), rf.min(n - 1));
            let mut distinct = a.replicas.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), a.replicas.len());
        }

        #[test]
        fn removing_a_node_moves_only_its_sessions(n in 2usize..8, gone in 0usize..8, rf in 0usize..3) {
            let cluster = nodes(n);
            let gone = &cluster[gone % n];
            let rest: Vec<String> = cluster.iter().filter(|x| *x != gone).cloned().collect();
            for s in 0..200 {
                let session = format!("s{s}");
                let before = place(&session, &cluster, rf).unwrap();
                let after = place(&session, &rest, rf).unwrap();
                if before.owner != *gone {
                    prop_assert_eq!(&before.owner, &after.owner);
                }
                // The surviving copies keep their relative order: ranks of others are unchanged.
                let full: Vec<&str> = rank(&session, &cluster).into_iter().filter(|x| x != gone).collect();
                prop_assert_eq!(full, rank(&session, &rest));
                if !before.replicas.contains(gone) && before.owner != *gone {
                    prop_assert_eq!(&before.replicas, &after.replicas);
                }
            }
        }
    }
}
