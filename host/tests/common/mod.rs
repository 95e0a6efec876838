//! Test harness: `TestNode` runs a real `minotaur serve` process on free
//! ports (players, and the operator listener for `/admin` and `/metrics`),
//! `Client` is a real websocket player (JSON or MessagePack). Every wait is a
//! condition with a deadline.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{protocol::CloseFrame, Message},
    MaybeTlsStream, WebSocketStream,
};

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a node may take to start (it compiles its games first; slow on a loaded
/// 2-core machine).
pub const STARTUP: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// `games/dist` (or `$MINOTAUR_TEST_GAMES_DIR`), checked to hold the game
/// modules the tests need (example games there, test-only ones in `test/`).
pub fn games_dir(needed: &[&str]) -> PathBuf {
    let dir = std::env::var_os("MINOTAUR_TEST_GAMES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("games/dist"));
    for game in needed {
        module_path_in(&dir, game);
    }
    dir
}

fn module_path_in(dir: &std::path::Path, module: &str) -> PathBuf {
    let file = format!("{module}.wasm");
    let path = [dir.join(&file), dir.join("test").join(&file)]
        .into_iter()
        .find(|p| p.exists());
    path.unwrap_or_else(|| {
        panic!(
            "{file} is missing in {}: run `scripts/build-games.sh` first",
            dir.display()
        )
    })
}

/// The built module file `module` (e.g. `arena-v2`, `chaos-v2`).
pub fn module_path(module: &str) -> PathBuf {
    module_path_in(&games_dir(&[]), module)
}

/// A fresh games directory holding exactly `modules` (copied), as a test's
/// `--games-dir`.
pub fn games_dir_with(modules: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for m in modules {
        std::fs::copy(module_path(m), dir.path().join(format!("{m}.wasm"))).expect("copy module");
    }
    dir
}

/// The games every node of the older tests serves.
pub const DEFAULT_GAMES: &[&str] = &["tictactoe", "arena", "chaos"];

/// A running `minotaur serve`; killed on drop.
pub struct TestNode {
    child: Child,
    /// The player listener.
    pub addr: SocketAddr,
    /// The operator listener (admin API, `/metrics`).
    pub admin_addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    pub games_dir: tempfile::TempDir,
    args: Vec<String>,
    /// Where the node's stderr (its log) goes, if captured ([`TestNode::start_logged`]).
    log: Option<PathBuf>,
}

impl TestNode {
    /// Start a node serving [`DEFAULT_GAMES`] with extra `args`.
    pub fn start(args: &[&str]) -> TestNode {
        TestNode::start_with(DEFAULT_GAMES, args)
    }

    /// Start a node serving exactly `games` with extra `args`.
    pub fn start_with(games: &[&str], args: &[&str]) -> TestNode {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let args = args.iter().map(|a| a.to_string()).collect();
        TestNode::spawn(games_dir_with(games), data_dir, args, None)
    }

    /// [`TestNode::start_with`], the node's log (stderr, at `RUST_LOG=info`)
    /// captured into a file that [`TestNode::wait_log`] reads.
    pub fn start_logged(games: &[&str], args: &[&str]) -> TestNode {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let log = data_dir.path().join("node.log");
        let args = args.iter().map(|a| a.to_string()).collect();
        TestNode::spawn(games_dir_with(games), data_dir, args, Some(log))
    }

    /// The first line of the node's captured log that `pred` accepts, waiting
    /// for it at most [`DEADLINE`].
    pub async fn wait_log(&self, pred: impl Fn(&str) -> bool) -> String {
        let path = self.log.as_ref().expect("started with start_logged");
        let end = Instant::now() + DEADLINE;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| pred(l)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < end,
                "no such log line within {DEADLINE:?}; the log:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop this process if it still runs (SIGKILL), then start a new node on
    /// the same data and games directories with the same arguments.
    pub fn restart(mut self) -> TestNode {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("tempdir"));
        let games_dir =
            std::mem::replace(&mut self.games_dir, tempfile::tempdir().expect("tempdir"));
        let args = std::mem::take(&mut self.args);
        let log = self.log.take();
        TestNode::spawn(games_dir, data_dir, args, log)
    }

    fn spawn(
        games_dir: tempfile::TempDir,
        data_dir: tempfile::TempDir,
        args: Vec<String>,
        log: Option<PathBuf>,
    ) -> TestNode {
        let (stderr, level) = match &log {
            Some(path) => (
                Stdio::from(std::fs::File::create(path).expect("log file")),
                "info".to_owned(),
            ),
            None => (
                Stdio::inherit(),
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_minotaur"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--games-dir")
            .arg(games_dir.path())
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(&args)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn minotaur");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                for (kind, prefix) in [
                    ("player", "minotaur listening on http://"),
                    ("admin", "minotaur admin listening on http://"),
                ] {
                    if let Some(url) = line.strip_prefix(prefix) {
                        let _ = tx.send((kind, url.trim().to_owned()));
                    }
                }
            }
        });
        // The player line comes first, the admin line right after it.
        let end = Instant::now() + STARTUP;
        let mut next = |want: &str| -> SocketAddr {
            match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok((kind, a)) if kind == want => a.parse().expect("listening address"),
                Ok((kind, a)) => panic!("expected the {want} listening line, got {kind} {a}"),
                Err(_) => {
                    let _ = child.kill();
                    panic!("minotaur did not print its {want} listening line within {STARTUP:?}");
                }
            }
        };
        let addr = next("player");
        let admin_addr = next("admin");
        TestNode {
            child,
            addr,
            admin_addr,
            data_dir,
            games_dir,
            args,
            log,
        }
    }

    /// The admin token the node generated into its data directory.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_owned()
    }

    /// `POST /admin/games/{game}/modules?policy=..` with `wasm`: `(status, body)`.
    pub async fn publish(
        &self,
        game: &str,
        wasm: Vec<u8>,
        policy: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        self.publish_query(game, wasm, &format!("policy={policy}"), token)
            .await
    }

    /// `POST /admin/games/{game}/modules?{query}` with `wasm`: `(status, body)`.
    pub async fn publish_query(
        &self,
        game: &str,
        wasm: Vec<u8>,
        query: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(self.admin_http(&format!("/admin/games/{game}/modules?{query}")))
            .body(wasm);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = tokio::time::timeout(DEADLINE, req.send())
            .await
            .expect("publish answered in time")
            .expect("publish request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET /admin/sessions` with the node's token.
    pub async fn admin_sessions(&self) -> Value {
        reqwest::Client::new()
            .get(self.admin_http("/admin/sessions"))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .expect("admin sessions")
            .json()
            .await
            .expect("admin sessions JSON")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// `path` on the player listener.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `path` on the operator listener.
    pub fn admin_http(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Wait for the process to exit, at most `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            // Polling a child process has no async notification in std.
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub async fn client(&self) -> Client {
        Client::connect(self, Enc::Json).await
    }

    pub async fn msgpack_client(&self) -> Client {
        Client::connect(self, Enc::MsgPack).await
    }

    /// A new session of `game` with one player `name` seated in it: the player and the
    /// session id.
    pub async fn seated(&self, game: &str, name: &str) -> (Client, String) {
        let mut c = self.client().await;
        c.send(json!({"type": "create", "game": game})).await;
        let session = c.recv_type("created").await["session"]
            .as_str()
            .unwrap()
            .to_owned();
        let joined = c
            .join(json!({"type": "join", "session": session, "name": name}))
            .await;
        assert_eq!(joined["type"], "joined", "{joined}");
        (c, session)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    Json,
    MsgPack,
}

/// What a client saw arrive.
#[derive(Debug)]
pub enum Incoming {
    Msg(Value),
    Closed(Option<CloseFrame>),
}

/// A websocket player.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub enc: Enc,
    pub welcome: Value,
    /// Everything received, for failure messages.
    pub seen: Vec<Value>,
    /// Received but not yet taken by a `recv_*`, oldest first.
    pending: std::collections::VecDeque<Value>,
}

impl Client {
    pub async fn connect(node: &TestNode, enc: Enc) -> Client {
        Client::connect_url(&node.ws_url(), enc).await
    }

    /// Connect to any node's websocket URL (e.g. one a `moved` message named).
    pub async fn connect_url(url: &str, enc: Enc) -> Client {
        Client::try_connect_url(url, enc)
            .await
            .unwrap_or_else(|| panic!("websocket connect to {url}"))
    }

    /// Like [`Client::connect_url`], `None` when the node does not answer (it may be down).
    pub async fn try_connect_url(url: &str, enc: Enc) -> Option<Client> {
        let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .ok()?
            .ok()?;
        let mut c = Client {
            ws,
            enc,
            welcome: Value::Null,
            seen: Vec::new(),
            pending: Default::default(),
        };
        // The server speaks JSON until the client's first frame. A node going away may
        // accept and close before it: that is no connection either.
        loop {
            match c.next(DEADLINE).await? {
                Incoming::Msg(m) if m["type"] == "welcome" => {
                    c.welcome = m;
                    return Some(c);
                }
                Incoming::Msg(m) => c.pending.push_back(m),
                Incoming::Closed(_) => return None,
            }
        }
    }

    /// Send a message in this client's encoding.
    pub async fn send(&mut self, msg: Value) {
        let frame = match self.enc {
            Enc::Json => Message::Text(msg.to_string().into()),
            Enc::MsgPack => Message::Binary(rmp_serde::to_vec_named(&msg).expect("msgpack").into()),
        };
        self.ws.send(frame).await.expect("send");
    }

    /// Send, tolerating a connection the server already closed.
    pub async fn send_lossy(&mut self, msg: Value) -> bool {
        let frame = match self.enc {
            Enc::Json => Message::Text(msg.to_string().into()),
            Enc::MsgPack => Message::Binary(rmp_serde::to_vec_named(&msg).expect("msgpack").into()),
        };
        self.ws.send(frame).await.is_ok()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send text");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send binary");
    }

    /// The next message or close, or `None` at the deadline.
    pub async fn next(&mut self, deadline: Duration) -> Option<Incoming> {
        loop {
            let frame = match tokio::time::timeout(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Incoming::Closed(None)),
                Ok(Some(Err(_))) => return Some(Incoming::Closed(None)),
                Ok(Some(Ok(f))) => f,
            };
            let value: Value = match frame {
                Message::Text(t) => serde_json::from_str(&t).expect("server JSON"),
                Message::Binary(b) => rmp_serde::from_slice(&b).expect("server MessagePack"),
                Message::Close(f) => return Some(Incoming::Closed(f)),
                _ => continue,
            };
            self.seen.push(value.clone());
            return Some(Incoming::Msg(value));
        }
    }

    /// Take the oldest not yet taken message satisfying `pred`, waiting for
    /// it if needed. Messages passed over stay available to later calls.
    pub async fn recv_until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).expect("index in range");
        }
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(Incoming::Msg(m)) if pred(&m) => return m,
                Some(Incoming::Msg(m)) => self.pending.push_back(m),
                Some(Incoming::Closed(f)) => {
                    panic!(
                        "connection closed ({f:?}) while waiting; saw {:#?}",
                        self.tail()
                    )
                }
                None => panic!(
                    "no matching message within {DEADLINE:?}; saw {:#?}",
                    self.tail()
                ),
            }
        }
    }

    /// Wait for a message of `type`.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        self.recv_until(|m| m["type"] == ty).await
    }

    /// Wait for an `error` with `code`.
    pub async fn recv_error(&mut self, code: &str) -> Value {
        self.recv_until(|m| m["type"] == "error" && m["code"] == code)
            .await
    }

    /// Wait until the server closes the connection; returns its close frame.
    pub async fn recv_close(&mut self) -> Option<CloseFrame> {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(Incoming::Msg(m)) => self.pending.push_back(m),
                Some(Incoming::Closed(f)) => return f,
                None => panic!("not closed within {DEADLINE:?}; saw {:#?}", self.tail()),
            }
        }
    }

    /// Forget messages not taken yet (e.g. a backlog of old views).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Messages not taken yet.
    pub fn pending(&self) -> impl Iterator<Item = &Value> {
        self.pending.iter()
    }

    fn tail(&self) -> &[Value] {
        &self.seen[self.seen.len().saturating_sub(12)..]
    }

    /// `join` and wait for `joined`.
    pub async fn join(&mut self, msg: Value) -> Value {
        self.send(msg).await;
        self.recv_until(|m| m["type"] == "joined" || m["type"] == "error")
            .await
    }

    /// Quick-match into `game`; panics unless seated.
    pub async fn quick_match(&mut self, game: &str, name: &str) -> Value {
        let joined = self
            .join(json!({"type": "join", "game": game, "name": name}))
            .await;
        assert_eq!(joined["type"], "joined", "{joined}");
        joined
    }

    /// Send an input with `seq` and wait for its `ack` or `error`.
    pub async fn input(&mut self, data: Value, seq: u64) -> Value {
        self.send(json!({"type": "input", "data": data, "seq": seq}))
            .await;
        self.recv_until(|m| (m["type"] == "ack" || m["type"] == "error") && m["seq"] == seq)
            .await
    }

    /// Like [`Client::input`] but the answer must be an `ack`.
    pub async fn input_ok(&mut self, data: Value, seq: u64) {
        let answer = self.input(data, seq).await;
        assert_eq!(answer["type"], "ack", "input {seq}: {answer}");
    }
}

/// Create a tictactoe session and seat two clients in it: `(x, o, session)`.
pub async fn tictactoe_pair(node: &TestNode) -> (Client, Client, String) {
    tictactoe_pair_at(&node.ws_url()).await
}

/// [`tictactoe_pair`] on the node serving the player websocket at `url`.
pub async fn tictactoe_pair_at(url: &str) -> (Client, Client, String) {
    let mut x = Client::connect_url(url, Enc::Json).await;
    x.send(json!({"type": "create", "game": "tictactoe"})).await;
    let created = x.recv_type("created").await;
    let session = created["session"].as_str().expect("session id").to_owned();
    let jx = x
        .join(json!({"type": "join", "session": session, "name": "x"}))
        .await;
    assert_eq!(jx["type"], "joined", "{jx}");
    let mut o = Client::connect_url(url, Enc::Json).await;
    let jo = o
        .join(json!({"type": "join", "session": session, "name": "o"}))
        .await;
    assert_eq!(jo["type"], "joined", "{jo}");
    assert_ne!(jx["player"], jo["player"]);
    (x, o, session)
}
