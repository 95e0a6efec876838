//! The node's sessions: id → handle, the reconnect-token index (token hash →
//! session) and quick-match. Called by the gateway (websocket and lobby) and
//! by `main` at shutdown. A session is removed when its actor stops, i.e. right
//! after its players got `ended`; its tokens stop working then.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::watch;

use tokio::task::JoinHandle;

use super::{
    actor, handle::SeatHold, hash_token, new_session_id, Joined, Outbound, Persist, PlayerId,
    SessionError, SessionHandle, TokenHash,
};
use crate::{
    catalog::Catalog,
    protocol::{value_to_msgpack, GameValue},
};

/// A session as the lobby lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub game: String,
    pub players: u32,
    pub max_players: u32,
    pub open: bool,
    pub rules_version: u32,
    pub tick: u64,
}

/// All sessions of this node. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    persist: Persist,
    max_sessions: usize,
    // Short critical sections only (map lookups); never held across an await.
    state: Mutex<State>,
    // One lock per game, held while a quick-match picks (or starts) a session
    // of it and reserves a seat: two players arriving together share a
    // session, yet no quick-match waits on another's join. An async lock: a
    // start awaits the guest's `init` on the guest pool, and meanwhile no
    // thread is blocked (quick-matches of other games do not wait at all).
    quick_match: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    // Number of live sessions, watched by `shutdown`.
    live: watch::Sender<usize>,
    // `true` once `shutdown` saw every session stop (and persist).
    drained: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    sessions: BTreeMap<String, Entry>,
    tokens: HashMap<TokenHash, String>,
    /// Slots taken by sessions being started (counted against `max_sessions`).
    starting: usize,
    /// Seats promised to quick-matches whose join the session has not taken
    /// yet, by session: counted as taken when picking a session.
    reserved: HashMap<String, u32>,
    next_order: u64,
    closed: bool,
}

/// A slot counted against `max_sessions` while a session starts.
struct Starting(Registry);

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.state().starting -= 1;
    }
}

/// A seat promised to a quick-match until the session counts it as taken (the
/// actor drops it then), or until its join fails.
struct Reservation {
    registry: Registry,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut st = self.registry.state();
        if let Some(n) = st.reserved.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                st.reserved.remove(&self.id);
            }
        }
    }
}

struct Entry {
    handle: SessionHandle,
    /// Creation order, for "oldest open session first".
    order: u64,
}

impl Registry {
    pub fn new(catalog: Catalog, max_sessions: usize, persist: Persist) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                catalog,
                persist,
                max_sessions,
                state: Mutex::new(State::default()),
                quick_match: Mutex::new(HashMap::new()),
                live: watch::channel(0).0,
                drained: watch::channel(false).0,
            }),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn persist(&self) -> &Persist {
        &self.inner.persist
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a new session of `game` with an optional game config. The guest
    /// starts on the guest pool; no lock is held meanwhile.
    pub async fn create(
        &self,
        game: &str,
        config: Option<&GameValue>,
    ) -> Result<SessionHandle, SessionError> {
        let entry = self
            .inner
            .catalog
            .get(game)
            .ok_or_else(|| SessionError::UnknownGame(game.to_owned()))?;
        // Cluster mode with the database out of reach: the new session could not become
        // durable (its id would never be answered); say so now instead of hanging.
        if self.inner.persist.writer.unavailable() {
            return Err(SessionError::Unavailable);
        }
        let starting = {
            let mut st = self.state();
            if st.closed || st.sessions.len() + st.starting >= self.inner.max_sessions {
                return Err(SessionError::Overloaded);
            }
            st.starting += 1;
            // Gives the slot back however this ends, a dropped future included.
            Starting(self.clone())
        };
        let id = new_session_id();
        let config = config.map(value_to_msgpack).unwrap_or_default();
        let (handle, task) =
            actor::spawn(id.clone(), entry, config, self.inner.persist.clone()).await?;
        self.insert(handle.clone(), task, &[]);
        drop(starting);
        Ok(handle)
    }

    /// Take in a running session (a new one, or one restored from the store
    /// with its seats' `tokens`); it is forgotten when its actor stops.
    pub fn insert(&self, handle: SessionHandle, task: JoinHandle<()>, tokens: &[TokenHash]) {
        let id = handle.id().to_owned();
        let mut st = self.state();
        for t in tokens {
            st.tokens.insert(*t, id.clone());
        }
        let order = st.next_order;
        st.next_order += 1;
        st.sessions.insert(
            id.clone(),
            Entry {
                handle: handle.clone(),
                order,
            },
        );
        self.inner.live.send_replace(st.sessions.len());
        drop(st);
        // Forget the session (and its tokens) once its actor stops.
        let me = self.clone();
        tokio::spawn(async move {
            let _ = task.await;
            me.remove(&id);
        });
    }

    /// Handles of the live sessions of `game`.
    pub fn handles_of(&self, game: &str) -> Vec<SessionHandle> {
        self.state()
            .sessions
            .values()
            .filter(|e| e.handle.game() == game)
            .map(|e| e.handle.clone())
            .collect()
    }

    fn remove(&self, id: &str) {
        let mut st = self.state();
        st.sessions.remove(id);
        st.tokens.retain(|_, s| s != id);
        self.inner.live.send_replace(st.sessions.len());
    }

    pub fn get(&self, id: &str) -> Option<SessionHandle> {
        self.state().sessions.get(id).map(|e| e.handle.clone())
    }

    /// Live sessions, oldest first, optionally of one game.
    pub fn list(&self, game: Option<&str>) -> Vec<SessionInfo> {
        let st = self.state();
        let mut entries: Vec<&Entry> = st
            .sessions
            .values()
            .filter(|e| game.is_none_or(|g| e.handle.game() == g))
            .filter(|e| self.serving(&e.handle))
            .collect();
        entries.sort_by_key(|e| e.order);
        entries
            .into_iter()
            .map(|e| {
                let s = e.handle.status();
                SessionInfo {
                    id: e.handle.id().to_owned(),
                    game: e.handle.game().to_owned(),
                    players: s.players,
                    max_players: s.max_players,
                    open: s.open(),
                    rules_version: s.rules_version,
                    tick: s.tick,
                }
            })
            .collect()
    }

    /// The session still runs here: not stopped (its actor may be finishing), and not
    /// known to be owned by another node now (the cluster's gate says lost).
    fn serving(&self, h: &SessionHandle) -> bool {
        let s = h.status();
        !s.ended
            && !self
                .inner
                .persist
                .gate
                .as_ref()
                .is_some_and(|g| g.check(h.id(), s.epoch) == super::gate::Admission::Lost)
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.state().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take a seat in session `id`.
    pub async fn join(
        &self,
        id: &str,
        name: String,
        conn: Outbound,
    ) -> Result<(SessionHandle, Joined), SessionError> {
        self.join_holding(id, name, conn, SeatHold::none()).await
    }

    /// [`Registry::join`], releasing `hold` once the session counts the seat.
    async fn join_holding(
        &self,
        id: &str,
        name: String,
        conn: Outbound,
        hold: SeatHold,
    ) -> Result<(SessionHandle, Joined), SessionError> {
        let handle = self
            .get(id)
            .ok_or_else(|| SessionError::UnknownSession(id.to_owned()))?;
        let joined = handle.join(name, conn, hold).await?;
        self.state()
            .tokens
            .insert(joined.token_hash, handle.id().to_owned());
        Ok((handle, joined))
    }

    /// Take a seat in the oldest open session of `game`, or in a new one.
    ///
    /// The pick is a short synchronous section that reserves the seat; the
    /// join itself (which waits for the session to make it durable) runs
    /// outside it, so quick-matches into busy sessions proceed side by side.
    /// A pick counts a session's seats as those it has taken plus those
    /// reserved and not yet taken: the session releases a reservation in the
    /// step that takes its seat, so quick-matches arriving together fill one
    /// session before another is started.
    pub async fn quick_match(
        &self,
        game: &str,
        name: String,
        conn: Outbound,
    ) -> Result<(SessionHandle, Joined), SessionError> {
        if self.inner.catalog.get(game).is_none() {
            return Err(SessionError::UnknownGame(game.to_owned()));
        }
        // A session can fill up, end or refuse between the pick and the join
        // (a direct join took the seat): pick again, a bounded number of times.
        const ATTEMPTS: usize = 8;
        let mut last = SessionError::Full;
        for _ in 0..ATTEMPTS {
            let reservation = self.reserve_seat(game).await?;
            let id = reservation.id.clone();
            // The session releases the reservation when it takes the seat, not
            // when the join returns (after its durable write): until then the
            // seat would count twice, once reserved and once taken.
            let hold = SeatHold::new(reservation);
            match self
                .join_holding(&id, name.clone(), conn.clone(), hold)
                .await
            {
                Ok(done) => return Ok(done),
                Err(
                    e @ (SessionError::Full
                    | SessionError::Ended
                    | SessionError::Rejected(_)
                    | SessionError::UnknownSession(_)),
                ) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Reserve a seat for a quick-match of `game`: in the oldest session with
    /// a seat neither taken nor reserved, or in a session started for it.
    async fn reserve_seat(&self, game: &str) -> Result<Reservation, SessionError> {
        let pick = self
            .inner
            .quick_match
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(game.to_owned())
            .or_default()
            .clone();
        let _pick = pick.lock().await;
        let picked = {
            let mut st = self.state();
            let mut entries: Vec<&Entry> = st
                .sessions
                .values()
                .filter(|e| e.handle.game() == game)
                .collect();
            entries.sort_by_key(|e| e.order);
            let free = entries.into_iter().find_map(|e| {
                let s = e.handle.status();
                let reserved = st.reserved.get(e.handle.id()).copied().unwrap_or(0);
                (!s.ended && s.players + reserved < s.max_players).then(|| e.handle.id().to_owned())
            });
            if let Some(id) = &free {
                *st.reserved.entry(id.clone()).or_default() += 1;
            }
            free
        };
        let id = match picked {
            Some(id) => id,
            None => {
                // Under this game's pick lock: the players arriving meanwhile
                // wait for this session instead of starting one each.
                let id = self.create(game, None).await?.id().to_owned();
                *self.state().reserved.entry(id.clone()).or_default() += 1;
                id
            }
        };
        Ok(Reservation {
            registry: self.clone(),
            id,
        })
    }

    /// Take back the seat `token` belongs to, from any connection.
    pub async fn resume(
        &self,
        token: &str,
        conn: Outbound,
    ) -> Result<(SessionHandle, Joined), SessionError> {
        let hash = hash_token(token);
        let handle = {
            let st = self.state();
            let id = st.tokens.get(&hash).ok_or(SessionError::BadToken)?;
            st.sessions
                .get(id)
                .map(|e| e.handle.clone())
                .ok_or(SessionError::BadToken)?
        };
        let joined = handle.resume(hash, conn).await?;
        Ok((handle, joined))
    }

    /// Give a seat up for good; its token stops working.
    pub async fn leave(
        &self,
        handle: &SessionHandle,
        player: PlayerId,
        token_hash: TokenHash,
    ) -> Result<(), SessionError> {
        handle.leave(player).await?;
        self.state().tokens.remove(&token_hash);
        Ok(())
    }

    /// Refuse new sessions, tell every session to stop, and wait until all
    /// actors have stopped. Callers bound the wait with their grace period.
    pub async fn shutdown(&self) {
        let handles: Vec<SessionHandle> = {
            let mut st = self.state();
            st.closed = true;
            st.sessions.values().map(|e| e.handle.clone()).collect()
        };
        tracing::info!(sessions = handles.len(), "stopping sessions");
        for h in &handles {
            h.shutdown().await;
        }
        let mut live = self.inner.live.subscribe();
        let _ = live.wait_for(|n| *n == 0).await;
        self.inner.drained.send_replace(true);
    }

    /// Becomes `true` when [`Registry::shutdown`] has stopped every session:
    /// connections wait for it to deliver the last acks before closing.
    pub fn drained(&self) -> watch::Receiver<bool> {
        self.inner.drained.subscribe()
    }
}
