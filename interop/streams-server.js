#!/usr/bin/env node
// A Node.js Socket.IO 4.8 server on @socket.io/redis-streams-adapter 0.3.1
// (node-redis v4), with connection state recovery, driven over HTTP by the Go
// interop tests. It answers the same control API as server.js (same actions,
// same JSON conventions, same "LISTENING <port>" line), plus a few actions and
// fields for recovery tests.
//
// Configuration (environment, or --name=value arguments which win):
//   PORT / --port                      listening port on 127.0.0.1 (0: any free port)
//   REDIS_URL / --redis-url            redis://host:port (required)
//   KEY / --key                        the adapter's channelPrefix (default "socket.io");
//                                      CHANNEL_PREFIX / --channel-prefix is the same option
//   NAME / --name                      a name for logs and for the control API's answers
//   REQUESTS_TIMEOUT / --requests-timeout  timeout of fetchSockets, in ms (default 5000; the
//                                      ClusterAdapter has no requestsTimeout option, so it is
//                                      applied with .timeout(ms); serverSideEmit with an ack
//                                      always waits 5000 ms, fixed in socket.io-adapter)
//   STREAM_NAME / --stream-name        streamName (default "socket.io")
//   STREAM_COUNT / --stream-count      streamCount (default 1)
//   MAX_LEN / --max-len                maxLen (default 10000)
//   READ_COUNT / --read-count          readCount, the XREAD COUNT (default 100)
//   BLOCK_TIME_IN_MS / --block-time-in-ms  blockTimeInMs, the XREAD BLOCK (default 5000)
//   SESSION_KEY_PREFIX / --session-key-prefix  sessionKeyPrefix (default "sio:session:")
//   USE_SHARDED_PUBSUB / --use-sharded-pubsub  useShardedPubSub: 1/true (default false)
//   ONLY_PLAINTEXT / --only-plaintext  onlyPlaintext: 1/true (default false)
//   RECOVERY / --recovery              connection state recovery on (default) or off (0/false)
//   MAX_DISCONNECTION_DURATION / --max-disconnection-duration
//                                      connectionStateRecovery.maxDisconnectionDuration in ms
//                                      (default 120000; also the PX of the persisted session)
//   NAMESPACES / --namespaces          comma-separated namespaces (default "/,/custom")
// Numbers are passed to the adapter as numbers: it compares streamCount with
// === 1 and node-redis only sends BLOCK when it is a number.
//
// Recovery is { maxDisconnectionDuration, skipMiddlewares: true }. Every
// namespace has a no-op middleware that records the sockets it saw, so the
// "connections" action can tell whether a recovered socket skipped it.
//
// Readiness: the Redis clients are named (CLIENT SETNAME, inherited by the
// adapter's duplicates). "LISTENING <port>" is printed only once CLIENT LIST
// shows streamCount of our connections blocked in XREAD and our subscriber
// subscribed to the public and private channel of every namespace: the
// adapter starts reading at "$", so anything added to a stream before its
// first XREAD is never seen by this server.
//
// Control API: POST /control/<action> with a JSON body, answered with JSON
// (status 500 and {"error": "..."} when the action throws). Binary values
// travel as {"$binary": "<base64>"} in both directions; {"$date": "<ISO>"} in
// a request is a Date. Selectors: "in" (rooms), "except" (rooms), "local"
// (bool). Actions (those of server.js first):
//   ping                {}                            -> {name, pid}
//   emit                {nsp, event, args, in, except, local, timeout?,
//                        volatile?, compress?, from?}  (with timeout ms: {err, acks})
//                       volatile: true -> .volatile; compress: false -> .compress(false);
//                       from: a local socket id -> the operator is that socket's
//                       (socket.broadcast / socket.to(...)): the socket is excepted
//   fetchSockets        {nsp, in, except, local}      -> {sockets: [{id, handshake, rooms, data}], err}
//   socketsJoin         {nsp, in, except, local, rooms}
//   socketsLeave        {nsp, in, except, local, rooms}
//   disconnectSockets   {nsp, in, except, local, close}
//   serverSideEmit      {nsp, event, args, ack}       (with ack: {err, responses})
//   serverCount         {nsp}                         -> {count}
//   allRooms            {nsp}                         -> {rooms, err}  (always an err: not in the streams adapter)
//   join / leave        {nsp, id, rooms}              a local socket joins / leaves rooms
//   setData             {nsp, id, data}               socket.data = data
//   listen              {nsp, event, reply?}          record server-side events; ack them with reply if given
//   serverEvents        {nsp, event}                  -> {events: [{args, ack}]}
//   localSockets        {nsp}                         -> {sockets: [{id, rooms, data, recovered}]}
// Added here:
//   socketEmit          {nsp, id, event, args}        socket.emit on one local socket (not a broadcast: no offset)
//   connections         {nsp}                         -> {connections: [{id, recovered, middleware, rooms, data}]}
//                       every connection in order; rooms and data as they were in the connection handler
//   disconnections      {nsp}                         -> {disconnections: [{id, reason}]}
//   config              {}                            -> the effective adapter options and recovery settings
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-streams-adapter");
const { createClient } = require("redis");

const OPTIONS = {
  // name in --name=, environment variable, kind
  port: ["port", "PORT", "int"],
  redisUrl: ["redis-url", "REDIS_URL", "string"],
  key: ["key", "KEY", "string"],
  channelPrefix: ["channel-prefix", "CHANNEL_PREFIX", "string"],
  name: ["name", "NAME", "string"],
  requestsTimeout: ["requests-timeout", "REQUESTS_TIMEOUT", "int"],
  streamName: ["stream-name", "STREAM_NAME", "string"],
  streamCount: ["stream-count", "STREAM_COUNT", "int"],
  maxLen: ["max-len", "MAX_LEN", "int"],
  readCount: ["read-count", "READ_COUNT", "int"],
  blockTimeInMs: ["block-time-in-ms", "BLOCK_TIME_IN_MS", "int"],
  sessionKeyPrefix: ["session-key-prefix", "SESSION_KEY_PREFIX", "string"],
  useShardedPubSub: ["use-sharded-pubsub", "USE_SHARDED_PUBSUB", "bool"],
  onlyPlaintext: ["only-plaintext", "ONLY_PLAINTEXT", "bool"],
  recovery: ["recovery", "RECOVERY", "bool"],
  maxDisconnectionDuration: ["max-disconnection-duration", "MAX_DISCONNECTION_DURATION", "int"],
  namespaces: ["namespaces", "NAMESPACES", "string"],
};

function parseValue(field, kind, raw) {
  if (kind === "int") {
    if (!/^-?[0-9]+$/.test(raw)) {
      throw new Error(`${field}: not an integer: ${JSON.stringify(raw)}`);
    }
    return Number(raw);
  }
  if (kind === "bool") {
    if (/^(1|true|yes|on)$/i.test(raw)) {
      return true;
    }
    if (/^(0|false|no|off)$/i.test(raw)) {
      return false;
    }
    throw new Error(`${field}: not a boolean: ${JSON.stringify(raw)}`);
  }
  return raw;
}

function config() {
  const raw = {};
  for (const [field, [, envName]] of Object.entries(OPTIONS)) {
    if (process.env[envName] !== undefined && process.env[envName] !== "") {
      raw[field] = process.env[envName];
    }
  }
  const byArg = {};
  for (const [field, [argName]] of Object.entries(OPTIONS)) {
    byArg[argName] = field;
  }
  for (const arg of process.argv.slice(2)) {
    const m = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (!m || !byArg[m[1]]) {
      throw new Error(`unknown argument ${arg}`);
    }
    raw[byArg[m[1]]] = m[2];
  }
  const v = {};
  for (const [field, s] of Object.entries(raw)) {
    v[field] = parseValue(field, OPTIONS[field][2], s);
  }
  if (!v.redisUrl) {
    throw new Error("REDIS_URL (or --redis-url=) is required");
  }
  if (v.key !== undefined && v.channelPrefix !== undefined && v.key !== v.channelPrefix) {
    throw new Error("KEY and CHANNEL_PREFIX name the same option: give one");
  }
  // The adapter's options: only what was given, so that the adapter's own
  // defaults apply otherwise (reported by the "config" action).
  const adapterOpts = {};
  const channelPrefix = v.channelPrefix !== undefined ? v.channelPrefix : v.key;
  if (channelPrefix !== undefined) {
    adapterOpts.channelPrefix = channelPrefix;
  }
  for (const f of ["streamName", "streamCount", "maxLen", "readCount", "blockTimeInMs", "sessionKeyPrefix", "useShardedPubSub", "onlyPlaintext"]) {
    if (v[f] !== undefined) {
      adapterOpts[f] = v[f];
    }
  }
  if (adapterOpts.streamCount !== undefined && adapterOpts.streamCount < 1) {
    throw new Error("STREAM_COUNT must be >= 1");
  }
  const namespaces = (v.namespaces || "/,/custom").split(",").filter((s) => s !== "");
  for (const n of namespaces) {
    if (!n.startsWith("/")) {
      throw new Error(`namespace ${JSON.stringify(n)} does not start with /`);
    }
  }
  return {
    port: v.port || 0,
    redisUrl: v.redisUrl,
    name: v.name || `node-streams-${process.pid}`,
    requestsTimeout: v.requestsTimeout || 5000,
    recovery: v.recovery !== false,
    maxDisconnectionDuration: v.maxDisconnectionDuration !== undefined ? v.maxDisconnectionDuration : 2 * 60 * 1000,
    namespaces,
    adapterOpts,
  };
}

// fromWire turns the JSON of the control API into JS values: {"$binary": b64}
// becomes a Buffer, {"$date": iso} a Date.
function fromWire(v) {
  if (Array.isArray(v)) {
    return v.map(fromWire);
  }
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$binary" && typeof v.$binary === "string") {
      return Buffer.from(v.$binary, "base64");
    }
    if (keys.length === 1 && keys[0] === "$date" && typeof v.$date === "string") {
      return new Date(v.$date);
    }
    const out = {};
    for (const k of keys) {
      out[k] = fromWire(v[k]);
    }
    return out;
  }
  return v;
}

// toWire is the inverse of fromWire, for answers (a Date becomes its ISO text).
function toWire(v) {
  if (Buffer.isBuffer(v)) {
    return { $binary: v.toString("base64") };
  }
  if (v instanceof ArrayBuffer) {
    return { $binary: Buffer.from(v).toString("base64") };
  }
  if (ArrayBuffer.isView(v)) {
    return { $binary: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  }
  if (v instanceof Date) {
    return v.toISOString();
  }
  if (Array.isArray(v)) {
    return v.map(toWire);
  }
  if (v !== null && typeof v === "object") {
    const out = {};
    for (const [k, val] of Object.entries(v)) {
      if (typeof val !== "function" && val !== undefined) {
        out[k] = toWire(val);
      }
    }
    return out;
  }
  return v;
}

function errText(err) {
  if (!err) {
    return null;
  }
  return err.message || String(err);
}

// parseClientList reads the text of CLIENT LIST into objects.
function parseClientList(text) {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((line) => {
      const o = {};
      for (const kv of line.trim().split(" ")) {
        const i = kv.indexOf("=");
        if (i > 0) {
          o[kv.slice(0, i)] = kv.slice(i + 1);
        }
      }
      return o;
    });
}

async function main() {
  const cfg = config();
  const log = (...a) => console.error(`[${cfg.name}]`, ...a);
  const streamCount = cfg.adapterOpts.streamCount || 1;
  const sharded = !!cfg.adapterOpts.useShardedPubSub;

  // A connection name unique to this process, without spaces: CLIENT LIST
  // tells our connections from the others' by it.
  const clientName = `sio-streams-${cfg.name.replace(/[^A-Za-z0-9_.:-]/g, "_")}-${process.pid}`;
  const redisClient = createClient({ url: cfg.redisUrl, name: clientName });
  redisClient.on("error", (err) => log("redis client error:", err.message));
  await redisClient.connect();

  const httpServer = http.createServer((req, res) => {
    control(req, res).catch((err) => {
      log("control error:", err);
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "application/json" });
      }
      res.end(JSON.stringify({ error: String((err && err.stack) || err) }));
    });
  });
  const serverOpts = {
    transports: ["websocket", "polling"],
    adapter: createAdapter(redisClient, cfg.adapterOpts),
  };
  if (cfg.recovery) {
    serverOpts.connectionStateRecovery = {
      maxDisconnectionDuration: cfg.maxDisconnectionDuration,
      skipMiddlewares: true,
    };
  }
  const io = new Server(httpServer, serverOpts);

  const namespaces = cfg.namespaces;
  const passedMiddleware = new WeakSet();
  const connections = new Map(); // nsp -> [{id, recovered, middleware, rooms, data}]
  const disconnections = new Map(); // nsp -> [{id, reason}]
  for (const name of namespaces) {
    connections.set(name, []);
    disconnections.set(name, []);
    const n = io.of(name);
    n.use((socket, next) => {
      passedMiddleware.add(socket);
      next();
    });
    n.on("connection", (socket) => {
      connections.get(name).push({
        id: socket.id,
        recovered: socket.recovered,
        middleware: passedMiddleware.has(socket),
        rooms: [...socket.rooms],
        data: toWire(socket.data),
      });
      socket.on("disconnect", (reason) => {
        disconnections.get(name).push({ id: socket.id, reason });
      });
    });
  }

  // Server-side event listeners, by namespace and event.
  const listeners = new Map(); // `${nsp} ${event}` -> {reply, hasReply, events: []}

  function nsp(body) {
    const name = body.nsp || "/";
    if (!namespaces.includes(name)) {
      throw new Error(`unknown namespace ${name}`);
    }
    return io.of(name);
  }

  function localSocket(body, id) {
    const s = nsp(body).sockets.get(id === undefined ? body.id : id);
    if (!s) {
      throw new Error(`no local socket ${id === undefined ? body.id : id} in ${body.nsp || "/"}`);
    }
    return s;
  }

  // operator applies the selectors and flags of body, starting from the
  // namespace, or from a local socket when body.from is set.
  function operator(body) {
    let op = body.from !== undefined && body.from !== null ? localSocket(body, body.from) : nsp(body);
    if (body.in && body.in.length) {
      op = op.to(body.in);
    }
    if (body.except && body.except.length) {
      op = op.except(body.except);
    }
    if (body.local) {
      op = op.local;
    }
    if (body.volatile) {
      op = op.volatile;
    }
    if (body.compress === false || body.compress === true) {
      op = op.compress(body.compress);
    }
    return op;
  }

  const actions = {
    ping: async () => ({ name: cfg.name, pid: process.pid }),

    config: async () => ({
      name: cfg.name,
      adapter: cfg.adapterOpts,
      streamCount,
      recovery: cfg.recovery,
      maxDisconnectionDuration: cfg.maxDisconnectionDuration,
      namespaces,
      clientName,
    }),

    emit: async (body) => {
      // A socket's own operator (socket.to/except/...) starts from the socket's
      // flags; socket.broadcast when there is no selector.
      let op = operator(body);
      if (body.from !== undefined && body.from !== null && op === localSocket(body, body.from)) {
        op = op.broadcast;
      }
      const args = fromWire(body.args || []);
      if (body.timeout === undefined || body.timeout === null) {
        op.emit(body.event, ...args);
        return {};
      }
      return await new Promise((resolve) => {
        op.timeout(body.timeout).emit(body.event, ...args, (err, acks) => {
          resolve({ err: errText(err), acks: toWire(acks || []) });
        });
      });
    },

    socketEmit: async (body) => {
      localSocket(body).emit(body.event, ...fromWire(body.args || []));
      return {};
    },

    fetchSockets: async (body) => {
      try {
        const sockets = await operator(body).timeout(cfg.requestsTimeout).fetchSockets();
        return {
          err: null,
          sockets: sockets.map((s) => ({
            id: s.id,
            handshake: toWire(s.handshake),
            rooms: [...s.rooms],
            data: toWire(s.data),
          })),
        };
      } catch (err) {
        return { err: errText(err), sockets: [] };
      }
    },

    socketsJoin: async (body) => {
      operator(body).socketsJoin(body.rooms);
      return {};
    },

    socketsLeave: async (body) => {
      operator(body).socketsLeave(body.rooms);
      return {};
    },

    disconnectSockets: async (body) => {
      operator(body).disconnectSockets(!!body.close);
      return {};
    },

    serverSideEmit: async (body) => {
      const n = nsp(body);
      const args = fromWire(body.args || []);
      if (!body.ack) {
        n.serverSideEmit(body.event, ...args);
        return {};
      }
      return await new Promise((resolve) => {
        n.serverSideEmit(body.event, ...args, (err, responses) => {
          resolve({ err: errText(err), responses: toWire(responses || []) });
        });
      });
    },

    serverCount: async (body) => ({ count: await nsp(body).adapter.serverCount() }),

    allRooms: async (body) => {
      // socket.io-adapter's ClusterAdapter (the streams adapter's base) has no
      // allRooms(): the answer is {err: "...allRooms is not a function", rooms: []}.
      try {
        return { err: null, rooms: [...(await nsp(body).adapter.allRooms())] };
      } catch (err) {
        return { err: errText(err), rooms: [] };
      }
    },

    join: async (body) => {
      localSocket(body).join(body.rooms);
      return {};
    },

    leave: async (body) => {
      const s = localSocket(body);
      for (const r of body.rooms) {
        s.leave(r);
      }
      return {};
    },

    setData: async (body) => {
      localSocket(body).data = fromWire(body.data);
      return {};
    },

    listen: async (body) => {
      const n = nsp(body);
      const key = `${n.name} ${body.event}`;
      let l = listeners.get(key);
      if (!l) {
        l = { events: [] };
        listeners.set(key, l);
        n.on(body.event, (...args) => {
          let ack = null;
          if (args.length && typeof args[args.length - 1] === "function") {
            ack = args.pop();
          }
          l.events.push({ args: toWire(args), ack: ack !== null });
          if (ack && l.hasReply) {
            ack(fromWire(l.reply));
          }
        });
      }
      l.hasReply = Object.prototype.hasOwnProperty.call(body, "reply");
      l.reply = body.reply;
      return {};
    },

    serverEvents: async (body) => {
      const l = listeners.get(`${nsp(body).name} ${body.event}`);
      return { events: l ? l.events : [] };
    },

    localSockets: async (body) => ({
      sockets: [...nsp(body).sockets.values()].map((s) => ({
        id: s.id,
        rooms: [...s.rooms],
        data: toWire(s.data),
        recovered: s.recovered,
      })),
    }),

    connections: async (body) => ({ connections: connections.get(nsp(body).name) }),

    disconnections: async (body) => ({ disconnections: disconnections.get(nsp(body).name) }),
  };

  async function control(req, res) {
    const prefix = "/control/";
    if (req.method !== "POST" || !req.url.startsWith(prefix)) {
      res.writeHead(404);
      res.end();
      return;
    }
    const action = actions[req.url.slice(prefix.length)];
    if (!action) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `unknown action ${req.url}` }));
      return;
    }
    const chunks = [];
    for await (const c of req) {
      chunks.push(c);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    const body = text ? JSON.parse(text) : {};
    const out = await action(body);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(out === undefined ? {} : out));
  }

  process.on("uncaughtException", (err) => {
    log("UNCAUGHT EXCEPTION:", err);
    process.exit(70);
  });

  // Wait until the adapter reads every stream and listens on every channel
  // (see "Readiness" above).
  const wantSubs = 2 * namespaces.length;
  const deadline = Date.now() + 15000;
  for (;;) {
    const mine = parseClientList(await redisClient.sendCommand(["CLIENT", "LIST"])).filter((c) => c.name === clientName);
    const reading = mine.filter((c) => c.cmd === "xread").length;
    const subs = mine.reduce((n, c) => n + Number((sharded ? c.ssub : c.sub) || 0), 0);
    if (reading >= streamCount && subs >= wantSubs) {
      break;
    }
    if (Date.now() > deadline) {
      throw new Error(`adapter not ready: ${reading}/${streamCount} streams read, ${subs}/${wantSubs} channels subscribed`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }

  await new Promise((resolve) => httpServer.listen(cfg.port, "127.0.0.1", resolve));
  const port = httpServer.address().port;
  process.stdout.write(`LISTENING ${port}\n`);
  log(
    `listening on 127.0.0.1:${port}, streams adapter ${JSON.stringify(cfg.adapterOpts)}, ` +
      (cfg.recovery ? `recovery ${cfg.maxDisconnectionDuration}ms` : "no recovery") +
      `, namespaces ${namespaces.join(" ")}`,
  );

  const shutdown = () => {
    // io.close() closes every namespace's adapter; the last one aborts the
    // stream readers, which disconnect after their current XREAD returns.
    io.close();
    Promise.allSettled([redisClient.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
