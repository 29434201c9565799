// End to end in a real browser: headless Chromium (playwright-core, the
// system's /usr/bin/chromium) opens the demo page twice against a real edge.
// Two users pick names, join a room and chat; one reloads and must see the
// history and the right presence; a dm goes across. A screenshot is written
// to /tmp/natter-demo.png (NATTER_SCREENSHOT overrides). Then two new users
// chat, the edge is killed (SIGKILL) and restarted on the same port and data
// directory, one of them writes while it is down: after the pages reconnect
// both show every message exactly once, in the same order, and both users
// online; a screenshot of that goes to /tmp/natter-demo-restart.png.
// Protocol v1.1 in the page: a typing line ("erin is typing…") on the other
// page; unread badges in the sidebar that appear, survive a reload (the
// server's unread counts) and clear when the room is shown, on the user's
// other window too (read positions); "load older" paging back through
// history and day separators; and the layout at phone width (390 px): the
// message list takes the screen, rooms and members are drawers
// (screenshots /tmp/natter-demo-phone*.png).
//
// The page comes from the edge itself when it serves /natter.js (web.Handler
// mounted); otherwise from a small static server here, pointed at the edge
// with ?ws=. Without Chromium (or playwright-core) the test is skipped:
// run edge/web/test/setup.sh.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Edge, staticDir, unique } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT = process.env.NATTER_SCREENSHOT || '/tmp/natter-demo.png';

let chromium = null;
let skip = false;
if (!existsSync(CHROMIUM)) {
  skip = `no Chromium at ${CHROMIUM}: run edge/web/test/setup.sh (apt-get install -y chromium) or set CHROMIUM_PATH`;
} else {
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    skip = 'playwright-core is not installed: run npm ci in edge/web (or edge/web/test/setup.sh)';
  }
}
if (skip) {
  console.log(`# e2e skipped: ${skip}`);
  test('demo page in Chromium', { skip }, () => {});
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/** Serves edge/web/static the way web.Handler does. */
function staticServer() {
  return new Promise((resolve) => {
    const srv = http.createServer(async (req, res) => {
      const url = new URL(req.url, 'http://x');
      const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
      if (name.includes('/') || name.includes('..')) {
        res.writeHead(404).end();
        return;
      }
      try {
        const body = await readFile(path.join(staticDir, name));
        res.writeHead(200, {
          'Content-Type': TYPES[path.extname(name)] || 'application/octet-stream',
          'Cache-Control': 'no-cache',
          'Content-Security-Policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'",
        });
        res.end(body);
      } catch {
        res.writeHead(404).end();
      }
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

// Without a browser the skipped test above stands for this suite.
const suite = skip ? () => {} : describe;

suite('demo page in Chromium', () => {
  const edge = new Edge();
  let server = null;
  let browser = null;
  let pageURL = '';
  const problems = [];

  before(async () => {
    await edge.start();
    const probe = await fetch(`${edge.httpURL}/natter.js`).catch(() => null);
    if (probe && probe.ok && (probe.headers.get('content-type') || '').includes('javascript')) {
      pageURL = `${edge.httpURL}/`;
    } else {
      server = await staticServer();
      pageURL = `http://127.0.0.1:${server.address().port}/?ws=${encodeURIComponent(edge.wsURL)}`;
    }
    // launch() runs Chromium with a fresh temporary profile (user-data-dir)
    // of its own, removed on close.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, { timeout: 300_000 });

  after(async () => {
    if (browser) await browser.close();
    if (server) await new Promise((r) => server.close(r));
    await edge.dispose();
  });

  async function openPage(name, { viewport = { width: 1200, height: 720 }, query = '' } = {}) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`${name}: page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`${name}: console: ${msg.text()}`);
    });
    await page.goto(query ? pageURL + (pageURL.includes('?') ? '&' : '?') + query : pageURL);
    await page.fill('#name', name);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#state[data-state="open"]', { timeout: 15_000 });
    return page;
  }

  // Joins a room and waits until the page lists its own user as a member:
  // the join was acknowledged and the members answered. On a phone-sized
  // page the rooms drawer is opened first.
  async function joinRoom(page, room, me) {
    if (!(await page.isVisible('#room-input'))) await page.click('#toggle-rooms');
    await page.fill('#room-input', room);
    await page.press('#room-input', 'Enter');
    await page.waitForSelector(`#rooms li.active button[data-name="${room}"]`, { state: 'attached' });
    await page.waitForSelector(`#members button[data-user="${me}"]`, { timeout: 10_000, state: 'attached' });
  }

  async function say(page, text) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
  }

  const bodies = (page) => page.$$eval('#messages li.msg:not(.pending) .body', (els) => els.map((e) => e.textContent));
  const members = (page) => page.$$eval('#members button[data-user]', (els) => els.map((e) => e.dataset.user));

  async function waitBodies(page, want, what) {
    try {
      await page.waitForFunction(
        (w) => JSON.stringify([...document.querySelectorAll('#messages li.msg:not(.pending) .body')].map((e) => e.textContent)) === JSON.stringify(w),
        want, { timeout: 10_000 });
    } catch {
      assert.deepEqual(await bodies(page), want, what);
    }
  }

  async function waitMembers(page, want, what) {
    try {
      await page.waitForFunction(
        (w) => JSON.stringify([...document.querySelectorAll('#members button[data-user]')].map((e) => e.dataset.user)) === JSON.stringify(w),
        want, { timeout: 10_000 });
    } catch {
      assert.deepEqual(await members(page), want, what);
    }
  }

  test('two users chat; after a reload the history and presence are right', async () => {
    const room = unique('demo');
    const alice = await openPage('alice');
    const bob = await openPage('bob');
    await joinRoom(alice, room, 'alice');
    await joinRoom(bob, room, 'bob');
    await waitMembers(alice, ['alice', 'bob'], 'alice sees both online');
    await waitMembers(bob, ['alice', 'bob'], 'bob sees both online');

    await say(alice, 'Hi Bob! Welcome to natter.');
    await waitBodies(bob, ['Hi Bob! Welcome to natter.'], 'bob gets alice\'s message');
    await say(bob, 'Hey Alice, this is fast.');
    await say(bob, 'Messages come with sender and time.');
    const convo = ['Hi Bob! Welcome to natter.', 'Hey Alice, this is fast.', 'Messages come with sender and time.'];
    await waitBodies(alice, convo, 'alice sees the conversation');
    const senders = await alice.$$eval('#messages li.msg', (els) => els.map((e) => e.querySelector('.from').textContent));
    assert.deepEqual(senders, ['alice', 'bob', 'bob']);
    const times = await alice.$$eval('#messages li.msg time', (els) => els.map((e) => e.textContent));
    assert.ok(times.every((t) => /\d{1,2}:\d{2}/.test(t)), `times: ${times}`);

    // Bob reloads: same name (sessionStorage), same rooms, the history back.
    await bob.reload();
    await bob.waitForSelector('#state[data-state="open"]', { timeout: 15_000 });
    assert.equal(await bob.textContent('#me-name'), 'bob');
    await bob.click(`#rooms button[data-name="${room}"]`);
    await waitBodies(bob, convo, 'bob sees the history after his reload');
    await waitMembers(bob, ['alice', 'bob'], 'bob sees both online after his reload');
    await waitMembers(alice, ['alice', 'bob'], 'alice still sees bob online after his reload');
    await bob.screenshot({ path: SCREENSHOT.replace(/\.png$/, '') + '-reloaded.png' });

    // Live messages still flow both ways after the reload.
    await say(alice, 'Still here?');
    await waitBodies(bob, [...convo, 'Still here?'], 'bob gets a live message after the reload');
    await say(bob, 'Yes, reloaded and caught up.');
    await waitBodies(alice, [...convo, 'Still here?', 'Yes, reloaded and caught up.'], 'alice gets bob\'s answer');

    // A dm from bob to alice.
    await bob.fill('#dm-user', 'alice');
    await bob.press('#dm-user', 'Enter');
    await say(bob, 'psst, a direct message');
    await alice.waitForSelector('#dms button[data-name="bob"] .badge', { timeout: 10_000 });
    await alice.click('#dms button[data-name="bob"]');
    await waitBodies(alice, ['psst, a direct message'], 'alice reads the dm');
    await bob.waitForFunction(() => document.querySelectorAll('#messages li.msg.pending').length === 0);

    // Back to the room on alice's side for the screenshot.
    await alice.click(`#rooms button[data-name="${room}"]`);
    await alice.waitForSelector('#messages li.msg');
    await alice.screenshot({ path: SCREENSHOT });
    console.log(`# screenshot: ${SCREENSHOT}`);

    // Bob leaves the room: alice sees him go.
    await bob.click(`#rooms button[data-name="${room}"]`);
    await bob.click('#leave');
    await waitMembers(alice, ['alice'], 'alice sees bob leave');

    assert.deepEqual(problems, [], 'no page errors or console errors');
  });

  test('the state indicator follows the connection', async () => {
    const page = await openPage(unique('watcher'));
    assert.equal(await page.textContent('#state-label'), 'online');
    await edge.stop('SIGKILL');
    await page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
    await edge.start();
    await page.waitForSelector('#state[data-state="open"]', { timeout: 20_000 });
    // Connection errors while the edge was down are expected; nothing else.
    const unexpected = problems.filter((p) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(p));
    assert.deepEqual(unexpected, []);
  });

  // Every message item of the open conversation as rendered, pending and
  // failed ones included, so that anything extra or missing shows.
  const transcript = (page) => page.$$eval('#messages li.msg', (els) => els.map((e) => ({
    from: e.querySelector('.from').textContent,
    text: e.querySelector('.body').textContent,
    seq: e.dataset.seq === undefined ? null : Number(e.dataset.seq),
    state: e.classList.contains('failed') ? 'failed' : e.classList.contains('pending') ? 'pending' : 'sent',
  })));

  // Polls the DOM until the state indicator shows state (and its label).
  async function waitState(page, state, label, what, timeout = 10_000) {
    try {
      await page.waitForFunction(
        ([s, l]) => document.getElementById('state').dataset.state === s && document.getElementById('state-label').textContent === l,
        [state, label], { timeout, polling: 50 });
    } catch {
      const now = await page.evaluate(() => `${document.getElementById('state').dataset.state} (${document.getElementById('state-label').textContent})`);
      assert.fail(`${what}: the state indicator shows ${now} after ${timeout} ms, not ${state} (${label})`);
    }
  }

  test('a new user in two windows: the edge crashes and restarts, the pages reconnect, nothing is lost or doubled', async () => {
    const room = unique('crash');
    const seen = problems.length;
    const carol = await openPage('carol');
    const dave = await openPage('dave');
    try {
      await joinRoom(carol, room, 'carol');
      await joinRoom(dave, room, 'dave');
      await waitMembers(carol, ['carol', 'dave'], 'carol sees both online');
      await waitMembers(dave, ['carol', 'dave'], 'dave sees both online');

      const chat = ['Morning Dave, first time here?', 'Yes, two windows open!', 'Let us see how it copes with a crash.'];
      await say(carol, chat[0]);
      await waitBodies(dave, chat.slice(0, 1), 'dave gets carol\'s first message');
      await say(dave, chat[1]);
      await waitBodies(carol, chat.slice(0, 2), 'carol gets dave\'s answer');
      await say(carol, chat[2]);
      await waitBodies(carol, chat, 'carol sees the conversation');
      await waitBodies(dave, chat, 'dave sees the conversation');

      // The edge crashes: both pages notice and try to come back.
      await edge.stop('SIGKILL');
      await waitState(carol, 'reconnecting', 'reconnecting…', 'carol notices the crash');
      await waitState(dave, 'reconnecting', 'reconnecting…', 'dave notices the crash');

      // Carol writes while the edge is down: the page shows it as pending and
      // the SDK holds it in its queue.
      const queued = 'This one was written while the server was down.';
      await say(carol, queued);
      await carol.waitForFunction(
        (t) => [...document.querySelectorAll('#messages li.msg.pending .body')].some((e) => e.textContent === t),
        queued, { timeout: 5000, polling: 50 });
      const sdk = await carol.evaluate(() => ({
        state: window.natterDemo.client.state,
        queue: window.natterDemo.client._queue.map((r) => r.frame),
      }));
      assert.equal(sdk.state, 'reconnecting', 'carol is still disconnected');
      assert.deepEqual(sdk.queue.filter((f) => f.type === 'send').map((f) => [f.room, f.body && f.body.text]), [[room, queued]],
        'the SDK queued carol\'s message');
      assert.deepEqual((await bodies(dave)), chat, 'nothing new reached dave while the edge was down');

      // The edge comes back on the same port and data directory.
      await edge.start();
      await waitState(carol, 'open', 'online', 'carol back online', 30_000);
      await waitState(dave, 'open', 'online', 'dave back online', 30_000);

      // The queued message goes out (acknowledged: no longer pending) and
      // reaches both pages; then dave answers.
      await waitBodies(carol, [...chat, queued], 'carol\'s queued message is sent after the restart');
      await waitBodies(dave, [...chat, queued], 'dave gets the message carol queued during the outage');
      const after = 'Got it, and we are both back.';
      await say(dave, after);
      const all = [...chat, queued, after];
      await waitBodies(dave, all, 'dave sees the whole conversation');
      await waitBodies(carol, all, 'carol sees the whole conversation');

      // A round trip on each connection: whatever the edge sent before its
      // reply (a late duplicate, say) has reached the page by then.
      await carol.evaluate(() => window.natterDemo.client.ping());
      await dave.evaluate(() => window.natterDemo.client.ping());

      const senders = ['carol', 'dave', 'carol', 'carol', 'dave'];
      const carolSees = await transcript(carol);
      const daveSees = await transcript(dave);
      for (const [who, t] of [['carol', carolSees], ['dave', daveSees]]) {
        assert.deepEqual(t.map((m) => m.text), all, `${who}: every message exactly once, in order`);
        assert.deepEqual(t.map((m) => m.from), senders, `${who}: the senders`);
        assert.ok(t.every((m) => m.state === 'sent'), `${who}: nothing pending or failed: ${JSON.stringify(t)}`);
        const seqs = t.map((m) => m.seq);
        assert.ok(seqs.every((q, i) => Number.isInteger(q) && (i === 0 || q > seqs[i - 1])), `${who}: seqs increase: ${seqs}`);
      }
      assert.deepEqual(daveSees, carolSees, 'both pages show the same messages, with the same seqs, in the same order');
      await waitMembers(carol, ['carol', 'dave'], 'carol sees both online after the restart');
      await waitMembers(dave, ['carol', 'dave'], 'dave sees both online after the restart');
      for (const [who, page] of [['carol', carol], ['dave', dave]]) {
        const notice = await page.$eval('#notice', (n) => (n.hidden ? '' : n.textContent));
        assert.equal(notice, '', `${who}: no notice shown after the restart`);
      }

      const shot = SCREENSHOT.replace(/\.png$/, '') + '-restart.png';
      await carol.screenshot({ path: shot });
      console.log(`# screenshot: ${shot}`);

      // Connection errors while the edge was down are expected; nothing else.
      const unexpected = problems.slice(seen).filter((p) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(p));
      assert.deepEqual(unexpected, [], 'no page errors or unexpected console errors');
    } finally {
      await carol.context().close();
      await dave.context().close();
    }
  });
  // The badge of a room in the sidebar ('' when none).
  const badge = (page, room) => page.$eval(`#rooms button[data-name="${room}"]`, (b) => (b.querySelector('.badge') || { textContent: '' }).textContent);
  async function waitBadge(page, room, want, what) {
    try {
      await page.waitForFunction(
        ([r, w]) => {
          const b = document.querySelector(`#rooms button[data-name="${r}"]`);
          return !!b && ((b.querySelector('.badge') || { textContent: '' }).textContent === w);
        },
        [room, want], { timeout: 10_000, polling: 50 });
    } catch {
      assert.equal(await badge(page, room), want, what);
    }
  }

  test('typing shows on the other page; unread badges appear, survive a reload and clear, on every page of the user', async () => {
    const seen = problems.length;
    const roomA = unique('talk');
    const roomB = unique('side');
    const erin = await openPage('erin');
    const frank = await openPage('frank');
    const frank2 = await openPage('frank'); // frank's second window
    try {
      for (const [page, me] of [[erin, 'erin'], [frank, 'frank'], [frank2, 'frank']]) {
        await joinRoom(page, roomA, me);
        await joinRoom(page, roomB, me);
        await page.click(`#rooms button[data-name="${roomA}"]`);
      }
      await waitMembers(frank, ['erin', 'frank'], 'frank sees erin');

      // Erin types: frank sees "erin is typing…" under the messages.
      await erin.type('#text', 'hel', { delay: 30 });
      await frank.waitForFunction(() => document.getElementById('typing').textContent === 'erin is typing…', null, { timeout: 5000 });
      assert.equal(await erin.textContent('#typing'), '', 'erin does not see herself typing');
      await erin.press('#text', 'Enter');
      await waitBodies(frank, ['hel'], 'frank gets the message');
      await frank.waitForFunction(() => document.getElementById('typing').textContent === '', null, { timeout: 2000 });

      // Erin writes in room B, which neither of frank's windows shows: both
      // show a badge.
      await erin.click(`#rooms button[data-name="${roomB}"]`);
      await say(erin, 'over here');
      await say(erin, 'and here');
      await waitBadge(frank, roomB, '2', 'frank sees two unread in B');
      await waitBadge(frank2, roomB, '2', 'frank\'s second window too');
      assert.equal(await badge(frank, roomA), '', 'no badge on the room shown');

      // After a reload the count comes from the server (unread).
      await frank.reload();
      await frank.waitForSelector('#state[data-state="open"]', { timeout: 15_000 });
      await waitBadge(frank, roomB, '2', 'frank still sees two unread in B after a reload');

      // Frank opens B: its badge clears, and the read position reaches his
      // other window, whose badge clears too.
      await frank.click(`#rooms button[data-name="${roomB}"]`);
      await waitBodies(frank, ['over here', 'and here'], 'frank reads B');
      await waitBadge(frank, roomB, '', 'the badge clears once B is shown');
      await waitBadge(frank2, roomB, '', 'frank\'s other window hears of the read position');

      // And the server keeps it: a reload shows no badge on B.
      await frank2.reload();
      await frank2.waitForSelector('#state[data-state="open"]', { timeout: 15_000 });
      await frank2.evaluate(() => window.natterDemo.client.ping());
      await frank2.waitForTimeout(300);
      assert.equal(await badge(frank2, roomB), '', 'no unread in B after a reload');
      assert.deepEqual(problems.slice(seen), [], 'no page errors or console errors');
    } finally {
      for (const p of [erin, frank, frank2]) await p.context().close();
    }
  });

  test('load older pages back through history; messages of different days get a separator', async () => {
    const seen = problems.length;
    const room = unique('older');
    const gina = await openPage('gina');
    const hal = await openPage('hal', { query: 'page=2' });
    try {
      await joinRoom(gina, room, 'gina');
      const texts = ['m1', 'm2', 'm3', 'm4', 'm5'];
      for (const t of texts) await say(gina, t);
      await waitBodies(gina, texts, 'gina sent five');
      await joinRoom(hal, room, 'hal');
      await waitBodies(hal, ['m4', 'm5'], 'hal first sees a page of two');
      await hal.click('#load-older');
      await waitBodies(hal, ['m2', 'm3', 'm4', 'm5'], 'one page older');
      await hal.click('#load-older');
      await waitBodies(hal, texts, 'all of them');
      await hal.waitForSelector('#load-older', { state: 'detached', timeout: 5000 });

      // One separator ("Today") for messages of one day.
      assert.deepEqual(await hal.$$eval('#messages li.day', (els) => els.map((e) => e.textContent)), ['Today']);
      // Messages of earlier days (their times moved back here in the page's
      // state): a separator before each day.
      const labels = await hal.evaluate((r) => {
        const room = window.natterDemo.rooms.get(r);
        const msgs = [...room.msgs.values()].sort((a, b) => a.seq - b.seq);
        const day = 24 * 3600 * 1000;
        msgs[0].ts -= 3 * day;
        msgs[1].ts -= day;
        msgs[2].ts -= day;
        window.natterDemo.render();
        return [...document.querySelectorAll('#messages li')].map((li) => (li.classList.contains('day') ? `[${li.textContent}]` : li.querySelector('.body').textContent));
      }, room);
      assert.equal(labels.length, 8, `labels: ${labels}`);
      assert.match(labels[0], /^\[.+\]$/);
      assert.notEqual(labels[0], '[Yesterday]');
      assert.deepEqual(labels.slice(1), ['m1', '[Yesterday]', 'm2', 'm3', '[Today]', 'm4', 'm5']);
      assert.deepEqual(problems.slice(seen), [], 'no page errors or console errors');
    } finally {
      await gina.context().close();
      await hal.context().close();
    }
  });

  test('at phone width (390 px) the messages take the screen; rooms and members are drawers', async () => {
    const seen = problems.length;
    const room = unique('phone');
    const ivy = await openPage('ivy');
    const jo = await openPage('jo', { viewport: { width: 390, height: 844 } });
    try {
      await joinRoom(ivy, room, 'ivy');
      await joinRoom(jo, room, 'jo');
      await say(ivy, 'Hello from a wide screen!');
      await say(jo, 'Hi! I am on my phone, and everything fits.');
      await waitBodies(jo, ['Hello from a wide screen!', 'Hi! I am on my phone, and everything fits.'], 'jo sees both');
      // The edge forwards one typing frame per user and room every 2 s, and
      // ivy's fill above sent one: she types on for more than that.
      await ivy.type('#text', 'Typing on a big screen', { delay: 130 });
      await jo.waitForFunction(() => document.getElementById('typing').textContent === 'ivy is typing…', null, { timeout: 5000 });

      const box = async (sel) => jo.$eval(sel, (e) => {
        const r = e.getBoundingClientRect();
        const cs = getComputedStyle(e);
        return { x: r.x, y: r.y, w: r.width, h: r.height, visible: cs.visibility !== 'hidden' && cs.display !== 'none' && r.right > 0 && r.left < innerWidth };
      });
      assert.equal(await jo.evaluate(() => document.documentElement.scrollWidth), 390, 'nothing overflows sideways');
      const list = await box('#messages');
      assert.ok(list.visible && list.w >= 380, `the message list takes the width: ${JSON.stringify(list)}`);
      assert.ok((await box('#composer')).visible, 'the composer shows');
      assert.equal((await box('#sidebar')).visible, false, 'the rooms panel is tucked away');
      assert.equal((await box('#members-panel')).visible, false, 'the members panel is tucked away');

      const shot = SCREENSHOT.replace(/\.png$/, '') + '-phone.png';
      await jo.screenshot({ path: shot });
      console.log(`# screenshot: ${shot}`);

      // The rooms drawer: open it, pick the room, it closes.
      await jo.click('#toggle-rooms');
      await jo.waitForFunction(() => getComputedStyle(document.getElementById('sidebar')).transform === 'none');
      const side = await box('#sidebar');
      assert.ok(side.visible && side.x >= 0 && side.x + side.w <= 390, `the rooms drawer is on screen: ${JSON.stringify(side)}`);
      await jo.screenshot({ path: SCREENSHOT.replace(/\.png$/, '') + '-phone-rooms.png' });
      assert.ok(await jo.isVisible(`#rooms button[data-name="${room}"]`));
      await jo.click(`#rooms button[data-name="lobby"]`);
      await jo.waitForFunction(() => !document.getElementById('app').classList.contains('show-rooms'));
      assert.equal(await jo.textContent('#conv-title'), '# lobby');
      await jo.click('#toggle-rooms');
      await jo.click(`#rooms button[data-name="${room}"]`);
      assert.equal(await jo.textContent('#conv-title'), `# ${room}`);
      await waitBodies(jo, ['Hello from a wide screen!', 'Hi! I am on my phone, and everything fits.'], 'back in the room');

      // The members drawer lists who is online.
      await jo.click('#toggle-members');
      await jo.waitForFunction(() => getComputedStyle(document.getElementById('members-panel')).transform === 'none');
      const mem = await box('#members-panel');
      assert.ok(mem.visible && mem.x >= 0 && mem.x + mem.w <= 390.5, `the members drawer is on screen: ${JSON.stringify(mem)}`);
      assert.ok(await jo.isVisible('#members button[data-user="ivy"]'));
      await waitMembers(jo, ['ivy', 'jo'], 'jo sees both online');
      await jo.screenshot({ path: SCREENSHOT.replace(/\.png$/, '') + '-phone-members.png' });
      // A tap outside closes it.
      await jo.mouse.click(20, 400);
      await jo.waitForFunction(() => !document.getElementById('app').classList.contains('show-members'));
      assert.deepEqual(problems.slice(seen), [], 'no page errors or console errors');
    } finally {
      await ivy.context().close();
      await jo.context().close();
    }
  });
});
