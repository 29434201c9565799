// The SDK's protocol v1.1 additions against the scripted fake transport:
// typing, read positions and unread counts, send with echo:false, and the
// token function (refresh before expiry, reconnect with a fresh token when
// a refresh is refused or the server says bye expired).
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { connect, State, tokenExpiry } from '../static/natter.js';
import { fakeJwt, fakeServer, tick } from './fake.mjs';
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

/** A fake token whose exp is `secs` seconds from now (fractional: exact timing). */
const jwtIn = (secs, claims = {}) => fakeJwt({ sub: 'tester', exp: Date.now() / 1000 + secs, ...claims });

describe('typing', () => {
  test('typing sends {type:typing, room}, is throttled per room, and typing frames become events', async () => {
    const srv = fakeServer();
    const c = client(srv, { typingInterval: 200 });
    await c.join('r');
    const events = [];
    c.on('typing', (t) => events.push(t));

    const ack = await c.typing('r');
    assert.equal(ack.type, 'ack');
    assert.deepEqual(srv.last.frames('typing').map(({ type, room }) => ({ type, room })), [{ type: 'typing', room: 'r' }]);
    assert.equal(await c.typing('r'), null, 'a second one within typingInterval is not sent');
    await c.typing('other'); // another room has its own interval
    assert.equal(srv.last.frames('typing').length, 2);
    await tick(220);
    await c.typing('r');
    assert.equal(srv.last.frames('typing').length, 3, 'sent again after the interval');
    // A send makes the next typing news at once.
    await c.send('r', 'x');
    assert.notEqual(await c.typing('r'), null);

    srv.last.deliver({ type: 'typing', room: 'r', user: 'bob' });
    assert.deepEqual(events, [{ type: 'typing', room: 'r', user: 'bob' }]);
  });

  test('typing while disconnected resolves null and is not queued', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    srv.refuse = true;
    srv.last.drop();
    assert.equal(c.state, State.RECONNECTING);
    assert.equal(await c.typing('r'), null);
    srv.refuse = false;
    await waitFor(() => c.state === State.OPEN, { what: 'reconnect' });
    await tick(5);
    assert.equal(srv.last.frames('typing').length, 0);
  });
});

describe('read positions and unread', () => {
  test('read sends room and seq and resolves with the ack; read frames become events', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    const reads = [];
    c.on('read', (r) => reads.push(r));
    const ack = await c.read('lobby', 42);
    assert.equal(ack.seq, 42);
    assert.equal(ack.room, 'lobby');
    const f = srv.last.frames('read')[0];
    assert.equal(f.room, 'lobby');
    assert.equal(f.seq, 42);
    srv.last.deliver({ type: 'read', room: 'lobby', seq: 43, user: 'tester' });
    assert.deepEqual(reads, [{ type: 'read', room: 'lobby', seq: 43, user: 'tester' }]);
  });

  test('unread resolves with the room → count map', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    await c.ready();
    const p = c.unread();
    const f = srv.last.frames('unread')[0];
    assert.ok(f.id);
    srv.last.deliver({ type: 'unread', id: f.id, rooms: { lobby: 0, 'team-a': 5 } });
    assert.deepEqual(await p, { lobby: 0, 'team-a': 5 });
  });

  test('read and unread wait for a connection like other commands', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.ready();
    srv.refuse = true;
    srv.last.drop();
    const p = c.read('lobby', 7);
    srv.refuse = false;
    assert.equal((await p).seq, 7);
  });
});

describe('send with echo:false', () => {
  test('the frame says echo:false; the ack comes, no msg event for it', async () => {
    const srv = fakeServer();
    const c = client(srv);
    await c.join('r');
    const got = [];
    c.on('msg', (m) => got.push(m.seq));
    const ack = await c.send('r', 'quiet', { echo: false });
    assert.equal(srv.last.frames('send')[0].echo, false);
    assert.equal(ack.seq, 1);
    await c.send('r', 'loud');
    assert.equal(srv.last.frames('send')[1].echo, undefined, 'echo is left out by default');
    assert.deepEqual(got, [2]);
  });

  test('an own echo:false message that a gap fill or a replay brings is dropped', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv);
    const got = [];
    c.on('msg', (m) => got.push([m.seq, m.body]));
    const pj = c.join('r');
    await tick();
    srv.last.deliver({ type: 'joined', id: srv.last.frames('join')[0].id, room: 'r', seq: 10 });
    await pj;

    const ps = c.send('r', 'mine', { echo: false });
    srv.last.deliver({ type: 'ack', id: srv.last.frames('send')[0].id, seq: 11 });
    await ps;
    // Bob's message says 11 came before it: the client fetches 11 (its own)
    // and drops it, then hands over 12.
    srv.last.deliver({ type: 'msg', room: 'r', from: 'bob', seq: 12, prev: 11, ts: 1, body: 'b12' });
    const h = srv.last.frames('history')[0];
    assert.equal(h.after, 10);
    srv.last.deliver({ type: 'history', id: h.id, room: 'r', messages: [
      { type: 'msg', room: 'r', from: 'tester', seq: 11, ts: 1, body: 'mine' },
      { type: 'msg', room: 'r', from: 'bob', seq: 12, ts: 1, body: 'b12' },
    ] });
    await tick();
    assert.deepEqual(got, [[12, 'b12']]);
    assert.equal(c.lastSeq('r'), 12);

    // Another quiet one, then the connection drops: the replay brings it.
    const ps2 = c.send('r', 'mine2', { echo: false });
    srv.last.deliver({ type: 'ack', id: srv.last.frames('send')[1].id, seq: 13 });
    await ps2;
    srv.last.drop();
    await waitFor(() => srv.conns.length === 2 && srv.last.frames('join').length === 1, { what: 'rejoin' });
    const rj = srv.last.frames('join')[0];
    assert.equal(rj.since, 12);
    srv.last.deliver({ type: 'joined', id: rj.id, room: 'r', seq: 14 });
    srv.last.deliver({ type: 'msg', room: 'r', from: 'tester', seq: 13, ts: 1, body: 'mine2' });
    srv.last.deliver({ type: 'msg', room: 'r', from: 'bob', seq: 14, ts: 1, body: 'b14' });
    assert.deepEqual(got, [[12, 'b12'], [14, 'b14']]);
  });
});

describe('token', () => {
  test('tokenExpiry reads exp from the payload, without verifying', () => {
    assert.equal(tokenExpiry(fakeJwt({ exp: 1700000000 })), 1700000000000);
    assert.equal(tokenExpiry(fakeJwt({ exp: 1700000000, name: 'Zoë 雪' })), 1700000000000);
    assert.equal(tokenExpiry('not-a-jwt'), undefined);
    assert.equal(tokenExpiry('a.!!!.c'), undefined);
    assert.equal(tokenExpiry(`x.${Buffer.from('{"sub":"a"}').toString('base64url')}.y`), undefined);
    assert.equal(tokenExpiry(undefined), undefined);
  });

  test('a token function is called before connecting; its token goes to the transport', async () => {
    const srv = fakeServer();
    let calls = 0;
    const tok = jwtIn(3600);
    const c = client(srv, { token: async () => { calls++; return tok; } });
    await c.ready();
    assert.equal(calls, 1);
    assert.equal(srv.last.opts.token, tok);
    // A plain reconnect (the token is far from expiry) reuses it.
    srv.last.drop();
    await waitFor(() => srv.conns.length === 2 && c.state === State.OPEN, { what: 'reconnect' });
    assert.equal(calls, 1);
    assert.equal(srv.last.opts.token, tok);
  });

  test('refresh at 80% of a short lifetime, with a new token from the function; then again for the new one', async () => {
    const srv = fakeServer();
    const tokens = [];
    const c = client(srv, { token: () => { const t = jwtIn(2.5); tokens.push([Date.now(), t]); return t; } });
    const refreshed = [];
    c.on('refreshed', (f) => refreshed.push([Date.now(), f]));
    await c.ready();
    const t0 = tokens[0][0];
    await waitFor(() => srv.last.frames('refresh').length === 1, { timeout: 4000, what: 'first refresh' });
    const at = Date.now() - t0;
    assert.ok(at >= 1900 && at <= 2400, `refreshed ${at} ms after getting a 2.5 s token (want about 2000)`);
    const f = srv.last.frames('refresh')[0];
    assert.equal(f.token, tokens[1][1], 'refresh carries the function\'s new token');
    assert.ok(f.id);
    await waitFor(() => refreshed.length === 1, { what: 'refreshed event' });
    assert.equal(refreshed[0][1].type, 'refreshed');
    // The next refresh is due 80% into the new token's life.
    await waitFor(() => srv.last.frames('refresh').length === 2, { timeout: 4000, what: 'second refresh' });
    assert.equal(srv.conns.length, 1, 'the connection stayed open');
    // A reconnect now uses the refreshed token.
    srv.last.drop();
    await waitFor(() => srv.conns.length === 2 && c.state === State.OPEN, { what: 'reconnect' });
    assert.equal(srv.last.opts.token, tokens[2][1]);
  });

  test('a long-lived token is refreshed a minute before its expiry', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000_000_000 });
    const flush = async () => { for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)); };
    const srv = fakeServer({ onOpen: (conn) => conn.welcome({ heartbeat: 3600 }) });
    let calls = 0;
    const c = client(srv, { token: () => { calls++; return fakeJwt({ exp: Date.now() / 1000 + 600 }); } });
    await flush();
    assert.equal(c.state, State.OPEN);
    t.mock.timers.tick(539_000);
    await flush();
    assert.equal(srv.last.frames('refresh').length, 0, 'not yet at 539 s');
    t.mock.timers.tick(1_000);
    await flush();
    assert.equal(srv.last.frames('refresh').length, 1, 'refreshed at 540 s, a minute before the 600 s expiry');
    assert.equal(calls, 2);
    await flush();
    // The new token (600 s from now) is refreshed 540 s later.
    t.mock.timers.tick(539_000);
    await flush();
    assert.equal(srv.last.frames('refresh').length, 1);
    t.mock.timers.tick(1_000);
    await flush();
    assert.equal(srv.last.frames('refresh').length, 2);
  });

  test('a refused refresh makes the client reconnect at once with a fresh token', async () => {
    const srv = fakeServer({ auto: false });
    let n = 0;
    const c = client(srv, { token: () => jwtIn(n++ === 0 ? 1 : 3600, { n }) , reconnect: { base: 5000, cap: 5000 } });
    const errors = [];
    c.on('error', (e) => errors.push(e));
    await c.ready();
    const first = srv.last;
    await waitFor(() => first.frames('refresh').length === 1, { timeout: 3000, what: 'refresh' });
    first.deliver({ type: 'error', id: first.frames('refresh')[0].id, code: 'forbidden', message: 'token refused' });
    await waitFor(() => srv.conns.length === 2 && c.state === State.OPEN, { timeout: 1000, what: 'immediate reconnect (backoff 5 s would be too slow)' });
    assert.ok(first.closed, 'the old connection was closed');
    assert.equal(n, 3, 'a third token was asked for the new connection');
    assert.equal(tokenExpiry(srv.last.opts.token) > Date.now() + 3000_000, true, 'the new connection uses the fresh token');
    assert.ok(errors.some((e) => e.code === 'forbidden'), `errors: ${errors.map((e) => e.code)}`);
  });

  test('bye expired: reconnect at once with a fresh token', async () => {
    const srv = fakeServer();
    let n = 0;
    const c = client(srv, { token: () => jwtIn(3600, { n: ++n }), reconnect: { base: 5000, cap: 5000 } });
    await c.ready();
    const first = srv.last.opts.token;
    srv.last.deliver({ type: 'bye', code: 'expired', message: 'token expired' });
    srv.last.drop(1000);
    await waitFor(() => srv.conns.length === 2 && c.state === State.OPEN, { timeout: 1000, what: 'immediate reconnect' });
    assert.equal(n, 2);
    assert.notEqual(srv.last.opts.token, first);
  });

  test('bye expired with a fixed token closes the client with code expired', async () => {
    const srv = fakeServer({ auto: false });
    const c = client(srv, { token: jwtIn(3600) });
    await c.ready();
    const p = c.members('r').catch((e) => e);
    srv.last.deliver({ type: 'bye', code: 'expired', message: 'token expired' });
    srv.last.drop(1000);
    const err = await p;
    assert.equal(err.code, 'expired');
    assert.equal(c.state, State.CLOSED);
    assert.equal(srv.conns.length, 1);
  });

  test('a connection that closes before welcome gets a fresh token next time', async () => {
    let opened = 0;
    const srv = fakeServer({ onOpen: (conn) => (++opened === 1 ? conn.drop(1006) : conn.welcome()) });
    let n = 0;
    const c = client(srv, { token: () => jwtIn(3600, { n: ++n }) });
    await c.ready();
    assert.equal(n, 2, 'the token was asked for again after the failed attempt');
    assert.equal(JSON.parse(Buffer.from(srv.last.opts.token.split('.')[1], 'base64url')).n, 2);
  });

  test('a token function that fails at connect is retried with backoff; one that fails at refresh keeps the connection', async () => {
    const srv = fakeServer();
    let n = 0;
    const c = client(srv, {
      token: () => {
        n++;
        if (n === 1 || n === 3) throw new Error('auth server down');
        return jwtIn(n === 2 ? 1.5 : 3600);
      },
    });
    const errors = [];
    c.on('error', (e) => errors.push(e));
    await c.ready();
    assert.equal(n, 2);
    assert.equal(errors[0].code, 'token');
    assert.match(errors[0].message, /auth server down/);
    // At 1.2 s the refresh calls the function, which fails: reported, the
    // connection stays, and it is tried again (at least 1 s later).
    await waitFor(() => n === 3, { timeout: 3000, what: 'refresh attempt' });
    assert.equal(errors.length, 2);
    assert.equal(errors[1].code, 'token');
    assert.equal(srv.conns.length, 1);
    assert.equal(c.state, State.OPEN);
    await waitFor(() => srv.last.frames('refresh').length === 1, { timeout: 3000, what: 'refresh retried' });
    assert.equal(n, 4);
    assert.equal(srv.conns.length, 1);
  });

  test('a token function that returns nothing, or hangs, fails with code token', async () => {
    const srv = fakeServer();
    const c = client(srv, { token: () => new Promise(() => {}), timeout: 50, reconnect: false });
    const err = await c.ready().catch((e) => e);
    assert.equal(err.code, 'closed');
    const srv2 = fakeServer();
    const errors = [];
    const c2 = client(srv2, { token: () => '', reconnect: false });
    c2.on('error', (e) => errors.push(e));
    await c2.ready().catch(() => {});
    assert.equal(errors[0].code, 'token');
    assert.equal(srv2.conns.length, 0);
  });
});
