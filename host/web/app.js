// Minotaur browser client: lobby, tictactoe board, arena canvas.
// Talks the player protocol (docs/PROTOCOL.md) as JSON text frames on /ws.
// Plain script, no build step: the node embeds this file and serves it at /app.js.
'use strict';

const $ = (id) => document.getElementById(id);
// The reconnect token is the only way back to a seat, so it lives in
// localStorage: a refresh, a crash or a node restart must not lose the seat.
const SEAT_KEY = 'minotaur.seat';
const NAME_KEY = 'minotaur.name';
const BACKOFF_MIN = 250;
const BACKOFF_MAX = 5000;

const st = {
  ws: null,
  welcomed: false,
  backoff: BACKOFF_MIN,
  resuming: false,      // a resume is in flight; its error means the seat is gone
  wantCreate: null,     // game we asked to create; join it once `created` arrives
  seat: null,           // {session, game, player} while we hold (or held) a seat
  ended: null,          // the `ended` frame of the current session
  view: null,
  views: 0,             // views received in this seat (a tick stand-in for tests)
  seq: 0,
  dir: [0, 0],
  keys: new Set(),
  games: [],
  sessionsJson: {},     // last rendered session list per game, to skip no-op redraws
};

// ---------- small helpers ----------

function status(text, kind = 'info') {
  const el = $('status');
  el.textContent = text;
  el.dataset.kind = kind;
}

function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = text;
  // Lobby actions need a live socket; disabling them is clearer than queueing.
  document.querySelectorAll('[data-needs-ws]').forEach((b) => { b.disabled = state !== 'open'; });
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'onclick') e.onclick = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function loadSeat() {
  try { return JSON.parse(localStorage.getItem(SEAT_KEY)); } catch { return null; }
}
function saveSeat(s) { localStorage.setItem(SEAT_KEY, JSON.stringify(s)); }
function clearSeat() { localStorage.removeItem(SEAT_KEY); }

function playerName() {
  return $('name').value.trim() || 'player';
}

// ---------- websocket ----------

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  st.ws = ws;
  st.welcomed = false;
  setConn('connecting', 'connecting…');
  ws.onmessage = (e) => {
    if (typeof e.data !== 'string') return; // we only speak JSON, so never expect binary
    let msg;
    try { msg = JSON.parse(e.data); } catch { return; }
    handle(msg);
  };
  ws.onclose = () => {
    if (st.ws !== ws) return;
    st.ws = null;
    st.welcomed = false;
    st.resuming = false;
    // Jittered exponential backoff: a restarting node is a short pause, and a
    // crowd of pages does not reconnect in lockstep.
    const delay = Math.round(st.backoff * (0.75 + Math.random() * 0.5));
    st.backoff = Math.min(st.backoff * 2, BACKOFF_MAX);
    setConn('closed', `offline, retry in ${(delay / 1000).toFixed(1)}s`);
    setTimeout(connect, delay);
  };
}

function send(msg) {
  if (!st.ws || !st.welcomed) {
    status('Not connected yet; try again in a moment.', 'error');
    return false;
  }
  st.ws.send(JSON.stringify(msg));
  return true;
}

function sendInput(data) {
  st.seq += 1;
  send({ type: 'input', data, seq: st.seq });
}

function handle(m) {
  switch (m.type) {
    case 'welcome': {
      st.welcomed = true;
      st.backoff = BACKOFF_MIN;
      setConn('open', `online · ${m.node || 'node'}`);
      // Counts connections, so a test can tell a reconnect from a socket that never dropped.
      $('conn').dataset.welcomes = String(+($('conn').dataset.welcomes || 0) + 1);
      if (!st.games.length) loadGames(); // the node was down when the page loaded
      const saved = loadSeat();
      if (saved && saved.token) {
        st.resuming = true;
        status('Resuming your seat…');
        send({ type: 'resume', token: saved.token });
      } else if (!st.seat) {
        showLobby();
      }
      break;
    }
    case 'created':
      if (st.wantCreate === m.game) {
        st.wantCreate = null;
        send({ type: 'join', session: m.session, name: playerName() });
      }
      break;
    case 'joined': {
      const same = st.seat && st.seat.session === m.session;
      st.resuming = false;
      st.seat = { session: m.session, game: m.game, player: m.player, rules: m.rules_version };
      saveSeat({ token: m.token, session: m.session, game: m.game });
      if (!same) { st.view = null; st.views = 0; st.ended = null; st.dir = [0, 0]; }
      showPlay();
      status(m.resumed ? `Welcome back: seat resumed in ${m.session}.` : `Joined ${m.game} session ${m.session}.`);
      break;
    }
    case 'view':
      st.view = m.data;
      st.views += 1;
      render();
      break;
    case 'message':
      status(typeof m.data === 'string' ? m.data : `game: ${JSON.stringify(m.data)}`);
      break;
    case 'ended':
      st.ended = { winners: m.winners || [], detail: m.detail };
      // The seat is finished: a later refresh must land in the lobby, not resume.
      clearSeat();
      render();
      break;
    case 'rules':
      if (st.seat) st.seat.rules = m.rules_version;
      status(`The game rules were updated to version ${m.rules_version}.`);
      break;
    case 'left':
      st.seat = null;
      clearSeat();
      showLobby();
      break;
    case 'error':
      onError(m);
      break;
    default:
      break; // ack, pong and future types need no UI
  }
}

function onError(m) {
  const gone = ['bad_token', 'unknown_session', 'session_ended'];
  if (st.resuming && gone.includes(m.code)) {
    // The stored seat no longer exists: forget it and fall back to the lobby.
    st.resuming = false;
    clearSeat();
    if (!st.ended) { st.seat = null; showLobby(); }
    status(`Your previous seat is gone (${m.code}).`, 'error');
    return;
  }
  if (!st.seat && (m.code === 'not_seated' || m.code === 'session_ended')) return; // stray leave
  status(`${m.code}: ${m.message || ''}`, 'error');
}

// ---------- lobby ----------

async function fetchJson(url, opts) {
  const r = await fetch(url, opts);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

async function loadGames() {
  try {
    st.games = await fetchJson('/api/games');
  } catch (e) {
    $('games').replaceChildren(el('p', { class: 'hint', text: `Could not load games (${e.message}).` }));
    return;
  }
  const rows = st.games.map((g) => {
    const players = g.min_players === g.max_players ? `${g.max_players}` : `${g.min_players}–${g.max_players}`;
    const pace = g.tick_hz ? `real-time ${g.tick_hz} Hz` : 'turn-based';
    return el('div', { class: 'game-row', 'data-game': g.name },
      el('span', { class: 'name', text: g.name }),
      el('span', { class: 'meta', text: `${players} players · ${pace} · rules v${g.rules_version}` }),
      el('button', { 'data-testid': `quick-${g.name}`, 'data-needs-ws': '', onclick: () => quickMatch(g.name) }, 'Quick match'),
      el('button', { class: 'ghost', 'data-testid': `create-${g.name}`, 'data-needs-ws': '', onclick: () => create(g.name) }, 'Create'),
      el('ul', { class: 'sessions', id: `sessions-${g.name}`, 'data-testid': `sessions-${g.name}` }));
  });
  $('games').replaceChildren(...(rows.length ? rows : [el('p', { class: 'hint', text: 'No games installed.' })]));
  st.sessionsJson = {};
  setConn($('conn').dataset.state, $('conn').textContent); // apply enabled state to new buttons
  refreshSessions();
}

async function refreshSessions() {
  for (const g of st.games) {
    let list;
    try { list = await fetchJson(`/api/sessions?game=${encodeURIComponent(g.name)}`); } catch { continue; }
    const open = list.filter((s) => s.open !== false);
    const json = JSON.stringify(open);
    if (st.sessionsJson[g.name] === json) continue; // unchanged: keep the DOM stable
    st.sessionsJson[g.name] = json;
    const items = open.map((s) => el('li', { 'data-session': s.id },
      `${s.id} · ${s.players}/${s.max_players} players `,
      el('button', { class: 'ghost', 'data-testid': `join-${s.id}`, 'data-needs-ws': '', onclick: () => joinSession(s.id) }, 'Join')));
    $(`sessions-${g.name}`).replaceChildren(...items);
    setConn($('conn').dataset.state, $('conn').textContent);
  }
}

function quickMatch(game) { send({ type: 'join', game, name: playerName() }); }
function joinSession(session) { send({ type: 'join', session, name: playerName() }); }
function create(game) { st.wantCreate = game; send({ type: 'create', game }); }

function leave() {
  // After the end there is nothing to give up; leave anyway so the connection
  // is free for the next join (stray not_seated errors are ignored).
  if (st.seat) send({ type: 'leave' });
  st.seat = null;
  clearSeat();
  showLobby();
}

function showLobby() {
  $('lobby').hidden = false;
  $('play').hidden = true;
  st.view = null;
  st.ended = null;
  refreshSessions();
}

function showPlay() {
  $('lobby').hidden = true;
  $('play').hidden = false;
  $('game-name').textContent = st.seat.game;
  $('session-id').textContent = st.seat.session;
  $('player-id').textContent = String(st.seat.player);
  render();
}

// ---------- game views ----------

// Which renderer a game uses; by name prefix so a renamed rules version
// (e.g. `arena-v2` next to `arena`) still gets its board.
function kind(game) {
  if (!game) return 'raw';
  if (game.startsWith('tictactoe')) return 'tictactoe';
  if (game.startsWith('arena')) return 'arena';
  return 'raw';
}

function render() {
  if (!st.seat) return;
  const game = kind(st.seat.game);
  $('ttt').hidden = game !== 'tictactoe';
  $('arena').hidden = game !== 'arena';
  $('raw-view').hidden = game === 'tictactoe' || game === 'arena' || !st.view;
  if (game === 'tictactoe') renderTtt();
  else if (game === 'arena') renderArena();
  else $('raw-view').textContent = JSON.stringify(st.view, null, 2);
  renderResult();
}

function renderResult() {
  const r = $('result');
  const e = st.ended;
  r.hidden = !e;
  $('leave').textContent = e ? 'Back to lobby' : 'Leave';
  if (!e) { delete r.dataset.outcome; return; }
  const me = st.seat && st.seat.player;
  const outcome = e.winners.length === 0 ? 'draw' : e.winners.some((w) => String(w) === String(me)) ? 'won' : 'lost';
  r.dataset.outcome = outcome;
  const detail = describeDetail(e.detail);
  r.textContent = { won: 'You won!', lost: 'You lost.', draw: 'Draw.' }[outcome] + (detail ? ` (${detail})` : '');
}

// `detail` is the game's own value: tictactoe sends its Outcome (serde's
// externally tagged enum: "Draw" or {"Win": {mark, line}} or {"Forfeit": {mark}}),
// arena a {scoreboard, ticks} result.
function describeDetail(d) {
  if (!d) return '';
  if (typeof d === 'string') return d === 'Draw' ? '' : d;
  if (d.Win) return `${d.Win.mark} completed a line`;
  if (d.Forfeit) return 'the other player left';
  if (d.ticks !== undefined) return `after ${d.ticks} ticks`;
  return d.reason || '';
}

// Game views are the game's own types (see games/*/src/lib.rs). Read them
// defensively so a missing field degrades the display instead of throwing.
function tttModel(v) {
  // games/tictactoe: {board: 9 × null|"X"|"O", you: your mark, turn: mark or
  // null (not started yet, or over), outcome: null or the end detail}.
  v = v || {};
  const board = Array.from({ length: 9 }, (_, i) => (v.board && v.board[i]) || null);
  const mark = v.you ?? null;
  const turn = v.turn ?? null;
  const myTurn = turn !== null && turn === mark;
  const win = v.outcome && v.outcome.Win;
  return { board, mark, turn, myTurn, line: win ? win.line : [], over: !!v.outcome };
}

function renderTtt() {
  const m = tttModel(st.view);
  const board = $('board');
  if (board.children.length !== 9) {
    board.replaceChildren(...Array.from({ length: 9 }, (_, i) =>
      el('button', { 'data-cell': String(i), 'data-testid': `cell-${i}`, 'aria-label': `cell ${i}`, onclick: () => sendInput({ cell: i }) })));
  }
  const live = !st.ended && m.myTurn && !!st.view;
  m.board.forEach((c, i) => {
    const b = board.children[i];
    b.textContent = c || '';
    b.dataset.mark = c || '';
    b.disabled = !live || c !== null;
    b.classList.toggle('win', m.line.includes(i));
  });
  board.dataset.myTurn = String(live);
  board.dataset.mark = m.mark ?? '';
  let text;
  if (st.ended) text = 'Game over.';
  else if (!st.view) text = 'Waiting for the game…';
  else if (m.over) text = 'Game over.';
  else if (m.turn === null) text = `You are ${m.mark ?? '?'}. Waiting for an opponent…`;
  else if (m.myTurn) text = `Your turn (${m.mark}).`;
  else text = `You are ${m.mark}. Waiting for ${m.turn} to play…`;
  $('turn').textContent = text;
}

// A positioned thing ({x, y, ...}) with numeric coordinates, or null.
function pt(o) {
  if (!o || o.x === undefined) return null;
  return { ...o, x: +o.x, y: +o.y };
}

// The arena view does not carry the field size or the view radius, so use the
// game's defaults (games/arena Config::default); a view that carries them wins.
const ARENA_SIZE = 1000;
const ARENA_VIEW_RADIUS = 200;

function arenaModel(v) {
  // games/arena: {you: {id,x,y}|null, others: [{id,x,y}], coins: [{x,y}],
  // scoreboard: [{id,name,score}] (best first), boost_left, cooldown, over}.
  v = v || {};
  const scores = (v.scoreboard || []).map((s) => ({ id: s.id, name: s.name || `#${s.id}`, score: s.score ?? 0 }));
  const names = new Map(scores.map((s) => [String(s.id), s.name]));
  const me = pt(v.you) || { x: 0, y: 0 };
  const others = (v.others || []).map(pt).filter(Boolean).map((p) => ({ ...p, name: names.get(String(p.id)) }));
  const coins = (v.coins || []).map(pt).filter(Boolean);
  const radius = +(v.view_radius ?? ARENA_VIEW_RADIUS);
  const size = +(v.size ?? ARENA_SIZE);
  return { me, others, coins, radius, world: { x: size, y: size }, scores, tick: v.tick,
           boost: v.boost_left || 0, cooldown: v.cooldown || 0 };
}

function renderArena() {
  const cv = $('arena-canvas');
  const m = arenaModel(st.view);
  // Test hooks: the tick proves views are flowing, x/y that input moves us.
  cv.dataset.tick = String(m.tick ?? st.views);
  cv.dataset.x = String(m.me.x);
  cv.dataset.y = String(m.me.y);
  cv.dataset.coins = String(m.coins.length);
  cv.dataset.players = String(m.others.length);
  const ctx = cv.getContext('2d');
  const W = cv.width, H = cv.height;
  const scale = (Math.min(W, H) / 2 - 12) / Math.max(m.radius, 1);
  const sx = (x) => W / 2 + (x - m.me.x) * scale;
  const sy = (y) => H / 2 + (y - m.me.y) * scale;
  ctx.fillStyle = '#0b0d12';
  ctx.fillRect(0, 0, W, H);
  // The fog: only the circle we can see is lit.
  ctx.save();
  ctx.beginPath();
  ctx.arc(W / 2, H / 2, m.radius * scale, 0, Math.PI * 2);
  ctx.fillStyle = '#10151d'; // beyond the field's edge
  ctx.fill();
  ctx.clip();
  ctx.fillStyle = '#1b2636';
  ctx.fillRect(sx(0), sy(0), m.world.x * scale, m.world.y * scale);
  ctx.strokeStyle = 'rgba(255,255,255,0.06)';
  ctx.lineWidth = 1;
  const step = Math.max(1, Math.round(m.radius / 5));
  for (let g = Math.floor((m.me.x - m.radius) / step) * step; g <= m.me.x + m.radius; g += step) {
    ctx.beginPath(); ctx.moveTo(sx(g), 0); ctx.lineTo(sx(g), H); ctx.stroke();
  }
  for (let g = Math.floor((m.me.y - m.radius) / step) * step; g <= m.me.y + m.radius; g += step) {
    ctx.beginPath(); ctx.moveTo(0, sy(g)); ctx.lineTo(W, sy(g)); ctx.stroke();
  }
  ctx.strokeStyle = '#c0572b'; // the field's edge, so players see the wall they bump into
  ctx.lineWidth = 3;
  ctx.strokeRect(sx(0), sy(0), m.world.x * scale, m.world.y * scale);
  const dot = (p, r, fill, label) => {
    ctx.beginPath();
    ctx.arc(sx(p.x), sy(p.y), r, 0, Math.PI * 2);
    ctx.fillStyle = fill;
    ctx.fill();
    if (label) {
      ctx.fillStyle = '#e8e8e8';
      ctx.font = '12px system-ui, sans-serif';
      ctx.textAlign = 'center';
      ctx.fillText(label, sx(p.x), sy(p.y) - r - 4);
    }
  };
  m.coins.forEach((c) => dot(c, 5, '#f2c230'));
  m.others.forEach((p) => dot(p, 9, '#e0544b', p.name ?? `#${p.id}`));
  ctx.restore();
  dot(m.me, m.boost ? 11 : 9, m.boost ? '#9fd0ff' : '#4fa3ff', 'you');
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = 2;
  ctx.stroke();
  ctx.fillStyle = '#8a93a3';
  ctx.font = '12px ui-monospace, monospace';
  ctx.textAlign = 'left';
  const boost = m.boost ? 'BOOST' : m.cooldown ? `boost in ${(m.cooldown / 20).toFixed(1)}s` : 'boost ready (space)';
  ctx.fillText(`view ${cv.dataset.tick}  (${m.me.x.toFixed(0)}, ${m.me.y.toFixed(0)})  ${boost}`, 8, H - 8);

  const me = String(st.seat.player);
  const rows = [...m.scores].sort((a, b) => b.score - a.score).map((s) =>
    el('tr', { 'data-me': String(String(s.id) === me) }, el('td', { text: s.name }), el('td', { text: String(s.score) })));
  $('scoreboard').replaceChildren(el('tr', {}, el('th', { text: 'player' }), el('th', { text: 'score' })), ...rows);
}

// Arrow keys / WASD set a direction; only changes are sent, so holding a key
// costs one input, not one per keyboard auto-repeat.
const KEY_DIRS = {
  ArrowUp: [0, -1], KeyW: [0, -1], ArrowDown: [0, 1], KeyS: [0, 1],
  ArrowLeft: [-1, 0], KeyA: [-1, 0], ArrowRight: [1, 0], KeyD: [1, 0],
};

function updateDir() {
  let dx = 0, dy = 0;
  for (const k of st.keys) { dx += KEY_DIRS[k][0]; dy += KEY_DIRS[k][1]; }
  const dir = [Math.sign(dx), Math.sign(dy)];
  if (dir[0] === st.dir[0] && dir[1] === st.dir[1]) return;
  st.dir = dir;
  if (st.seat && kind(st.seat.game) === 'arena' && !st.ended) sendInput({ dir });
}

function onKey(e, down) {
  if (!st.seat || kind(st.seat.game) !== 'arena' || st.ended) return;
  if (e.target instanceof HTMLInputElement) return; // typing a name is not steering
  if (e.code === 'Space') {
    e.preventDefault();
    if (down && !e.repeat) sendInput({ boost: true });
    return;
  }
  if (!KEY_DIRS[e.code]) return;
  e.preventDefault(); // arrows must not scroll the page
  if (down) st.keys.add(e.code); else st.keys.delete(e.code);
  updateDir();
}

// ---------- start ----------

function init() {
  const name = $('name');
  name.value = localStorage.getItem(NAME_KEY) || `player-${Math.floor(100 + Math.random() * 900)}`;
  name.addEventListener('change', () => localStorage.setItem(NAME_KEY, name.value.trim()));
  $('leave').onclick = leave;
  addEventListener('keydown', (e) => onKey(e, true));
  addEventListener('keyup', (e) => onKey(e, false));
  // A lost focus never delivers keyup: stop rather than run into a wall forever.
  addEventListener('blur', () => { st.keys.clear(); updateDir(); });
  loadGames();
  // Keep the open-session list fresh while someone is looking at the lobby.
  setInterval(() => { if (!$('lobby').hidden) refreshSessions(); }, 2000);
  connect();
}

init();
