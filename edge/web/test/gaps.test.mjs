// Gap detection in the SDK against a scripted fake server (PROTOCOL.md,
// "Gap detection"): a live msg whose prev is newer than the last message
// the application was given makes the client fetch the missing ones with
// history (after), hold the room's newer messages meanwhile and hand them
// all over in seq order; duplicates are dropped; a failed fill falls back to
// join with since. Also: a dm delivered twice is shown once.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { connect, State } from '../static/natter.js';
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

/** A live msg frame of room, as the edge sends it (prev only when given). */
function msg(room, seq, prev) {
  const f = { seq, type: 'msg', room, from: 'x', ts: 1764111111000 + seq, body: { n: seq } };
  if (prev !== undefined) f.prev = prev;
  return f;
}

/** Stored msgs of room with seqs from..to, as a history reply holds them (no prev). */
function stored(room, from, to) {
  const out = [];
  for (let s = from; s <= to; s++) out.push(msg(room, s));
  return out;
}

/** A client in room r (joined at seq 0) that records the seqs it is given. */
async function joined(opts = {}, room = 'r') {
  const srv = fakeServer(); // answers join, not history
  const c = client(srv, opts);
  await c.ready();
  await c.join(room);
  const got = [];
  const errors = [];
  c.on('msg', (m) => got.push(m.seq));
  c.on('error', (e) => errors.push(e));
  return { srv, c, got, errors };
}

/** Answers the nth history request on conn with messages (and more). */
function answerHistory(conn, n, messages, extra = {}) {
  const f = conn.frames('history')[n];
  assert.ok(f, `history request ${n} was sent`);
  conn.deliver({ type: 'history', id: f.id, room: f.room, messages, ...extra });
  return f;
}

describe('gaps in a room', () => {
  test('a gap is filled with history before the application sees the next message', async () => {
    const { srv, c, got } = await joined();
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 4, 3)); // 2 and 3 never came
    assert.deepEqual(got, [1], 'msg 4 is held');
    const h = srv.last.frames('history');
    assert.equal(h.length, 1);
    assert.deepEqual({ room: h[0].room, after: h[0].after, before: h[0].before }, { room: 'r', after: 1, before: undefined });
    assert.ok(h[0].limit > 0);
    // Newer messages, and a repeat of a held one, wait behind the fill.
    srv.last.deliver(msg('r', 5, 4));
    srv.last.deliver(msg('r', 4, 3));
    assert.deepEqual(got, [1]);
    assert.equal(c.lastSeq('r'), 1);
    answerHistory(srv.last, 0, stored('r', 2, 3));
    await waitFor(() => got.length >= 5);
    assert.deepEqual(got, [1, 2, 3, 4, 5]);
    assert.equal(c.lastSeq('r'), 5);
    // Duplicates are dropped; the next live message goes straight through.
    srv.last.deliver(msg('r', 3, 2));
    srv.last.deliver(msg('r', 5, 4));
    srv.last.deliver(msg('r', 6, 5));
    await tick(10);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
    assert.equal(srv.last.frames('history').length, 1, 'one fill only');
  });

  test('the fill pages on while more is true, or the page is full', async () => {
    const { srv, c, got } = await joined();
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 1000, 999));
    const first = answerHistory(srv.last, 0, stored('r', 2, 3), { more: true });
    assert.equal(first.after, 1);
    await waitFor(() => srv.last.frames('history').length === 2);
    assert.equal(srv.last.frames('history')[1].after, 3);
    // A full page without more (a handler from before more) is read on too.
    const limit = srv.last.frames('history')[1].limit;
    answerHistory(srv.last, 1, stored('r', 4, 3 + limit));
    await waitFor(() => srv.last.frames('history').length === 3);
    assert.equal(srv.last.frames('history')[2].after, 3 + limit);
    answerHistory(srv.last, 2, stored('r', 4 + limit, 999));
    await waitFor(() => got.length === 1000);
    assert.deepEqual(got, stored('r', 1, 1000).map((m) => m.seq));
    assert.equal(c.lastSeq('r'), 1000);
    assert.equal(srv.last.frames('history').length, 3);
  });

  test('a message missed again during the fill is fetched too', async () => {
    const { srv, got } = await joined();
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 4, 3));
    srv.last.deliver(msg('r', 7, 6)); // 5 and 6 lost as well
    answerHistory(srv.last, 0, stored('r', 2, 3));
    await waitFor(() => srv.last.frames('history').length === 2);
    assert.deepEqual(got, [1, 2, 3, 4]);
    assert.equal(srv.last.frames('history')[1].after, 4);
    answerHistory(srv.last, 1, stored('r', 5, 6));
    await waitFor(() => got.length === 7);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
  });

  test('messages the store no longer holds (retention) do not stall the room', async () => {
    const { srv, c, got } = await joined();
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 4, 3));
    answerHistory(srv.last, 0, []); // 2 and 3 are gone
    await waitFor(() => got.length === 2);
    assert.deepEqual(got, [1, 4]);
    // prev 0: the previous message was removed; nothing to fetch.
    srv.last.deliver(msg('r', 9, 0));
    assert.deepEqual(got, [1, 4, 9]);
    assert.equal(c.lastSeq('r'), 9);
    assert.equal(srv.last.frames('history').length, 1);
  });

  test('frames without prev, and a room whose position is not known yet, start no fill', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const got = [];
    c.on('msg', (m) => got.push(m.seq));
    const p = c.join('r');
    // Before joined: the position is unknown, so prev cannot be checked.
    srv.last.deliver(msg('r', 5, 4));
    srv.last.deliver({ type: 'joined', id: srv.last.frames('join')[0].id, room: 'r', seq: 3 });
    await p;
    assert.equal(c.lastSeq('r'), 5);
    // Replayed and fetched frames carry no prev: seq order is all there is.
    srv.last.deliver(msg('r', 8));
    srv.last.deliver(msg('r', 9, 8));
    assert.deepEqual(got, [5, 8, 9]);
    assert.equal(srv.last.frames('history').length, 0);
  });

  test('a join without since of a room joined already keeps its position', async () => {
    const { srv, c, got } = await joined();
    srv.last.deliver(msg('r', 1, 0));
    srv.roomSeq.set('r', 3); // 2 and 3 are on their way
    const j = await c.join('r');
    assert.equal(j.seq, 3);
    assert.equal(c.lastSeq('r'), 1);
    srv.last.deliver(msg('r', 2, 1));
    srv.last.deliver(msg('r', 3, 2));
    assert.deepEqual(got, [1, 2, 3]);
  });

  test('rooms are filled each on its own: other rooms are not held', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    await Promise.all([c.join('a'), c.join('b')]);
    const got = [];
    c.on('msg', (m) => got.push(`${m.room}${m.seq}`));
    srv.last.deliver(msg('a', 1, 0));
    srv.last.deliver(msg('a', 3, 2));
    srv.last.deliver(msg('b', 1, 0));
    srv.last.deliver(msg('b', 2, 1));
    assert.deepEqual(got, ['a1', 'b1', 'b2']);
    const h = srv.last.frames('history');
    assert.equal(h.length, 1);
    assert.equal(h[0].room, 'a');
    answerHistory(srv.last, 0, stored('a', 2, 2));
    await waitFor(() => got.length === 5);
    assert.deepEqual(got, ['a1', 'b1', 'b2', 'a2', 'a3']);
  });

  test('a fill that fails: an error event, then join with since; its replay brings the rest', async () => {
    const { srv, c, got, errors } = await joined();
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 4, 3));
    const h = srv.last.frames('history')[0];
    srv.auto = false;
    srv.last.deliver({ type: 'error', id: h.id, code: 'unavailable', message: 'no handler answered in time' });
    await waitFor(() => srv.last.frames('join').length === 2);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'gap');
    assert.equal(errors[0].room, 'r');
    assert.equal(errors[0].cause.code, 'unavailable');
    const rejoin = srv.last.frames('join')[1];
    assert.equal(rejoin.room, 'r');
    assert.equal(rejoin.since, 1);
    // Until joined, a live message showing a gap is left to the replay.
    srv.last.deliver(msg('r', 6, 5));
    assert.equal(srv.last.frames('history').length, 1);
    srv.last.deliver({ type: 'joined', id: rejoin.id, room: 'r', seq: 6 });
    for (const m of stored('r', 2, 6)) srv.last.deliver(m);
    srv.last.deliver(msg('r', 7, 6));
    await tick(10);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
    assert.equal(c.state, State.OPEN);
    assert.deepEqual(c.rooms(), ['r']);
  });

  test('a fill that times out falls back the same way', async () => {
    const { srv, got, errors } = await joined({ timeout: 60 });
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 3, 2));
    await waitFor(() => errors.length === 1 && srv.last.frames('join').length === 2, { timeout: 2000 });
    assert.equal(errors[0].code, 'gap');
    assert.equal(errors[0].cause.code, 'timeout');
    assert.equal(srv.last.frames('join')[1].since, 1);
    for (const m of stored('r', 2, 3)) srv.last.deliver(m);
    assert.deepEqual(got, [1, 2, 3]);
  });

  test('maxHeld bounds what a fill holds: beyond it, join with since instead', async () => {
    const { srv, got, errors } = await joined({ maxHeld: 2 });
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 4, 3));
    srv.last.deliver(msg('r', 5, 4));
    assert.equal(srv.last.frames('join').length, 1);
    srv.last.deliver(msg('r', 6, 5)); // a third one: too many
    await tick(0);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'gap');
    const rejoin = srv.last.frames('join')[1];
    assert.equal(rejoin.since, 1);
    // The fill's late answer changes nothing; the replay brings it all.
    answerHistory(srv.last, 0, stored('r', 2, 3));
    await tick(10);
    assert.deepEqual(got, [1]);
    for (const m of stored('r', 2, 6)) srv.last.deliver(m);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
  });

  test('a connection lost during a fill: the rejoin with since brings the gap and the held messages', async () => {
    const { srv, c, got } = await joined();
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 4, 3));
    srv.last.deliver(msg('r', 5, 4));
    srv.last.drop();
    await waitFor(() => c.state === State.OPEN && srv.conns.length === 2);
    const frames = srv.last.frames().filter((f) => f.type !== 'ping');
    assert.deepEqual(frames.map((f) => [f.type, f.room, f.since]), [['join', 'r', 1]], 'the history request is not sent again');
    for (const m of stored('r', 2, 5)) srv.last.deliver(m);
    srv.last.deliver(msg('r', 6, 5));
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
    assert.equal(srv.last.frames('history').length, 0);
  });

  test('leaving the room during a fill drops what it held', async () => {
    const { srv, c, got } = await joined();
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 4, 3));
    await c.leave('r');
    answerHistory(srv.last, 0, stored('r', 2, 3));
    await tick(10);
    assert.deepEqual(got, [1]);
  });

  test('a listener that sends during the hand-over keeps the order', async () => {
    const { srv, c, got } = await joined();
    srv.roomSeq.set('r', 4);
    let sent = false;
    c.on('msg', (m) => {
      // The fake stores and echoes seq 5 at once, inside this listener.
      if (m.seq === 2 && !sent) {
        sent = true;
        c.send('r', 'from a listener');
      }
    });
    srv.last.deliver(msg('r', 1, 0));
    srv.last.deliver(msg('r', 4, 3));
    answerHistory(srv.last, 0, stored('r', 2, 3));
    await waitFor(() => got.length === 5);
    assert.deepEqual(got, [1, 2, 3, 4, 5]);
  });
});

describe('dms delivered more than once', () => {
  test('a dm whose seq was shown is dropped, on the same connection and after a reconnect', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    const got = [];
    c.on('dm', (m) => got.push(`${m.seq}:${m.body}`));
    const dm = (seq, body) => ({ seq, type: 'dm', from: 'alice', to: 'tester', ts: 1, body });
    srv.last.deliver(dm(7, 'live'));
    srv.last.deliver(dm(7, 'live')); // the stored copy, in a race with the connection opening
    srv.last.deliver(dm(8, 'next'));
    srv.last.drop();
    await waitFor(() => c.state === State.OPEN && srv.conns.length === 2);
    srv.last.deliver(dm(8, 'next')); // stored, delivered again to the new connection
    srv.last.deliver(dm(9, 'new'));
    assert.deepEqual(got, ['7:live', '8:next', '9:new']);
  });

  test('the last few hundred dm seqs are remembered', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    let n = 0;
    c.on('dm', () => n++);
    const dm = (seq) => ({ seq, type: 'dm', from: 'alice', to: 'tester', ts: 1, body: seq });
    for (let s = 1; s <= 500; s++) srv.last.deliver(dm(s));
    for (let s = 1; s <= 500; s++) srv.last.deliver(dm(s));
    assert.equal(n, 500);
  });
});
