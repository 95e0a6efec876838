//! Ownership and fencing as pure state machines over injected time (no clocks, no I/O), so
//! the safety rule can be tested exhaustively. The node wires them to [`crate::peer`]
//! (`LeaseRequest`/`LeaseGranted`, `VoteRequest`/`Vote`) and to the session documents.
//!
//! The rule (the timing argument is in `docs/ARCHITECTURE.md`, "Cluster"):
//! 1. **Fence**: a node runs a session only while the document says `(owner_node, epoch)` is
//!    `(itself, the epoch it holds)`; handoff and takeover write `epoch + 1`.
//! 2. **Lease**: an owner node serves only while a *majority* of the voters (the cluster's
//!    nodes) have granted it a lease that has not run out by its own clock, counted from when
//!    it *sent* the request. A voter that grants promises not to vote for taking any session
//!    from that node until `lease + margin` after it granted.
//! 3. **Takeover**: a replica promotes (epoch + 1) only with votes from a majority; a voter
//!    votes only past its promise, once per `(session, epoch)`, and tells the old owner about
//!    it with its next grant, so the old owner drops the session before serving again.
//!
//! Two majorities always share a voter, so a valid lease and a successful takeover of the
//! same owner cannot overlap in time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Lease timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a grant lets the owner serve, from when it asked.
    pub lease: Duration,
    /// Extra wait a voter adds before voting against a node: covers clock-rate drift between
    /// nodes and the longest batch an owner may be in the middle of when its lease ends.
    pub margin: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            lease: Duration::from_millis(2000),
            margin: Duration::from_millis(500),
        }
    }
}

/// Votes needed out of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// Rule 1: may `me`, holding `held_epoch`, run a session whose document says
/// `(doc_owner, doc_epoch)`?
pub fn holds(me: &str, held_epoch: u64, doc_owner: &str, doc_epoch: u64) -> bool {
    doc_owner == me && doc_epoch == held_epoch
}

/// The owner node's side of rule 2: the grants it holds and the sessions it lost.
#[derive(Debug, Clone)]
pub struct Lease {
    cfg: LeaseConfig,
    voters: usize,
    /// voter → end of its grant, on this node's clock.
    grants: HashMap<String, Instant>,
    /// Sessions taken over by another node, with the epoch they were taken at.
    lost: HashMap<String, u64>,
}

impl Lease {
    /// `voters`: the number of nodes in the voting set (the cluster's configured size).
    pub fn new(cfg: LeaseConfig, voters: usize) -> Lease {
        Lease {
            cfg,
            voters: voters.max(1),
            grants: HashMap::new(),
            lost: HashMap::new(),
        }
    }

    /// Records a grant from `voter` for the request sent at `sent_at`, and the sessions the
    /// voter says were taken from us. Returns those sessions: stop serving them now.
    pub fn on_granted(
        &mut self,
        voter: &str,
        sent_at: Instant,
        granted: Duration,
        taken: &[(String, u64)],
    ) -> Vec<(String, u64)> {
        // Counting from the send time is what makes the lease end no later than the voter's
        // promise: the voter granted after we sent.
        let until = sent_at + granted.min(self.cfg.lease);
        let e = self.grants.entry(voter.to_string()).or_insert(until);
        *e = (*e).max(until);
        for (s, epoch) in taken {
            let e = self.lost.entry(s.clone()).or_insert(*epoch);
            *e = (*e).max(*epoch);
        }
        taken.to_vec()
    }

    /// The electorate changed size (nodes joined, or left after draining).
    pub fn set_voters(&mut self, voters: usize) {
        self.voters = voters.max(1);
    }

    /// `session` is known to run elsewhere at `epoch` (a replica refused our sync as
    /// fenced, or a peer serves it at a newer epoch after our restart).
    pub fn mark_lost(&mut self, session: &str, epoch: u64) {
        let e = self.lost.entry(session.to_string()).or_insert(epoch);
        *e = (*e).max(epoch);
    }

    /// Was `session`, held here at `epoch`, taken over at a newer epoch?
    pub fn is_lost(&self, session: &str, epoch: u64) -> bool {
        self.lost.get(session).is_some_and(|&e| e > epoch)
    }

    /// When the lease (a majority of unexpired grants) runs out; `None` without a majority.
    pub fn valid_until(&self) -> Option<Instant> {
        let mut ends: Vec<Instant> = self.grants.values().copied().collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        ends.get(majority(self.voters) - 1).copied()
    }

    /// May this node serve anything at `now`?
    pub fn is_valid(&self, now: Instant) -> bool {
        self.valid_until().is_some_and(|t| now < t)
    }

    /// Rules 1–3 together: may this node, holding `epoch` of `session`, apply a batch now?
    pub fn may_serve(&self, session: &str, epoch: u64, now: Instant) -> bool {
        self.is_valid(now) && !self.is_lost(session, epoch)
    }
}

/// Every node's voter: grants leases, votes on takeovers (rules 2 and 3).
///
/// `promised` (session → highest epoch voted for) must be persisted by the node before a
/// `Vote { granted: true }` leaves it, like Raft's `votedFor`; a restarted voter also abstains
/// for `lease + margin` ([`Voter::new`]) since it forgot the leases it granted.
#[derive(Debug, Clone)]
pub struct Voter {
    cfg: LeaseConfig,
    /// No vote of any kind before this (restart quarantine).
    quiet_until: Instant,
    /// node → no vote against it before this instant.
    promises: HashMap<String, Instant>,
    promised: HashMap<String, u64>,
    /// old owner → sessions voted away from it not yet reported in a grant.
    taken: HashMap<String, Vec<(String, u64)>>,
}

/// Why a vote was refused (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This voter started less than `lease + margin` ago.
    JustStarted,
    /// The owner's lease from this voter (plus margin) has not run out.
    OwnerLeased,
    /// This voter already voted for this or a newer epoch of the session.
    EpochTaken,
}

impl Voter {
    pub fn new(cfg: LeaseConfig, started_at: Instant, promised: HashMap<String, u64>) -> Voter {
        Voter {
            cfg,
            quiet_until: started_at + cfg.lease + cfg.margin,
            promises: HashMap::new(),
            promised,
            taken: HashMap::new(),
        }
    }

    /// Grants `node` a lease at `now`: returns its length and the sessions voted away from it.
    ///
    /// The taken list is repeated in every grant (not handed out once): a grant whose reply
    /// is lost on the way must not leave the old owner unaware that it lost a session.
    pub fn grant(&mut self, node: &str, now: Instant) -> (Duration, Vec<(String, u64)>) {
        let promise = now + self.cfg.lease + self.cfg.margin;
        let e = self.promises.entry(node.to_string()).or_insert(promise);
        *e = (*e).max(promise);
        (
            self.cfg.lease,
            self.taken.get(node).cloned().unwrap_or_default(),
        )
    }

    /// A vote for `candidate` taking `session` from `owner` at `epoch`.
    pub fn vote(
        &mut self,
        session: &str,
        epoch: u64,
        owner: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        if now < self.quiet_until {
            return Err(Refusal::JustStarted);
        }
        if self.promises.get(owner).is_some_and(|&p| now < p) {
            return Err(Refusal::OwnerLeased);
        }
        if self.promised.get(session).is_some_and(|&e| e >= epoch) {
            return Err(Refusal::EpochTaken);
        }
        self.promised.insert(session.to_string(), epoch);
        self.taken
            .entry(owner.to_string())
            .or_default()
            .push((session.to_string(), epoch));
        Ok(())
    }

    /// The votes to persist.
    pub fn promised(&self) -> &HashMap<String, u64> {
        &self.promised
    }
}

/// Rule 3 on the candidate's side: enough votes to promote?
pub fn may_promote(votes: usize, voters: usize) -> bool {
    votes >= majority(voters.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn cfg() -> LeaseConfig {
        LeaseConfig {
            lease: ms(1000),
            margin: ms(200),
        }
    }

    fn voters(t0: Instant) -> Vec<(String, Voter)> {
        ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), Voter::new(cfg(), t0, HashMap::new())))
            .collect()
    }

    #[test]
    fn fence_requires_owner_and_epoch() {
        assert!(holds("a", 3, "a", 3));
        assert!(!holds("a", 3, "a", 4));
        assert!(!holds("a", 3, "b", 3));
    }

    #[test]
    fn lease_needs_a_majority_of_unexpired_grants() {
        let t0 = Instant::now();
        let mut lease = Lease::new(cfg(), 3);
        assert!(!lease.is_valid(t0));
        lease.on_granted("a", t0, ms(1000), &[]);
        assert!(!lease.is_valid(t0), "one of three is not a majority");
        lease.on_granted("b", t0 + ms(100), ms(1000), &[]);
        assert!(lease.is_valid(t0 + ms(500)));
        // Valid until the earlier of the two newest grants ends.
        assert_eq!(lease.valid_until(), Some(t0 + ms(1000)));
        assert!(!lease.is_valid(t0 + ms(1000)));
        lease.on_granted("c", t0 + ms(900), ms(1000), &[]);
        assert_eq!(lease.valid_until(), Some(t0 + ms(1100)));
    }

    #[test]
    fn grant_is_capped_by_own_config() {
        let t0 = Instant::now();
        let mut lease = Lease::new(cfg(), 1);
        lease.on_granted("a", t0, ms(60_000), &[]);
        assert_eq!(lease.valid_until(), Some(t0 + ms(1000)));
    }

    #[test]
    fn single_node_cluster_leases_itself() {
        let t0 = Instant::now();
        let mut v = Voter::new(cfg(), t0, HashMap::new());
        let mut lease = Lease::new(cfg(), 1);
        let (d, _) = v.grant("a", t0);
        lease.on_granted("a", t0, d, &[]);
        assert!(lease.may_serve("s", 1, t0 + ms(10)));
    }

    #[test]
    fn voter_refuses_while_owner_leased_and_votes_once_per_epoch() {
        let t0 = Instant::now();
        let mut v = Voter::new(cfg(), t0 - ms(10_000), HashMap::new());
        v.grant("owner", t0);
        assert_eq!(
            v.vote("s", 2, "owner", t0 + ms(1199)),
            Err(Refusal::OwnerLeased)
        );
        assert_eq!(v.vote("s", 2, "owner", t0 + ms(1200)), Ok(()));
        assert_eq!(
            v.vote("s", 2, "owner", t0 + ms(1300)),
            Err(Refusal::EpochTaken)
        );
        assert_eq!(v.vote("s", 3, "owner", t0 + ms(1300)), Ok(()));
        assert_eq!(v.promised().get("s"), Some(&3));
    }

    #[test]
    fn restarted_voter_abstains_and_keeps_persisted_votes() {
        let t0 = Instant::now();
        let promised = HashMap::from([("s".to_string(), 5)]);
        let mut v = Voter::new(cfg(), t0, promised);
        assert_eq!(
            v.vote("s", 6, "o", t0 + ms(1000)),
            Err(Refusal::JustStarted)
        );
        assert_eq!(v.vote("s", 5, "o", t0 + ms(1300)), Err(Refusal::EpochTaken));
        assert_eq!(v.vote("s", 6, "o", t0 + ms(1300)), Ok(()));
    }

    #[test]
    fn old_owner_learns_of_takeover_before_serving_again() {
        let t0 = Instant::now();
        let mut vs = voters(t0 - ms(10_000));
        let mut lease = Lease::new(cfg(), 3);
        for (name, v) in &mut vs {
            let (d, taken) = v.grant("o", t0);
            lease.on_granted(name, t0, d, &taken);
        }
        assert!(lease.may_serve("s", 1, t0 + ms(999)));
        // Partition: o hears from nobody; b and c vote for a takeover once their promise ends.
        let later = t0 + ms(1200);
        assert!(
            !lease.is_valid(later),
            "the lease ran out before any vote could be cast"
        );
        let votes = vs[1..]
            .iter_mut()
            .map(|(_, v)| v.vote("s", 2, "o", later).is_ok())
            .filter(|ok| *ok)
            .count();
        assert!(may_promote(votes, 3));
        // The partition heals: o renews with a majority that must include b or c.
        let t1 = later + ms(50);
        let (d, taken) = vs[0].1.grant("o", t1);
        assert!(lease.on_granted("a", t1, d, &taken).is_empty());
        let (d, taken) = vs[1].1.grant("o", t1);
        assert_eq!(
            lease.on_granted("b", t1, d, &taken),
            vec![("s".to_string(), 2)]
        );
        assert!(lease.is_valid(t1));
        assert!(!lease.may_serve("s", 1, t1), "s was taken at epoch 2");
        assert!(lease.may_serve("other", 1, t1));
    }

    #[test]
    fn a_lost_grant_reply_does_not_hide_a_takeover() {
        let t0 = Instant::now();
        let mut v = Voter::new(cfg(), t0 - ms(10_000), HashMap::new());
        assert!(v.vote("s", 2, "o", t0).is_ok());
        // The first grant's reply never reaches o; the next one still names s.
        let _lost = v.grant("o", t0 + ms(10));
        let (_, taken) = v.grant("o", t0 + ms(20));
        assert_eq!(taken, vec![("s".to_string(), 2)]);
        // Taken at epoch 2, s may be handed back to o later at a newer epoch.
        let mut lease = Lease::new(cfg(), 1);
        lease.on_granted("v", t0 + ms(20), ms(1000), &taken);
        assert!(!lease.may_serve("s", 1, t0 + ms(30)));
        assert!(lease.may_serve("s", 3, t0 + ms(30)));
        lease.mark_lost("s", 4);
        assert!(lease.is_lost("s", 3));
    }

    /// Exhaustive over a grid of timings: whenever a takeover gathers a majority at time `t`,
    /// the old owner's lease is not valid at `t` or later unless it was told of the takeover.
    #[test]
    fn lease_and_takeover_never_overlap() {
        let t0 = Instant::now();
        for grant_mask in 0u8..8 {
            for step in (0..3000).step_by(50) {
                let mut vs = voters(t0 - ms(10_000));
                let mut lease = Lease::new(cfg(), 3);
                for (i, (name, v)) in vs.iter_mut().enumerate() {
                    if grant_mask & (1 << i) != 0 {
                        let sent = t0 + ms(10 * i as u64);
                        let (d, taken) = v.grant("o", sent + ms(5));
                        lease.on_granted(name, sent, d, &taken);
                    }
                }
                let t = t0 + ms(step);
                let votes = vs
                    .iter_mut()
                    .map(|(_, v)| v.vote("s", 2, "o", t).is_ok())
                    .filter(|ok| *ok)
                    .count();
                if may_promote(votes, 3) {
                    assert!(
                        !lease.may_serve("s", 1, t),
                        "mask {grant_mask} at {step} ms"
                    );
                }
            }
        }
    }
}
