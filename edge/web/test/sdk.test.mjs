// The SDK against a real edge (built from this repository and run on a free
// loopback port): welcome, rooms, messages, dms, members, presence, error
// codes, timeouts and heartbeat.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { nodeTransport, State } from '../static/natter.js';
import { Edge, edgeClients, hs256, nextEvent, record, sleep, spyTransport, unique, waitFor } from './helpers.mjs';

const { client, closeAll } = edgeClients({ reconnect: { base: 50, cap: 500 } });
afterEach(closeAll);

describe('against a real edge', () => {
  const edge = new Edge();
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());

  test('connect: welcome names the user and the connection, state goes open', async () => {
    const c = client(edge, 'alice');
    const states = [];
    c.on('state', (s) => states.push(s));
    const w = await c.ready();
    assert.equal(w.type, 'welcome');
    assert.equal(w.user, 'alice');
    assert.equal(typeof w.conn, 'string');
    assert.ok(w.heartbeat > 0);
    assert.equal(c.user, 'alice');
    assert.deepEqual(states, [State.OPEN]);
    assert.ok((await c.ping()) >= 0);
  });

  test('join, send, msg: every member gets it, the sender included, with the acked seq', async () => {
    const room = unique('room');
    const a = client(edge, 'alice');
    const b = client(edge, 'bob');
    const ja = await a.join(room);
    assert.equal(ja.type, 'joined');
    assert.equal(ja.room, room);
    assert.equal(ja.seq, 0);
    await b.join(room);
    const gotA = nextEvent(a, 'msg', (m) => m.room === room);
    const gotB = nextEvent(b, 'msg', (m) => m.room === room);
    const ack = await a.send(room, { text: 'hi' });
    assert.equal(ack.type, 'ack');
    assert.ok(ack.seq > 0);
    for (const m of [await gotA, await gotB]) {
      assert.equal(m.from, 'alice');
      assert.equal(m.seq, ack.seq);
      assert.deepEqual(m.body, { text: 'hi' });
      assert.ok(Math.abs(m.ts - Date.now()) < 60_000);
    }
    assert.equal(a.lastSeq(room), ack.seq);
  });

  test('messages from one connection arrive in order with increasing seqs', async () => {
    const room = unique('order');
    const a = client(edge, 'alice');
    const b = client(edge, 'bob');
    await Promise.all([a.join(room), b.join(room)]);
    const got = record(b, ['msg']);
    const acks = await Promise.all(Array.from({ length: 20 }, (_, i) => a.send(room, i)));
    await waitFor(() => got.length === 20, { what: '20 messages' });
    assert.deepEqual(got.map((e) => e.frame.body), Array.from({ length: 20 }, (_, i) => i));
    const seqs = got.map((e) => e.frame.seq);
    assert.deepEqual(seqs, acks.map((x) => x.seq));
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1]);
  });

  test('dm: delivered to an online user, stored for an offline one until it connects', async () => {
    const carol = unique('carol');
    const a = client(edge, 'alice');
    const b = client(edge, 'bob');
    await b.ready();
    const got = nextEvent(b, 'dm', (m) => m.from === 'alice');
    const ack = await a.dm('bob', { text: 'psst' });
    assert.equal(ack.status, 'delivered');
    const m = await got;
    assert.equal(m.to, 'bob');
    assert.equal(m.seq, ack.seq);
    assert.deepEqual(m.body, { text: 'psst' });

    const stored = await a.dm(carol, 'read me later');
    assert.equal(stored.status, 'stored');
    const c = client(edge, carol);
    const later = await nextEvent(c, 'dm');
    assert.equal(later.from, 'alice');
    assert.equal(later.body, 'read me later');
  });

  test('members and presence events', async () => {
    const room = unique('pres');
    const a = client(edge, 'alice');
    await a.join(room);
    assert.deepEqual(await a.members(room), ['alice']);
    const b = client(edge, 'bob');
    const joined = nextEvent(a, 'presence', (p) => p.room === room && p.user === 'bob' && p.event === 'join');
    await b.join(room);
    await joined;
    assert.deepEqual(await a.members(room), ['alice', 'bob']);
    assert.deepEqual(await b.members(room), ['alice', 'bob']);
    const left = nextEvent(a, 'presence', (p) => p.room === room && p.user === 'bob' && p.event === 'leave');
    await b.leave(room);
    await left;
    assert.deepEqual(await a.members(room), ['alice']);
    // Closing the last connection of a user is a leave too.
    const b2 = client(edge, 'bob');
    await b2.join(room);
    const gone = nextEvent(a, 'presence', (p) => p.room === room && p.user === 'bob' && p.event === 'leave');
    b2.close();
    await gone;
  });

  test('broadcast reaches every connection', async () => {
    const a = client(edge, 'alice');
    const b = client(edge, 'bob');
    await b.ready();
    const body = unique('all');
    const got = nextEvent(b, 'broadcast', (x) => x.body === body);
    const ack = await a.broadcast(body);
    assert.equal(ack.type, 'ack');
    assert.equal((await got).from, 'alice');
  });

  test('error frames reject with their code', async () => {
    const a = client(edge, 'alice');
    const errors = [];
    a.on('error', (e) => errors.push(e));
    await assert.rejects(a.join('bad room'), { name: 'NatterError', code: 'bad_room' });
    assert.deepEqual(a.rooms(), []);
    await assert.rejects(a.join('a.b'), { code: 'bad_room' });
    await assert.rejects(a.send(unique('never-joined'), 'x'), { code: 'not_member' });
    await assert.rejects(a.dm('no*body', 'x'), { code: 'bad_user' });
    await assert.rejects(a.members('x'.repeat(129)), { code: 'bad_room' });
    // Over the edge's frame limit: refused by the SDK, whose error has the id.
    await assert.rejects(a.send(unique('r'), 'x'.repeat(70_000)), (e) => e.code === 'too_large' && !!e.id);
    // With the SDK's check lifted, the edge refuses it itself; its error frame
    // has no id, so it goes to the error event (the promise times out).
    const lax = client(edge, 'alice', { maxFrame: 1 << 20, timeout: 300 });
    const edgeErr = nextEvent(lax, 'error', (e) => e.code === 'too_large');
    await assert.rejects(lax.send(unique('r'), 'x'.repeat(70_000)), { code: 'timeout' });
    await edgeErr;
    assert.equal(lax.state, State.OPEN, 'a too large frame does not close the connection');
    assert.equal(a.state, State.OPEN);
    assert.equal(errors.length, 0, 'errors of commands go to their promises, not to the error event');
  });

  test('same id, same user: the server acknowledges again and delivers once', async () => {
    const room = unique('dedup');
    const a = client(edge, 'alice');
    const b = client(edge, 'bob');
    await Promise.all([a.join(room), b.join(room)]);
    const got = record(b, ['msg']);
    const id = unique('id');
    const first = await a.send(room, 'once', { id });
    const again = await a.send(room, 'once', { id });
    assert.equal(again.seq, first.seq);
    await a.send(room, 'marker');
    await waitFor(() => got.some((e) => e.frame.body === 'marker'));
    assert.deepEqual(got.map((e) => e.frame.body), ['once', 'marker']);
  });

  test('a command nobody answers rejects with code timeout (edge paused)', async () => {
    const a = client(edge, 'alice', { timeout: 400 });
    await a.ready();
    await edge.pause();
    try {
      const t0 = Date.now();
      await assert.rejects(a.members('lobby'), { code: 'timeout' });
      assert.ok(Date.now() - t0 >= 350);
    } finally {
      edge.resume();
    }
    // The edge is back: the client recovers (same or new connection).
    await waitFor(async () => {
      try { return Array.isArray(await a.members('lobby')); } catch { return false; }
    }, { timeout: 15_000, what: 'members after resume' });
  });
});

describe('heartbeat against an edge with a 2 s idle timeout', () => {
  const edge = new Edge({ args: ['-idle-timeout', '2s'] });
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());

  test('a raw client that says nothing is closed as idle', async () => {
    const ws = new WebSocket(`${edge.wsURL}?user=silent`);
    const frames = [];
    ws.on('message', (d) => frames.push(JSON.parse(String(d))));
    const code = await new Promise((resolve) => ws.on('close', (c) => resolve(c)));
    assert.equal(frames[0].type, 'welcome');
    assert.equal(frames[0].heartbeat, 1);
    assert.deepEqual(frames.at(-1).type, 'bye');
    assert.equal(frames.at(-1).code, 'idle');
    assert.equal(code, 1000);
  });

  test('the SDK pings every welcome.heartbeat seconds and stays connected', async () => {
    const spy = spyTransport(nodeTransport(WebSocket));
    const c = client(edge, 'pinger', { transport: spy.transport });
    const byes = record(c, ['bye']);
    const w = await c.ready();
    assert.equal(w.heartbeat, 1);
    await sleep(4500);
    const pings = spy.sent.filter((f) => f.type === 'ping');
    assert.ok(pings.length >= 3, `only ${pings.length} pings in 4.5 s`);
    assert.deepEqual(pings[0], { type: 'ping' });
    assert.ok(spy.received.filter((f) => f.type === 'pong').length >= 3);
    assert.equal(byes.length, 0);
    assert.equal(spy.conns, 1, 'reconnected: the heartbeat did not keep the connection');
    assert.equal(c.state, State.OPEN);
  });

  test('no pong (edge paused): the connection is declared dead and remade', async () => {
    const c = client(edge, 'watcher', { pongTimeout: 300 });
    await c.ready();
    const lost = nextEvent(c, 'state', (s) => s === State.RECONNECTING, 4000);
    await edge.pause();
    try {
      await lost;
    } finally {
      edge.resume();
    }
    await nextEvent(c, 'state', (s) => s === State.OPEN, 15_000);
  });
});

describe('production identity (JWT)', () => {
  const secret = 'test-secret-of-at-least-32-bytes-0123456789';
  const edge = new Edge({ args: ['-jwt-secret', secret] });
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());

  test('a token in the Authorization header names the user; its claims are enforced', async () => {
    const token = hs256(secret, { sub: 'tokuser', natter: { rooms: ['lobby', 'team-*'], broadcast: false } });
    const c = client(edge, undefined, { token });
    const w = await c.ready();
    assert.equal(w.user, 'tokuser');
    await c.join('team-red');
    await assert.rejects(c.join('secret'), { code: 'forbidden' });
    await assert.rejects(c.broadcast('hi'), { code: 'forbidden' });
  });

  test('a bad token is refused before the upgrade: the client keeps retrying', async () => {
    const spy = spyTransport(nodeTransport(WebSocket));
    const c = client(edge, undefined, { token: 'not.a.token', transport: spy.transport, reconnect: { base: 20, cap: 40 } });
    await waitFor(() => spy.conns >= 3, { what: 'three attempts' });
    assert.equal(c.state, State.RECONNECTING);
  });
});
