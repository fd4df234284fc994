#!/usr/bin/env node
// A Node.js Socket.IO 4.8 server on the official @socket.io/redis-adapter
// (classic mode, node-redis v4), driven over HTTP by the Go interop tests.
//
// Configuration (environment, or --name=value arguments which win):
//   PORT / --port                        listening port on 127.0.0.1 (0: any free port)
//   REDIS_URL / --redis-url              redis://host:port (required)
//   KEY / --key                          the adapter's `key` option (default "socket.io")
//   REQUESTS_TIMEOUT / --requests-timeout  the adapter's `requestsTimeout`, in ms (default 5000)
//   NAME / --name                        a name for logs and for the control API's answers
//   CLUSTER_NODES                        host:port,host:port,... of a Redis Cluster: the clients
//                                        are node-redis createCluster clients of these nodes
//                                        (REDIS_URL is then ignored)
//
// Once the adapter is set up and the server listens, it prints one line
// "LISTENING <port>" on stdout.
//
// Namespaces: "/" and "/custom". The control API lives on the same port:
// POST /control/<action> with a JSON body, answered with JSON (status 500 and
// {"error": "..."} when the action throws). Binary values travel in JSON as
// {"$binary": "<base64>"} in both directions; {"$date": "<ISO 8601>"} in a
// request is a Date. Selectors: "in" (rooms), "except"
// (rooms), "local" (bool); rooms may be strings or numbers. Actions:
//   ping                {}
//   emit                {nsp, event, args, in, except, local, timeout?}  (with timeout ms: {err, acks})
//   fetchSockets        {nsp, in, except, local}      -> {sockets: [{id, handshake, rooms, data}], err}
//   socketsJoin         {nsp, in, except, local, rooms}
//   socketsLeave        {nsp, in, except, local, rooms}
//   disconnectSockets   {nsp, in, except, local, close}
//   serverSideEmit      {nsp, event, args, ack}       (with ack: {err, responses})
//   serverCount         {nsp}                         -> {count}
//   allRooms            {nsp}                         -> {rooms, err}
//   join / leave        {nsp, id, rooms}              a local socket joins / leaves rooms
//   setData             {nsp, id, data}               socket.data = data
//   listen              {nsp, event, reply?}          record server-side events; ack them with reply if given
//   serverEvents        {nsp, event}                  -> {events: [{args, ack}]}
//   localSockets        {nsp}                         -> {sockets: [{id, rooms, data}]}
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient, createCluster } = require("redis");

function config() {
  const cfg = {
    port: process.env.PORT,
    redisUrl: process.env.REDIS_URL,
    key: process.env.KEY,
    requestsTimeout: process.env.REQUESTS_TIMEOUT,
    name: process.env.NAME,
  };
  const names = { port: "port", "redis-url": "redisUrl", key: "key", "requests-timeout": "requestsTimeout", name: "name" };
  for (const arg of process.argv.slice(2)) {
    const m = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (!m || !names[m[1]]) {
      throw new Error(`unknown argument ${arg}`);
    }
    cfg[names[m[1]]] = m[2];
  }
  if (!cfg.redisUrl) {
    throw new Error("REDIS_URL (or --redis-url=) is required");
  }
  return {
    port: Number(cfg.port || 0),
    redisUrl: cfg.redisUrl,
    key: cfg.key || "socket.io",
    requestsTimeout: Number(cfg.requestsTimeout || 5000),
    name: cfg.name || `node-${process.pid}`,
  };
}

// fromWire turns the JSON of the control API into JS values: {"$binary": b64}
// becomes a Buffer.
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

// toWire is the inverse of fromWire, for answers.
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

async function main() {
  const cfg = config();
  const log = (...a) => console.error(`[${cfg.name}]`, ...a);

  const clusterNodes = (process.env.CLUSTER_NODES || "").split(",").filter(Boolean);
  const pubClient = clusterNodes.length
    ? createCluster({ rootNodes: clusterNodes.map((n) => ({ url: `redis://${n}` })) })
    : createClient({ url: cfg.redisUrl });
  const subClient = pubClient.duplicate();
  pubClient.on("error", (err) => log("redis pub client error:", err.message));
  subClient.on("error", (err) => log("redis sub client error:", err.message));
  await Promise.all([pubClient.connect(), subClient.connect()]);

  const httpServer = http.createServer((req, res) => {
    control(req, res).catch((err) => {
      log("control error:", err);
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "application/json" });
      }
      res.end(JSON.stringify({ error: String((err && err.stack) || err) }));
    });
  });
  const io = new Server(httpServer, { transports: ["websocket", "polling"] });
  io.adapter(createAdapter(pubClient, subClient, { key: cfg.key, requestsTimeout: cfg.requestsTimeout }));
  const namespaces = ["/", "/custom"];
  for (const name of namespaces) {
    io.of(name).on("connection", () => {});
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

  // operator applies the selectors of body to namespace n.
  function operator(body) {
    let op = nsp(body);
    if (body.in && body.in.length) {
      op = op.in(body.in);
    }
    if (body.except && body.except.length) {
      op = op.except(body.except);
    }
    if (body.local) {
      op = op.local;
    }
    return op;
  }

  function localSocket(body) {
    const s = nsp(body).sockets.get(body.id);
    if (!s) {
      throw new Error(`no local socket ${body.id} in ${body.nsp || "/"}`);
    }
    return s;
  }

  const actions = {
    ping: async () => ({ name: cfg.name, pid: process.pid }),

    emit: async (body) => {
      const op = operator(body);
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

    fetchSockets: async (body) => {
      try {
        const sockets = await operator(body).fetchSockets();
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
      sockets: [...nsp(body).sockets.values()].map((s) => ({ id: s.id, rooms: [...s.rooms], data: toWire(s.data) })),
    }),
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

  // A malformed frame from another server throws inside the Redis client's
  // callback: report it loudly rather than limping on.
  process.on("uncaughtException", (err) => {
    log("UNCAUGHT EXCEPTION:", err);
    process.exit(70);
  });

  await new Promise((resolve) => httpServer.listen(cfg.port, "127.0.0.1", resolve));
  const port = httpServer.address().port;
  process.stdout.write(`LISTENING ${port}\n`);
  log(`listening on 127.0.0.1:${port}, key ${cfg.key}, requestsTimeout ${cfg.requestsTimeout}ms`);

  const shutdown = () => {
    io.close();
    Promise.allSettled([pubClient.quit(), subClient.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
