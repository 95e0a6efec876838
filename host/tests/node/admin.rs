//! The operator plane: the admin API, `/admin/cluster` and `/metrics` answer on the
//! operator listener only (the player listener answers 404 for them, and the operator
//! listener serves no player route); a token shorter than 32 bytes stops the node at
//! start with a message naming the problem; the `minotaur` CLI (`sessions`, `cluster`,
//! `publish`, `drain`) works against the operator listener and says what is wrong when
//! pointed at the player port.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::{json, Value};

use crate::common::{games_dir_with, module_path, tictactoe_pair, TestNode, DEADLINE, STARTUP};

/// Runs `minotaur args` with `envs` to its end, at most `deadline` (then it is killed
/// and the test fails). No `MINOTAUR_*` variable of the test's own environment leaks in.
fn minotaur(args: &[&str], envs: &[(&str, &str)], deadline: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minotaur"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MINOTAUR_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minotaur");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => out.expect("wait for minotaur"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!(
                "`minotaur {}` did not exit within {deadline:?}",
                args.join(" ")
            );
        }
    }
}

/// [`minotaur`] from async code.
pub(crate) async fn minotaur_async(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        minotaur(&args, &envs, Duration::from_secs(30))
    })
    .await
    .expect("minotaur task")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn operator_routes_answer_only_on_the_operator_listener() {
    let node = TestNode::start_with(&["tictactoe"], &[]);
    let token = node.admin_token();
    assert!(
        token.len() >= 32,
        "generated token of {} bytes",
        token.len()
    );
    assert!(node.admin_addr.ip().is_loopback(), "{}", node.admin_addr);
    assert_ne!(node.admin_addr, node.addr);
    let http = reqwest::Client::new();

    // The player listener knows none of the operator routes, even with the right token.
    for (method, path) in [
        ("GET", "/admin/sessions"),
        ("POST", "/admin/drain"),
        ("POST", "/admin/games/tictactoe/modules?policy=new"),
        ("GET", "/admin/cluster"),
        ("GET", "/metrics"),
        ("GET", "/api/cluster"),
    ] {
        let resp = http
            .request(method.parse().unwrap(), node.http(path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("player listener answers");
        assert_eq!(resp.status(), 404, "{method} {path} on the player listener");
    }
    // That drain request did nothing: the node still takes players.
    let ready = http.get(node.http("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let mut player = node.client().await;

    // The operator listener: the token is required for /admin ...
    for bad in [None, Some("x".repeat(64))] {
        let mut req = http.get(node.admin_http("/admin/sessions"));
        if let Some(t) = &bad {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "token {bad:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{body}");
    }
    let sessions: Value = http
        .get(node.admin_http("/admin/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions, json!([]));
    // The scheme is case-insensitive (RFC 7235); another scheme is refused.
    for (header, status) in [
        (format!("bearer {token}"), 200),
        (format!("BEARER {token}"), 200),
        (format!("Basic {token}"), 401),
        (format!("Bearer{token}"), 401),
    ] {
        let resp = http
            .get(node.admin_http("/admin/sessions"))
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{}", &header[..8]);
    }
    let resp = http
        .get(node.admin_http("/admin/cluster"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let view: Value = http
        .get(node.admin_http("/admin/cluster"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["mode"], "single", "{view}");
    assert_eq!(view["node"], player.welcome["node"], "{view}");
    // ... and not for /metrics (a scraper holds no credential that could publish).
    let resp = http.get(node.admin_http("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let metrics = resp.text().await.unwrap();
    assert!(metrics.contains("minotaur_sessions 0"), "{metrics}");

    // Player routes are not served on the operator listener.
    for path in ["/api/games", "/api/sessions", "/ws", "/"] {
        let resp = http.get(node.admin_http(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path} on the operator listener");
    }
    player.send(json!({"type": "ping"})).await;
    player.recv_type("pong").await;
}

#[test]
fn a_short_admin_token_stops_the_node_at_start() {
    let games = games_dir_with(&["tictactoe"]);
    let data = tempfile::tempdir().expect("tempdir");
    let serve = |extra: &[&str], envs: &[(&str, &str)]| {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--games-dir",
            games.path().to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        minotaur(&args, envs, STARTUP)
    };
    let short = "a".repeat(31);
    for (flag, env, len) in [
        (vec!["--admin-token", short.as_str()], vec![], 31),
        (vec![], vec![("MINOTAUR_ADMIN_TOKEN", "change-me")], 9),
    ] {
        let out = serve(&flag, &env);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "started: {stdout} {stderr}");
        assert!(
            stderr.contains("admin token")
                && stderr.contains(&format!("is {len} bytes long"))
                && stderr.contains("at least 32"),
            "{stderr}"
        );
        assert!(!stdout.contains("listening"), "{stdout}");
    }
    // Refused before anything else: no store was opened, no token file written.
    let files: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(files.is_empty(), "{files:?}");
    // A token that cannot travel in a header is refused the same way.
    let spaced = format!("{} {}", "a".repeat(20), "b".repeat(20));
    let out = serve(&["--admin-token", &spaced], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("printable ASCII"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_token_of_32_bytes_is_accepted() {
    let token = "0123456789abcdef0123456789abcdef";
    let node = TestNode::start_with(&["tictactoe"], &["--admin-token", token]);
    let resp = reqwest::Client::new()
        .get(node.admin_http("/admin/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A configured token is not written to the data directory.
    assert!(!node.data_dir.path().join("admin.token").exists());
}

#[tokio::test]
async fn the_cli_works_against_the_operator_listener() {
    let mut node = TestNode::start_with(&["tictactoe"], &[]);
    let (_x, _o, session) = tictactoe_pair(&node).await;
    let admin = node.admin_http("");
    let token = node.admin_token();
    let data_dir = node.data_dir.path().to_str().unwrap().to_owned();

    // `sessions`: URL by flag, token read from the data dir; URL by environment.
    let out = minotaur_async(&["sessions", "--url", &admin, "--data-dir", &data_dir], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&session),
        "{}",
        text(&out.stdout)
    );
    let out = minotaur_async(
        &["sessions"],
        &[
            ("MINOTAUR_ADMIN_URL", &admin),
            ("MINOTAUR_ADMIN_TOKEN", &token),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&session),
        "{}",
        text(&out.stdout)
    );

    // A wrong token, and the player port instead of the operator listener.
    let out = minotaur_async(
        &["sessions", "--url", &admin, "--token", &"x".repeat(64)],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let player = node.http("");
    let out = minotaur_async(&["sessions", "--url", &player, "--token", &token], &[]).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("--admin-listen"),
        "{stderr}"
    );

    // The default URL is the default operator listener.
    let out = minotaur_async(&["sessions", "--help"], &[]).await;
    let help = text(&out.stdout);
    assert!(
        help.contains("http://127.0.0.1:7879") && help.contains("MINOTAUR_ADMIN_URL"),
        "{help}"
    );

    // `cluster` and `publish`.
    let out = minotaur_async(&["cluster", "--url", &admin, "--token", &token], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout).expect("cluster JSON");
    assert_eq!(view["mode"], "single", "{view}");
    let wasm = module_path("tictactoe");
    let out = minotaur_async(
        &[
            "publish",
            wasm.to_str().unwrap(),
            "--game",
            "tictactoe",
            "--url",
            &admin,
            "--token",
            &token,
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("publish JSON");
    assert_eq!(report["game"], "tictactoe", "{report}");
    assert_eq!(report["policy"], "new", "{report}");

    // `drain` on a single node: an empty report, and the node exits 0.
    let out = minotaur_async(&["drain", "--url", &admin, "--token", &token], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("drain JSON");
    assert_eq!(report["handed_over"], 0, "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    let status = tokio::task::spawn_blocking(move || {
        let status = node.wait_exit(DEADLINE);
        (status, node)
    })
    .await
    .unwrap()
    .0;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
