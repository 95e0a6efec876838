//! `TestCluster`: N real `minotaur serve` processes on loopback, each with its own data dir
//! and fixed ports (so a restarted node comes back at the same addresses, like a container),
//! seeded with each other. Their stderr is kept for the invariant checker. Every wait is
//! [`wait_until`] a condition with a deadline.

#![allow(dead_code)]

use std::{
    future::Future,
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{games_dir, games_dir_with};

/// Waits until `cond` holds, polling every 20 ms; panics with `what` after `deadline`.
/// Returns how long it took.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        // Polling another process's state: there is nothing to be notified by.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port for both TCP and UDP. Ports come from a per-process counter (so two
/// tests of this binary never pick the same one between the check and the node's bind),
/// starting at a pid-dependent offset, and are checked free on both protocols.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) as u16 * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// One line a node wrote to stderr, with when the harness read it.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub node: String,
    pub at: Instant,
    pub text: String,
}

/// One node of a [`TestCluster`].
pub struct ClusterNodeProc {
    pub id: String,
    pub addr: SocketAddr,
    pub gossip: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    /// The network namespace the node runs in (see [`NetLab`]); `None`: loopback.
    pub netns: Option<String>,
    child: Option<Child>,
}

impl ClusterNodeProc {
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// N nodes seeded with each other.
pub struct TestCluster {
    pub nodes: Vec<ClusterNodeProc>,
    pub logs: Arc<Mutex<Vec<LogLine>>>,
    games: PathBuf,
    extra_args: Vec<String>,
    /// Dropped after the nodes (fields drop in order), so namespaces outlive their processes.
    pub lab: Option<NetLab>,
    _root: tempfile::TempDir,
    _games: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// Starts `n` nodes (`n1`..`nN`) and waits for each to print its listening line.
    pub fn start(n: usize, extra_args: &[&str]) -> TestCluster {
        TestCluster::start_inner(n, None, extra_args)
    }

    /// Like [`TestCluster::start`], serving exactly `games` (test guests included).
    pub fn start_with_games(n: usize, games: &[&str], extra_args: &[&str]) -> TestCluster {
        TestCluster::start_inner(n, Some(games_dir_with(games)), extra_args)
    }

    /// Like [`TestCluster::start_with_games`], each node in a network namespace of its own
    /// (a [`NetLab`]), so that tests can cut links between nodes. Needs root.
    pub fn start_in_netns(n: usize, games: &[&str], extra_args: &[&str]) -> TestCluster {
        let lab = NetLab::new(n);
        let games_tmp = games_dir_with(games);
        let root = tempfile::tempdir().expect("tempdir");
        let nodes = (1..=n)
            .map(|i| {
                let ip = lab.ip(i - 1);
                ClusterNodeProc {
                    id: format!("n{i}"),
                    addr: format!("{ip}:7878").parse().unwrap(),
                    gossip: format!("{ip}:7946").parse().unwrap(),
                    peer: format!("{ip}:7947").parse().unwrap(),
                    data_dir: root.path().join(format!("n{i}")),
                    netns: Some(lab.netns(i - 1)),
                    child: None,
                }
            })
            .collect();
        let mut c = TestCluster {
            nodes,
            logs: Arc::new(Mutex::new(Vec::new())),
            games: games_tmp.path().to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            lab: Some(lab),
            _root: root,
            _games: Some(games_tmp),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn start_inner(
        n: usize,
        games_tmp: Option<tempfile::TempDir>,
        extra_args: &[&str],
    ) -> TestCluster {
        let root = tempfile::tempdir().expect("tempdir");
        let nodes = (1..=n)
            .map(|i| {
                let ip = "127.0.0.1";
                ClusterNodeProc {
                    id: format!("n{i}"),
                    addr: format!("{ip}:{}", free_port()).parse().unwrap(),
                    gossip: format!("{ip}:{}", free_port()).parse().unwrap(),
                    peer: format!("{ip}:{}", free_port()).parse().unwrap(),
                    data_dir: root.path().join(format!("n{i}")),
                    netns: None,
                    child: None,
                }
            })
            .collect();
        let mut c = TestCluster {
            nodes,
            logs: Arc::new(Mutex::new(Vec::new())),
            games: games_tmp
                .as_ref()
                .map(|d| d.path().to_path_buf())
                .unwrap_or_else(|| games_dir(&["tictactoe"])),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            lab: None,
            _root: root,
            _games: games_tmp,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    /// (Re)starts node `i` on its ports and data dir.
    pub fn spawn(&mut self, i: usize) {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.gossip.to_string())
            .collect();
        let node = &self.nodes[i];
        let bin = env!("CARGO_BIN_EXE_minotaur");
        let mut cmd = match &node.netns {
            // `ip netns exec` execs the binary: the child's pid is the node's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .arg("serve")
            .args(["--listen", &node.addr.to_string()])
            .arg("--games-dir")
            .arg(&self.games)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--node-id", &node.id])
            .args(if seeds.is_empty() {
                vec![]
            } else {
                vec!["--seeds".to_string(), seeds.join(",")]
            })
            .args(["--gossip-listen", &node.gossip.to_string()])
            .args(["--peer-listen", &node.peer.to_string()])
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| {
                    "warn,minotaur_host::cluster=info,minotaur_host::cluster::node=debug,minotaur_cluster::membership=info,minotaur::activation=info".into()
                }),
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn minotaur");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("minotaur listening on") {
                    let _ = tx.send(());
                }
            }
        });
        let logs = self.logs.clone();
        let id = node.id.clone();
        let echo = std::env::var_os("MINOTAUR_TEST_LOGS").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(text) = line else { break };
                if echo {
                    eprintln!("[{id}] {text}");
                }
                logs.lock().unwrap().push(LogLine {
                    node: id.clone(),
                    at: Instant::now(),
                    text,
                });
            }
        });
        // Generous: on a loaded 2-core machine compiling the games at start-up can be slow.
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            std::thread::sleep(Duration::from_millis(100));
            let tail: Vec<String> = self
                .log_lines()
                .into_iter()
                .filter(|l| l.node == self.nodes[i].id)
                .map(|l| l.text)
                .collect();
            panic!(
                "{} did not print its listening line; its last log lines: {:#?}",
                self.nodes[i].id,
                &tail[tail.len().saturating_sub(8)..]
            );
        }
        self.nodes[i].child = Some(child);
    }

    /// `kill -9` node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM node `i` (it drains); see [`TestCluster::wait_exit`].
    pub fn terminate(&self, i: usize) {
        let pid = self.nodes[i].pid().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for node `i` to exit on its own; `None` on timeout.
    pub async fn wait_exit(&mut self, i: usize, deadline: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(c) = self.nodes[i].child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.nodes[i].child = None;
                    return Some(status.code().unwrap_or(-1));
                }
            } else {
                return Some(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// `GET` a JSON document from node `i`; `None` if it does not answer.
    pub async fn get_json(&self, i: usize, path: &str) -> Option<Value> {
        let resp = http().get(self.nodes[i].http(path)).send().await.ok()?;
        resp.json().await.ok()
    }

    /// HTTP status of `GET path` on node `i` (0 if it does not answer).
    pub async fn status(&self, i: usize, path: &str) -> u16 {
        match http().get(self.nodes[i].http(path)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The member ids node `i` sees (sorted), or `None` if it does not answer.
    pub async fn members(&self, i: usize) -> Option<Vec<String>> {
        let v = self.get_json(i, "/api/cluster").await?;
        let mut ids: Vec<String> = v["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        Some(ids)
    }

    /// The heads of node `i`'s replica of `session` ("" if it holds none).
    pub async fn replica_changes(&self, i: usize, session: &str) -> String {
        let Some(v) = self.get_json(i, "/api/cluster").await else {
            return String::new();
        };
        v["replicas"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["session"] == session))
            .and_then(|r| r["heads"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until every node sees all the others and answers `/readyz` 200.
    pub async fn wait_all_joined(&self, deadline: Duration) {
        let n = self.nodes.len();
        wait_until(deadline, "every node joined and ready", || async move {
            for i in 0..n {
                if self.members(i).await.is_none_or(|m| m.len() != n)
                    || self.status(i, "/readyz").await != 200
                {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Waits until some node among `replicas` holds a copy of `session` whose heads stay put
    /// for 10 polls 20 ms apart (four sync intervals): every acknowledged change is there.
    pub async fn wait_replica_settled(&self, replicas: &[usize], session: &str) {
        let start = Instant::now();
        let (mut last, mut same) = (String::new(), 0);
        while same < 10 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the replica of {session} never settled"
            );
            let mut heads = String::new();
            for &i in replicas {
                heads = heads.max(self.replica_changes(i, session).await);
            }
            same = if !heads.is_empty() && heads == last {
                same + 1
            } else {
                0
            };
            last = heads;
            // Polling another process's state: there is nothing to be notified by.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every `activated session=S node=N epoch=E` line so far, as `(S, N, E)`.
    pub fn activations(&self) -> Vec<(String, String, u64)> {
        self.log_lines()
            .iter()
            .filter_map(|l| {
                let rest = &l.text[l.text.find("activated session=")?..];
                let field = |k: &str| {
                    let v = &rest[rest.find(k)? + k.len()..];
                    Some(v.split_whitespace().next()?.to_owned())
                };
                Some((
                    field("session=")?,
                    field("node=")?,
                    field("epoch=")?.parse().ok()?,
                ))
            })
            .collect()
    }

    /// The invariant checker: panics if two different nodes were ever activated for the
    /// same `(session, epoch)` — two owners at once.
    pub fn assert_single_owner(&self) {
        let mut seen: std::collections::HashMap<(String, u64), String> = Default::default();
        for (s, n, e) in self.activations() {
            if let Some(other) = seen.insert((s.clone(), e), n.clone()) {
                assert_eq!(
                    other, n,
                    "session {s} epoch {e} activated on {other} and {n}"
                );
            }
        }
    }

    /// Log lines so far (all nodes, in arrival order).
    pub fn log_lines(&self) -> Vec<LogLine> {
        self.logs.lock().unwrap().clone()
    }
}

/// Network namespaces for a cluster test: one per node, each with a veth into a bridge in
/// the test's own namespace, where the test's clients live. [`NetLab::cut`] drops every
/// packet between two nodes (blackhole routes both ways) while both stay reachable from
/// the test; [`NetLab::heal`] restores the link. Everything is removed on drop.
pub struct NetLab {
    tag: String,
    subnet: String,
    n: usize,
}

/// Runs `ip args…`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetLab {
    /// `n` namespaces on a fresh bridge. Panics (with the reason) if namespaces cannot be
    /// made here (they need root and iproute2).
    pub fn new(n: usize) -> NetLab {
        let pid = std::process::id();
        let lab = NetLab {
            tag: format!("mn{}", pid % 100_000),
            subnet: format!("10.{}.{}", 100 + (pid / 250) % 100, pid % 250),
            n,
        };
        lab.remove();
        // The bridge lives in a hub namespace of its own: in the test's namespace, bridged
        // packets would go through the host firewall (Docker sets FORWARD to DROP).
        let hub = lab.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        // The test's own leg: an address on the subnet, reached without forwarding.
        let up = format!("{}u", lab.tag);
        ip(&[
            "link", "add", &up, "type", "veth", "peer", "name", "root0", "netns", &hub,
        ]);
        ip(&["addr", "add", &format!("{}.1/24", lab.subnet), "dev", &up]);
        ip(&["link", "set", &up, "up"]);
        ip(&["-n", &hub, "link", "set", "root0", "master", "br0", "up"]);
        for i in 0..n {
            let ns = lab.netns(i);
            let leg = format!("v{i}");
            ip(&["netns", "add", &ns]);
            ip(&[
                "-n", &hub, "link", "add", &leg, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &leg, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lab.ip(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn hub(&self) -> String {
        format!("{}h", self.tag)
    }

    pub fn netns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, 11 + i)
    }

    /// Drop every packet between nodes `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        ip(&[
            "-n",
            &self.netns(a),
            "route",
            "add",
            "blackhole",
            &format!("{}/32", self.ip(b)),
        ]);
        ip(&[
            "-n",
            &self.netns(b),
            "route",
            "add",
            "blackhole",
            &format!("{}/32", self.ip(a)),
        ]);
    }

    /// Undo [`NetLab::cut`].
    pub fn heal(&self, a: usize, b: usize) {
        ip(&[
            "-n",
            &self.netns(a),
            "route",
            "del",
            "blackhole",
            &format!("{}/32", self.ip(b)),
        ]);
        ip(&[
            "-n",
            &self.netns(b),
            "route",
            "del",
            "blackhole",
            &format!("{}/32", self.ip(a)),
        ]);
    }

    /// Best-effort removal (also of leftovers from a crashed earlier run with this pid).
    fn remove(&self) {
        for ns in (0..self.n).map(|i| self.netns(i)).chain([self.hub()]) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}u", self.tag)])
            .output();
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client")
}
