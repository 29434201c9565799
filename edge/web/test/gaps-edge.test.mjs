// Gap detection against a real edge (PROTOCOL.md, "Gap detection"): live
// msg frames carry prev, history and join-since replay frames do not; and
// a live frame lost between the edge and the SDK is fetched by the SDK with
// history before the application sees the next one.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { nodeTransport } from '../static/natter.js';
import { Edge, edgeClients, spyTransport, unique, waitFor } from './helpers.mjs';

const { client, closeAll } = edgeClients({ reconnect: { base: 50, cap: 500 } });
afterEach(closeAll);

/**
 * Wraps a transport so that the live msg frames for which drop(frame) is
 * true never reach the client (a loss on the way), and records the frames
 * it writes.
 */
function lossyTransport(inner, drop) {
  const lossy = {
    dropped: [],
    sent: [],
    transport: {
      name: `lossy(${inner.name})`,
      open(url, opts, on) {
        const conn = inner.open(url, opts, {
          ...on,
          message(data) {
            let f;
            try { f = JSON.parse(String(data)); } catch { /* not JSON */ }
            if (f && f.type === 'msg' && f.id === undefined && drop(f)) {
              lossy.dropped.push(f);
              return;
            }
            on.message(data);
          },
        });
        return {
          send(text) {
            lossy.sent.push(JSON.parse(text));
            conn.send(text);
          },
          close(code, reason) { conn.close(code, reason); },
        };
      },
    },
  };
  return lossy;
}

describe('gap detection against a real edge', () => {
  const edge = new Edge();
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());

  test('live msg frames carry prev; history and replayed frames do not', async () => {
    const room = unique('prev');
    const spy = spyTransport(nodeTransport(WebSocket));
    const a = client(edge, 'alice', { transport: spy.transport });
    await a.join(room);
    const seqs = [];
    for (let i = 0; i < 3; i++) seqs.push((await a.send(room, { n: i })).seq);
    await waitFor(() => a.lastSeq(room) === seqs[2], { what: 'the three messages' });
    const live = spy.received.filter((f) => f.type === 'msg' && f.room === room);
    assert.deepEqual(live.map((f) => f.seq), seqs);
    assert.deepEqual(live.map((f) => f.prev), [0, seqs[0], seqs[1]]);

    const page = await a.history(room, { limit: 10 });
    assert.deepEqual(page.map((m) => m.seq), seqs);
    for (const m of page) assert.equal('prev' in m, false, 'a history frame has no prev');

    const b = client(edge, 'bob');
    const replayed = [];
    b.on('msg', (m) => { if (m.room === room) replayed.push(m); });
    await b.join(room, { since: 0 });
    await waitFor(() => replayed.length === 3, { what: 'the replay' });
    assert.deepEqual(replayed.map((m) => m.seq), seqs);
    for (const m of replayed) assert.equal('prev' in m, false, 'a replayed frame has no prev');
  });

  test('a live frame lost on the way is fetched with history before the next one is shown', async () => {
    const room = unique('gap');
    let n = 0;
    const lossy = lossyTransport(nodeTransport(WebSocket), (f) => f.room === room && ++n === 2);
    const b = client(edge, 'bob', { transport: lossy.transport });
    const a = client(edge, 'alice');
    await Promise.all([a.join(room), b.join(room)]);
    const got = [];
    b.on('msg', (m) => { if (m.room === room) got.push(m.seq); });
    const seqs = [];
    for (const body of ['one', 'two', 'three']) seqs.push((await a.send(room, body)).seq);
    await waitFor(() => got.length === 3, { what: 'three messages' });
    assert.equal(lossy.dropped.length, 1);
    assert.equal(lossy.dropped[0].seq, seqs[1]);
    assert.deepEqual(got, seqs, 'the lost one is shown, in order');
    const fills = lossy.sent.filter((f) => f.type === 'history' && f.room === room);
    assert.equal(fills.length, 1, 'one history request filled the gap');
    assert.equal(fills[0].after, seqs[0]);
    assert.equal(b.lastSeq(room), seqs[2]);
  });
});
