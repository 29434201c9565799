// The WeChat mini-program adapter, against a stand-in for wx.connectSocket
// and its SocketTask built on the ws package, talking to a real edge.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { connect, wxTransport, NatterError, State } from '../static/natter.js';
import { Edge, hs256, nextEvent, record, unique, waitFor } from './helpers.mjs';

/**
 * A stand-in for the mini-program's `wx` object: connectSocket({url, header,
 * success, fail}) returns a SocketTask with onOpen/onMessage/onError/onClose
 * (callbacks get the platform's result objects: {data}, {code, reason},
 * {errMsg}), send({data, success, fail}) and close({code, reason}). Like the
 * platform, it refuses a 6th socket open at once and close codes other than
 * 1000 and 3000–4999.
 */
function makeWx({ maxSockets = 5 } = {}) {
  const wx = {
    calls: [],
    live: 0,
    maxLive: 0,
    connectSocket(opts) {
      wx.calls.push(opts);
      const cbs = { open: [], message: [], error: [], close: [] };
      const fire = (kind, res) => { for (const cb of cbs[kind]) cb(res); };
      const task = {
        readyState: 0,
        onOpen: (cb) => cbs.open.push(cb),
        onMessage: (cb) => cbs.message.push(cb),
        onError: (cb) => cbs.error.push(cb),
        onClose: (cb) => cbs.close.push(cb),
        send({ data, success, fail }) {
          if (task.readyState !== 1) {
            if (fail) fail({ errMsg: 'sendSocketMessage:fail WebSocket is not connected' });
            return;
          }
          ws.send(data, (err) => (err ? fail && fail({ errMsg: String(err) }) : success && success({ errMsg: 'sendSocketMessage:ok' })));
        },
        close({ code = 1000, reason = '', success, fail } = {}) {
          if (code !== 1000 && (code < 3000 || code > 4999)) {
            if (fail) fail({ errMsg: 'closeSocket:fail invalid code' });
            return;
          }
          task.readyState = 2;
          ws.close(code, reason);
          if (success) success({ errMsg: 'closeSocket:ok' });
        },
      };
      if (wx.live >= maxSockets) {
        setTimeout(() => {
          if (opts.fail) opts.fail({ errMsg: 'connectSocket:fail exceed max task count' });
        }, 0);
        return task;
      }
      wx.live++;
      wx.maxLive = Math.max(wx.maxLive, wx.live);
      const ws = new WebSocket(opts.url, { headers: opts.header || {} });
      let released = false;
      const release = () => {
        if (!released) {
          released = true;
          wx.live--;
        }
      };
      ws.on('open', () => {
        task.readyState = 1;
        if (opts.success) opts.success({ errMsg: 'connectSocket:ok' });
        fire('open', { header: {}, profile: {} });
      });
      ws.on('message', (data, isBinary) => fire('message', { data: isBinary ? data.buffer : String(data) }));
      ws.on('error', (err) => fire('error', { errMsg: String(err && err.message) }));
      ws.on('close', (code, reason) => {
        task.readyState = 3;
        release();
        fire('close', { code, reason: String(reason) });
      });
      return task;
    },
  };
  return wx;
}

const clients = [];
afterEach(() => {
  while (clients.length) clients.pop().close();
});

describe('wxTransport refuses what mini-programs cannot open', () => {
  const wx = makeWx();
  const t = wxTransport(wx);

  test('ws:// and URLs with a port are refused; wss:// without a port is accepted', () => {
    for (const url of ['ws://chat.example.com/ws', 'wss://chat.example.com:8443/ws', 'wss://chat.example.com:443/ws',
      'ws://127.0.0.1:8080/ws', 'wss://[::1]:443/ws', 'https://chat.example.com/ws', 'chat.example.com/ws']) {
      assert.throws(() => t.check(url), (e) => e instanceof NatterError && e.code === 'bad_url', url);
      assert.throws(() => connect(url, { transport: t }), { code: 'bad_url' }, url);
    }
    for (const url of ['wss://chat.example.com/ws', 'wss://chat.example.com/ws?x=1', 'wss://[::1]/ws', 'WSS://Chat.Example.com']) {
      assert.doesNotThrow(() => t.check(url), url);
    }
    assert.equal(wx.calls.length, 0, 'nothing was opened');
  });

  test('allowInsecure (development) lets ws:// and ports through', () => {
    const dev = wxTransport(wx, { allowInsecure: true });
    assert.doesNotThrow(() => dev.check('ws://127.0.0.1:8080/ws'));
    assert.throws(() => dev.check('http://127.0.0.1:8080/ws'), { code: 'bad_url' });
  });

  test('connect picks the wx transport by itself when wx.connectSocket exists', () => {
    globalThis.wx = wx;
    try {
      assert.throws(() => connect('ws://127.0.0.1:1/ws'), { code: 'bad_url' });
    } finally {
      delete globalThis.wx;
    }
  });
});

describe('wxTransport against a real edge', () => {
  const edge = new Edge();
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());

  function wxClient(wx, user, opts = {}) {
    const c = connect(edge.wsURL, {
      user,
      transport: wxTransport(wx, { allowInsecure: true }),
      reconnect: { base: 50, cap: 400 },
      ...opts,
    });
    clients.push(c);
    return c;
  }

  test('join, send, msg, dm and members through SocketTask', async () => {
    const wx = makeWx();
    const room = unique('wxroom');
    const a = wxClient(wx, 'mini-a');
    const b = wxClient(wx, 'mini-b');
    assert.equal((await a.ready()).user, 'mini-a');
    await Promise.all([a.join(room), b.join(room)]);
    const got = nextEvent(b, 'msg', (m) => m.room === room);
    const ack = await a.send(room, { text: '你好' });
    const m = await got;
    assert.deepEqual(m.body, { text: '你好' });
    assert.equal(m.seq, ack.seq);
    const dm = nextEvent(a, 'dm');
    assert.equal((await b.dm('mini-a', 'hi a')).status, 'delivered');
    assert.equal((await dm).body, 'hi a');
    assert.deepEqual(await a.members(room), ['mini-a', 'mini-b']);
    assert.equal(wx.live, 2);
    a.close();
    b.close();
    await waitFor(() => wx.live === 0, { what: 'sockets closed' });
  });

  test('the adapter opens at most 5 sockets at once', async () => {
    const wx = makeWx({ maxSockets: 100 });
    const t = wxTransport(wx, { allowInsecure: true });
    const conns = [];
    const closed = [];
    const on = (i) => ({ open() {}, message() {}, error() {}, close: () => closed.push(i) });
    for (let i = 0; i < 5; i++) conns.push(t.open(`${edge.wsURL}?user=many`, {}, on(i)));
    assert.equal(t.sockets, 5);
    assert.throws(() => t.open(`${edge.wsURL}?user=many`, {}, on(5)), { code: 'too_many_sockets' });
    conns[0].close();
    assert.equal(t.sockets, 5, 'a closing socket still counts');
    assert.throws(() => t.open(`${edge.wsURL}?user=many`, {}, on(5)), { code: 'too_many_sockets' });
    await waitFor(() => t.sockets === 4, { what: 'the close to complete' });
    conns.push(t.open(`${edge.wsURL}?user=many`, {}, on(6)));
    for (const c of conns.slice(1)) c.close(1001, 'x'); // 1001 is mapped to 1000 for wx
    await waitFor(() => wx.live === 0, { what: 'all closed' });
    assert.equal(wx.maxLive, 5);
  });

  test('reconnects through wx after an edge restart, never holding two sockets', async () => {
    const wx = makeWx();
    const room = unique('wxre');
    const a = wxClient(wx, 'mini-r');
    const b = wxClient(wx, 'mini-s');
    await Promise.all([a.join(room), b.join(room)]);
    const got = record(a, ['msg']);
    const m1 = await b.send(room, 'before');
    await waitFor(() => got.length === 1);
    await edge.stop('SIGKILL');
    await waitFor(() => a.state === State.RECONNECTING);
    await edge.start();
    await waitFor(() => a.state === State.OPEN && b.state === State.OPEN, { timeout: 15_000 });
    await waitFor(async () => {
      try { return (await b.members(room)).length === 2; } catch { return false; }
    });
    await b.send(room, 'after');
    await waitFor(() => got.length === 2, { what: 'after' });
    assert.deepEqual(got.map((e) => e.frame.body), ['before', 'after']);
    assert.ok(got[1].frame.seq > m1.seq);
    assert.ok(wx.maxLive <= 2, `at most one socket per client, saw ${wx.maxLive}`);
  });
});

describe('wxTransport with a production edge (JWT)', () => {
  const secret = 'wx-test-secret-of-at-least-32-bytes!!';
  const edge = new Edge({ args: ['-jwt-secret', secret] });
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());

  test('the token goes as an Authorization: Bearer header, not in the URL', async () => {
    const wx = makeWx();
    const token = hs256(secret, { sub: 'wxuser' });
    const c = connect(edge.wsURL, { token, transport: wxTransport(wx, { allowInsecure: true }) });
    clients.push(c);
    const w = await c.ready();
    assert.equal(w.user, 'wxuser');
    assert.equal(wx.calls[0].header.Authorization, `Bearer ${token}`);
    assert.ok(!wx.calls[0].url.includes('token='));
  });
});
