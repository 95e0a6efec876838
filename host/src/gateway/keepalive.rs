//! Websocket keepalive: the server pings every `--ws-ping-secs`, and a connection that
//! sent nothing at all — no frame, no pong — for `--ws-idle-timeout-secs` is closed
//! (4408). A live client answers pings on its own (browsers and websocket libraries do),
//! so a player who merely does nothing stays connected; a vanished peer (NAT dropped,
//! cable pulled, process frozen) is found and its seat marked disconnected. Polled by
//! the connection task ([`super::ws`]) beside its socket.

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// What the connection does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Send a ping.
    Ping,
    /// Nothing heard within the timeout: close.
    TimedOut,
}

/// One connection's keepalive clock.
pub struct Keepalive {
    /// `None`: keepalive off.
    ping: Option<Interval>,
    timeout: Duration,
    last_heard: Instant,
}

impl Keepalive {
    /// Pings every `ping` (`None`: no pings and no timeout); closes after `timeout`
    /// of silence.
    pub fn new(ping: Option<Duration>, timeout: Duration) -> Keepalive {
        let now = Instant::now();
        let ping = ping.map(|period| {
            let mut i = tokio::time::interval_at(now + period, period);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        Keepalive {
            ping,
            timeout,
            last_heard: now,
        }
    }

    /// The client sent something (any frame, a pong included).
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Waits until a ping or the timeout is due; never, with keepalive off.
    pub async fn due(&mut self) -> Due {
        let Some(ping) = &mut self.ping else {
            return std::future::pending().await;
        };
        let deadline = self.last_heard + self.timeout;
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => Due::TimedOut,
            _ = ping.tick() => {
                if Instant::now() >= deadline { Due::TimedOut } else { Due::Ping }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pings_then_times_out_when_nothing_is_heard() {
        let mut k = Keepalive::new(Some(Duration::from_secs(1)), Duration::from_secs(3));
        let start = Instant::now();
        assert_eq!(k.due().await, Due::Ping);
        assert_eq!(k.due().await, Due::Ping);
        // The client answers: the timeout restarts from now.
        k.heard();
        let heard = Instant::now();
        let mut pings = 0;
        while k.due().await == Due::Ping {
            pings += 1;
        }
        assert_eq!(Instant::now() - heard, Duration::from_secs(3));
        assert_eq!(pings, 2);
        assert_eq!(heard - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn off_means_never() {
        let mut k = Keepalive::new(None, Duration::from_secs(1));
        let waited = tokio::time::timeout(Duration::from_secs(3600), k.due()).await;
        assert!(waited.is_err());
    }
}
