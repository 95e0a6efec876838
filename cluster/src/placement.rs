//! Placement: rendezvous (highest-random-weight) hashing of a session id over the live
//! serving nodes; used to spread a dead node's sessions over the claimants (each node
//! claims the orphans it ranks first) without any coordination between them.
//!
//! The hash is written out here (FNV-1a + a SplitMix64 finaliser), not `std`'s `DefaultHasher`,
//! because every node of a rolling upgrade (two different binaries) must agree on it.

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
    use std::collections::HashMap;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn empty_cluster_ranks_nothing() {
        assert!(rank::<String>("s", &[]).is_empty());
    }

    #[test]
    fn weight_is_pinned() {
        // Every node of a mixed-version cluster must compute the same weights.
        assert_ne!(weight("session-1", "node-a"), weight("session-1", "node-b"));
        assert_eq!(
            weight("", ""),
            splitmix64((FNV_OFFSET ^ 0xff).wrapping_mul(FNV_PRIME))
        );
    }

    #[test]
    fn order_free_and_spread_evenly() {
        let cluster = nodes(3);
        let mut shuffled = cluster.clone();
        shuffled.reverse();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for s in 0..3000 {
            let id = format!("session-{s}");
            let first = rank(&id, &cluster)[0];
            assert_eq!(first, rank(&id, &shuffled)[0]);
            *count.entry(first).or_default() += 1;
        }
        for n in &cluster {
            let c = count[n.as_str()];
            assert!((800..1200).contains(&c), "{n} got {c} of 3000");
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_sessions() {
        let cluster = nodes(4);
        let rest: Vec<String> = cluster[1..].to_vec();
        for s in 0..500 {
            let id = format!("s{s}");
            let before = rank(&id, &cluster)[0];
            if before != "node-0" {
                assert_eq!(before, rank(&id, &rest)[0]);
            }
        }
    }
}
