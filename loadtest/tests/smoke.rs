//! Smoke test against a real node: start `target/debug/minotaur serve` on a free
//! loopback port, run the load generator's library entry point for ~3 s with 20
//! bots (half arena, half tictactoe) and check that inputs were acknowledged,
//! views flowed, tictactoe games finished, and nothing went wrong.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minotaur_loadtest::{run, Encoding, GameChoice, LoadConfig, Summary};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A node process on a free port; killed when dropped.
struct TestNode {
    _child: Child,
    addr: String,
    data_dir: PathBuf,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn node_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("debug").join("minotaur")
}

impl TestNode {
    /// Start the node and wait (60 s at most: a debug build compiles the game
    /// modules first) for its `minotaur listening on http://ADDR` line. Games
    /// come from `games/dist` (`scripts/build-games.sh`), or `$MINOTAUR_GAMES_DIR`.
    async fn start(binary: &PathBuf) -> TestNode {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let data_dir = std::env::temp_dir().join(format!(
            "minotaur-loadtest-smoke-{}-{stamp}",
            std::process::id()
        ));
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut child = Command::new(binary)
            .current_dir(workspace())
            .args(["serve", "--listen", "127.0.0.1:0", "--games-dir"])
            .arg(std::env::var_os("MINOTAUR_GAMES_DIR").unwrap_or_else(|| "games/dist".into()))
            .arg("--data-dir")
            .arg(&data_dir)
            // Quiet unless asked: the node's info log would bury the summary.
            .env(
                "RUST_LOG",
                std::env::var_os("RUST_LOG").unwrap_or_else(|| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("reading the node's stdout") {
                if let Some(addr) = line.trim().strip_prefix("minotaur listening on http://") {
                    return addr.trim_end_matches('/').to_owned();
                }
            }
            panic!("the node exited before it listened");
        })
        .await
        .expect("the node did not say it was listening within 60 s");
        // Keep draining stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        TestNode {
            _child: child,
            addr,
            data_dir,
        }
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

fn check(s: &Summary) {
    eprintln!("{}", s.table());
    assert_eq!(s.errors_total, 0, "errors: {:?}", s.errors);
    assert_eq!(s.peak_connected, 20, "every bot connected at once");
    assert!(s.seated >= 20, "every bot got a seat: {}", s.seated);
    assert!(s.acks > 0, "no input was acknowledged");
    assert!(s.views > 0, "no view arrived");
    assert!(s.ack_latency_us.count == s.acks && s.view_latency_us.count > 0);
    assert_eq!(s.disconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_bots_against_a_real_node() {
    let binary = node_binary();
    if !binary.exists() {
        eprintln!(
            "SKIPPED: the node binary {} is not built; run `bash scripts/build-games.sh && cargo build -p minotaur-host` first",
            binary.display()
        );
        return;
    }
    let node = TestNode::start(&binary).await;

    let cfg = LoadConfig {
        ramp: Duration::from_millis(500),
        ..LoadConfig::new(node.ws_url(), 20, GameChoice::Mixed, Duration::from_secs(3))
    };
    let json = run(&cfg).await.expect("valid config");
    check(&json);
    assert!(json.games_finished > 0, "no tictactoe game finished in 3 s");

    let cfg = LoadConfig {
        encoding: Encoding::MsgPack,
        game: GameChoice::Arena,
        duration: Duration::from_secs(2),
        ..cfg
    };
    let msgpack = run(&cfg).await.expect("valid config");
    check(&msgpack);
}
