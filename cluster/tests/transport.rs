//! The peer transport between in-process nodes: request/response, both sides dialling at
//! once, and reconnection after the peer restarts on the same address.

mod common;

use std::time::Duration;

use common::*;
use minotaur_cluster::peer::{Incoming, PeerConfig, PeerError, PeerMsg, PeerNet};
use tokio::sync::mpsc;

/// Answers every `FetchModule { hash }` with `Module { hash, None }` naming the responder.
fn echo(node: &'static str, mut rx: mpsc::Receiver<Incoming>) {
    tokio::spawn(async move {
        while let Some(inc) = rx.recv().await {
            if let (PeerMsg::FetchModule { hash }, Some(r)) = (inc.msg, inc.reply) {
                r.send(PeerMsg::Module {
                    hash: format!("{hash}@{node} from {}", inc.from),
                    bytes: None,
                });
            }
        }
    });
}

fn ask(hash: &str) -> PeerMsg {
    PeerMsg::FetchModule { hash: hash.into() }
}

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_both_ways_even_when_both_dial_at_once() {
    let (a, rx_a) = net("a").await;
    let (b, rx_b) = net("b").await;
    echo("a", rx_a);
    echo("b", rx_b);
    let (ra, rb) = tokio::join!(
        a.request("b", b.addr(), ask("x"), T),
        b.request("a", a.addr(), ask("y"), T)
    );
    assert_eq!(
        ra.unwrap(),
        PeerMsg::Module {
            hash: "x@b from a".into(),
            bytes: None
        }
    );
    assert_eq!(
        rb.unwrap(),
        PeerMsg::Module {
            hash: "y@a from b".into(),
            bytes: None
        }
    );
    // Many concurrent requests are each paired with their own reply.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (a, addr) = (a.clone(), b.addr());
        tasks.push(tokio::spawn(async move {
            a.request("b", addr, ask(&i.to_string()), T).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let want = PeerMsg::Module {
            hash: format!("{i}@b from a"),
            bytes: None,
        };
        assert_eq!(t.await.unwrap().unwrap(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_times_out_and_a_restarted_one_is_reached_again() {
    let (a, rx_a) = net("a").await;
    echo("a", rx_a);
    let (b, rx_b) = net("b").await;
    echo("b", rx_b);
    let addr = b.addr();
    a.request("b", addr, ask("1"), T).await.unwrap();

    // b goes away; requests fail with a timeout, not a hang.
    b.shutdown();
    drop(b);
    let err = wait_for_error(&a, addr).await;
    assert!(matches!(err, PeerError::Timeout { .. }), "{err}");

    // b comes back on the same address; a's link redials (with backoff) and gets through.
    let (b2, rx_b2) = PeerNet::bind(PeerConfig::new("b", addr)).await.unwrap();
    echo("b", rx_b2);
    let start = tokio::time::Instant::now();
    loop {
        match a
            .request("b", addr, ask("2"), Duration::from_millis(500))
            .await
        {
            Ok(reply) => {
                assert_eq!(
                    reply,
                    PeerMsg::Module {
                        hash: "2@b from a".into(),
                        bytes: None
                    }
                );
                break;
            }
            Err(_) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "never reconnected"
            ),
        }
    }
    drop(b2);
}

async fn wait_for_error(a: &PeerNet, addr: std::net::SocketAddr) -> PeerError {
    let start = tokio::time::Instant::now();
    loop {
        // The old connection may still carry one request before the close is noticed.
        match a
            .request("b", addr, ask("gone"), Duration::from_millis(300))
            .await
        {
            Err(e) => return e,
            Ok(_) => assert!(start.elapsed() < T, "a closed peer kept answering"),
        }
    }
}
