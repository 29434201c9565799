/**
 * natter.js: the JavaScript SDK of natter, client protocol version 1.
 *
 * One ES module with no dependencies, for browsers, Node.js (with the `ws`
 * package passed in) and WeChat mini-programs (`wx.connectSocket`).
 *
 * ```js
 * import { connect } from '/natter.js';
 * const chat = connect('wss://chat.example.com/ws', { token });
 * chat.on('msg', (m) => console.log(m.room, m.from, m.body));
 * await chat.join('lobby');
 * await chat.send('lobby', { text: 'hi' });
 * ```
 *
 * What the client does for the application:
 * - matches every reply to its command by `id` and turns it into a promise,
 *   rejected with a {@link NatterError} (with `.code`) on an `error` frame,
 *   on a timeout, or when the client is closed;
 * - pings every `welcome.heartbeat` seconds and treats a missing answer as a
 *   dead connection;
 * - reconnects with exponential backoff and full jitter (at once after a
 *   `bye` with code `shutdown`), rejoins its rooms with `since` = the last
 *   `seq` it saw in each, and drops any room message it has already
 *   delivered, so the application sees neither a gap nor a duplicate;
 * - checks each room's live messages end to end with their `prev` (v1.1):
 *   when a message says a stored one came before it that the application
 *   has not been given, the client fetches the missing ones with `history`
 *   (`after`), holds the room's newer messages meanwhile, and hands them all
 *   over in `seq` order; if that fails it rejoins the room with `since`;
 * - drops a `dm` whose `seq` it has already delivered (stored dms are
 *   delivered at least once);
 * - queues commands issued while disconnected (at most `maxQueue`) and sends
 *   them after the reconnect; an unacknowledged `send` or `dm` is sent again
 *   with the same `id`, which the server deduplicates;
 * - keeps a JWT fresh (v1.1) when `token` is a function: it reads the
 *   token's `exp` and sends `refresh` with a new token from the function
 *   before it expires, and reconnects with a fresh one when the server
 *   refuses the refresh or says `bye` `expired` (see {@link ConnectOptions}).
 *
 * The v1.1 additions of the protocol ("Additions (v1.1)" in PROTOCOL.md):
 * {@link Client#typing} and the `typing` event, {@link Client#read},
 * {@link Client#unread} and the `read` event, `send(room, body, {echo:
 * false})`, token refresh, gap detection with `prev`, history paging with
 * `more`.
 *
 * ```js
 * const chat = connect(url, { token: () => fetch('/chat-token').then((r) => r.text()) });
 * input.oninput = () => chat.typing('lobby');          // others get 'typing'
 * chat.on('typing', ({ room, user }) => showTyping(room, user));
 * chat.on('read', ({ room, seq }) => markRead(room, seq)); // my other devices
 * const counts = await chat.unread();                    // {lobby: 3, …}
 * await chat.read('lobby', lastShownSeq);
 * ```
 *
 * @module natter
 */

/** The client protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

/**
 * Connection states, in the order a client usually goes through them.
 * `connecting`: the first connection is being made; `open`: the server said
 * `welcome`; `reconnecting`: the connection was lost and a new one is being
 * made (or waited for); `closed`: {@link Client#close} was called, or the
 * client gave up (reconnect disabled, or `bye` with code `kicked`).
 * @readonly
 * @enum {string}
 */
export const State = Object.freeze({
  CONNECTING: 'connecting',
  OPEN: 'open',
  RECONNECTING: 'reconnecting',
  CLOSED: 'closed',
});

/**
 * The error of a failed command or of the client itself. `code` is one of the
 * protocol's error codes (`bad_room`, `not_member`, `forbidden`, …) when the
 * server answered with an `error` frame, or one of the SDK's own:
 * `timeout` (no reply in time), `closed` (the client was closed),
 * `queue_full` (more than `maxQueue` commands waiting for a connection),
 * `disconnected` (a `broadcast` was in flight when the connection was lost:
 * it may or may not have been delivered, and is not retried), `gap` (on the
 * `error` event, with `.room`: messages a room's `prev` said were missed
 * could not be fetched, or more than `maxHeld` arrived meanwhile; the
 * client rejoins the room with `since` to get them), `left` (a
 * `join` overtaken by a `leave` of the same room), `bad_url` (a URL the
 * transport refuses), `too_many_sockets`, `transport` (the socket failed),
 * `no_transport`, `token` (on the `error` event: the `token` function threw,
 * returned no string, or did not answer within `timeout`), `expired` (the
 * client closed after `bye` `expired` because its `token` is a fixed
 * string it cannot renew).
 */
export class NatterError extends Error {
  /**
   * @param {string} code machine-readable error code
   * @param {string} [message] human-readable explanation
   * @param {object} [frame] the `error` frame from the server, if any
   */
  constructor(code, message, frame) {
    super(message || code);
    this.name = 'NatterError';
    /** @type {string} */
    this.code = code;
    /** @type {object|undefined} the server's `error` frame, if any */
    this.frame = frame;
    /**
     * The command's id, when known: pass it back as `{ id }` to retry a
     * timed-out `send` or `dm` without risking a duplicate.
     * @type {string|undefined}
     */
    this.id = frame && frame.id !== undefined ? frame.id : undefined;
  }
}

// ---------------------------------------------------------------------------
// Transports

/**
 * A transport adapter: how the client opens a WebSocket on a platform.
 * @typedef {object} Transport
 * @property {string} name a short name (`browser`, `node`, `wx`, …)
 * @property {(url: string) => void} [check] throws a NatterError when the
 *   transport cannot use `url`; called by {@link connect} before anything else
 * @property {(url: string, opts: {token?: string}, on: TransportEvents) => TransportConn} open
 *   opens a socket to `url` (which already carries `?user=`), authenticating
 *   with `opts.token` when given; reports through the callbacks of `on`
 */

/**
 * The callbacks a transport reports to. `close` must be called once when the
 * socket is gone, whatever the reason (also after `error`).
 * @typedef {object} TransportEvents
 * @property {() => void} open the socket is open
 * @property {(data: string|ArrayBuffer|Uint8Array) => void} message a frame arrived
 * @property {(code?: number, reason?: string) => void} close the socket is closed
 * @property {(err: Error) => void} error the socket failed
 */

/**
 * An open socket as a transport hands it to the client.
 * @typedef {object} TransportConn
 * @property {(text: string) => void} send writes one text frame
 * @property {(code?: number, reason?: string) => void} close closes the socket
 */

/** Appends `key=value` to the query of `url`, before any `#fragment`. */
function withQuery(url, key, value) {
  const hash = url.indexOf('#');
  const base = hash < 0 ? url : url.slice(0, hash);
  const frag = hash < 0 ? '' : url.slice(hash);
  const sep = base.indexOf('?') < 0 ? '?' : base.endsWith('?') || base.endsWith('&') ? '' : '&';
  return base + sep + encodeURIComponent(key) + '=' + encodeURIComponent(value) + frag;
}

/** Adapts a WHATWG-style WebSocket object (browser, `ws`, undici). */
function adaptWebSocket(ws, on) {
  let closed = false;
  const closeOnce = (code, reason) => {
    if (closed) return;
    closed = true;
    on.close(code, reason);
  };
  ws.onopen = () => on.open();
  ws.onmessage = (ev) => on.message(ev.data);
  ws.onerror = (ev) => on.error(new NatterError('transport', (ev && ev.message) || 'websocket error'));
  ws.onclose = (ev) => closeOnce(ev && ev.code, ev && ev.reason);
  return {
    send(text) {
      ws.send(text);
    },
    close(code = 1000, reason = '') {
      try {
        ws.close(code, reason);
      } catch {
        try { ws.close(); } catch { /* already closed */ }
      }
    },
  };
}

/**
 * The browser's WebSocket. Browsers cannot set headers on a WebSocket
 * upgrade, so a token goes in the query as `?token=`.
 * @param {typeof WebSocket} [WebSocketCtor] defaults to `globalThis.WebSocket`
 * @returns {Transport}
 */
export function browserTransport(WebSocketCtor) {
  return {
    name: 'browser',
    open(url, opts, on) {
      const WS = WebSocketCtor || globalThis.WebSocket;
      if (typeof WS !== 'function') throw new NatterError('no_transport', 'no global WebSocket');
      const u = opts.token ? withQuery(url, 'token', opts.token) : url;
      return adaptWebSocket(new WS(u), on);
    },
  };
}

/**
 * Node.js with the `ws` package (or any constructor with its API), passed in
 * by the caller: the SDK never imports it. A token goes in the
 * `Authorization: Bearer` header of the upgrade request.
 *
 * ```js
 * import WebSocket from 'ws';
 * connect(url, { transport: nodeTransport(WebSocket), token });
 * ```
 * @param {Function} WebSocketCtor the `ws` package's WebSocket class
 * @param {object} [wsOptions] extra options for its constructor (`headers`
 *   are merged with the Authorization header)
 * @returns {Transport}
 */
export function nodeTransport(WebSocketCtor, wsOptions = {}) {
  if (typeof WebSocketCtor !== 'function') {
    throw new NatterError('no_transport', 'nodeTransport needs a WebSocket class, for example the ws package');
  }
  return {
    name: 'node',
    open(url, opts, on) {
      const headers = { ...(wsOptions.headers || {}) };
      if (opts.token) headers.Authorization = 'Bearer ' + opts.token;
      const ws = new WebSocketCtor(url, { ...wsOptions, headers });
      return adaptWebSocket(ws, on);
    },
  };
}

/**
 * Refuses what a mini-program cannot open: anything but `wss://`, and a URL
 * with a port. `allowInsecure` (development only, for the simulator with
 * "do not verify domain names" ticked) lets both through.
 */
function checkWxUrl(url, allowInsecure) {
  const m = /^(wss?):\/\/([^/?#]*)/i.exec(String(url));
  if (!m) throw new NatterError('bad_url', 'not a WebSocket URL: ' + url);
  if (allowInsecure) return;
  if (m[1].toLowerCase() !== 'wss') {
    throw new NatterError('bad_url', 'mini-programs allow only wss:// URLs (set allowInsecure for development)');
  }
  const host = m[2].replace(/^.*@/, '');
  const afterBracket = host.startsWith('[') ? host.slice(host.indexOf(']') + 1) : host;
  if (afterBracket.includes(':')) {
    throw new NatterError('bad_url', 'mini-programs allow no port in the URL (set allowInsecure for development)');
  }
}

/**
 * WeChat mini-programs: `wx.connectSocket` and its SocketTask. Only `wss://`
 * URLs without a port are accepted (the platform's rule) unless
 * `allowInsecure` is set; a token is sent as the `Authorization: Bearer`
 * header. A mini-program may have only a few sockets open at once: the
 * adapter refuses to open more than `maxSockets` (default 5).
 * @param {object} wxApi the `wx` object
 * @param {{allowInsecure?: boolean, maxSockets?: number}} [options]
 * @returns {Transport}
 */
export function wxTransport(wxApi, options = {}) {
  if (!wxApi || typeof wxApi.connectSocket !== 'function') {
    throw new NatterError('no_transport', 'wxTransport needs the wx object');
  }
  const allowInsecure = !!options.allowInsecure;
  const maxSockets = options.maxSockets || 5;
  let live = 0;
  return {
    name: 'wx',
    get sockets() {
      return live;
    },
    check(url) {
      checkWxUrl(url, allowInsecure);
    },
    open(url, opts, on) {
      checkWxUrl(url, allowInsecure);
      if (live >= maxSockets) {
        throw new NatterError('too_many_sockets', `a mini-program may open at most ${maxSockets} sockets`);
      }
      let released = false;
      let fallback = null;
      const release = () => {
        clearTimeout(fallback);
        if (!released) {
          released = true;
          live--;
        }
      };
      let closed = false;
      const closeOnce = (code, reason) => {
        release();
        if (closed) return;
        closed = true;
        on.close(code, reason);
      };
      const header = {};
      if (opts.token) header.Authorization = 'Bearer ' + opts.token;
      live++;
      let task;
      try {
        task = wxApi.connectSocket({
          url,
          header,
          fail: (res) => {
            on.error(new NatterError('transport', (res && res.errMsg) || 'connectSocket failed'));
            closeOnce(1006, 'connectSocket failed');
          },
        });
      } catch (err) {
        release();
        throw err;
      }
      if (!task || typeof task.onMessage !== 'function') {
        release();
        throw new NatterError('no_transport', 'wx.connectSocket returned no SocketTask');
      }
      task.onOpen(() => on.open());
      task.onMessage((res) => on.message(res && res.data));
      task.onError((res) => on.error(new NatterError('transport', (res && res.errMsg) || 'socket error')));
      task.onClose((res) => closeOnce(res && res.code, res && res.reason));
      return {
        send(text) {
          task.send({
            data: text,
            fail: (res) => on.error(new NatterError('transport', (res && res.errMsg) || 'send failed')),
          });
        },
        close(code = 1000, reason = '') {
          // wx accepts 1000 or 3000–4999 only.
          const c = code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
          // The platform counts a closing socket until its onClose; should
          // that never come, stop counting it after a while.
          if (!released && !fallback) fallback = setTimeout(release, 5000);
          try {
            task.close({ code: c, reason });
          } catch {
            release();
          }
        },
      };
    },
  };
}

/**
 * Picks the platform's transport: the mini-program's when `wx.connectSocket`
 * exists, else the global WebSocket.
 * @returns {Transport}
 */
export function autoTransport() {
  const g = typeof globalThis !== 'undefined' ? globalThis : {};
  const wxApi = g.wx || (typeof wx !== 'undefined' ? wx : undefined); // eslint-disable-line no-undef
  if (wxApi && typeof wxApi.connectSocket === 'function') return wxTransport(wxApi);
  if (typeof g.WebSocket === 'function') return browserTransport(g.WebSocket);
  throw new NatterError('no_transport', 'no WebSocket here: pass { transport: nodeTransport(WebSocket) } with the ws package');
}

// ---------------------------------------------------------------------------
// Client

/**
 * Options of {@link connect}.
 * @typedef {object} ConnectOptions
 * @property {string} [user] development identity, sent as `?user=`
 * @property {string|(() => string|Promise<string>)} [token] a JWT (query for
 *   browsers, header elsewhere), or a function that returns one (or a
 *   promise of one). With a function the client keeps the token fresh
 *   (protocol v1.1, "Token refresh"): it reads the token's `exp` (the
 *   base64url JSON payload, not verified: the server does that) and, a
 *   minute before it expires, or at 80% of its lifetime when that is later
 *   (a token that lives less than 5 minutes), calls the function and sends
 *   `refresh` with the new token on the open connection; the times count
 *   from when the client got the token, by the local clock (a token
 *   already expired by it is not refreshed: the server's `bye` `expired`
 *   then brings a fresh one; a token without `exp` never is). When the
 *   server refuses the refresh (`forbidden`) or does not answer, or says
 *   `bye` `expired`, the client reconnects at once with a fresh token from
 *   the function. When the function itself fails during a refresh, the
 *   error goes to the `error` event (code `token`) and the refresh is tried
 *   again a little later, before the token expires. The function is also
 *   called before each connection whose token is due for refresh, or after
 *   a connection that closed before `welcome` (an expired or revoked token
 *   gets HTTP 401, which a browser cannot tell from a network failure); a
 *   failure there counts as a failed connection attempt (backoff). A fixed
 *   string is never refreshed: after `bye` `expired` the client closes with
 *   code `expired`.
 * @property {Transport} [transport] defaults to {@link autoTransport}
 * @property {number} [timeout=10000] ms to wait for a reply once a command is
 *   on the wire, and for `welcome` once a socket is opening
 * @property {number} [queueTimeout=0] ms a command may wait for a connection
 *   before it is rejected with `timeout`; 0 waits until the reconnect or
 *   {@link Client#close}
 * @property {boolean|{base?: number, cap?: number, maxAttempts?: number}} [reconnect=true]
 *   `false` to never reconnect; backoff before attempt n is a random delay in
 *   [0, min(cap, base·2ⁿ)] ms (base 500, cap 30000), maxAttempts unbounded
 * @property {number} [maxQueue=100] commands that may wait for a connection
 * @property {number} [maxFrame=65536] largest command in bytes (the edge's
 *   limit): a bigger one is rejected with `too_large` without being sent, as
 *   the edge's own `too_large` error could not name the command
 * @property {number} [heartbeat] ping interval in seconds (default: the
 *   server's `welcome.heartbeat`)
 * @property {number} [pongTimeout] ms to wait for any frame after a ping
 *   before the connection is deemed dead (default: the ping interval, at most
 *   10 s)
 * @property {string} [idPrefix] prefix of generated command ids (default:
 *   random, so ids never repeat across page loads)
 * @property {number} [maxHeld=1000] live messages of one room held while
 *   the client fetches messages it missed in that room; beyond that it gives
 *   up the fetch and rejoins the room with `since` instead
 * @property {number} [typingInterval=1000] ms: {@link Client#typing} sends
 *   at most one `typing` per room in this time (the server forwards at most
 *   one per user and room every 2 s); the others resolve at once to `null`
 */

/**
 * An event name of {@link Client#on}: `msg`, `dm`, `presence`, `broadcast`
 * (the server's frames), `typing` (v1.1: `{room, user}`, another
 * connection's user is typing in a joined room; the user may be this
 * client's own user on another device; show it for a few seconds after the
 * last one), `read` (v1.1: `{room, seq, user}`, this user's read position
 * in `room` moved on another of its connections: see {@link Client#read}),
 * `refreshed` (v1.1: the server took a new token, see `token` in
 * {@link ConnectOptions}), `welcome` (each new connection), `bye` (the
 * server is about to close), `state` (`(state, previous)`), `error` (a
 * {@link NatterError} that belongs to no command: an `error` frame without
 * a matching id, a failed rejoin, a transport error, a failed token
 * refresh), `frame` (every frame received, for debugging).
 * @typedef {'msg'|'dm'|'presence'|'broadcast'|'typing'|'read'|'refreshed'|'welcome'|'bye'|'state'|'error'|'frame'} EventType
 */

const REPLY_TYPES = new Set(['joined', 'left', 'ack', 'members', 'history', 'pong', 'error', 'refreshed', 'unread']);

/** The refresh of a token is sent this long before its `exp` (unless later: see refreshDelay). */
const REFRESH_AHEAD = 60_000;

/** Own `echo:false` messages remembered per room, to drop them when history brings them. */
const OWN_SEEN = 1000;

/** Decodes base64url (or base64) to a string of bytes; null when malformed. */
function base64urlBytes(s) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const t = s.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  const out = [];
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < t.length; i++) {
    const v = abc.indexOf(t[i]);
    if (v < 0) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return new Uint8Array(out);
}

/**
 * The `exp` of a JWT in milliseconds since the epoch, read from its payload
 * without verifying anything; undefined when it has none or is no JWT.
 * @param {string} token
 * @returns {number|undefined}
 */
export function tokenExpiry(token) {
  if (typeof token !== 'string') return undefined;
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  const bytes = base64urlBytes(parts[1]);
  if (!bytes) return undefined;
  let text;
  if (typeof TextDecoder === 'function') text = new TextDecoder().decode(bytes);
  else text = String.fromCharCode(...bytes); // non-ASCII claims garble, exp does not
  try {
    const claims = JSON.parse(text);
    return claims && typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How long after getting a token (at now) to refresh it: a minute before
 * its expiry, or at 80% of its remaining lifetime when that is later, but
 * not within a second. A token already expired by the local clock is not
 * refreshed (Infinity): the clock may be off, and the server's `bye`
 * `expired` makes the client reconnect with a fresh one anyway.
 */
function refreshDelay(expMs, now) {
  const life = expMs - now;
  if (!(life > 0)) return Infinity;
  return Math.max(life - REFRESH_AHEAD, 0.8 * life, 1000);
}

/** Messages one `history` request of a gap fill asks for (the protocol's maximum). */
const FILL_PAGE = 500;

/** How many delivered dm keys (`to` and `seq`) are remembered, to drop repeats. */
const DM_SEEN = 1000;

function randomPrefix() {
  const c = typeof globalThis !== 'undefined' ? globalThis.crypto : undefined;
  let s = '';
  if (c && typeof c.getRandomValues === 'function') {
    const b = c.getRandomValues(new Uint8Array(9));
    for (const x of b) s += (x % 36).toString(36);
  } else {
    for (let i = 0; i < 9; i++) s += Math.floor(Math.random() * 36).toString(36);
  }
  return s + Date.now().toString(36).slice(-4);
}

/** The UTF-8 length of s, counted exactly only when it may exceed limit. */
function utf8Length(s, limit) {
  if (s.length * 3 <= limit) return s.length;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function decodeData(data) {
  if (typeof data === 'string') return data;
  if (data == null) return null;
  if (typeof TextDecoder === 'function') {
    try {
      if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
    } catch { /* fall through */ }
  }
  return String(data);
}

/**
 * A natter client: one logical session over any number of successive
 * WebSocket connections. Create it with {@link connect}.
 */
export class Client {
  /**
   * @param {string} url the edge's WebSocket URL, e.g. `wss://host/ws`
   * @param {ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    const o = { ...options };
    this._transport = o.transport || autoTransport();
    if (typeof this._transport.check === 'function') this._transport.check(url);
    this._baseUrl = o.user ? withQuery(url, 'user', o.user) : url;
    // A fixed token, or the function that gives fresh ones (and the one
    // it gave last, with when to refresh it).
    this._tokenFn = typeof o.token === 'function' ? o.token : null;
    this._token = typeof o.token === 'string' ? o.token : undefined;
    this._tokenStale = !!this._tokenFn; // call the function before the next connection
    this._refreshAt = Infinity;
    this._refreshTimer = null;
    this._typingInterval = o.typingInterval >= 0 ? o.typingInterval : 1000;
    this._typingSent = new Map(); // room -> when the last typing went out
    this._timeout = o.timeout > 0 ? o.timeout : 10000;
    this._queueTimeout = o.queueTimeout > 0 ? o.queueTimeout : 0;
    const rc = o.reconnect === undefined ? true : o.reconnect;
    this._reconnect = rc
      ? {
          base: (rc && rc.base) || 500,
          cap: (rc && rc.cap) || 30000,
          maxAttempts: rc && rc.maxAttempts > 0 ? rc.maxAttempts : Infinity,
        }
      : null;
    this._maxQueue = o.maxQueue >= 0 ? o.maxQueue : 100;
    this._maxFrame = o.maxFrame > 0 ? o.maxFrame : 65536;
    this._heartbeatOpt = o.heartbeat > 0 ? o.heartbeat : 0;
    this._pongTimeoutOpt = o.pongTimeout > 0 ? o.pongTimeout : 0;
    this._idPrefix = o.idPrefix || randomPrefix();
    this._idSeq = 0;
    this._maxHeld = o.maxHeld > 0 ? o.maxHeld : 1000;

    /** @type {string} the current {@link State} */
    this.state = State.CONNECTING;
    /** @type {string|undefined} the user id the server gave (from `welcome`) */
    this.user = undefined;
    /** @type {string|undefined} the current connection's id (from `welcome`) */
    this.conn = undefined;
    /** @type {object|undefined} the latest `welcome` frame */
    this.welcome = undefined;

    this._listeners = new Map();
    // room -> {lastSeq?: number, waiters: [{resolve, reject}], fill: the gap
    // fill running (null: none), held: live msgs held while it runs,
    // rejoin: a join with since is on the wire (its replay brings what a
    // gap misses)}
    this._rooms = new Map();
    this._pending = new Map(); // id -> request on the wire, in the order written
    this._queue = []; // requests waiting for a connection
    this._dmSeen = new Set();
    this._dmOrder = [];
    this._conn = null;
    this._gen = 0;
    this._attempt = 0;
    this._retryTimer = null;
    this._welcomeTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._pongWait = 10000;
    this._bye = null;
    this._welcomed = false; // the current connection got its welcome
    this._quick = false; // reconnect at once after this loss
    this._readyWaiters = [];
    this._open();
  }

  // -- events ---------------------------------------------------------------

  /**
   * Listens to an event.
   * @param {EventType} type
   * @param {Function} fn called with the frame (or the error, or `(state, previous)`)
   * @returns {() => void} a function that removes the listener
   */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /**
   * Stops listening.
   * @param {EventType} type
   * @param {Function} fn a function given to {@link Client#on}
   */
  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  /**
   * Listens to the next event of a type only.
   * @param {EventType} type
   * @param {Function} fn
   * @returns {() => void} a function that removes the listener
   */
  once(type, fn) {
    const off = this.on(type, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  _emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A listener's bug: report it without breaking the client.
        if (type !== 'error' && this._listeners.get('error')?.size) this._emit('error', err);
        else setTimeout(() => { throw err; }, 0);
      }
    }
  }

  _setState(s) {
    if (this.state === s) return;
    const prev = this.state;
    this.state = s;
    this._emit('state', s, prev);
  }

  // -- connection -----------------------------------------------------------

  _open() {
    if (this.state === State.CLOSED) return;
    this._retryTimer = null;
    this._welcomed = false;
    if (this._tokenFn && (this._tokenStale || this._token === undefined || Date.now() >= this._refreshAt)) {
      // A fresh token first; a failure counts as a failed attempt.
      const gen = ++this._gen;
      this._fetchToken().then(
        (token) => {
          if (gen !== this._gen || this.state === State.CLOSED) return;
          this._setToken(token);
          this._openSocket();
        },
        (err) => {
          if (gen !== this._gen || this.state === State.CLOSED) return;
          this._emit('error', err);
          this._lost();
        },
      );
      return;
    }
    this._openSocket();
  }

  /**
   * Calls the token function; rejects with code `token` when it throws,
   * gives no string, or takes longer than the timeout.
   */
  _fetchToken() {
    return new Promise((resolve, reject) => {
      const fail = (why, cause) => {
        const e = new NatterError('token', `the token function ${why}`);
        if (cause !== undefined) e.cause = cause;
        reject(e);
      };
      const timer = setTimeout(() => fail(`gave no token within ${this._timeout} ms`), this._timeout);
      let p;
      try {
        p = Promise.resolve(this._tokenFn());
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (t) => {
          clearTimeout(timer);
          if (typeof t === 'string' && t) resolve(t);
          else fail('returned no token');
        },
        (err) => {
          clearTimeout(timer);
          fail(`failed: ${(err && err.message) || err}`, err);
        },
      );
    });
  }

  /** Adopts a token from the function, and works out when to refresh it. */
  _setToken(token) {
    const now = Date.now();
    const exp = tokenExpiry(token);
    this._token = token;
    this._tokenStale = false;
    this._refreshAt = exp === undefined ? Infinity : now + refreshDelay(exp, now);
  }

  /** Arms the refresh of the current token, on the open connection. */
  _armRefresh(delay) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (!this._tokenFn || this._refreshAt === Infinity) return;
    const gen = this._gen;
    const wait = delay !== undefined ? delay : Math.max(0, this._refreshAt - Date.now());
    // setTimeout takes at most 2^31-1 ms: a later refresh is re-armed then.
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      if (gen !== this._gen || this.state !== State.OPEN) return;
      if (Date.now() < this._refreshAt && delay === undefined) this._armRefresh();
      else this._refresh();
    }, Math.min(wait, 2 ** 31 - 1));
  }

  /**
   * Gets a new token from the function and sends it with `refresh`. The
   * server refusing it (or not answering) makes the client reconnect with a
   * fresh one; the function failing is reported and tried again later.
   */
  _refresh() {
    const gen = this._gen;
    const current = () => gen === this._gen && this.state === State.OPEN && !!this._conn;
    this._fetchToken().then(
      (token) => {
        if (!current()) return;
        this._request({ type: 'refresh', token }, 'refresh').then(
          (f) => {
            if (!current()) return;
            this._setToken(token);
            this._armRefresh();
            this._emit('refreshed', f);
          },
          (err) => {
            if (!current()) return;
            const e = new NatterError(err.code, `token refresh failed (${err.message}): reconnecting with a fresh token`, err.frame);
            e.cause = err;
            this._emit('error', e);
            this._tokenStale = true;
            this._quick = true;
            this._dead('token refresh failed');
          },
        );
      },
      (err) => {
        if (!current()) return;
        this._emit('error', err);
        // Try again before the token expires (the server says bye expired
        // at its expiry, and the client then reconnects with a fresh one).
        const left = this._token ? (tokenExpiry(this._token) || 0) - Date.now() : 0;
        this._armRefresh(Math.min(10_000, Math.max(1000, left / 2)));
      },
    );
  }

  _openSocket() {
    const gen = ++this._gen;
    const mine = (fn) => (...args) => {
      if (gen === this._gen) fn(...args);
    };
    this._bye = null;
    this._welcomed = false;
    let conn;
    try {
      conn = this._transport.open(this._baseUrl, { token: this._token }, {
        open: mine(() => {}),
        message: mine((data) => this._onData(data)),
        error: mine((err) => this._emit('error', err)),
        close: mine((code, reason) => this._lost(code, reason)),
      });
    } catch (err) {
      this._emit('error', err instanceof NatterError ? err : new NatterError('transport', String((err && err.message) || err)));
      if (gen === this._gen) this._lost();
      return;
    }
    if (gen !== this._gen) return; // it failed at once, and _lost has run
    this._conn = conn;
    this._welcomeTimer = setTimeout(mine(() => this._dead('no welcome in time')), this._timeout);
  }

  /** The connection is unusable: close it and go on as if it were lost. */
  _dead(why) {
    const conn = this._conn;
    this._lost(4000, why);
    if (conn) {
      try { conn.close(4000, why); } catch { /* gone */ }
    }
  }

  _clearConnTimers() {
    clearTimeout(this._welcomeTimer);
    clearInterval(this._pingTimer);
    clearTimeout(this._pongTimer);
    clearTimeout(this._refreshTimer);
    this._welcomeTimer = this._pingTimer = this._pongTimer = this._refreshTimer = null;
  }

  /** The current connection is gone (closed, failed or deemed dead). */
  _lost(code, reason) {
    this._gen++; // ignore anything the old socket still says
    this._conn = null;
    this._clearConnTimers();
    // Requests on the wire go back to the head of the queue, in the order
    // they were written, with the same id; a broadcast cannot be retried
    // safely (no deduplication) and joins/leaves are redone by the rejoin.
    // Gap fills are given up too: the rejoin with since replays what they
    // were fetching and what they held.
    const requeue = [];
    for (const req of this._pending.values()) {
      clearTimeout(req.timer);
      if (req.kind === 'join') continue;
      if (req.kind === 'typing') req.resolve(null); // stale by the reconnect
      else if (req.kind === 'refresh') req.reject(new NatterError('disconnected', 'connection lost during a token refresh'));
      else if (req.kind === 'leave') req.resolve({ type: 'left', room: req.frame.room });
      else if (req.kind === 'broadcast') req.reject(new NatterError('disconnected', 'connection lost before the broadcast was acknowledged'));
      else if (req.kind === 'fill') req.reject(new NatterError('disconnected', 'connection lost during a gap fill'));
      else requeue.push(req);
    }
    this._pending.clear();
    for (const room of this._rooms.values()) {
      room.fill = null;
      room.held = [];
      room.rejoinId = null;
    }
    for (const req of requeue) this._armQueueTimer(req);
    this._queue.unshift(...requeue);
    if (this.state === State.CLOSED) return;

    const bye = this._bye;
    const expired = !!bye && bye.code === 'expired';
    // A connection that closed before welcome may have had its token
    // refused (HTTP 401): the next attempt asks the function for a new one.
    if (this._tokenFn && (expired || !this._welcomed)) this._tokenStale = true;
    const quick = this._quick || (bye && bye.code === 'shutdown') || (expired && this._tokenFn);
    this._quick = false;
    if (!this._reconnect || (bye && bye.code === 'kicked') || (expired && !this._tokenFn) || this._attempt >= this._reconnect.maxAttempts) {
      this._shutdown(new NatterError(bye ? bye.code : 'closed', bye ? bye.message : `connection closed (${code || 'no code'}${reason ? ': ' + reason : ''})`));
      return;
    }
    this._setState(State.RECONNECTING);
    let delay;
    if (quick && this._attempt === 0) delay = 0;
    else {
      const { base, cap } = this._reconnect;
      delay = Math.random() * Math.min(cap, base * 2 ** Math.min(this._attempt, 30));
    }
    this._attempt++;
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _onData(data) {
    const text = decodeData(data);
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      this._emit('error', new NatterError('bad_frame', 'server sent a frame that is not JSON'));
      return;
    }
    if (!f || typeof f !== 'object') return;
    // Any frame proves the connection alive.
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
    this._emit('frame', f);
    if (f.id !== undefined && REPLY_TYPES.has(f.type)) {
      const req = this._pending.get(f.id);
      if (req) {
        this._pending.delete(f.id);
        clearTimeout(req.timer);
        if (req.kind === 'join') this._joinAnswered(req);
        // Before any later frame: the message must be known as ours when
        // history or a replay brings it.
        if (req.kind === 'send' && req.frame.echo === false && f.type === 'ack') this._ownMessage(req.frame.room, f.seq);
        if (f.type === 'error') req.reject(new NatterError(f.code || 'internal', f.message, f));
        else req.resolve(f);
        return;
      }
    }
    switch (f.type) {
      case 'welcome':
        this._onWelcome(f);
        break;
      case 'msg': {
        const room = this._rooms.get(f.room);
        if (!room) return; // left, or never joined
        this._onRoomMsg(f.room, room, f);
        break;
      }
      case 'dm': {
        // Stored dms are delivered at least once: a repeat has the same seq.
        if (typeof f.seq === 'number') {
          const key = f.to + '\u0000' + f.seq;
          if (this._dmSeen.has(key)) return;
          this._dmSeen.add(key);
          this._dmOrder.push(key);
          if (this._dmOrder.length > DM_SEEN) this._dmSeen.delete(this._dmOrder.shift());
        }
        this._emit('dm', f);
        break;
      }
      case 'presence':
      case 'broadcast':
      case 'typing':
      case 'read':
        this._emit(f.type, f);
        break;
      case 'bye':
        this._bye = f;
        this._emit('bye', f);
        break;
      case 'error':
        this._emit('error', new NatterError(f.code || 'internal', f.message, f));
        break;
      default:
        break; // pong to our heartbeat, a late reply, or a frame of a later protocol version
    }
  }

  // -- room messages and gaps ----------------------------------------------

  /**
   * A room's `msg`: dropped when delivered already; held while a gap fill of
   * the room runs; the start of a fill when its `prev` names a stored
   * message the application was not given; else delivered.
   */
  _onRoomMsg(name, room, f) {
    if (typeof f.seq !== 'number') {
      this._emit('msg', f);
      return;
    }
    if (room.lastSeq !== undefined && f.seq <= room.lastSeq) return; // seen already
    if (room.fill) {
      if (room.held.length >= this._maxHeld) {
        this._fillFailed(name, room, new NatterError('gap', `more than ${this._maxHeld} messages held`));
        return;
      }
      room.held.push(f);
      return;
    }
    if (room.lastSeq !== undefined && typeof f.prev === 'number' && f.prev > room.lastSeq) {
      // A join with since is on the wire: its replay brings this message
      // and the ones before it.
      if (room.rejoinId != null) return;
      room.fill = { gen: this._gen, target: f.prev };
      room.held = [f];
      this._fillPage(name, room, room.fill);
      return;
    }
    this._deliver(room, f);
  }

  /**
   * Hands a room message over (it is the next one in seq order), unless it
   * is one of this client's own `echo:false` messages, which is only taken
   * as seen.
   */
  _deliver(room, f) {
    room.lastSeq = f.seq;
    if (room.own.size) {
      const mine = room.own.has(f.seq);
      for (const q of room.own) if (q <= f.seq) room.own.delete(q);
      if (mine) return;
    }
    this._emit('msg', f);
  }

  /** An `echo:false` send of this client was stored in room as seq. */
  _ownMessage(name, seq) {
    const room = this._rooms.get(name);
    if (!room || typeof seq !== 'number') return;
    if (room.lastSeq !== undefined && seq <= room.lastSeq) return;
    room.own.add(seq);
    if (room.own.size > OWN_SEEN) room.own.delete(room.own.values().next().value);
  }

  /** Whether fill is still the one to run: same room, same connection. */
  _fillCurrent(name, room, fill) {
    return room.fill === fill && this._rooms.get(name) === room && fill.gen === this._gen && this.state === State.OPEN;
  }

  /**
   * Asks for the room's stored messages after the last one delivered, hands
   * them over, and pages on (`more`, or a full page) until the fill's
   * target is reached.
   */
  _fillPage(name, room, fill) {
    const after = room.lastSeq;
    this._request({ type: 'history', room: name, after, limit: FILL_PAGE }, 'fill').then(
      (reply) => {
        if (!this._fillCurrent(name, room, fill)) return;
        const msgs = Array.isArray(reply.messages) ? reply.messages : [];
        for (const m of msgs) {
          if (!m || typeof m.seq !== 'number' || m.seq <= room.lastSeq) continue;
          this._deliver(room, m);
          if (!this._fillCurrent(name, room, fill)) return; // a listener left the room, or closed
        }
        const progressed = room.lastSeq > after;
        if (progressed && room.lastSeq < fill.target && (reply.more === true || msgs.length >= FILL_PAGE)) {
          this._fillPage(name, room, fill);
        } else {
          this._fillEnd(name, room, fill);
        }
      },
      (err) => {
        if (this._fillCurrent(name, room, fill)) this._fillFailed(name, room, err);
      },
    );
  }

  /**
   * The store holds nothing more up to the fill's target (what it lacks was
   * removed by retention): hands over the held messages in order, and fills
   * again when one of them shows a gap of its own.
   */
  _fillEnd(name, room, fill) {
    if (room.lastSeq < fill.target) room.lastSeq = fill.target;
    // A listener may make more messages arrive: they join the queue.
    while (room.held.length) {
      const h = room.held[0];
      if (h.seq <= room.lastSeq) {
        room.held.shift();
        continue;
      }
      if (typeof h.prev === 'number' && h.prev > room.lastSeq) {
        fill.target = h.prev; // missed again meanwhile
        this._fillPage(name, room, fill);
        return;
      }
      room.held.shift();
      this._deliver(room, h);
      if (!this._fillCurrent(name, room, fill)) return;
    }
    room.fill = null;
  }

  /**
   * A fill failed (or held too much): the held messages are dropped and the
   * room is joined again with since = the last seq delivered, whose replay
   * brings them, as after a reconnect.
   */
  _fillFailed(name, room, err) {
    room.fill = null;
    room.held = [];
    if (this.state === State.OPEN && this._conn) this._sendJoin(name, room.lastSeq);
    const e = new NatterError('gap', `messages of ${name} after seq ${room.lastSeq} were missed and could not be fetched (${err.message}); joining again with since`);
    e.room = name;
    e.cause = err;
    this._emit('error', e);
  }

  /** A join was answered (or timed out): its replay, if any, has begun. */
  _joinAnswered(req) {
    const room = this._rooms.get(req.frame.room);
    if (room && room.rejoinId === req.frame.id) room.rejoinId = null;
  }

  _onWelcome(f) {
    clearTimeout(this._welcomeTimer);
    this._welcomeTimer = null;
    this.welcome = f;
    this.user = f.user;
    this.conn = f.conn;
    this._attempt = 0;
    this._welcomed = true;
    this._typingSent.clear();
    this._startHeartbeat(f.heartbeat);
    this._armRefresh();
    const prev = this.state;
    this.state = State.OPEN;
    // Rejoin first: commands are handled in the order sent, so queued sends
    // find their rooms joined. Listeners hear of the new connection after
    // that, so what they send comes after the rejoins too.
    for (const [name, room] of this._rooms) this._sendJoin(name, room.lastSeq);
    const queue = this._queue;
    this._queue = [];
    for (const req of queue) {
      clearTimeout(req.timer);
      this._write(req);
    }
    if (prev !== State.OPEN) this._emit('state', State.OPEN, prev);
    this._emit('welcome', f);
    const waiters = this._readyWaiters;
    this._readyWaiters = [];
    for (const w of waiters) w.resolve(f);
  }

  _startHeartbeat(serverSeconds) {
    const secs = this._heartbeatOpt || (serverSeconds > 0 ? serverSeconds : 25);
    const every = secs * 1000;
    this._pongWait = this._pongTimeoutOpt || Math.min(every, 10000);
    const gen = this._gen;
    this._pingTimer = setInterval(() => {
      if (gen === this._gen) this._probe();
    }, every);
  }

  /**
   * Sends {"type":"ping"}; when no frame at all arrives within the pong
   * timeout, the connection is dead.
   */
  _probe() {
    if (!this._conn || this.state !== State.OPEN) return;
    const gen = this._gen;
    // Armed before the write: any frame that arrives after it disarms it.
    if (!this._pongTimer) {
      this._pongTimer = setTimeout(() => {
        if (gen === this._gen) this._dead('no pong');
      }, this._pongWait);
    }
    try {
      this._conn.send('{"type":"ping"}');
    } catch {
      this._dead('ping failed');
    }
  }

  _shutdown(err) {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._clearConnTimers();
    for (const req of this._pending.values()) {
      clearTimeout(req.timer);
      req.reject(err);
    }
    this._pending.clear();
    for (const req of this._queue) {
      clearTimeout(req.timer);
      req.reject(err);
    }
    this._queue = [];
    for (const room of this._rooms.values()) {
      for (const w of room.waiters) w.reject(err);
      room.waiters = [];
    }
    for (const w of this._readyWaiters) w.reject(err);
    this._readyWaiters = [];
    this._setState(State.CLOSED);
  }

  /**
   * Closes the client for good: no reconnect; every pending and queued
   * command is rejected with code `closed`.
   */
  close() {
    if (this.state === State.CLOSED) return;
    const conn = this._conn;
    this._gen++;
    this._conn = null;
    this._shutdown(new NatterError('closed', 'client closed'));
    if (conn) {
      try { conn.close(1000, 'bye'); } catch { /* gone */ }
    }
  }

  /**
   * Resolves with the `welcome` frame once the client is open (at once when
   * it is); rejects when the client is closed first.
   * @returns {Promise<object>}
   */
  ready() {
    if (this.state === State.OPEN) return Promise.resolve(this.welcome);
    if (this.state === State.CLOSED) return Promise.reject(new NatterError('closed', 'client closed'));
    return new Promise((resolve, reject) => this._readyWaiters.push({ resolve, reject }));
  }

  // -- requests -------------------------------------------------------------

  /** @returns {string} a command id unique to this client and page load */
  _nextId() {
    return this._idPrefix + '-' + (++this._idSeq).toString(36);
  }

  _request(frame, kind, opts = {}) {
    if (this.state === State.CLOSED) return Promise.reject(new NatterError('closed', 'client closed'));
    if (opts.id !== undefined) frame.id = String(opts.id);
    else frame.id = this._nextId();
    let text;
    try {
      text = JSON.stringify(frame);
    } catch (err) {
      return Promise.reject(new NatterError('bad_frame', `cannot encode the ${frame.type} command: ${err.message}`));
    }
    if (utf8Length(text, this._maxFrame) > this._maxFrame) {
      const err = new NatterError('too_large', `the ${frame.type} command is larger than ${this._maxFrame} bytes`);
      err.id = frame.id;
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const req = { frame, text, kind, resolve, reject, timer: null, timeout: opts.timeout > 0 ? opts.timeout : this._timeout };
      if (this.state === State.OPEN && this._conn) {
        this._write(req);
      } else if (this._queue.length >= this._maxQueue) {
        reject(new NatterError('queue_full', `more than ${this._maxQueue} commands waiting for a connection`));
      } else {
        this._armQueueTimer(req);
        this._queue.push(req);
      }
    });
  }

  _armQueueTimer(req) {
    clearTimeout(req.timer);
    req.timer = null;
    if (!this._queueTimeout) return;
    req.timer = setTimeout(() => {
      const i = this._queue.indexOf(req);
      if (i >= 0) this._queue.splice(i, 1);
      req.reject(new NatterError('timeout', `no connection within ${this._queueTimeout} ms`));
    }, this._queueTimeout);
  }

  _write(req) {
    const id = req.frame.id;
    if (!this._conn) {
      // The socket went away during a flush: wait for the next one.
      this._armQueueTimer(req);
      this._queue.push(req);
      return;
    }
    this._pending.set(id, req);
    req.timer = setTimeout(() => {
      if (this._pending.get(id) === req) this._pending.delete(id);
      const err = new NatterError('timeout', `no reply to ${req.frame.type} within ${req.timeout} ms`);
      err.id = id; // resend with { id } to retry a send or dm idempotently
      if (req.kind === 'join') {
        this._joinAnswered(req);
        this._joinFailed(req.frame.room, err);
      }
      req.reject(err);
      this._probe(); // a missing reply may mean a dead connection
    }, req.timeout);
    try {
      this._conn.send(req.text);
    } catch (err) {
      // The socket is going away; its close puts the request back in the queue.
      this._emit('error', new NatterError('transport', String(err && err.message || err)));
    }
  }

  _sendJoin(name, since) {
    const frame = { type: 'join', room: name };
    if (since !== undefined) frame.since = since;
    const r = this._rooms.get(name);
    // A plain join of a room whose position is known (joined again) must
    // not move it: messages in flight would pass for seen.
    const known = !!r && r.lastSeq !== undefined;
    // Until it is answered, a live message that shows a gap is left to its
    // replay (set before the write: the answer may come at once).
    const id = this._nextId();
    if (r && since !== undefined) r.rejoinId = id;
    this._request(frame, 'join', { id }).then(
      (f) => {
        const room = this._rooms.get(name);
        if (!room) return;
        if (since === undefined && !known && typeof f.seq === 'number') room.lastSeq = Math.max(room.lastSeq || 0, f.seq);
        const waiters = room.waiters;
        room.waiters = [];
        for (const w of waiters) w.resolve(f);
      },
      (err) => {
        // closed: _shutdown rejected the waiters; timeout: handled in _write.
        if (err.code !== 'closed' && err.code !== 'timeout') this._joinFailed(name, err);
      },
    );
  }

  /**
   * A join was refused or not answered. Refused (bad_room, forbidden, …): the
   * room is dropped. Not answered: the room stays, to be rejoined after the
   * next reconnect (call leave to give up on it).
   */
  _joinFailed(name, err) {
    const room = this._rooms.get(name);
    if (!room) return;
    const waiters = room.waiters;
    room.waiters = [];
    if (err.code !== 'timeout') this._rooms.delete(name);
    if (waiters.length === 0) {
      const e = new NatterError(err.code, `rejoin of ${name} failed: ${err.message}`, err.frame);
      e.room = name;
      this._emit('error', e);
    }
    for (const w of waiters) w.reject(err);
  }

  /**
   * Joins a room: its `msg` and `presence` frames arrive from now on, and
   * after a reconnect the client rejoins it by itself. With `since`, every
   * stored message after that seq arrives first (messages up to `since` are
   * taken as seen).
   * @param {string} room
   * @param {{since?: number}} [options]
   * @returns {Promise<{type: 'joined', room: string, seq: number}>} the `joined` frame
   */
  join(room, options = {}) {
    if (this.state === State.CLOSED) return Promise.reject(new NatterError('closed', 'client closed'));
    const since = typeof options.since === 'number' ? options.since : undefined;
    let r = this._rooms.get(room);
    if (!r) this._rooms.set(room, (r = { lastSeq: since, waiters: [], fill: null, held: [], rejoinId: null, own: new Set() }));
    else if (since !== undefined) {
      r.lastSeq = since;
      r.fill = null; // the replay brings what a fill was fetching
      r.held = [];
    }
    const p = new Promise((resolve, reject) => r.waiters.push({ resolve, reject }));
    if (this.state === State.OPEN && this._conn) this._sendJoin(room, since);
    return p;
  }

  /**
   * Leaves a room.
   * @param {string} room
   * @returns {Promise<object>} the `left` frame
   */
  leave(room) {
    if (this.state === State.CLOSED) return Promise.reject(new NatterError('closed', 'client closed'));
    const r = this._rooms.get(room);
    this._rooms.delete(room);
    if (r) for (const w of r.waiters) w.reject(new NatterError('left', 'left before joined'));
    if (this.state !== State.OPEN || !this._conn) return Promise.resolve({ type: 'left', room });
    return this._request({ type: 'leave', room }, 'leave');
  }

  /**
   * The rooms this client is in (or joining).
   * @returns {string[]}
   */
  rooms() {
    return [...this._rooms.keys()];
  }

  /**
   * The last `seq` delivered (or taken as seen) in a room. While missed
   * messages are being fetched, newer ones are held and not counted.
   * @param {string} room
   * @returns {number|undefined}
   */
  lastSeq(room) {
    const r = this._rooms.get(room);
    return r ? r.lastSeq : undefined;
  }

  /**
   * Sends a message to a room (joined first). Queued while disconnected; an
   * unacknowledged send is retried with the same id after a reconnect.
   *
   * With `echo: false` (v1.1, "exclude publisher") this connection does not
   * get the message back as a `msg` event: show it from the `ack` (which
   * has its `seq`). The user's other connections, and everyone else, get
   * it as usual. The client remembers the `seq`s of such messages and
   * drops them should a gap fill or a rejoin's replay bring them (the
   * server's replay carries no echo choice); only when such a replay
   * overtakes the `ack` itself can one still come as a `msg`.
   * @param {string} room
   * @param {*} body any JSON value
   * @param {{id?: string, timeout?: number, echo?: boolean}} [options] `id`:
   *   your own idempotency key (default: generated); `echo`: `false` to
   *   leave this connection out of the live delivery
   * @returns {Promise<{type: 'ack', id: string, seq: number}>} the `ack` frame
   */
  send(room, body, options = {}) {
    const frame = { type: 'send', room, body };
    if (options && options.echo === false) frame.echo = false;
    this._typingSent.delete(room); // typing again after a send is news
    return this._request(frame, 'send', options);
  }

  /**
   * Tells the room's other connections that this user is typing (v1.1):
   * they get a `typing` event `{room, user}`. Call it on every keystroke:
   * the client sends at most one per room every `typingInterval` ms (the
   * server forwards at most one per user and room every 2 s). Nothing is
   * stored, and it is not queued: while disconnected, or when throttled,
   * it resolves at once to `null` without sending. The room must be
   * joined (else `not_member`).
   * @param {string} room
   * @param {{timeout?: number}} [options]
   * @returns {Promise<object|null>} the `ack` frame, or `null` when nothing was sent
   */
  typing(room, options) {
    if (this.state === State.CLOSED) return Promise.reject(new NatterError('closed', 'client closed'));
    if (this.state !== State.OPEN || !this._conn) return Promise.resolve(null);
    const now = Date.now();
    const last = this._typingSent.get(room);
    if (last !== undefined && now - last < this._typingInterval) return Promise.resolve(null);
    this._typingSent.set(room, now);
    return this._request({ type: 'typing', room }, 'typing', options);
  }

  /**
   * Records that the user has read `room` up to `seq` (v1.1, "read
   * position"). The position belongs to the user, on every device, and only
   * moves forward (a lower `seq` changes nothing; one beyond the room's
   * latest message counts as the latest). The user's other connections get
   * a `read` event `{room, seq, user}` when it moved. Needs the right to
   * join the room, not membership. Queued while disconnected.
   * @param {string} room
   * @param {number} seq
   * @param {{timeout?: number}} [options]
   * @returns {Promise<{type: 'ack', room: string, seq: number}>} the `ack`
   *   frame; its `seq` is the position after the command
   */
  read(room, seq, options) {
    return this._request({ type: 'read', room, seq }, 'read', options);
  }

  /**
   * The number of unread messages of every room the user is in on any of
   * its connections (at most 1,000 rooms): stored messages after the user's
   * read position (all of them when it never called {@link Client#read}
   * for the room). Messages removed by retention are not counted.
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Object<string, number>>} room → count
   */
  unread(options) {
    return this._request({ type: 'unread' }, 'unread', options).then((f) => (f.rooms && typeof f.rooms === 'object' ? f.rooms : {}));
  }

  /**
   * Sends a direct message to a user. Queued and retried like {@link Client#send}.
   * @param {string} to user id
   * @param {*} body any JSON value
   * @param {{id?: string, timeout?: number}} [options]
   * @returns {Promise<{type: 'ack', id: string, seq: number, status: 'delivered'|'stored'}>}
   */
  dm(to, body, options) {
    return this._request({ type: 'dm', to, body }, 'dm', options);
  }

  /**
   * Sends a message to every connection (needs the `broadcast` permission).
   * Not retried after a lost connection: it rejects with `disconnected`.
   * @param {*} body any JSON value
   * @param {{timeout?: number}} [options]
   * @returns {Promise<object>} the `ack` frame
   */
  broadcast(body, options) {
    return this._request({ type: 'broadcast', body }, 'broadcast', options);
  }

  /**
   * The users online in a room.
   * @param {string} room
   * @param {{timeout?: number}} [options]
   * @returns {Promise<string[]>} sorted, unique user ids
   */
  members(room, options) {
    return this._request({ type: 'members', room }, 'members', options).then((f) => f.users || []);
  }

  /**
   * Stored messages of a room, oldest first: the latest `limit` (default 50,
   * max 500) before `before` (or the latest overall), or, with `after`, the
   * oldest `limit` after it. A page is bounded by bytes too (about 256 KiB),
   * so it can hold fewer than `limit` messages while more remain: the
   * array's `more` (not enumerable) is true when the room held messages
   * beyond the page in the direction read. Page on with the first
   * message's `seq` as `before`, or the last one's as `after`:
   *
   * ```js
   * let page = await chat.history('lobby', { limit: 500 });
   * while (page.more) page = await chat.history('lobby', { limit: 500, before: page[0].seq });
   * ```
   * @param {string} room
   * @param {{before?: number, after?: number, limit?: number, timeout?: number}} [options]
   * @returns {Promise<object[] & {more: boolean}>} `msg` frames
   */
  history(room, options = {}) {
    const frame = { type: 'history', room };
    if (options.before !== undefined) frame.before = options.before;
    if (options.after !== undefined) frame.after = options.after;
    if (options.limit !== undefined) frame.limit = options.limit;
    return this._request(frame, 'history', options).then((f) => {
      const messages = Array.isArray(f.messages) ? f.messages : [];
      Object.defineProperty(messages, 'more', { value: f.more === true });
      return messages;
    });
  }

  /**
   * Measures a round trip to the edge.
   * @param {{timeout?: number}} [options]
   * @returns {Promise<number>} milliseconds
   */
  ping(options) {
    const t0 = Date.now();
    return this._request({ type: 'ping' }, 'ping', options).then(() => Date.now() - t0);
  }
}

/**
 * Connects to a natter edge and returns the client at once; it opens (and
 * reopens) its connection by itself. Listen to `state`, or await
 * {@link Client#ready}, to know when it is open; commands issued before are
 * queued.
 * @param {string} url the edge's WebSocket URL, e.g. `wss://chat.example.com/ws`
 * @param {ConnectOptions} [options]
 * @returns {Client}
 */
export function connect(url, options) {
  return new Client(url, options);
}

export default { connect, Client, NatterError, State, browserTransport, nodeTransport, wxTransport, autoTransport, tokenExpiry, PROTOCOL_VERSION };
