//! The player listener's HTTP server: accepts sockets ([`super::player_listener`]:
//! `TCP_NODELAY`), applies the connection limits ([`super::admission`]) and serves each
//! socket with hyper's HTTP/1.1 server, whose header-read timeout closes a client that
//! sends its request head too slowly (slowloris) or keeps an idle keep-alive connection
//! open past it. `main` runs [`serve`] until the shutdown signal.
//!
//! axum's own `serve` takes no configuration (no timer, so no header timeout), hence this
//! loop on hyper-util, the crates axum's runs on. Every request carries the connection's
//! [`Peer`] (and axum's `ConnectInfo<SocketAddr>`) in its extensions. On shutdown it
//! stops accepting, lets requests in flight finish and returns once every HTTP
//! connection has closed; upgraded websockets run on and close on the same signal.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    serve::Listener,
    Router,
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tower::ServiceExt;

use super::admission::{Admission, ConnLimiter, ConnPermit, Peer};

/// How the player listener serves connections, from the `Config`.
#[derive(Clone)]
pub struct ServeOptions {
    pub limiter: ConnLimiter,
    /// `None`: no limit.
    pub header_read_timeout: Option<Duration>,
}

/// Serve `app` on `listener` until `shutdown` turns `true`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = super::player_listener(listener);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    // Every connection task holds a receiver: once all are dropped, all are done.
    let (all_done, done) = watch::channel(());
    loop {
        let (stream, addr) = tokio::select! {
            // axum's listener retries failed accepts itself (backing off on EMFILE).
            accepted = listener.accept() => accepted,
            // Map the guard away at once: it is not Send.
            _ = async { shutdown.wait_for(|d| *d).await.is_ok() } => break,
        };
        let (admission, permit) = opts.limiter.admit(addr.ip());
        let Some(permit) = permit else {
            tracing::debug!(%addr, "far over the connection limit; socket closed unanswered");
            continue;
        };
        if admission != Admission::Admitted {
            tracing::debug!(%addr, ?admission, "connection over a limit; refusing it");
        }
        let peer = Peer { addr, admission };
        let app = app.clone();
        let service = tower::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(peer);
            req.extensions_mut().insert(ConnectInfo(addr));
            app.clone().oneshot(req.map(Body::new))
        });
        let io = TokioIo::new(Counted {
            stream,
            _permit: permit,
        });
        let conn = http
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        let (mut down, done) = (shutdown.clone(), done.clone());
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { down.wait_for(|d| *d).await.is_ok() } => {
                    // Finish the request in flight, then close; an upgrade already
                    // handed its socket to the websocket task, which closes on its own.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                // A header-read timeout, a malformed request, a reset: the client's doing.
                tracing::debug!(%addr, error = %e, "player connection ended with an error");
            }
            drop(done);
        });
    }
    drop((listener, done));
    all_done.closed().await;
}

/// An accepted socket holding its place in the connection counts until it is dropped —
/// which for a websocket is when the upgraded connection closes.
struct Counted {
    stream: TcpStream,
    _permit: ConnPermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(opts: ServeOptions) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|axum::Extension(p): axum::Extension<Peer>| async move {
                format!("{:?}", p.admission)
            }),
        );
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve(listener, app, opts, rx));
        (addr, tx)
    }

    /// A client that sends half a request head is cut off at the timeout, while a
    /// complete request on another connection is answered.
    #[tokio::test]
    async fn a_slow_request_head_is_cut_off() {
        let (addr, _stop) = start(ServeOptions {
            limiter: ConnLimiter::new(0, 0),
            header_read_timeout: Some(Duration::from_millis(300)),
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut ok = TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with("Admitted"), "{answer}");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest));
        closed.await.expect("closed within the deadline").ok();
    }

    /// The permit is released when the connection closes.
    #[tokio::test]
    async fn connections_count_while_open() {
        let limiter = ConnLimiter::new(1, 0);
        let (addr, _stop) = start(ServeOptions {
            limiter: limiter.clone(),
            header_read_timeout: None,
        })
        .await;
        let get = |close: bool| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let conn = if close { "close" } else { "keep-alive" };
            let req = format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = vec![0; 4096];
            let n = s.read(&mut buf).await.unwrap();
            (s, String::from_utf8_lossy(&buf[..n]).into_owned())
        };
        let (held, first) = get(false).await;
        assert!(first.ends_with("Admitted"), "{first}");
        let (_, second) = get(true).await;
        assert!(second.ends_with("TooManyFromIp"), "{second}");
        drop(held);
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        while limiter.admitted() > 0 {
            assert!(tokio::time::Instant::now() < end, "permit never released");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, third) = get(true).await;
        assert!(third.ends_with("Admitted"), "{third}");
    }
}
