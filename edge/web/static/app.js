// The natter demo chat page: plain DOM code on top of the SDK, no build step.
// It connects to the WebSocket endpoint of its own origin, or to ?ws=URL.
import { connect } from '/natter.js';

const params = new URLSearchParams(location.search);
const WS_URL = params.get('ws') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const NAME_RE = /^[A-Za-z0-9_:-]{1,128}$/;
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
  rooms: new Map(), // name -> {msgs: Map<seq, msg>, members: Set<string>, unread, note}
  dms: new Map(), // peer -> {msgs: [], unread}
  current: null, // {kind: 'room'|'dm', name}
  pending: [], // outgoing messages not acknowledged yet
};
window.natterDemo = app; // for the console

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
  });
  client.on('msg', onRoomMessage);
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

function saveRooms() {
  store.setItem('natter.rooms', JSON.stringify([...app.rooms.keys()]));
}

async function openRoom(name, { select: sel = true } = {}) {
  if (!app.rooms.has(name)) {
    app.rooms.set(name, { msgs: new Map(), members: new Set(), presenceLogs: new Set(), unread: 0, note: '' });
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
    const messages = await app.client.history(name, { before: upTo + 1, limit: 100 });
    for (const m of messages) room.msgs.set(m.seq, m);
    room.note = '';
  } catch (err) {
    room.note = `Earlier messages are not available (${err.code}).`;
  }
  if (isCurrent('room', name)) renderMessages();
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
  if (isCurrent('room', m.room)) appendOrRender(m);
  else {
    room.unread++;
    renderLists();
  }
}

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
  }
  renderAll();
  if (target) $('text').focus();
}

function renderAll() {
  renderLists();
  renderHead();
  renderMessages();
  renderMembers();
}

function renderState(state) {
  const s = $('state');
  s.dataset.state = state;
  $('state-label').textContent = { open: 'online', connecting: 'connecting…', reconnecting: 'reconnecting…', closed: 'offline' }[state] || state;
}

function renderLists() {
  const rooms = $('rooms');
  rooms.replaceChildren();
  for (const [name, room] of app.rooms) {
    rooms.append(listItem('#', name, room.unread, isCurrent('room', name), () => select({ kind: 'room', name })));
  }
  const dms = $('dms');
  dms.replaceChildren();
  for (const [peer, t] of app.dms) {
    dms.append(listItem('@', peer, t.unread, isCurrent('dm', peer), () => select({ kind: 'dm', name: peer })));
  }
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

function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  const c = app.current;
  if (c && c.kind === 'room') {
    const room = app.rooms.get(c.name);
    if (room && room.note) list.append(el('li', 'system', room.note));
  }
  const msgs = currentMessages();
  if (c && !msgs.length) list.append(el('li', 'system', c.kind === 'room' ? 'No messages yet. Say hello!' : `Start a conversation with ${c.name}.`));
  let prev = null;
  for (const m of msgs) {
    list.append(messageItem(m, prev));
    prev = m;
  }
  for (const p of app.pending) {
    if (c && p.kind === c.kind && p.name === c.name) {
      const li = messageItem({ from: app.me, ts: Date.now(), body: { text: p.text } }, null);
      li.classList.add(p.failed ? 'failed' : 'pending');
      list.append(li);
    }
  }
  list.scrollTop = list.scrollHeight;
}

function appendOrRender(m) {
  const msgs = currentMessages();
  const list = $('messages');
  const last = msgs[msgs.length - 1];
  if (last !== m || app.pending.length || list.querySelector('.system')) {
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
