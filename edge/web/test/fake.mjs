// A scripted in-memory transport: the test plays the server. Each open() makes
// a FakeConn; the test sees the frames the client writes and answers them.

/** One fake socket. */
export class FakeConn {
  constructor(server, url, opts, on) {
    this.server = server;
    this.url = url;
    this.opts = opts;
    this.on = on;
    this.sent = [];
    this.closed = false;
    this.closedBy = null;
  }

  /** The server says something (an object is JSON-encoded). */
  deliver(frame) {
    if (this.closed) return;
    this.on.message(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Opens the socket and says welcome. */
  welcome(extra = {}) {
    this.on.open();
    this.deliver({ type: 'welcome', conn: `c${this.server.conns.length}`, user: 'tester', heartbeat: 30, ...extra });
  }

  /** The connection is lost (as seen by the client). */
  drop(code = 1006, reason = '') {
    if (this.closed) return;
    this.closed = true;
    this.closedBy = 'server';
    this.on.close(code, reason);
  }

  /** Frames of a type the client wrote on this socket. */
  frames(type) {
    return this.sent.filter((f) => !type || f.type === type);
  }
}

/**
 * The fake transport and its server. `auto` answers the usual commands like
 * the edge would (set it to false to answer by hand); `onOpen(conn)` runs for
 * every new socket (default: welcome at once); `refuse` makes open() fail.
 */
export function fakeServer({ auto = true, onOpen, heartbeat = 30 } = {}) {
  const server = {
    conns: [],
    opens: [], // times of open() calls
    auto,
    refuse: false,
    roomSeq: new Map(),
    dedup: new Map(),
    get last() { return server.conns[server.conns.length - 1]; },
    transport: {
      name: 'fake',
      open(url, opts, on) {
        server.opens.push(Date.now());
        if (server.refuse) throw new Error('network down');
        const conn = new FakeConn(server, url, opts, on);
        server.conns.push(conn);
        queueMicrotask(() => (onOpen ? onOpen(conn) : conn.welcome({ heartbeat })));
        return {
          send(text) {
            if (conn.closed) throw new Error('socket closed');
            const f = JSON.parse(text);
            conn.sent.push(f);
            if (server.auto) server.answer(conn, f);
          },
          close() {
            if (conn.closed) return;
            conn.closed = true;
            conn.closedBy = 'client';
            queueMicrotask(() => on.close(1000, ''));
          },
        };
      },
    },
    /** Answers a frame the way the edge would (a tiny model of it). */
    answer(conn, f) {
      switch (f.type) {
        case 'ping':
          conn.deliver(f.id !== undefined ? { type: 'pong', id: f.id } : { type: 'pong' });
          break;
        case 'join':
          conn.deliver({ type: 'joined', id: f.id, room: f.room, seq: server.roomSeq.get(f.room) || 0 });
          break;
        case 'leave':
          conn.deliver({ type: 'left', id: f.id, room: f.room });
          break;
        case 'send': {
          const key = f.id;
          if (server.dedup.has(key)) {
            conn.deliver({ type: 'ack', id: f.id, seq: server.dedup.get(key) });
            break;
          }
          const seq = (server.roomSeq.get(f.room) || 0) + 1;
          server.roomSeq.set(f.room, seq);
          server.dedup.set(key, seq);
          if (f.echo !== false) conn.deliver({ type: 'msg', room: f.room, from: 'tester', seq, ts: Date.now(), body: f.body });
          conn.deliver({ type: 'ack', id: f.id, seq });
          break;
        }
        case 'typing':
          conn.deliver({ type: 'ack', id: f.id });
          break;
        case 'read':
          conn.deliver({ type: 'ack', id: f.id, room: f.room, seq: f.seq });
          break;
        case 'unread':
          conn.deliver({ type: 'unread', id: f.id, rooms: Object.fromEntries(server.roomSeq) });
          break;
        case 'refresh':
          conn.deliver({ type: 'refreshed', id: f.id });
          break;
        case 'members':
          conn.deliver({ type: 'members', id: f.id, room: f.room, users: ['tester'] });
          break;
        default:
          break;
      }
    },
  };
  return server;
}

export const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/**
 * A JWT-shaped string (unsigned: the SDK never verifies) whose payload holds
 * claims; `exp` defaults to `life` seconds from now.
 */
export function fakeJwt(claims = {}, life = 3600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ exp: Math.floor(Date.now() / 1000) + life, ...claims })}.c2ln`;
}
