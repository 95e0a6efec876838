//! `TestCluster`: real `minotaur serve` processes on loopback around one throwaway
//! PostgreSQL server (its own per cluster: [`TestPostgres`]). Each node has fixed ports
//! (players, and the operator listener for `/admin`) and a data dir, so a restarted node
//! comes back at the same addresses with the same id, like a container; [`TestCluster::add_nodes`] starts nodes with new ids. Every node's stderr is
//! kept for the invariant checker ([`TestCluster::assert_single_owner`]), which reads the
//! `activated` and `handed_over` lines; the directory (`minotaur_sessions`) is read with
//! psql as ground truth. Every wait is [`wait_until`] a condition with a deadline.
//!
//! Cluster tests run one at a time (a process-wide lock held by each `TestCluster`): each
//! runs three or so nodes, a database and bots, and two of them at once on a 2-core
//! machine only starve each other's leases. `MINOTAUR_CLUSTER_PARALLEL=1` lifts the lock.

#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::Value;

use minotaur_cluster::testing::TestPostgres;

use crate::common::games_dir_with;
pub use crate::logs::LogLine;

/// The cluster database's name in every test server.
pub const DB: &str = "minotaur";
/// The lease the tests run nodes with: takeovers within ~1.5 s.
pub const LEASE_MS: u64 = 1000;
/// How long a node may take to print its listening line (it compiles its games first,
/// which is slow in a debug build on a loaded 2-core machine).
pub const STARTUP: Duration = Duration::from_secs(90);
/// The games every test node serves.
pub const GAMES: &[&str] = &["tictactoe", "chaos", "arena"];

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
        // Polling other processes' state: there is nothing to be notified by.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback TCP port. Ports come from a per-process counter (so two clusters of
/// this binary never pick the same one between the check and the bind), starting at a
/// pid-dependent offset, and are checked free.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        // Below Linux's ephemeral range (32768-60999), so that a client socket never
        // takes the port of a node that is restarting.
        20_000 + (std::process::id() % 120) as u16 * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One cluster test at a time (see the module doc).
fn exclusive() -> Option<MutexGuard<'static, ()>> {
    static LOCK: Mutex<()> = Mutex::new(());
    if std::env::var_os("MINOTAUR_CLUSTER_PARALLEL").is_some() {
        return None;
    }
    Some(LOCK.lock().unwrap_or_else(|p| p.into_inner()))
}

/// One row of `minotaur_sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRow {
    pub id: String,
    pub game: String,
    pub owner: String,
    pub epoch: u64,
    pub ended: bool,
}

/// One node process of a [`TestCluster`].
pub struct NodeProc {
    pub id: String,
    /// The player listener.
    pub addr: SocketAddr,
    /// The operator listener (admin API, `/metrics`).
    pub admin_addr: SocketAddr,
    pub data_dir: PathBuf,
    child: Option<Child>,
    /// SIGSTOPped by the test (and not continued yet).
    pub stopped: bool,
}

impl NodeProc {
    /// `path` on the player listener.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `path` on the operator listener.
    pub fn admin_http(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

/// See the module doc.
pub struct TestCluster {
    pub nodes: Vec<NodeProc>,
    pub logs: Arc<Mutex<Vec<LogLine>>>,
    pub pg: TestPostgres,
    pub admin_token: String,
    lease_ms: u64,
    extra_args: Vec<String>,
    games: tempfile::TempDir,
    root: tempfile::TempDir,
    _exclusive: Option<MutexGuard<'static, ()>>,
}

impl TestCluster {
    /// A database and `n` nodes (`n1`..`nN`) with the test lease, serving [`GAMES`];
    /// returns once every node is ready.
    pub async fn start(n: usize) -> TestCluster {
        TestCluster::start_with(n, LEASE_MS, &[]).await
    }

    /// Like [`TestCluster::start`] with a lease of `lease_ms` and extra `serve` flags.
    pub async fn start_with(n: usize, lease_ms: u64, extra_args: &[&str]) -> TestCluster {
        let exclusive = exclusive();
        let pg = TestPostgres::start_on(free_port());
        pg.create_db(DB);
        let mut c = TestCluster {
            nodes: Vec::new(),
            logs: Arc::new(Mutex::new(Vec::new())),
            pg,
            // At least 32 bytes, or the nodes refuse to start.
            admin_token: format!("test-admin-token-of-this-run-{:012}", std::process::id()),
            lease_ms,
            extra_args: {
                let mut args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
                // Tests place their sessions on the nodes they name; placement by load has a
                // test of its own that turns it on.
                if !args.iter().any(|a| a == "--placement-margin") {
                    args.extend(["--placement-margin".into(), "0".into()]);
                }
                args
            },
            games: games_dir_with(GAMES),
            root: tempfile::tempdir().expect("tempdir"),
            _exclusive: exclusive,
        };
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        c.add_nodes(&ids).await;
        c
    }

    /// Starts new nodes with ids `ids` (new ports, empty data dirs), together, and waits
    /// until each is ready. Returns their indices.
    pub async fn add_nodes(&mut self, ids: &[String]) -> Vec<usize> {
        let first = self.nodes.len();
        for id in ids {
            self.nodes.push(NodeProc {
                id: id.clone(),
                addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                admin_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                data_dir: self.root.path().join(id),
                child: None,
                stopped: false,
            });
        }
        let idx: Vec<usize> = (first..self.nodes.len()).collect();
        self.spawn_all(&idx).await;
        idx
    }

    /// (Re)starts the nodes `idx` on their ports, data dirs and ids, together; waits for
    /// each one's listening line and then until it is ready.
    pub async fn spawn_all(&mut self, idx: &[usize]) {
        let waits: Vec<_> = idx.iter().map(|&i| (i, self.spawn_process(i))).collect();
        for (i, rx) in waits {
            let deadline = Instant::now() + STARTUP;
            loop {
                match rx.try_recv() {
                    Ok(()) => break,
                    Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                        // Waiting for another process's output line.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => {
                        self.kill(i);
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "{} did not print its listening line; its last log lines:\n{}",
                            self.nodes[i].id,
                            self.tail(&self.nodes[i].id, 20)
                        );
                    }
                }
            }
        }
        for &i in idx {
            self.wait_ready(i, Duration::from_secs(20)).await;
        }
    }

    /// Restarts node `i` (same id, port and data dir) and waits until it is ready.
    pub async fn spawn(&mut self, i: usize) {
        self.spawn_all(&[i]).await;
    }

    /// Starts node `i`'s process; the receiver gets `()` at its listening line.
    fn spawn_process(&mut self, i: usize) -> std::sync::mpsc::Receiver<()> {
        let node = &self.nodes[i];
        assert!(node.child.is_none(), "{} is already running", node.id);
        let addr = node.addr.to_string();
        let admin_addr = node.admin_addr.to_string();
        let lease = self.lease_ms.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_minotaur"))
            .arg("serve")
            .args(["--database-url", &database_url(&self.pg)])
            .args(["--node-id", &node.id])
            .args(["--listen", &addr, "--advertise-addr", &addr])
            .args(["--admin-listen", &admin_addr])
            .args(["--lease-ms", &lease])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--games-dir")
            .arg(self.games.path())
            .args(["--admin-token", &self.admin_token])
            // Bots and verifiers are not abusers.
            .args(["--rate-per-sec", "1000", "--rate-burst", "1000"])
            // All bots come from 127.0.0.1: no per-address limits.
            .args(["--max-conns-per-ip", "0", "--sessions-per-ip-per-min", "0"])
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| {
                    "warn,minotaur=info,minotaur::activation=info,minotaur_host::cluster=info"
                        .into()
                }),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
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
        self.nodes[i].child = Some(child);
        self.nodes[i].stopped = false;
        rx
    }

    /// Node `i` by id.
    pub fn index(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The node id serving websocket `url` (`ws://addr/ws`).
    pub fn id_of_url(&self, url: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.ws_url() == url)
            .map(|n| n.id.clone())
    }

    /// The websocket URLs of the nodes running now.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.ws_url())
            .collect()
    }

    /// Indices of the nodes running (and not stopped by the test).
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some() && !self.nodes[i].stopped)
            .collect()
    }

    /// `kill -9` node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].stopped = false;
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].pid().expect("running");
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// SIGTERM node `i` (it drains, then exits); see [`TestCluster::wait_exit`].
    pub fn terminate(&self, i: usize) {
        self.signal(i, "-TERM");
    }

    /// SIGSTOP node `i`: the process freezes, its sockets stay open.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.nodes[i].stopped = true;
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.nodes[i].stopped = false;
    }

    /// Waits for node `i` to exit on its own; its exit code, `None` on timeout.
    pub async fn wait_exit(&mut self, i: usize, deadline: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            match self.nodes[i].child.as_mut() {
                None => return Some(0),
                Some(c) => {
                    if let Ok(Some(status)) = c.try_wait() {
                        self.nodes[i].child = None;
                        return Some(status.code().unwrap_or(-1));
                    }
                }
            }
            // Polling a child process: std has no async notification.
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

    /// `GET path` on node `i`'s operator listener with the admin token, as JSON (`None`: it
    /// does not answer, or not with JSON).
    pub async fn admin_get_json(&self, i: usize, path: &str) -> Option<Value> {
        let resp = http()
            .get(self.nodes[i].admin_http(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// `POST /admin/drain` on node `i` with the admin token: (status, report).
    pub async fn admin_drain(&self, i: usize) -> (u16, Value) {
        let resp = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .post(self.nodes[i].admin_http("/admin/drain"))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("POST /admin/drain");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until node `i` answers `/readyz` 200 (serving with a valid lease).
    pub async fn wait_ready(&self, i: usize, deadline: Duration) {
        let what = format!("{} is ready", self.nodes[i].id);
        wait_until(deadline, &what, || async move {
            self.status(i, "/readyz").await == 200
        })
        .await;
    }

    /// The session ids node `i` lists in `/api/sessions` (`None`: it does not answer).
    pub async fn sessions_on(&self, i: usize) -> Option<Vec<String>> {
        let v = self.get_json(i, "/api/sessions").await?;
        Some(
            v.as_array()?
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// The session directory, by id.
    pub async fn directory(&self) -> BTreeMap<String, DirRow> {
        let out = self
            .pg
            .query(
                DB,
                "SELECT id, game, owner, epoch, ended FROM minotaur_sessions ORDER BY id",
            )
            .await
            .unwrap_or_else(|e| panic!("reading the directory: {e}"));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                let row = DirRow {
                    id: f[0].to_owned(),
                    game: f[1].to_owned(),
                    owner: f[2].to_owned(),
                    epoch: f[3].parse().expect("epoch"),
                    ended: f[4] == "t",
                };
                (row.id.clone(), row)
            })
            .collect()
    }

    /// `minotaur_nodes` as `id → (incarnation, status, live)`.
    pub async fn node_rows(&self) -> BTreeMap<String, (i64, String, bool)> {
        let out = self
            .pg
            .query(
                DB,
                "SELECT id, incarnation, status, lease_expires > now() FROM minotaur_nodes",
            )
            .await
            .unwrap_or_else(|e| panic!("reading minotaur_nodes: {e}"));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (
                    f[0].to_owned(),
                    (f[1].parse().unwrap(), f[2].to_owned(), f[3] == "t"),
                )
            })
            .collect()
    }

    /// Waits until each of `sessions` is live in the directory, owned by a node that runs,
    /// listed by that node's `/api/sessions` and by no other node, and (at epoch > 1) the
    /// owner logged its activation at that epoch: the directory, the nodes and the logs
    /// agree. Returns the directory.
    pub async fn wait_served_once(
        &self,
        sessions: &[String],
        deadline: Duration,
    ) -> BTreeMap<String, DirRow> {
        let start = Instant::now();
        loop {
            let problems = self.serving_problems(sessions).await;
            if problems.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < deadline,
                "after {deadline:?}, sessions not served by exactly their owner:\n{}\nlast log lines:\n{}",
                problems.join("\n"),
                self.interesting_tail(40)
            );
            // Polling other processes' state.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.directory().await
    }

    /// What is wrong now with "each of `sessions` is served by exactly its owner".
    async fn serving_problems(&self, sessions: &[String]) -> Vec<String> {
        let dir = self.directory().await;
        let mut listed: HashMap<String, Vec<String>> = HashMap::new();
        for i in self.running() {
            let Some(ids) = self.sessions_on(i).await else {
                return vec![format!(
                    "{} does not answer /api/sessions",
                    self.nodes[i].id
                )];
            };
            for s in ids {
                listed.entry(s).or_default().push(self.nodes[i].id.clone());
            }
        }
        let acts = self.activations();
        let mut problems = Vec::new();
        for s in sessions {
            let on = listed.get(s).cloned().unwrap_or_default();
            match dir.get(s) {
                None => problems.push(format!("{s}: not in the directory; listed on {on:?}")),
                Some(r) if r.ended => problems.push(format!("{s}: ended in the directory")),
                Some(r) if on != [r.owner.clone()] => problems.push(format!(
                    "{s}: the directory names {} at epoch {}; listed on {on:?}",
                    r.owner, r.epoch
                )),
                // The logs and the directory agree: an owner at a later epoch logged its
                // activation (the line follows the start by a moment).
                Some(r)
                    if r.epoch > 1
                        && !acts.iter().any(|a| {
                            a.session == *s && a.epoch == r.epoch && a.node == r.owner
                        }) =>
                {
                    problems.push(format!(
                        "{s}: the directory names {} at epoch {}, which logged no such activation",
                        r.owner, r.epoch
                    ))
                }
                Some(_) => {}
            }
        }
        problems
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // The database's view first, while the nodes still hold their connections.
        if std::thread::panicking() {
            eprintln!(
                "---- cluster log (warnings and cluster events, last 150) ----\n{}",
                self.interesting_tail(150)
            );
            eprintln!(
                "---- PostgreSQL log (last 20) ----\n{}",
                self.pg.log_tail(20)
            );
            // Who holds or waits for what in the database (a stuck claim, a stale
            // owner's open transaction).
            let activity = self.pg.psql(
                DB,
                "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, \
                 left(regexp_replace(query, '\\s+', ' ', 'g'), 100) \
                 FROM pg_stat_activity WHERE datname = current_database() \
                 AND state <> 'idle' AND pid <> pg_backend_pid()",
            );
            eprintln!(
                "---- pg_stat_activity (not idle) ----\n{}",
                activity.unwrap_or_else(|e| e)
            );
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// The nodes' `--database-url`. `MINOTAUR_TEST_DB_PARAMS` (e.g.
/// `options=-c%20idle_in_transaction_session_timeout%3D1000`) is appended as its query, to
/// try out connection settings without a rebuild.
fn database_url(pg: &TestPostgres) -> String {
    match std::env::var("MINOTAUR_TEST_DB_PARAMS") {
        Ok(q) if !q.is_empty() => format!("{}?{q}", pg.url(DB)),
        _ => pg.url(DB),
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client")
}
