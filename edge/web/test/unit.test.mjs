// The SDK's own logic against a scripted fake transport: id matching,
// timeouts, queueing, resend with the same id, rejoin with since, seq
// deduplication, heartbeat, backoff, bye handling. No edge needed.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { connect, autoTransport, NatterError, State, browserTransport, nodeTransport } from '../static/natter.js';
import { fakeServer, tick } from './fake.mjs';
import { waitFor } from './helpers.mjs';

const clients = [];
function client(server, opts = {}) {
  const c = connect('ws://fake/ws', { transport: server.transport, reconnect: { base: 10, cap: 50 }, ...opts });
  clients.push(c);
  return c;
}
afterEach(() => {
  while (clients.length) clients.pop().close();
});

describe('requests', () => {
  test('replies are matched by id, whatever their order', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const p1 = c.members('a');
    const p2 = c.members('b');
    const [f1, f2] = srv.last.frames('members');
    assert.notEqual(f1.id, f2.id);
    srv.last.deliver({ type: 'members', id: f2.id, room: 'b', users: ['bob'] });
    srv.last.deliver({ type: 'members', id: f1.id, room: 'a', users: ['alice'] });
    assert.deepEqual(await p1, ['alice']);
    assert.deepEqual(await p2, ['bob']);
  });

  test('an error frame rejects with its code, message, frame and id', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const p = c.send('r', 'x');
    const f = srv.last.frames('send')[0];
    srv.last.deliver({ type: 'error', id: f.id, code: 'not_member', message: 'join first' });
    await assert.rejects(p, (err) => {
      assert.ok(err instanceof NatterError);
      assert.equal(err.code, 'not_member');
      assert.equal(err.message, 'join first');
      assert.equal(err.id, f.id);
      assert.equal(err.frame.type, 'error');
      return true;
    });
  });

  test('an error frame without a matching id goes to the error event', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const errors = [];
    c.on('error', (e) => errors.push(e));
    srv.last.deliver({ type: 'error', code: 'bad_frame', message: 'not JSON' });
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'bad_frame');
  });

  test('no reply within the timeout rejects with code timeout and the id', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv, { timeout: 80 });
    await c.ready();
    const t0 = Date.now();
    const p = c.dm('bob', 'hello?');
    const id = srv.last.frames('dm')[0].id;
    await assert.rejects(p, (err) => err.code === 'timeout' && err.id === id);
    assert.ok(Date.now() - t0 >= 70, 'rejected too early');
    // A timeout makes the client check the connection with a ping.
    assert.equal(srv.last.frames('ping').length, 1);
  });

  test('a per-call timeout and a caller-chosen id', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv, { timeout: 10_000 });
    await c.ready();
    const p = c.send('r', 1, { id: 'my-key', timeout: 30 });
    assert.equal(srv.last.frames('send')[0].id, 'my-key');
    await assert.rejects(p, { code: 'timeout' });
  });

  test('generated ids are unique per client, and differ between clients', async () => {
    const srv = fakeServer();
    const a = client(srv);
    const b = client(srv);
    await Promise.all([a.ready(), b.ready()]);
    await Promise.all([a.ping(), a.ping(), b.ping()]);
    const ids = srv.conns.flatMap((k) => k.frames('ping').map((f) => f.id));
    assert.equal(new Set(ids).size, 3);
    for (const id of ids) assert.ok(id.length <= 64);
  });

  test('a command over maxFrame bytes (UTF-8) is refused without being sent', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv, { maxFrame: 100 });
    await c.ready();
    await assert.rejects(c.send('r', 'é'.repeat(40)), { code: 'too_large' }); // 80 bytes of body
    assert.equal(srv.last.frames('send').length, 0);
    const ok = c.send('r', 'e'.repeat(40));
    assert.equal(srv.last.frames('send').length, 1);
    srv.last.deliver({ type: 'ack', id: srv.last.frames('send')[0].id, seq: 1 });
    await ok;
    await assert.rejects(c.send('r', 1n), { code: 'bad_frame' });
  });

  test('members, history, broadcast, ping resolve with their payloads', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const h = c.history('r', { before: 10, limit: 2 });
    const hf = srv.last.frames('history')[0];
    assert.deepEqual({ room: hf.room, before: hf.before, limit: hf.limit }, { room: 'r', before: 10, limit: 2 });
    srv.last.deliver({ type: 'history', id: hf.id, room: 'r', messages: [{ seq: 8 }, { seq: 9 }] });
    assert.deepEqual((await h).map((m) => m.seq), [8, 9]);
    const p = c.ping();
    srv.last.deliver({ type: 'pong', id: srv.last.frames('ping')[0].id });
    assert.equal(typeof (await p), 'number');
  });
});

describe('connection', () => {
  test('connect adds ?user= and passes the token to the transport', async () => {
    const srv = fakeServer();
    const c = client(srv, { user: 'al ice', token: 'tok' });
    await c.ready();
    assert.equal(srv.last.url, 'ws://fake/ws?user=al%20ice');
    assert.equal(srv.last.opts.token, 'tok');
    const c2 = connect('ws://fake/ws?x=1#f', { transport: srv.transport, user: 'bob' });
    clients.push(c2);
    await c2.ready();
    assert.equal(srv.last.url, 'ws://fake/ws?x=1&user=bob#f');
  });

  test('state goes connecting → open, and welcome fills user and conn', async () => {
    const srv = fakeServer();
    const c = client(srv);
    const states = [];
    c.on('state', (s, prev) => states.push(`${prev}>${s}`));
    const w = await c.ready();
    assert.equal(w.user, 'tester');
    assert.equal(c.user, 'tester');
    assert.equal(c.conn, 'c1');
    assert.deepEqual(states, ['connecting>open']);
    c.close();
    assert.deepEqual(states, ['connecting>open', 'open>closed']);
    assert.equal(srv.last.closedBy, 'client');
  });

  test('close rejects what is pending and queued, and stops reconnecting', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const onWire = c.members('r');
    srv.last.drop();
    const queued = c.send('r', 'later');
    assert.equal(c.state, State.RECONNECTING);
    c.close();
    await assert.rejects(onWire, { code: 'closed' });
    await assert.rejects(queued, { code: 'closed' });
    await assert.rejects(c.send('r', 'x'), { code: 'closed' });
    await assert.rejects(c.ready(), { code: 'closed' });
    const opens = srv.opens.length;
    await tick(100);
    assert.equal(srv.opens.length, opens, 'reconnected after close');
  });

  test('no welcome in time: the socket is abandoned and a new one opened', async () => {
    let n = 0;
    const srv = fakeServer({ onOpen: (conn) => { if (++n > 1) conn.welcome(); else conn.on.open(); } });
    const c = client(srv, { timeout: 60 });
    await c.ready();
    assert.equal(srv.conns.length, 2);
    assert.equal(srv.conns[0].closedBy, 'client');
  });

  test('reconnect: false gives up at the first loss', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv, { reconnect: false });
    await c.ready();
    const p = c.ping();
    srv.last.drop();
    assert.equal(c.state, State.CLOSED);
    await assert.rejects(p, { code: 'closed' });
  });

  test('backoff is exponential with full jitter, capped', async (t) => {
    const srv = fakeServer();
    const c = client(srv, { reconnect: { base: 40, cap: 160 } });
    await c.ready();
    // Record the delays the client schedules its reconnect attempts with
    // (timers may fire late on a busy machine, never early: the delays
    // themselves are what to check).
    const delays = [];
    const realSetTimeout = globalThis.setTimeout;
    t.mock.method(globalThis, 'setTimeout', (fn, ms, ...rest) => {
      if (String(fn).includes('_open()')) delays.push(ms);
      return realSetTimeout(fn, ms, ...rest);
    });
    let random = 0.999;
    t.mock.method(Math, 'random', () => random);
    srv.refuse = true;
    srv.last.drop();
    await waitFor(() => delays.length >= 5, { timeout: 5000 });
    // Attempt n waits random()·min(cap, base·2ⁿ): 40, 80, 160, 160, 160 at the top of the jitter.
    assert.deepEqual(delays.slice(0, 5).map((d) => Math.round(d / 0.999)), [40, 80, 160, 160, 160]);
    // Full jitter: the whole range down to 0 is used.
    random = 0;
    const n = delays.length;
    await waitFor(() => delays.length >= n + 2, { timeout: 2000 });
    assert.deepEqual(delays.slice(n, n + 2), [0, 0]);
    // A successful connection starts the sequence over.
    random = 0.999;
    srv.refuse = false;
    await waitFor(() => c.state === State.OPEN, { timeout: 2000 });
    delays.length = 0;
    srv.refuse = true;
    srv.last.drop();
    await waitFor(() => delays.length >= 1, { timeout: 2000 });
    assert.equal(Math.round(delays[0] / 0.999), 40);
  });

  test('bye shutdown reconnects at once, whatever the backoff', async () => {
    const srv = fakeServer();
    const c = client(srv, { reconnect: { base: 60_000, cap: 60_000 } });
    await c.ready();
    const byes = [];
    c.on('bye', (b) => byes.push(b.code));
    const t0 = Date.now();
    srv.last.deliver({ type: 'bye', code: 'shutdown', message: 'restarting' });
    srv.last.drop(1001);
    await waitFor(() => c.state === State.OPEN && srv.conns.length === 2, { timeout: 3000 });
    assert.ok(Date.now() - t0 < 3000, 'not the 60 s backoff');
    assert.deepEqual(byes, ['shutdown']);
  });

  test('bye kicked closes the client for good', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    srv.last.deliver({ type: 'bye', code: 'kicked', message: 'closed by the server' });
    srv.last.drop(1008);
    assert.equal(c.state, State.CLOSED);
    await tick(80);
    assert.equal(srv.conns.length, 1);
  });

  test('heartbeat: a ping every welcome.heartbeat seconds; silence means dead', async () => {
    const srv = fakeServer({ auto: false, heartbeat: 1 });
    const c = client(srv, { pongTimeout: 150 });
    await c.ready();
    const first = srv.last;
    await waitFor(() => first.frames('ping').length >= 1, { timeout: 5000 });
    assert.deepEqual(first.frames('ping')[0], { type: 'ping' });
    // No pong: within pongTimeout the connection is given up and a new one made.
    await waitFor(() => srv.conns.length === 2 && c.state === State.OPEN, { timeout: 5000 });
    assert.equal(first.closedBy, 'client');
  });

  test('heartbeat: answered pings keep the connection', async () => {
    const srv = fakeServer({ auto: true, heartbeat: 1 });
    const c = client(srv, { heartbeat: 0.1, pongTimeout: 80 });
    await c.ready();
    await waitFor(() => srv.last.frames('ping').length >= 4, { timeout: 5000, what: '4 pings' });
    assert.equal(srv.conns.length, 1);
    assert.equal(c.state, State.OPEN);
  });
});

describe('queue and retries', () => {
  test('commands issued while disconnected wait, in order, and go after the reconnect', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    await c.join('r');
    srv.refuse = true;
    srv.last.drop();
    const acks = [c.send('r', 'q1'), c.send('r', 'q2'), c.dm('bob', 'qd')];
    await tick(30);
    assert.equal(c.state, State.RECONNECTING);
    srv.refuse = false;
    await waitFor(() => c.state === State.OPEN);
    const sent = srv.last.frames().filter((f) => f.type !== 'ping').map((f) => `${f.type}:${f.body ?? f.room}`);
    assert.deepEqual(sent, ['join:r', 'send:q1', 'send:q2', 'dm:qd']);
    srv.last.deliver({ type: 'ack', id: srv.last.frames('dm')[0].id, seq: 1, status: 'stored' });
    const [a1, a2, a3] = await Promise.all(acks);
    assert.ok(a2.seq > a1.seq);
    assert.equal(a3.status, 'stored');
  });

  test('maxQueue bounds the waiting commands', async () => {
    const srv = fakeServer();
    const c = client(srv, { maxQueue: 2 });
    await c.ready();
    srv.refuse = true;
    srv.last.drop();
    const ok = [c.send('r', 1), c.send('r', 2)];
    await assert.rejects(c.send('r', 3), { code: 'queue_full' });
    c.close();
    await Promise.allSettled(ok);
  });

  test('queueTimeout rejects commands that waited too long for a connection', async () => {
    const srv = fakeServer();
    const c = client(srv, { queueTimeout: 50 });
    await c.ready();
    srv.refuse = true;
    srv.last.drop();
    await assert.rejects(c.send('r', 1), { code: 'timeout' });
  });

  test('a send whose ack was lost is sent again with the same id, and resolves once', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const p = c.send('r', 'once');
    const first = srv.last.frames('send')[0];
    srv.last.drop(); // the server may have stored it: the ack is lost
    await waitFor(() => srv.conns.length === 2 && c.state === State.OPEN);
    const again = srv.last.frames('send')[0];
    assert.deepEqual(again, first, 'resent with the same id and body');
    srv.last.deliver({ type: 'ack', id: again.id, seq: 7 });
    assert.equal((await p).seq, 7);
  });

  test('a broadcast in flight is not retried: it rejects with disconnected', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const p = c.broadcast('all');
    srv.last.drop();
    await assert.rejects(p, { code: 'disconnected' });
    await waitFor(() => c.state === State.OPEN);
    assert.equal(srv.last.frames('broadcast').length, 0);
  });
});

describe('rooms', () => {
  test('rejoin with since = last seq seen, and no duplicate after it', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    srv.roomSeq.set('r', 40);
    const joined = await c.join('r');
    assert.equal(joined.seq, 40);
    assert.equal(c.lastSeq('r'), 40);
    const got = [];
    c.on('msg', (m) => got.push(m.seq));
    srv.last.deliver({ type: 'msg', room: 'r', from: 'x', seq: 41, ts: 1, body: 'a' });
    srv.last.deliver({ type: 'msg', room: 'r', from: 'x', seq: 43, ts: 1, body: 'b' });
    srv.last.drop();
    await waitFor(() => c.state === State.OPEN && srv.conns.length === 2);
    const rejoin = srv.last.frames('join')[0];
    assert.equal(rejoin.since, 43);
    // The replay overlaps what was seen: only what is new gets through.
    for (const seq of [42, 43, 44, 45]) srv.last.deliver({ type: 'msg', room: 'r', from: 'x', seq, ts: 1, body: seq });
    srv.last.deliver({ type: 'msg', room: 'r', from: 'x', seq: 45, ts: 1, body: 'dup' });
    assert.deepEqual(got, [41, 43, 44, 45]);
  });

  test('join with since takes messages up to it as seen, and gets the ones after it', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    srv.roomSeq.set('r', 10);
    const got = [];
    c.on('msg', (m) => got.push(m.seq));
    await c.join('r', { since: 7 });
    assert.equal(srv.last.frames('join')[0].since, 7);
    for (const seq of [6, 8, 9, 10]) srv.last.deliver({ type: 'msg', room: 'r', from: 'x', seq, ts: 1, body: seq });
    assert.deepEqual(got, [8, 9, 10]);
    assert.equal(c.lastSeq('r'), 10);
  });

  test('join while disconnected is sent on connect; a refused join drops the room', async () => {
    const srv = fakeServer({ auto: false, onOpen: () => {} });
    const c = client(srv);
    const p = c.join('bad room');
    assert.deepEqual(c.rooms(), ['bad room']);
    srv.last.welcome();
    const f = srv.last.frames('join')[0];
    assert.equal(f.since, undefined);
    srv.last.deliver({ type: 'error', id: f.id, code: 'bad_room', message: 'no' });
    await assert.rejects(p, { code: 'bad_room' });
    assert.deepEqual(c.rooms(), []);
  });

  test('a rejoin the server refuses is reported on the error event', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    await c.join('r');
    const errors = [];
    c.on('error', (e) => errors.push(e));
    srv.auto = false;
    srv.last.drop();
    await waitFor(() => srv.conns.length === 2 && srv.last.frames('join').length === 1);
    const f = srv.last.frames('join')[0];
    srv.last.deliver({ type: 'error', id: f.id, code: 'forbidden', message: 'no more' });
    await tick(0);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'forbidden');
    assert.equal(errors[0].room, 'r');
    assert.deepEqual(c.rooms(), []);
  });

  test('messages of rooms left are dropped; leave while disconnected resolves', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    await c.join('r');
    await c.leave('r');
    const got = [];
    c.on('msg', (m) => got.push(m));
    srv.last.deliver({ type: 'msg', room: 'r', from: 'x', seq: 1, ts: 1, body: 'late' });
    assert.equal(got.length, 0);
    srv.refuse = true;
    srv.last.drop();
    assert.deepEqual(await c.leave('other'), { type: 'left', room: 'other' });
  });

  test('dm frames are deduplicated by seq', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    const got = [];
    c.on('dm', (m) => got.push(m.body));
    const dm = { type: 'dm', from: 'a', to: 'tester', seq: 3, ts: 1, body: 'x' };
    srv.last.deliver(dm);
    srv.last.deliver(dm);
    srv.last.deliver({ ...dm, seq: 4, body: 'y' });
    assert.deepEqual(got, ['x', 'y']);
  });

  test('presence and broadcast events, on/off/once', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    const seen = [];
    const fn = (p) => seen.push(`${p.user}:${p.event}`);
    c.on('presence', fn);
    c.once('broadcast', (b) => seen.push(`b:${b.body}`));
    srv.last.deliver({ type: 'presence', room: 'r', user: 'bob', event: 'join' });
    srv.last.deliver({ type: 'broadcast', from: 'x', ts: 1, body: 1 });
    srv.last.deliver({ type: 'broadcast', from: 'x', ts: 1, body: 2 });
    c.off('presence', fn);
    srv.last.deliver({ type: 'presence', room: 'r', user: 'bob', event: 'leave' });
    assert.deepEqual(seen, ['bob:join', 'b:1']);
  });
});

describe('module', () => {
  test('natter.js is one ES module without dependencies', async () => {
    const { readFile } = await import('node:fs/promises');
    const src = await readFile(new URL('../static/natter.js', import.meta.url), 'utf8');
    assert.doesNotMatch(src, /^\s*import\s/m, 'no static import');
    assert.doesNotMatch(src, /\bimport\(|\brequire\(/, 'no dynamic import or require');
    assert.deepEqual(Object.values(State), ['connecting', 'open', 'reconnecting', 'closed']);
  });
});

describe('transports', () => {
  test('autoTransport picks wx when wx.connectSocket exists, else the global WebSocket', () => {
    const saved = { wx: globalThis.wx, WebSocket: globalThis.WebSocket };
    try {
      globalThis.wx = { connectSocket() {} };
      assert.equal(autoTransport().name, 'wx');
      delete globalThis.wx;
      globalThis.WebSocket = function FakeWS() {};
      assert.equal(autoTransport().name, 'browser');
      delete globalThis.WebSocket;
      assert.throws(() => autoTransport(), { code: 'no_transport' });
      assert.throws(() => connect('ws://x/ws'), { code: 'no_transport' });
    } finally {
      if (saved.wx) globalThis.wx = saved.wx; else delete globalThis.wx;
      if (saved.WebSocket) globalThis.WebSocket = saved.WebSocket; else delete globalThis.WebSocket;
    }
  });

  test('browserTransport puts the token in the query; nodeTransport in a header', () => {
    const made = [];
    function WS(url, opts) {
      made.push({ url, opts });
      this.close = () => {};
    }
    browserTransport(WS).open('ws://h/ws?user=a', { token: 't.k' }, {});
    nodeTransport(WS).open('ws://h/ws', { token: 't.k' }, {});
    assert.equal(made[0].url, 'ws://h/ws?user=a&token=t.k');
    assert.equal(made[1].url, 'ws://h/ws');
    assert.equal(made[1].opts.headers.Authorization, 'Bearer t.k');
    assert.throws(() => nodeTransport(), { code: 'no_transport' });
  });
});
