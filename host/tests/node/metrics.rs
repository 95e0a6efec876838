//! `/metrics` (on the operator listener) answers in the Prometheus text format and
//! counts a played game.

use serde_json::json;

use crate::common::{tictactoe_pair, TestNode};

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn metrics_count_a_played_tictactoe_game() {
    let node = TestNode::start(&[]);
    let http = reqwest::Client::new();
    let fetch = || async {
        let resp = http.get(node.admin_http("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        resp.text().await.unwrap()
    };
    // Answers before anything happened, with the registry's gauges.
    let empty = fetch().await;
    assert_eq!(sample(&empty, "minotaur_sessions"), Some(0.0), "{empty}");

    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    let during = fetch().await;
    assert_eq!(sample(&during, "minotaur_sessions"), Some(1.0), "{during}");
    assert_eq!(sample(&during, "minotaur_players"), Some(2.0), "{during}");

    // X wins on the top row: 5 moves after 2 joins.
    for (i, cell) in [0u64, 3, 1, 4, 2].into_iter().enumerate() {
        let who = if i % 2 == 0 { &mut x } else { &mut o };
        who.input_ok(json!({"cell": cell}), i as u64 + 1).await;
    }
    x.recv_type("ended").await;

    let after = fetch().await;
    let events = sample(&after, r#"minotaur_events_total{game="tictactoe"}"#);
    assert!(events.is_some_and(|n| n >= 7.0), "{after}");
    assert_eq!(
        sample(
            &after,
            r#"minotaur_sessions_started_total{game="tictactoe"}"#
        ),
        Some(1.0),
        "{after}"
    );
    let calls = sample(&after, "minotaur_guest_call_seconds_count");
    assert!(calls.is_some_and(|n| n >= 7.0), "{after}");
    assert!(
        after.contains("# TYPE minotaur_guest_call_seconds histogram"),
        "{after}"
    );
}
