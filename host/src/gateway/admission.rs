//! Connection limits of the player listener: counts open sockets per client address and
//! in total, and decides at accept whether a new one is served ([`Admission`]). The
//! accept loop ([`super::serve`]) asks [`ConnLimiter::admit`] once per socket and keeps
//! the returned [`ConnPermit`] inside the socket's IO, so a connection counts until its
//! socket closes — after a websocket upgrade too.
//!
//! Invariants: every accepted socket is counted in `sockets` for its whole life; only
//! admitted ones count against the limits (per address and in total). A socket over a
//! limit is still served once, to be told why ([`super::refuse`]); beyond twice the total
//! limit, sockets are closed unanswered, so refusals cannot exhaust file descriptors.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
};

/// What the listener does with a new socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the limits: served normally.
    Admitted,
    /// Its address has `--max-conns-per-ip` connections open: answered
    /// `too_many_connections`, then closed.
    TooManyFromIp,
    /// The node has `--max-conns` connections open: answered `node_busy`, then closed.
    NodeBusy,
    /// Far over the total limit: closed at once, unanswered.
    Drop,
}

/// The client side of a player-listener connection, in each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub admission: Admission,
}

impl Peer {
    /// The address the per-client limits count under ([`client_key`]).
    pub fn key(&self) -> IpAddr {
        client_key(self.addr.ip())
    }
}

/// The address limits are kept per: an IPv4 address (also when it arrives
/// IPv4-mapped), or an IPv6 address's /64 — what one subscriber usually holds.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts of the player listener's open connections. Cheap to clone.
#[derive(Clone)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    /// 0: no limit.
    per_ip: usize,
    /// 0: no limit.
    total: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Every accepted socket still open, refused ones included.
    sockets: usize,
    /// Admitted sockets still open.
    admitted: usize,
    by_key: HashMap<IpAddr, usize>,
}

/// Held by an accepted socket: releases its counts when dropped.
pub struct ConnPermit {
    inner: Arc<Inner>,
    /// `Some` for an admitted socket: the address it counts under.
    admitted: Option<IpAddr>,
}

impl ConnLimiter {
    /// `per_ip` connections per client address, `total` in all (0: no limit).
    pub fn new(per_ip: usize, total: usize) -> ConnLimiter {
        ConnLimiter {
            inner: Arc::new(Inner {
                per_ip,
                total,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Decide on a socket from `ip`. Anything but [`Admission::Drop`] comes with the
    /// permit the socket must hold while it is open.
    pub fn admit(&self, ip: IpAddr) -> (Admission, Option<ConnPermit>) {
        let total = self.inner.total;
        let mut c = self.inner.counts();
        if total > 0 && c.sockets >= total.saturating_mul(2) {
            return (Admission::Drop, None);
        }
        c.sockets += 1;
        let key = client_key(ip);
        let from_key = c.by_key.get(&key).copied().unwrap_or(0);
        let admission = if total > 0 && c.admitted >= total {
            Admission::NodeBusy
        } else if self.inner.per_ip > 0 && from_key >= self.inner.per_ip {
            Admission::TooManyFromIp
        } else {
            c.admitted += 1;
            *c.by_key.entry(key).or_default() += 1;
            Admission::Admitted
        };
        let permit = ConnPermit {
            inner: self.inner.clone(),
            admitted: (admission == Admission::Admitted).then_some(key),
        };
        (admission, Some(permit))
    }

    /// Admitted connections open now.
    pub fn admitted(&self) -> usize {
        self.inner.counts().admitted
    }
}

impl Inner {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Plain counters: still right after a panic elsewhere.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.inner.counts();
        c.sockets -= 1;
        if let Some(key) = self.admitted {
            c.admitted -= 1;
            if let Some(n) = c.by_key.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    c.by_key.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_limit_and_release() {
        let l = ConnLimiter::new(2, 100);
        let (a1, p1) = l.admit(ip("10.0.0.1"));
        let (a2, _p2) = l.admit(ip("10.0.0.1"));
        let (a3, p3) = l.admit(ip("10.0.0.1"));
        assert_eq!(
            (a1, a2, a3),
            (
                Admission::Admitted,
                Admission::Admitted,
                Admission::TooManyFromIp
            )
        );
        // Another address is not affected.
        assert_eq!(l.admit(ip("10.0.0.2")).0, Admission::Admitted);
        // A refused socket frees nothing; an admitted one frees its place.
        drop(p3);
        assert_eq!(l.admit(ip("10.0.0.1")).0, Admission::TooManyFromIp);
        drop(p1);
        assert_eq!(l.admit(ip("10.0.0.1")).0, Admission::Admitted);
    }

    #[test]
    fn total_limit_then_drop_beyond_twice_it() {
        let l = ConnLimiter::new(0, 2);
        let held: Vec<_> = (0..2)
            .map(|i| l.admit(ip(&format!("10.0.1.{i}"))))
            .collect();
        assert!(held.iter().all(|(a, _)| *a == Admission::Admitted));
        assert_eq!(l.admitted(), 2);
        let refused: Vec<_> = (0..2).map(|_| l.admit(ip("10.0.2.1"))).collect();
        assert!(refused
            .iter()
            .all(|(a, p)| *a == Admission::NodeBusy && p.is_some()));
        let (a, p) = l.admit(ip("10.0.2.1"));
        assert_eq!((a, p.is_none()), (Admission::Drop, true));
        drop(refused);
        assert_eq!(l.admit(ip("10.0.2.1")).0, Admission::NodeBusy);
        drop(held);
        assert_eq!(l.admitted(), 0);
        assert_eq!(l.admit(ip("10.0.2.1")).0, Admission::Admitted);
    }

    #[test]
    fn zero_means_no_limit() {
        let l = ConnLimiter::new(0, 0);
        let held: Vec<_> = (0..1000).map(|_| l.admit(ip("10.0.0.1"))).collect();
        assert!(held.iter().all(|(a, _)| *a == Admission::Admitted));
    }

    #[test]
    fn addresses_are_keyed_per_v4_and_v6_slash_64() {
        assert_eq!(client_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        let l = ConnLimiter::new(1, 0);
        let _p = l.admit(ip("2001:db8:1:2::1"));
        assert_eq!(l.admit(ip("2001:db8:1:2::2")).0, Admission::TooManyFromIp);
        assert_eq!(l.admit(ip("2001:db8:1:3::1")).0, Admission::Admitted);
    }
}
