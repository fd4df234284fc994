#!/usr/bin/env node
// A Node.js Socket.IO 4.8 server for the cluster benchmark (examples/bench):
// the official @socket.io/redis-adapter (classic mode, node-redis v4), or
// @socket.io/redis-streams-adapter 0.3 with connection state recovery, with
// default Socket.IO options otherwise. It speaks the same control protocol as
// the Go benchmark server (`bench -serve`, see examples/bench/protocol.go):
//
//   GET  /bench/stats[?rooms=a,b]  -> {impl, adapter, pid, cpu_us, max_rss_kb, write_syscalls, now_ns, rooms, server_count, adapter_stats}
//   POST /bench/emit {mode, room, rooms, event, count, rate, duration_ms, payload, wait_published}
//                                  -> {emitted, start_ns, end_ns, drained_ns, max_lag_ns}
//
// "blast" emits `count` messages to `room` in one synchronous loop; "rate"
// emits `rate` messages per second for `duration_ms`; with `rooms`, message
// i goes to rooms[i % rooms.length] instead. Every message is
// emit(event, seq, unixNanos, pad) with a pad of `payload` bytes. With
// wait_published, the answer waits until Redis has acknowledged every PUBLISH
// of the emission (a PING queued behind them on the publisher connection) and
// reports when in drained_ns. cpu_us is process.cpuUsage() (user + system),
// max_rss_kb is process.resourceUsage().maxRSS, write_syscalls is syscw of
// /proc/self/io (-1 where unavailable). With the classic adapter,
// adapter_stats.received counts the frames its subscriber handed to the
// adapter (every message of the pattern subscription, as Go's
// Stats().Received).
//
// Clients join the room named by the "room" field of their CONNECT auth.
//
// Arguments (--name=value): --port (0: any free port), --redis-url (required
// with the redis and streams adapters), --key (the adapter's key; with
// streams, its channelPrefix and streamName), --adapter (redis, streams or
// memory, default redis), --name (for logs). Prints "LISTENING <port>" on
// stdout once it accepts connections.
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const { performance } = require("node:perf_hooks");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createAdapter: createStreamsAdapter } = require("@socket.io/redis-streams-adapter");
const { createClient } = require("redis");

function config() {
  const cfg = { port: "0", redisUrl: "", key: "socket.io", adapter: "redis", name: `node-${process.pid}` };
  const names = { port: "port", "redis-url": "redisUrl", key: "key", adapter: "adapter", name: "name" };
  for (const arg of process.argv.slice(2)) {
    const m = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (!m || !names[m[1]]) {
      throw new Error(`unknown argument ${arg}`);
    }
    cfg[names[m[1]]] = m[2];
  }
  if (!["redis", "streams", "memory"].includes(cfg.adapter)) {
    throw new Error(`--adapter must be redis, streams or memory, not ${cfg.adapter}`);
  }
  if (cfg.adapter !== "memory" && !cfg.redisUrl) {
    throw new Error(`--redis-url is required with the ${cfg.adapter} adapter`);
  }
  cfg.port = Number(cfg.port);
  return cfg;
}

// writeSyscalls is syscw of /proc/self/io (write-type system calls so far),
// or -1 where it is not available.
function writeSyscalls() {
  try {
    const m = /^syscw:\s*(\d+)$/m.exec(fs.readFileSync("/proc/self/io", "utf8"));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

// nowNs is the wall clock in Unix nanoseconds (as a double: ~0.25µs steps).
function nowNs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1e6);
}

async function main() {
  const cfg = config();
  const log = (...a) => console.error(`[${cfg.name}]`, ...a);

  // pubClient writes (PUBLISH, or XADD with streams): wait_published pings
  // it. subClient is the classic adapter's subscriber.
  let pubClient = null;
  let subClient = null;
  if (cfg.adapter !== "memory") {
    pubClient = createClient({ url: cfg.redisUrl });
    pubClient.on("error", (err) => log("redis pub client error:", err.message));
    const clients = [pubClient];
    if (cfg.adapter === "redis") {
      subClient = pubClient.duplicate();
      subClient.on("error", (err) => log("redis sub client error:", err.message));
      clients.push(subClient);
    }
    await Promise.all(clients.map((c) => c.connect()));
  }

  const httpServer = http.createServer((req, res) => {
    control(req, res).catch((err) => {
      log("control error:", err);
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "application/json" });
      }
      res.end(JSON.stringify({ error: String((err && err.stack) || err) }));
    });
  });
  let io;
  if (cfg.adapter === "streams") {
    // As the Go streams configuration: recovery on, Node's defaults.
    io = new Server(httpServer, {
      adapter: createStreamsAdapter(pubClient, { channelPrefix: cfg.key, streamName: cfg.key }),
      connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true },
    });
  } else {
    io = new Server(httpServer); // default options, as the Go servers
    if (cfg.adapter === "redis") {
      io.adapter(createAdapter(pubClient, subClient, { key: cfg.key }));
    }
  }
  io.on("connection", (socket) => {
    const room = socket.handshake.auth && socket.handshake.auth.room;
    if (typeof room === "string" && room !== "") {
      socket.join(room);
    }
  });
  const nsp = io.of("/");

  // Frames the classic adapter's subscriber receives: its pattern listener
  // calls adapter.onmessage at each message.
  let received = 0;
  if (cfg.adapter === "redis") {
    const adapter = nsp.adapter;
    const onmessage = adapter.onmessage;
    adapter.onmessage = function (...args) {
      received++;
      return onmessage.apply(this, args);
    };
  }

  async function stats(query) {
    const cpu = process.cpuUsage();
    const rooms = {};
    for (const r of (query.get("rooms") || "").split(",")) {
      if (r !== "") {
        const ids = nsp.adapter.rooms.get(r);
        rooms[r] = ids ? ids.size : 0;
      }
    }
    return {
      impl: "node",
      adapter: cfg.adapter,
      pid: process.pid,
      cpu_us: cpu.user + cpu.system,
      max_rss_kb: process.resourceUsage().maxRSS,
      write_syscalls: writeSyscalls(),
      now_ns: nowNs(),
      rooms,
      server_count: pubClient ? await nsp.adapter.serverCount() : 1,
      adapter_stats: cfg.adapter === "redis" ? { received } : undefined,
    };
  }

  let emitting = false;
  async function emit(body) {
    if (emitting) {
      throw new Error("an emission is already running");
    }
    emitting = true;
    try {
      const pad = "x".repeat(Math.max(0, body.payload | 0));
      const rooms = Array.isArray(body.rooms) && body.rooms.length > 0 ? body.rooms : null;
      const op = (i) => io.to(rooms ? rooms[i % rooms.length] : body.room);
      const out = { emitted: 0, start_ns: 0, end_ns: 0, drained_ns: 0, max_lag_ns: 0 };
      if (body.mode === "blast") {
        out.start_ns = nowNs();
        for (let i = 0; i < body.count; i++) {
          op(i).emit(body.event, i, nowNs(), pad);
        }
        out.emitted = body.count;
        out.end_ns = nowNs();
      } else if (body.mode === "rate") {
        if (!(body.rate > 0) || !(body.duration_ms > 0)) {
          throw new Error("rate mode needs rate > 0 and duration_ms > 0");
        }
        const n = Math.floor((body.rate * body.duration_ms) / 1000);
        const interval = 1e9 / body.rate;
        await new Promise((resolve) => {
          const start = nowNs();
          out.start_ns = start;
          let i = 0;
          const tick = () => {
            let now = nowNs();
            while (i < n && start + i * interval <= now) {
              out.max_lag_ns = Math.max(out.max_lag_ns, now - (start + i * interval));
              op(i).emit(body.event, i, now, pad);
              i++;
              now = nowNs();
            }
            if (i >= n) {
              resolve();
              return;
            }
            setTimeout(tick, Math.max(0, (start + i * interval - nowNs()) / 1e6));
          };
          tick();
        });
        out.emitted = n;
        out.end_ns = nowNs();
      } else {
        throw new Error(`unknown mode ${body.mode}`);
      }
      if (body.wait_published && pubClient) {
        // Replies come in order on the publisher connection: when the PING
        // is answered, every PUBLISH queued before it has been too.
        await pubClient.ping();
        out.drained_ns = nowNs();
      }
      return out;
    } finally {
      emitting = false;
    }
  }

  async function control(req, res) {
    const u = new URL(req.url, "http://localhost");
    let out;
    if (req.method === "GET" && u.pathname === "/bench/stats") {
      out = await stats(u.searchParams);
    } else if (req.method === "POST" && u.pathname === "/bench/emit") {
      const chunks = [];
      for await (const c of req) {
        chunks.push(c);
      }
      out = await emit(JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}"));
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `no ${req.method} ${u.pathname}` }));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(out));
  }

  await new Promise((resolve) => httpServer.listen(cfg.port, "127.0.0.1", resolve));
  process.stdout.write(`LISTENING ${httpServer.address().port}\n`);

  const shutdown = () => {
    io.close();
    const quits = [pubClient, subClient].filter(Boolean).map((c) => c.quit());
    Promise.allSettled(quits).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
