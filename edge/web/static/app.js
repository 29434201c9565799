// The natter demo chat page: plain DOM code on top of the SDK, no build step.
// It connects to the WebSocket endpoint of its own origin, or to ?ws=URL.
import { connect } from '/natter.js';

const params = new URLSearchParams(location.search);
const WS_URL = params.get('ws') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const NAME_RE = /^[A-Za-z0-9_:-]{1,128}$/;
// Messages per history page (?page=N, for trying out "load older").
const PAGE = Math.min(500, Math.max(1, Number(params.get('page')) || 50));
// How long a typing indicator stays after the last typing frame.
const TYPING_SHOWN_MS = 4000;
// sessionStorage: per tab, kept across a reload, so two tabs can be two users.
const store = window.sessionStorage;

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

const app = {
  client: null,
  me: null,
  // name -> {msgs: Map<seq, msg>, members: Set<string>, unread, note, more
  // (older messages to load), readSeq (the user's read position as known
  // here), typing: Map<user, until>}
  rooms: new Map(),
  dms: new Map(), // peer -> {msgs: [], unread}
  current: null, // {kind: 'room'|'dm', name}
  pending: [], // outgoing messages not acknowledged yet
};
window.natterDemo = app; // for the console (and the browser test)
app.render = () => renderAll();

// ---------------------------------------------------------------------------
// Login

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('name').value.trim();
  if (!NAME_RE.test(name)) return;
  store.setItem('natter.name', name);
  start(name);
});

$('logout').addEventListener('click', () => {
  if (app.client) app.client.close();
  app.client = null;
  store.clear();
  app.rooms.clear();
  app.dms.clear();
  app.current = null;
  app.pending = [];
  $('app').hidden = true;
  $('app').classList.remove('show-rooms', 'show-members');
  $('me').hidden = true;
  $('login').hidden = false;
  $('name').value = '';
  $('name').focus();
  renderAll();
});

function start(name) {
  app.me = name;
  $('login').hidden = true;
  $('app').hidden = false;
  $('me').hidden = false;
  $('me-name').textContent = name;
  paintAvatar($('me-avatar'), name);

  const client = connect(WS_URL, { user: name });
  app.client = client;
  client.on('state', renderState);
  renderState(client.state);
  client.on('welcome', (w) => {
    app.me = w.user;
    $('me-name').textContent = w.user;
    // Presence may have changed while we were away.
    for (const room of app.rooms.keys()) refreshMembers(room);
    refreshUnread();
  });
  client.on('msg', onRoomMessage);
  client.on('typing', onTyping);
  client.on('read', onRead);
  client.on('dm', onDirectMessage);
  client.on('presence', onPresence);
  client.on('broadcast', (b) => notice(`${b.from} to everyone: ${bodyText(b.body)}`));
  client.on('bye', (b) => notice(`server: ${b.message || b.code}`));
  client.on('error', (err) => {
    // Socket failures while reconnecting show in the state indicator.
    if (err.code !== 'transport') notice(`${err.code || 'error'}: ${err.message}`);
  });

  let rooms = [];
  try {
    rooms = JSON.parse(store.getItem('natter.rooms') || '[]');
  } catch { /* start over */ }
  if (!rooms.length) rooms = ['lobby'];
  const selected = store.getItem('natter.current');
  for (const r of rooms) openRoom(r, { select: false });
  select(selected && selected.startsWith('room:') && rooms.includes(selected.slice(5))
    ? { kind: 'room', name: selected.slice(5) }
    : { kind: 'room', name: rooms[0] });
}

// ---------------------------------------------------------------------------
// Rooms

// The unread count of every room from the server (after each connection):
// the room on screen is marked read instead.
async function refreshUnread() {
  let counts;
  try {
    counts = await app.client.unread();
  } catch { return; /* the next connection asks again */ }
  for (const [name, room] of app.rooms) {
    if (typeof counts[name] !== 'number') continue;
    if (isCurrent('room', name)) markRead(name);
    else room.unread = counts[name];
  }
  renderLists();
}

// The room is on screen: its read position moves to the last message the
// SDK has delivered (or the latest the page shows).
function markRead(name) {
  const room = app.rooms.get(name);
  if (!room || !app.client) return;
  room.unread = 0;
  let seq = app.client.lastSeq(name) || 0;
  for (const q of room.msgs.keys()) if (q > seq) seq = q;
  if (!seq || seq <= room.readSeq || document.visibilityState === 'hidden') return;
  room.readSeq = seq;
  app.client.read(name, seq).catch(() => { room.readSeq = 0; });
}

// Another connection of this user read a room up to seq.
function onRead(r) {
  const room = app.rooms.get(r.room);
  if (!room || typeof r.seq !== 'number') return;
  room.readSeq = Math.max(room.readSeq, r.seq);
  if ((app.client.lastSeq(r.room) || 0) <= room.readSeq) room.unread = 0;
  else {
    let n = 0;
    for (const m of room.msgs.values()) if (m.seq > room.readSeq && m.from !== app.me) n++;
    room.unread = Math.min(room.unread, n);
  }
  renderLists();
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && app.current && app.current.kind === 'room') markRead(app.current.name);
});

function saveRooms() {
  store.setItem('natter.rooms', JSON.stringify([...app.rooms.keys()]));
}

async function openRoom(name, { select: sel = true } = {}) {
  if (!app.rooms.has(name)) {
    app.rooms.set(name, { msgs: new Map(), members: new Set(), presenceLogs: new Set(), unread: 0, note: '', more: false, loadingOlder: false, readSeq: 0, typing: new Map() });
    saveRooms();
  }
  if (sel) select({ kind: 'room', name });
  renderLists();
  let joined;
  try {
    joined = await app.client.join(name);
  } catch (err) {
    notice(`cannot join ${name}: ${err.code} ${err.message}`);
    app.rooms.delete(name);
    saveRooms();
    if (app.current && app.current.kind === 'room' && app.current.name === name) select(null);
    renderAll();
    return;
  }
  await Promise.all([loadHistory(name, joined.seq), refreshMembers(name)]);
}

async function loadHistory(name, upTo) {
  const room = app.rooms.get(name);
  if (!room || !upTo) return;
  try {
    const messages = await app.client.history(name, { before: upTo + 1, limit: PAGE });
    for (const m of messages) room.msgs.set(m.seq, m);
    room.more = messages.more;
    room.note = '';
  } catch (err) {
    room.note = `Earlier messages are not available (${err.code}).`;
  }
  if (isCurrent('room', name)) {
    renderMessages();
    markRead(name);
  }
}

// "Load older": the page of messages before the oldest one shown, keeping
// the messages on screen where they are.
async function loadOlder(name) {
  const room = app.rooms.get(name);
  if (!room || room.loadingOlder || !room.msgs.size) return;
  room.loadingOlder = true;
  if (isCurrent('room', name)) renderMessages({ keepScroll: true });
  const oldest = Math.min(...room.msgs.keys());
  try {
    const messages = await app.client.history(name, { before: oldest, limit: PAGE });
    for (const m of messages) room.msgs.set(m.seq, m);
    room.more = messages.more;
  } catch (err) {
    notice(`cannot load older messages: ${err.code}`);
  } finally {
    room.loadingOlder = false;
  }
  if (isCurrent('room', name)) renderMessages({ keepScroll: true });
}

// The members reply is a snapshot taken at some point while the request was
// in flight, and presence events come by another path: events received
// meanwhile are replayed on top of the snapshot, so none is lost.
async function refreshMembers(name) {
  const room = app.rooms.get(name);
  if (!room) return;
  const log = [];
  room.presenceLogs.add(log);
  try {
    const users = await app.client.members(name);
    if (app.rooms.get(name) !== room) return;
    room.members = new Set(users);
    for (const p of log) applyPresence(room, p);
    if (isCurrent('room', name)) renderMembers();
  } catch { /* the next presence event or reconnect fixes it */ } finally {
    room.presenceLogs.delete(log);
  }
}

function applyPresence(room, p) {
  if (p.event === 'join') room.members.add(p.user);
  else if (p.event === 'leave') room.members.delete(p.user);
}

function onRoomMessage(m) {
  const room = app.rooms.get(m.room);
  if (!room) return;
  room.msgs.set(m.seq, m);
  // A message ends its sender's typing.
  if (room.typing.delete(m.from) && isCurrent('room', m.room)) renderTyping();
  if (isCurrent('room', m.room)) {
    appendOrRender(m);
    markRead(m.room);
  } else if (m.from !== app.me && m.seq > room.readSeq) {
    room.unread++;
    renderLists();
  }
}

// ---------------------------------------------------------------------------
// Typing

function onTyping(t) {
  const room = app.rooms.get(t.room);
  if (!room || t.user === app.me) return; // this user on another device
  room.typing.set(t.user, Date.now() + TYPING_SHOWN_MS);
  if (isCurrent('room', t.room)) renderTyping();
  setTimeout(() => {
    if (isCurrent('room', t.room)) renderTyping();
  }, TYPING_SHOWN_MS + 50);
}

function renderTyping() {
  const line = $('typing');
  const c = app.current;
  const room = c && c.kind === 'room' ? app.rooms.get(c.name) : null;
  const now = Date.now();
  const users = [];
  if (room) {
    for (const [u, until] of room.typing) {
      if (until > now) users.push(u);
      else room.typing.delete(u);
    }
  }
  users.sort();
  let text = '';
  if (users.length === 1) text = `${users[0]} is typing…`;
  else if (users.length === 2) text = `${users[0]} and ${users[1]} are typing…`;
  else if (users.length > 2) text = `${users.length} people are typing…`;
  line.textContent = text;
  line.classList.toggle('active', !!text);
}

$('text').addEventListener('input', () => {
  const c = app.current;
  if (!app.client || !c || c.kind !== 'room' || !$('text').value.trim()) return;
  app.client.typing(c.name).catch(() => { /* not joined yet, or closed */ });
}); 

function onPresence(p) {
  const room = app.rooms.get(p.room);
  if (!room) return;
  applyPresence(room, p);
  for (const log of room.presenceLogs) log.push(p);
  if (isCurrent('room', p.room)) renderMembers();
}

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('room-input').value.trim();
  if (!NAME_RE.test(name)) return;
  $('room-input').value = '';
  openRoom(name);
});

$('leave').addEventListener('click', async () => {
  if (!app.current || app.current.kind !== 'room') return;
  const name = app.current.name;
  app.rooms.delete(name);
  saveRooms();
  const next = app.rooms.keys().next();
  select(next.done ? null : { kind: 'room', name: next.value });
  try {
    await app.client.leave(name);
  } catch (err) {
    notice(`leave ${name}: ${err.code}`);
  }
});

// ---------------------------------------------------------------------------
// Direct messages

function dmThread(peer) {
  let t = app.dms.get(peer);
  if (!t) app.dms.set(peer, (t = { msgs: [], unread: 0 }));
  return t;
}

function onDirectMessage(m) {
  const peer = m.from === app.me ? m.to : m.from;
  const t = dmThread(peer);
  t.msgs.push(m);
  if (isCurrent('dm', peer)) appendOrRender(m);
  else {
    t.unread++;
    renderLists();
  }
}

$('dm-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const peer = $('dm-user').value.trim();
  if (!NAME_RE.test(peer)) return;
  $('dm-user').value = '';
  openDm(peer);
});

function openDm(peer) {
  dmThread(peer);
  select({ kind: 'dm', name: peer });
}

// ---------------------------------------------------------------------------
// Composer

$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('text');
  const text = input.value.trim();
  if (!text || !app.current) return;
  input.value = '';
  const target = app.current;
  const pending = { kind: target.kind, name: target.name, text, failed: false };
  app.pending.push(pending);
  renderMessages();
  try {
    if (target.kind === 'room') {
      await app.client.send(target.name, { text });
    } else {
      const ack = await app.client.dm(target.name, { text });
      dmThread(target.name).msgs.push({ type: 'dm', from: app.me, to: target.name, seq: ack.seq, ts: Date.now(), body: { text }, status: ack.status });
    }
    app.pending.splice(app.pending.indexOf(pending), 1);
  } catch (err) {
    pending.failed = true;
    notice(`not sent: ${err.code} ${err.message}`);
  }
  if (isCurrent(target.kind, target.name)) renderMessages();
});

// ---------------------------------------------------------------------------
// Rendering

function isCurrent(kind, name) {
  return !!app.current && app.current.kind === kind && app.current.name === name;
}

function select(target) {
  app.current = target;
  if (target) {
    store.setItem('natter.current', `${target.kind}:${target.name}`);
    const t = target.kind === 'room' ? app.rooms.get(target.name) : app.dms.get(target.name);
    if (t) t.unread = 0;
    if (target.kind === 'room') markRead(target.name);
  }
  // On a phone the drawers close once a conversation is picked.
  $('app').classList.remove('show-rooms', 'show-members');
  renderAll();
  if (target && !narrow()) $('text').focus();
}

const narrow = () => window.matchMedia('(max-width: 640px)').matches;

function renderAll() {
  renderLists();
  renderHead();
  renderMessages();
  renderMembers();
  renderTyping();
}

// Phone layout: the rooms and members panels are drawers.
function toggleDrawer(which) {
  const appEl = $('app');
  const cls = `show-${which}`;
  const open = !appEl.classList.contains(cls);
  appEl.classList.remove('show-rooms', 'show-members');
  if (open) appEl.classList.add(cls);
}
$('toggle-rooms').addEventListener('click', () => toggleDrawer('rooms'));
$('toggle-members').addEventListener('click', () => toggleDrawer('members'));
$('scrim').addEventListener('click', () => $('app').classList.remove('show-rooms', 'show-members'));
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape') $('app').classList.remove('show-rooms', 'show-members');
});

function renderState(state) {
  const s = $('state');
  s.dataset.state = state;
  $('state-label').textContent = { open: 'online', connecting: 'connecting…', reconnecting: 'reconnecting…', closed: 'offline' }[state] || state;
}

function renderLists() {
  const rooms = $('rooms');
  rooms.replaceChildren();
  let total = 0;
  for (const [name, room] of app.rooms) {
    rooms.append(listItem('#', name, room.unread, isCurrent('room', name), () => select({ kind: 'room', name })));
    total += room.unread;
  }
  const dms = $('dms');
  dms.replaceChildren();
  for (const [peer, t] of app.dms) {
    dms.append(listItem('@', peer, t.unread, isCurrent('dm', peer), () => select({ kind: 'dm', name: peer })));
    total += t.unread;
  }
  // The phone layout's rooms button shows what waits elsewhere.
  const badge = $('toggle-rooms-badge');
  badge.textContent = total ? String(total) : '';
  badge.hidden = !total;
}

function listItem(sigil, name, unread, active, onClick) {
  const li = el('li', active ? 'active' : '');
  const b = el('button', 'item');
  b.type = 'button';
  b.dataset.name = name;
  b.append(el('span', 'sigil', sigil), el('span', 'name', name));
  if (unread) b.append(el('span', 'badge', String(unread)));
  b.addEventListener('click', onClick);
  li.append(b);
  return li;
}

function renderHead() {
  const c = app.current;
  $('conv-title').textContent = c ? (c.kind === 'room' ? `# ${c.name}` : `@ ${c.name}`) : 'No conversation';
  $('conv-sub').textContent = c ? (c.kind === 'room' ? 'room' : 'direct messages') : 'join a room or message someone';
  $('leave').hidden = !c || c.kind !== 'room';
  const enabled = !!c;
  $('text').disabled = !enabled;
  $('send').disabled = !enabled;
  $('text').placeholder = c ? `Message ${c.kind === 'room' ? '#' : '@'}${c.name}` : 'Write a message…';
}

function currentMessages() {
  const c = app.current;
  if (!c) return [];
  if (c.kind === 'room') {
    const room = app.rooms.get(c.name);
    return room ? [...room.msgs.values()].sort((a, b) => a.seq - b.seq) : [];
  }
  const t = app.dms.get(c.name);
  return t ? t.msgs : [];
}

function renderMessages({ keepScroll = false } = {}) {
  const list = $('messages');
  // Loading older messages keeps the ones on screen in place.
  const fromBottom = list.scrollHeight - list.scrollTop;
  list.replaceChildren();
  const c = app.current;
  if (c && c.kind === 'room') {
    const room = app.rooms.get(c.name);
    if (room && room.more) {
      const li = el('li', 'older');
      const b = el('button', 'link', room.loadingOlder ? 'loading…' : 'Load older messages');
      b.type = 'button';
      b.id = 'load-older';
      b.disabled = room.loadingOlder;
      b.addEventListener('click', () => loadOlder(c.name));
      li.append(b);
      list.append(li);
    }
    if (room && room.note) list.append(el('li', 'system', room.note));
  }
  const msgs = currentMessages();
  if (c && !msgs.length) list.append(el('li', 'system', c.kind === 'room' ? 'No messages yet. Say hello!' : `Start a conversation with ${c.name}.`));
  let prev = null;
  for (const m of msgs) {
    const sameDay = !!prev && dayKey(prev.ts) === dayKey(m.ts);
    if (!sameDay) list.append(daySeparator(m.ts));
    list.append(messageItem(m, sameDay ? prev : null));
    prev = m;
  }
  for (const p of app.pending) {
    if (c && p.kind === c.kind && p.name === c.name) {
      const li = messageItem({ from: app.me, ts: Date.now(), body: { text: p.text } }, null);
      li.classList.add(p.failed ? 'failed' : 'pending');
      list.append(li);
    }
  }
  list.scrollTop = keepScroll ? list.scrollHeight - fromBottom : list.scrollHeight;
}

// A local calendar day, to put a separator between messages of two days.
function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function dayLabel(ts) {
  const now = new Date();
  const today = dayKey(now.getTime());
  const yesterday = dayKey(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1).getTime());
  const key = dayKey(ts);
  if (key === today) return 'Today';
  if (key === yesterday) return 'Yesterday';
  const d = new Date(ts);
  const opts = { weekday: 'long', month: 'long', day: 'numeric' };
  if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts);
}

function daySeparator(ts) {
  const li = el('li', 'day');
  li.setAttribute('role', 'separator');
  li.dataset.day = dayKey(ts);
  li.append(el('span', '', dayLabel(ts)));
  return li;
}

function appendOrRender(m) {
  const msgs = currentMessages();
  const list = $('messages');
  const last = msgs[msgs.length - 1];
  const before = msgs[msgs.length - 2];
  if (last !== m || app.pending.length || list.querySelector('.system') || !before || dayKey(before.ts) !== dayKey(m.ts)) {
    renderMessages();
    return;
  }
  list.append(messageItem(m, msgs[msgs.length - 2] || null));
  list.scrollTop = list.scrollHeight;
}

function messageItem(m, prev) {
  const li = el('li', 'msg');
  if (m.from === app.me) li.classList.add('mine');
  if (m.seq !== undefined) li.dataset.seq = String(m.seq);
  const continued = prev && prev.from === m.from && m.ts - prev.ts < 5 * 60 * 1000;
  if (continued) li.classList.add('continued');
  const avatar = el('span', 'avatar');
  paintAvatar(avatar, m.from);
  const head = el('div', 'meta');
  head.append(el('span', 'from', m.from));
  const when = new Date(m.ts);
  const time = el('time', 'time', when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
  time.dateTime = when.toISOString();
  time.title = when.toLocaleString();
  head.append(time);
  if (m.status === 'stored') head.append(el('span', 'status', `· stored, delivered when ${m.to} connects`));
  const content = el('div', 'content');
  content.append(head, el('div', 'body', bodyText(m.body)));
  li.append(avatar, content);
  return li;
}

function renderMembers() {
  const list = $('members');
  list.replaceChildren();
  const c = app.current;
  let users = [];
  if (c && c.kind === 'room') {
    const room = app.rooms.get(c.name);
    users = room ? [...room.members].sort() : [];
  } else if (c && c.kind === 'dm') {
    users = [c.name];
  }
  $('members-title').textContent = c && c.kind === 'dm' ? 'Conversation with' : 'Online';
  $('member-count').textContent = c && c.kind === 'room' ? String(users.length) : '';
  $('toggle-members-count').textContent = c && c.kind === 'room' ? String(users.length) : '';
  for (const u of users) {
    const li = el('li');
    const b = el('button', 'item member');
    b.type = 'button';
    b.dataset.user = u;
    const avatar = el('span', 'avatar small');
    paintAvatar(avatar, u);
    b.append(avatar, el('span', 'name', u === app.me ? `${u} (you)` : u));
    if (c.kind === 'room') b.append(el('span', 'online', ''));
    if (u !== app.me) {
      b.title = `message ${u}`;
      b.addEventListener('click', () => openDm(u));
    }
    li.append(b);
    list.append(li);
  }
}

function bodyText(body) {
  if (body && typeof body === 'object' && typeof body.text === 'string') return body.text;
  if (typeof body === 'string') return body;
  return JSON.stringify(body);
}

function paintAvatar(node, name) {
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) % 360;
  node.style.setProperty('--hue', String(h));
  node.textContent = String(name).slice(0, 1).toUpperCase();
}

let noticeTimer = null;
function notice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, 6000);
}

// ---------------------------------------------------------------------------

const saved = store.getItem('natter.name') || params.get('user');
if (saved && NAME_RE.test(saved)) start(saved);
else renderState('closed');
