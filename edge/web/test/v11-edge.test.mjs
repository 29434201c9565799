// The SDK's protocol v1.1 additions against a real edge: typing, read
// positions and unread counts, send with echo:false; and, with -jwt-secret
// (HS256 tokens signed here), token refresh on an open connection, a
// refresh for another user refused, and bye expired followed by a
// reconnect with a fresh token from the token function.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { nodeTransport, State } from '../static/natter.js';
import { Edge, edgeClients, hs256, nextEvent, record, sleep, spyTransport, unique, waitFor } from './helpers.mjs';

const { client, closeAll } = edgeClients({ reconnect: { base: 50, cap: 500 } });
afterEach(closeAll);

describe('v1.1 against a real edge', () => {
  const edge = new Edge();
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());

  test('typing reaches the other members, not the sender', async () => {
    const room = unique('typing');
    const alice = client(edge, 'alice');
    const bob = client(edge, 'bob');
    await Promise.all([alice.join(room), bob.join(room)]);
    const aliceHeard = record(alice, ['typing']);
    const got = nextEvent(bob, 'typing', (t) => t.room === room);
    const ack = await alice.typing(room);
    assert.equal(ack.type, 'ack');
    const t = await got;
    assert.equal(t.user, 'alice');
    await sleep(300);
    assert.deepEqual(aliceHeard, [], 'the sending connection hears nothing');
    // Not a member: not_member.
    await assert.rejects(alice.typing(unique('elsewhere')), (e) => e.code === 'not_member');
  });

  test('read moves the user\'s position, tells its other connections, and unread counts after it', async () => {
    const room = unique('unread');
    const writer = client(edge, 'writer');
    const phone = client(edge, 'reader');
    const laptop = client(edge, 'reader');
    await Promise.all([writer.join(room), phone.join(room), laptop.join(room)]);
    const acks = [];
    for (const text of ['one', 'two', 'three']) acks.push(await writer.send(room, { text }));
    await waitFor(() => phone.lastSeq(room) === acks[2].seq, { what: 'phone got all three' });

    assert.equal((await phone.unread())[room], 3, 'never read: all three unread');
    const moved = nextEvent(laptop, 'read', (r) => r.room === room);
    const r = await phone.read(room, acks[0].seq);
    assert.equal(r.seq, acks[0].seq);
    const ev = await moved;
    assert.equal(ev.seq, acks[0].seq);
    assert.equal(ev.user, 'reader');
    assert.equal((await laptop.unread())[room], 2);
    // Backwards changes nothing.
    assert.equal((await laptop.read(room, 0)).seq, acks[0].seq);
    await phone.read(room, acks[2].seq);
    assert.equal((await laptop.unread())[room], 0);
  });

  test('send with echo:false: the sender connection gets the ack only; others get the msg', async () => {
    const room = unique('echo');
    const a1 = client(edge, 'quiet');
    const a2 = client(edge, 'quiet');
    const b = client(edge, 'other');
    await Promise.all([a1.join(room), a2.join(room), b.join(room)]);
    const a1msgs = record(a1, ['msg']);
    const a2got = nextEvent(a2, 'msg', (m) => m.room === room);
    const bgot = nextEvent(b, 'msg', (m) => m.room === room);
    const ack = await a1.send(room, { text: 'psst' }, { echo: false });
    assert.equal((await a2got).seq, ack.seq, 'the user\'s other connection gets it');
    assert.equal((await bgot).seq, ack.seq);
    // Bob answers: his msg's prev is the quiet one; a1 fills the gap with
    // history, which brings its own message back, and drops it.
    const reply = await b.send(room, { text: 'what?' });
    await waitFor(() => a1msgs.length === 1, { what: 'a1 gets bob\'s reply' });
    await sleep(200);
    assert.deepEqual(a1msgs.map((e) => e.frame.seq), [reply.seq], 'a1 never sees its own quiet message');
    assert.equal(a1.lastSeq(room), reply.seq);
  });
});

describe('token refresh against a real edge (-jwt-secret)', () => {
  const secret = 'v11-test-secret-0123456789abcdefghijklmnop';
  // A short idle timeout makes the edge check expiries every 2 s.
  const edge = new Edge({ args: ['-jwt-secret', secret, '-idle-timeout', '8s'] });
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());

  const now = () => Math.floor(Date.now() / 1000);

  test('a token function: refresh before expiry is accepted and the connection stays', async () => {
    const room = unique('refresh');
    const minted = [];
    // Tokens that live 3 s: the SDK refreshes at about 2.4 s.
    const token = () => {
      const t = hs256(secret, { sub: 'fresh', iat: now(), exp: now() + 3 });
      minted.push(t);
      return t;
    };
    const spy = spyTransport(nodeTransport(WebSocket));
    const c = client(edge, undefined, { token, transport: spy.transport });
    await c.join(room);
    assert.equal(c.user, 'fresh');
    await waitFor(() => spy.received.filter((f) => f.type === 'refreshed').length >= 2, { timeout: 10_000, what: 'two refreshes' });
    const sent = spy.sent.filter((f) => f.type === 'refresh');
    assert.equal(sent[0].token, minted[1]);
    assert.equal(spy.conns, 1, 'the same connection all along');
    assert.equal(c.state, State.OPEN);
    const ack = await c.send(room, 'still here');
    assert.ok(ack.seq > 0);
  });

  test('a refresh for another user is refused (forbidden): the SDK reconnects with a fresh token', async () => {
    let n = 0;
    const token = () => {
      n++;
      // The second token (the refresh) names someone else.
      return hs256(secret, { sub: n === 2 ? 'mallory' : 'honest', exp: now() + (n === 1 ? 2 : 3600) });
    };
    const spy = spyTransport(nodeTransport(WebSocket));
    const c = client(edge, undefined, { token, transport: spy.transport });
    const errors = record(c, ['error']);
    await c.ready();
    await waitFor(() => spy.conns === 2 && c.state === State.OPEN && n === 3, { timeout: 10_000, what: 'reconnect with a fresh token' });
    const refused = spy.received.find((f) => f.type === 'error' && f.code === 'forbidden');
    assert.ok(refused, 'the edge answered the refresh with forbidden');
    assert.ok(errors.some((e) => e.frame.code === 'forbidden'));
    assert.equal(c.user, 'honest');
  });

  test('an expiring token without a refresh: bye expired, then a reconnect with a fresh token', async () => {
    const room = unique('expiry');
    let n = 0;
    // The first token expired 27 s ago: the edge still takes it (30 s of
    // leeway) and ends the connection about 3 s from now; the SDK sees it
    // expired and does not refresh it.
    const token = () => hs256(secret, { sub: 'late', exp: ++n === 1 ? now() - 27 : now() + 3600 });
    const spy = spyTransport(nodeTransport(WebSocket));
    const c = client(edge, undefined, { token, transport: spy.transport });
    const other = client(edge, undefined, { token: hs256(secret, { sub: 'watcher' }) });
    await Promise.all([c.join(room), other.join(room)]);
    const bye = await nextEvent(c, 'bye', () => true, 15_000);
    assert.equal(bye.code, 'expired');
    await waitFor(() => spy.conns === 2 && c.state === State.OPEN, { timeout: 5000, what: 'reconnected' });
    assert.equal(n, 2);
    assert.equal(spy.sent.filter((f) => f.type === 'refresh').length, 0);
    // The room was joined again: messages flow.
    const got = nextEvent(c, 'msg', (m) => m.room === room);
    await other.send(room, 'welcome back');
    assert.equal((await got).body, 'welcome back');
  });
});
