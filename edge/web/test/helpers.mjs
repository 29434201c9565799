// Shared helpers of the SDK tests: build and run a real edge, connect SDK
// clients to it, wait for events, make tokens. Every edge listens on
// 127.0.0.1 only.
import { spawn, execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import WebSocket from 'ws';

import { connect, nodeTransport } from '../static/natter.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (edge/web/test/../../..). */
export const repoRoot = path.resolve(here, '..', '..', '..');
/** edge/web/static: the page and the SDK. */
export const staticDir = path.resolve(here, '..', 'static');

let built = null;

/**
 * Builds the edge once per test process (`go build -o <tmp>/edge ./edge`
 * from the repository root) and returns the binary's path.
 * NATTER_EDGE_BIN names a binary to use instead.
 */
export function buildEdge() {
  if (process.env.NATTER_EDGE_BIN) return Promise.resolve(process.env.NATTER_EDGE_BIN);
  if (!built) {
    built = (async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'natter-edge-bin-'));
      const bin = path.join(dir, 'edge');
      await promisify(execFile)('go', ['build', '-o', bin, './edge'], { cwd: repoRoot, timeout: 300_000 });
      process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
      return bin;
    })();
  }
  return built;
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value, or throws after timeout ms. */
export async function waitFor(fn, { timeout = 5000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(interval);
  }
}

/**
 * A running edge process. `start()` runs it with -addr 127.0.0.1:<port>
 * -data <dir> and waits for GET /healthz 200; `stop()` ends it (SIGKILL by
 * default: a crash) and `start()` again brings it back on the same port and
 * data directory.
 */
export class Edge {
  constructor({ args = [], port, dataDir } = {}) {
    this.args = args;
    this.port = port;
    this.dataDir = dataDir;
    this.proc = null;
    this.log = '';
    this._ownData = !dataDir;
  }

  get httpURL() { return `http://127.0.0.1:${this.port}`; }
  get wsURL() { return `ws://127.0.0.1:${this.port}/ws`; }

  async start({ timeout = 30_000 } = {}) {
    const bin = await buildEdge();
    if (!this.port) this.port = await freePort();
    if (!this.dataDir) this.dataDir = await mkdtemp(path.join(os.tmpdir(), 'natter-edge-data-'));
    const deadline = Date.now() + timeout;
    for (let attempt = 1; ; attempt++) {
      this.log = '';
      const proc = spawn(bin, ['-addr', `127.0.0.1:${this.port}`, '-data', this.dataDir, ...this.args], {
        cwd: this.dataDir,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.proc = proc;
      const exited = new Promise((resolve) => proc.once('exit', (code, sig) => resolve({ code, sig })));
      proc.exited = exited;
      proc.stdout.on('data', (d) => { this.log += d; });
      proc.stderr.on('data', (d) => { this.log += d; });
      let dead = null;
      exited.then((r) => { dead = r; });
      while (!dead) {
        if (Date.now() > deadline) {
          proc.kill('SIGKILL');
          throw new Error(`edge not healthy within ${timeout} ms:\n${this.log.slice(-3000)}`);
        }
        try {
          const res = await fetch(`${this.httpURL}/healthz`, { signal: AbortSignal.timeout(1000) });
          if (res.status === 200) return this;
        } catch { /* not listening yet */ }
        await sleep(50);
      }
      // It exited: after a SIGKILL the port may still be held for a moment
      // (or the store is still locked); try again until the deadline.
      if (attempt >= 5 || Date.now() > deadline) throw new Error(`edge exited (${JSON.stringify(dead)}):\n${this.log.slice(-3000)}`);
      await sleep(200);
    }
  }

  /** Ends the process with signal and waits for it to exit. */
  async stop(signal = 'SIGKILL') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(signal);
    await proc.exited;
  }

  /**
   * Pauses the process (SIGSTOP): its sockets stay open, nothing answers.
   * The stop is not instant (a busy machine lets threads run on for a few
   * ms), so this waits until every thread shows as stopped in /proc.
   */
  async pause({ timeout = 5000 } = {}) {
    this.proc.kill('SIGSTOP');
    this.paused = true;
    const deadline = Date.now() + timeout;
    const taskDir = `/proc/${this.proc.pid}/task`;
    if (!existsSync(taskDir)) {
      await sleep(200); // no /proc: give the signal time
      return;
    }
    for (;;) {
      let stopped = true;
      for (const t of readdirSync(taskDir)) {
        try {
          // The state is the field after the ")" that ends the command name.
          const stat = readFileSync(`${taskDir}/${t}/stat`, 'utf8');
          const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
          if (state !== 'T' && state !== 't') stopped = false;
        } catch { /* the thread is gone */ }
      }
      if (stopped) return;
      if (Date.now() > deadline) throw new Error('edge did not stop after SIGSTOP');
      await sleep(2);
    }
  }

  /** Resumes a paused process (SIGCONT). */
  resume() {
    this.paused = false;
    this.proc.kill('SIGCONT');
  }

  /** Stops the process and removes the data directory it made. */
  async dispose() {
    if (this.proc && this.paused) this.resume();
    await this.stop('SIGKILL');
    if (this._ownData && this.dataDir) await rm(this.dataDir, { recursive: true, force: true });
  }
}

/** Starts an edge; see {@link Edge}. */
export async function startEdge(opts) {
  const e = new Edge(opts);
  await e.start();
  return e;
}

/**
 * SDK clients of real edges over the ws package. `client(edge, user, opts)`
 * connects with a 5 s timeout, `reconnect` as the backoff and opts on top;
 * `closeAll()` closes every client made so far (run it after each test).
 */
export function edgeClients({ reconnect }) {
  const clients = [];
  return {
    client(edge, user, opts = {}) {
      const c = connect(edge.wsURL, {
        user,
        transport: nodeTransport(WebSocket),
        timeout: 5000,
        reconnect,
        ...opts,
      });
      clients.push(c);
      return c;
    },
    closeAll() {
      while (clients.length) clients.pop().close();
    },
  };
}

/**
 * Resolves with the next event of `type` on client for which pred is true;
 * rejects after timeout ms.
 */
export function nextEvent(client, type, pred = () => true, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event within ${timeout} ms`));
    }, timeout);
    const off = client.on(type, (...args) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args.length > 1 ? args : args[0]);
    });
  });
}

/** Records every event of the given types on client, in arrival order. */
export function record(client, types) {
  const events = [];
  for (const t of types) client.on(t, (...a) => events.push({ type: t, args: a, frame: a[0] }));
  return events;
}

/** An HS256 JWT for the edge's -jwt-secret. */
export function hs256(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** A room or user name unique to this test run. */
export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/**
 * Wraps a transport so the test sees every frame the client writes and
 * reads.
 */
export function spyTransport(inner) {
  const spy = {
    sent: [],
    received: [],
    conns: 0,
    transport: {
      name: `spy(${inner.name})`,
      check: inner.check && ((u) => inner.check(u)),
      open(url, opts, on) {
        spy.conns++;
        spy.lastURL = url;
        const conn = inner.open(url, opts, {
          ...on,
          message(data) {
            try { spy.received.push(JSON.parse(String(data))); } catch { /* not JSON */ }
            on.message(data);
          },
        });
        return {
          send(text) {
            spy.sent.push(JSON.parse(text));
            conn.send(text);
          },
          close(code, reason) { conn.close(code, reason); },
        };
      },
    },
  };
  return spy;
}
