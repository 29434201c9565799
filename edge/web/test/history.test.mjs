// The SDK's history helper: before/after/limit on the wire, and the page's
// `more` (PROTOCOL.md, "History paging: pages bounded by bytes as well as
// count; more").
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import { connect } from '../static/natter.js';
import { fakeServer } from './fake.mjs';

const clients = [];
afterEach(() => {
  while (clients.length) clients.pop().close();
});

async function client() {
  const srv = fakeServer({ auto: false });
  const c = connect('ws://fake/ws', { transport: srv.transport, reconnect: { base: 10, cap: 50 } });
  clients.push(c);
  await c.ready();
  return { srv, c };
}

test('history pages say more, as a property that is not an element', async () => {
  const { srv, c } = await client();
  const h = c.history('r', { limit: 2 });
  const f = srv.last.frames('history')[0];
  assert.deepEqual({ room: f.room, limit: f.limit, before: f.before, after: f.after }, { room: 'r', limit: 2, before: undefined, after: undefined });
  srv.last.deliver({ type: 'history', id: f.id, room: 'r', messages: [{ seq: 8 }, { seq: 9 }], more: true });
  const page = await h;
  assert.equal(page.more, true);
  assert.deepEqual(page, [{ seq: 8 }, { seq: 9 }]);
  assert.deepEqual(Object.keys(page), ['0', '1']);
});

test('history with after; no more when the frame has none', async () => {
  const { srv, c } = await client();
  const h = c.history('r', { after: 41, limit: 500 });
  const f = srv.last.frames('history')[0];
  assert.deepEqual({ after: f.after, limit: f.limit, before: f.before }, { after: 41, limit: 500, before: undefined });
  srv.last.deliver({ type: 'history', id: f.id, room: 'r', messages: [{ seq: 42 }] });
  const page = await h;
  assert.equal(page.more, false);
  assert.deepEqual(page.map((m) => m.seq), [42]);
});

test('paging backward until no more', async () => {
  const { srv, c } = await client();
  const pages = [
    { messages: [{ seq: 5 }, { seq: 6 }], more: true },
    { messages: [{ seq: 3 }, { seq: 4 }], more: true },
    { messages: [{ seq: 1 }] },
  ];
  const all = [];
  let before;
  for (let i = 0; ; i++) {
    const p = c.history('r', before === undefined ? { limit: 500 } : { limit: 500, before });
    const f = srv.last.frames('history')[i];
    assert.equal(f.before, before);
    srv.last.deliver({ type: 'history', id: f.id, room: 'r', ...pages[i] });
    const page = await p;
    all.unshift(...page);
    if (!page.more) break;
    before = page[0].seq;
  }
  assert.deepEqual(all.map((m) => m.seq), [1, 3, 4, 5, 6]);
});
