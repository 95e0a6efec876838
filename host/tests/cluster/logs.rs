//! Reading the nodes' logs: every line a node writes to stderr is kept (`TestCluster::logs`);
//! these parse the structured ones (`activated …`, `handed_over …`) and hold the invariant
//! checker the cluster tests end with: at most one owner per `(session, epoch)` over the
//! whole run.

// Helpers shared by scenarios: not every scenario reads every field.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use std::time::Instant;

use crate::harness::TestCluster;

/// One line a node wrote to stderr, with when the harness read it (`at`: for a test that
/// orders what it saw in time).
#[derive(Debug, Clone)]
pub struct LogLine {
    pub node: String,
    pub at: Instant,
    pub text: String,
}

/// `activated session=S node=N epoch=E why=W`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub session: String,
    pub node: String,
    pub epoch: u64,
    pub why: String,
}

/// `handed_over session=S from=A to=B epoch=E`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub session: String,
    pub from: String,
    pub to: String,
    pub epoch: u64,
}

impl TestCluster {
    /// Every `activated` line so far, in arrival order.
    pub fn activations(&self) -> Vec<Activation> {
        self.log_lines()
            .iter()
            .filter_map(|l| {
                let f = fields(&l.text, "activated session=")?;
                Some(Activation {
                    session: f.get("session")?.clone(),
                    node: f.get("node")?.clone(),
                    epoch: f.get("epoch")?.parse().ok()?,
                    why: f.get("why").cloned().unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Waits until each `(session, epoch)` of `expect` was activated at that epoch on one of
    /// the nodes `on` (the activation line follows the directory's compare-and-set by the
    /// time it takes to load and start the session) — or ended in the directory: a session
    /// entered there but never written (its creation cut short, so no player was ever
    /// answered) is ended by its claimant instead.
    pub async fn wait_activated(&self, expect: &[(String, u64)], on: &[&str], deadline: Duration) {
        let start = Instant::now();
        loop {
            let acts = self.activations();
            let dir = self.directory().await;
            let missing: Vec<&(String, u64)> = expect
                .iter()
                .filter(|(s, e)| {
                    !dir.get(s).is_some_and(|r| r.ended)
                        && !acts.iter().any(|a| {
                            a.session == *s && a.epoch == *e && on.contains(&a.node.as_str())
                        })
                })
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < deadline,
                "after {deadline:?}, not activated on {on:?}: {missing:?}; activations: {acts:?}"
            );
            // Waiting for other processes' log lines.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every `handed_over` line so far, in arrival order.
    pub fn handovers(&self) -> Vec<Handover> {
        self.log_lines()
            .iter()
            .filter_map(|l| {
                let f = fields(&l.text, "handed_over session=")?;
                Some(Handover {
                    session: f.get("session")?.clone(),
                    from: f.get("from")?.clone(),
                    to: f.get("to")?.clone(),
                    epoch: f.get("epoch")?.parse().ok()?,
                })
            })
            .collect()
    }

    /// The invariant checker: at most one owner per `(session, epoch)` over the whole run.
    /// Owners come from every node's `activated` lines (node N at epoch E), `handed_over`
    /// lines (the target at the new epoch) and `created` — the node each session was
    /// created on, at epoch 1 (the bots' records). Panics with the conflicting claims.
    pub fn assert_single_owner(&self, created: &[(String, String)]) {
        let conflicts = owner_conflicts(created, &self.activations(), &self.handovers());
        assert!(
            conflicts.is_empty(),
            "two owners at one epoch:\n{}",
            conflicts.join("\n")
        );
    }

    /// Log lines so far (all nodes, in arrival order).
    pub fn log_lines(&self) -> Vec<LogLine> {
        self.logs.lock().unwrap().clone()
    }

    /// The last `n` lines of node `id`.
    pub fn tail(&self, id: &str, n: usize) -> String {
        let lines: Vec<String> = self
            .log_lines()
            .into_iter()
            .filter(|l| l.node == id)
            .map(|l| l.text)
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The last `n` lines of all nodes that are warnings, errors or cluster events.
    pub fn interesting_tail(&self, n: usize) -> String {
        let lines: Vec<String> = self
            .log_lines()
            .into_iter()
            .filter(|l| {
                l.text.contains("WARN")
                    || l.text.contains("ERROR")
                    || l.text.contains("cluster")
                    || l.text.contains("activated")
                    || l.text.contains("handed_over")
                    || l.text.contains("takeover")
                    || l.text.contains("drain")
            })
            .map(|l| format!("[{}] {}", l.node, l.text))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Counts of log lines containing `needle`, per node.
    pub fn count_lines(&self, needle: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for l in self.log_lines() {
            if l.text.contains(needle) {
                *out.entry(l.node).or_insert(0) += 1;
            }
        }
        out
    }
}

/// Every `(session, epoch)` with two different owners among: the node each session was
/// created on (epoch 1), the activations and the hand-overs' targets.
pub fn owner_conflicts(
    created: &[(String, String)],
    activations: &[Activation],
    handovers: &[Handover],
) -> Vec<String> {
    let mut owner: HashMap<(String, u64), (String, String)> = HashMap::new();
    let mut conflicts = Vec::new();
    let claims = created
        .iter()
        .map(|(s, n)| (s.clone(), 1, n.clone(), "created it".to_owned()))
        .chain(activations.iter().map(|a| {
            let why = format!("activated, {}", a.why);
            (a.session.clone(), a.epoch, a.node.clone(), why)
        }))
        .chain(handovers.iter().map(|h| {
            let why = format!("handed over by {}", h.from);
            (h.session.clone(), h.epoch, h.to.clone(), why)
        }));
    for (s, e, node, why) in claims {
        match owner.get(&(s.clone(), e)) {
            Some((other, how)) if *other != node => conflicts.push(format!(
                "session {s} at epoch {e}: {other} ({how}) and {node} ({why})"
            )),
            Some(_) => {}
            None => {
                owner.insert((s, e), (node, why));
            }
        }
    }
    conflicts
}

/// `key=value` fields of the log line `text` from `marker` on (`None` without it).
fn fields(text: &str, marker: &str) -> Option<HashMap<String, String>> {
    let rest = &text[text.find(marker)?..];
    Some(
        rest.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

#[test]
fn the_checker_reads_the_log_lines_and_finds_two_owners() {
    let line = "2026-12-01T16:32:50.985132Z  INFO minotaur::activation: activated \
                session=02fe23ed2dd1 node=n1 epoch=2 why=handoff";
    let f = fields(line, "activated session=").expect("an activation");
    assert_eq!(
        (
            f["session"].as_str(),
            f["node"].as_str(),
            f["epoch"].as_str(),
            f["why"].as_str()
        ),
        ("02fe23ed2dd1", "n1", "2", "handoff")
    );
    assert!(fields("session started session=x", "activated session=").is_none());
    let act = |s: &str, n: &str, e: u64| Activation {
        session: s.into(),
        node: n.into(),
        epoch: e,
        why: "takeover".into(),
    };
    let ho = Handover {
        session: "s".into(),
        from: "n1".into(),
        to: "n2".into(),
        epoch: 2,
    };
    let created = [("s".to_owned(), "n1".to_owned())];
    // A hand-over to n2 at 2 and n2's activation at 2 agree; n3 at 3 is the next epoch.
    let fine = [act("s", "n2", 2), act("s", "n3", 3)];
    assert!(owner_conflicts(&created, &fine, std::slice::from_ref(&ho)).is_empty());
    // n3 also activated at 2, and someone else at epoch 1.
    let bad = [act("s", "n2", 2), act("s", "n3", 2), act("s", "n2", 1)];
    let c = owner_conflicts(&created, &bad, &[ho]);
    assert_eq!(c.len(), 2, "{c:?}");
}
