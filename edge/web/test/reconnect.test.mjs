// Reconnection against a real edge that is killed and restarted on the same
// port and data directory: catch-up with since (no gap, no duplicate, seq
// order), the send queue, and bye "shutdown".
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { nodeTransport, State } from '../static/natter.js';
import { Edge, edgeClients, nextEvent, record, sleep, spyTransport, unique, waitFor } from './helpers.mjs';

/**
 * A transport with a switch: while `down`, opening fails at once (as with no
 * network), so a test decides when a client may come back.
 */
function gatedTransport(inner) {
  const gate = {
    down: false,
    opens: [],
    transport: {
      name: 'gated',
      open(url, opts, on) {
        gate.opens.push(Date.now());
        if (gate.down) throw new Error('network down (test)');
        return inner.open(url, opts, on);
      },
    },
  };
  return gate;
}

const { client, closeAll } = edgeClients({ reconnect: { base: 50, cap: 400 } });

describe('reconnect across an edge restart', () => {
  const edge = new Edge();
  before(() => edge.start(), { timeout: 300_000 });
  after(() => edge.dispose());
  afterEach(closeAll);

  async function restart(signal = 'SIGKILL') {
    await edge.stop(signal);
    await edge.start();
  }

  test('messages sent while a client was away arrive after its reconnect via since, once, in seq order', async () => {
    const room = unique('catchup');
    const gate = gatedTransport(spyTransport(nodeTransport(WebSocket)).transport);
    const spy = spyTransport(gate.transport);
    const alice = client(edge, 'alice', { transport: spy.transport });
    const bob = client(edge, 'bob');
    const got = record(alice, ['msg']);
    await Promise.all([alice.join(room), bob.join(room)]);
    const m1 = await bob.send(room, 'm1');
    await waitFor(() => got.length === 1, { what: 'm1' });

    // The edge dies; alice stays away (no network) while bob comes back.
    gate.down = true;
    await restart('SIGKILL');
    await waitFor(() => alice.state === State.RECONNECTING, { what: 'alice reconnecting' });
    await waitFor(() => bob.state === State.OPEN, { timeout: 15_000, what: 'bob back' });
    await waitFor(async () => {
      try { return (await bob.members(room)).includes('bob'); } catch { return false; }
    }, { what: 'bob rejoined' });
    const away = [];
    for (const body of ['m2', 'm3', 'm4']) away.push(await bob.send(room, body));

    // Alice comes back: her rejoin asks for what came after m1.
    gate.down = false;
    await waitFor(() => alice.state === State.OPEN, { timeout: 15_000, what: 'alice back' });
    const rejoin = spy.sent.filter((f) => f.type === 'join' && f.room === room).at(-1);
    assert.equal(rejoin.since, m1.seq, 'rejoined with since = the last seq seen');
    const live = await bob.send(room, 'm5');
    await waitFor(() => got.some((e) => e.frame.body === 'm5'), { timeout: 5000, what: 'm5' }).catch(() => {});
    await sleep(200); // let any duplicate show up
    const bodies = got.map((e) => e.frame.body);
    const seqs = got.map((e) => e.frame.seq);
    assert.deepEqual(bodies, ['m1', 'm2', 'm3', 'm4', 'm5'],
      'alice missed the messages sent while she was away (does the server implement join with since?)');
    assert.deepEqual(seqs, [m1.seq, ...away.map((a) => a.seq), live.seq]);
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], 'seq order');
  });

  test('a reconnect after a crash, without since traffic, still gets live messages', async () => {
    const room = unique('live');
    const alice = client(edge, 'alice');
    const bob = client(edge, 'bob');
    await Promise.all([alice.join(room), bob.join(room)]);
    await restart('SIGKILL');
    await waitFor(() => alice.state === State.OPEN && bob.state === State.OPEN, { timeout: 15_000, what: 'both back' });
    await waitFor(async () => {
      try { return (await bob.members(room)).length === 2; } catch { return false; }
    }, { what: 'both rejoined' });
    const got = nextEvent(alice, 'msg', (m) => m.body === 'after');
    await bob.send(room, 'after');
    assert.equal((await got).from, 'bob');
  });

  test('sends and dms issued while disconnected are queued and delivered once after the reconnect', async () => {
    const room = unique('queue');
    const alice = client(edge, 'alice', { maxQueue: 3 });
    const bob = client(edge, 'bob');
    await Promise.all([alice.join(room), bob.join(room)]);
    const msgs = record(bob, ['msg']);
    const dms = record(bob, ['dm']);

    await edge.stop('SIGKILL');
    await waitFor(() => alice.state === State.RECONNECTING, { what: 'alice notices' });
    const acks = [alice.send(room, 'q1'), alice.send(room, 'q2'), alice.dm('bob', 'qd')];
    await assert.rejects(alice.send(room, 'q3'), { code: 'queue_full' });
    await sleep(100);
    assert.equal(alice.state, State.RECONNECTING);
    await edge.start();

    const [a1, a2, a3] = await Promise.all(acks);
    assert.ok(a2.seq > a1.seq);
    assert.ok(['delivered', 'stored'].includes(a3.status));
    await waitFor(() => msgs.filter((e) => e.frame.room === room).length >= 2 && dms.length >= 1, { timeout: 10_000, what: 'bob gets them' });
    await sleep(300);
    assert.deepEqual(msgs.filter((e) => e.frame.room === room).map((e) => e.frame.body), ['q1', 'q2']);
    assert.deepEqual(dms.map((e) => e.frame.body), ['qd']);
  });

  test('a send on the wire when the edge dies is resent with the same id and delivered once', async () => {
    const room = unique('inflight');
    const spy = spyTransport(nodeTransport(WebSocket));
    const alice = client(edge, 'alice', { transport: spy.transport });
    const bob = client(edge, 'bob');
    await Promise.all([alice.join(room), bob.join(room)]);
    const msgs = record(bob, ['msg']);
    await edge.pause(); // the frame reaches the socket, no ack comes back
    const p = alice.send(room, 'in flight');
    await sleep(100);
    await edge.stop('SIGKILL');
    await edge.start();
    const ack = await p;
    const sends = spy.sent.filter((f) => f.type === 'send' && f.room === room);
    assert.equal(sends.length, 2, 'sent once, then resent after the reconnect');
    assert.equal(sends[0].id, sends[1].id);
    await waitFor(() => msgs.length >= 1, { timeout: 10_000, what: 'bob gets it' });
    await sleep(300);
    assert.deepEqual(msgs.map((e) => [e.frame.body, e.frame.seq]), [['in flight', ack.seq]]);
  });

  test('bye "shutdown" (SIGTERM): the client reconnects at once, not after its backoff', async () => {
    const spy = spyTransport(nodeTransport(WebSocket));
    const alice = client(edge, 'alice', { transport: spy.transport, reconnect: { base: 60_000, cap: 60_000 } });
    await alice.ready();
    const bye = nextEvent(alice, 'bye');
    const stopping = edge.stop('SIGTERM');
    assert.equal((await bye).code, 'shutdown');
    await waitFor(() => spy.conns >= 2, { timeout: 2000, what: 'an immediate reconnect attempt' });
    await stopping;
    // That attempt hit the dying edge; the next waits for the (long) backoff.
    assert.notEqual(alice.state, State.CLOSED);
    await edge.start();
  });
});
