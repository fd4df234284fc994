#!/usr/bin/env node
// Captures the wire of @socket.io/redis-streams-adapter 0.3.1 (socket.io 4.8,
// node-redis v4, socket.io-client 4.8) from live Node servers, into the JSON
// written on stdout (vectors.json). See README.md.
//
//   redis-server --port 16390 --bind 127.0.0.1 --save "" --appendonly no &
//   NODE_PATH=interop/node_modules node internal/wire/testdata/streams/capture.js 16390 \
//     > internal/wire/testdata/streams/vectors.json
//
// Use a private, empty redis-server: the script reads its MONITOR and FLUSHALLs it.
"use strict";

const net = require("node:net");
const http = require("node:http");
const { Server } = require("socket.io");
const { io: ioc } = require("socket.io-client");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");
const util = require("@socket.io/redis-streams-adapter/dist/util");
const msgpack = require("@msgpack/msgpack");
const notepack = require("notepack.io");

const PORT = Number(process.argv[2]);
if (!PORT) {
  throw new Error("usage: capture.js <redis-port>");
}
const URL = `redis://127.0.0.1:${PORT}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error("[capture]", ...a);

// ---------------------------------------------------------------------------
// MONITOR, on a raw connection: every command with its exact bytes.

// unrepr undoes Redis' sdscatrepr quoting of one MONITOR argument.
function unrepr(s, i) {
  const out = [];
  for (i++; s[i] !== '"'; i++) {
    if (s[i] !== "\\") {
      out.push(...Buffer.from(s[i], "latin1"));
      continue;
    }
    const c = s[++i];
    const simple = { n: 10, r: 13, t: 9, a: 7, b: 8, "\\": 92, '"': 34 };
    if (c === "x") {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (simple[c] !== undefined) {
      out.push(simple[c]);
    } else {
      throw new Error(`bad escape \\${c}`);
    }
  }
  return [Buffer.from(out), i + 1];
}

function startMonitor() {
  const entries = [];
  const sock = net.connect(PORT, "127.0.0.1");
  let buf = "";
  sock.setEncoding("latin1");
  sock.on("data", (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf("\r\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      if (line === "+OK") {
        continue;
      }
      const m = /^\+([0-9.]+) \[(\d+) ([^\]]+)\] /.exec(line);
      if (!m) {
        throw new Error(`unexpected MONITOR line ${line}`);
      }
      const args = [];
      let i = m[0].length;
      while (i < line.length) {
        const [b, next] = unrepr(line, i);
        args.push(b);
        i = next + 1;
      }
      entries.push({ addr: m[3], args });
    }
  });
  sock.write("MONITOR\r\n");
  return { entries, close: () => sock.destroy() };
}

// ---------------------------------------------------------------------------
// Representations

const printable = (b) => {
  const s = b.toString("utf8");
  return Buffer.from(s, "utf8").equals(b) && !/[\x00-\x1f\x7f]/.test(s);
};
const argRepr = (b) => (printable(b) ? b.toString("utf8") : { hex: b.toString("hex") });

// tagged turns decoded values into JSON, keeping what JSON would lose.
function tagged(v) {
  if (v === undefined) {
    return { $undefined: true };
  }
  if (v instanceof Date) {
    return { $date: v.toISOString() };
  }
  if (v instanceof Uint8Array) {
    return { $binary: Buffer.from(v).toString("base64") };
  }
  if (v instanceof msgpack.ExtData) {
    return { $ext: v.type, hex: Buffer.from(v.data).toString("hex") };
  }
  if (typeof v === "number" && !Number.isInteger(v)) {
    return Number.isFinite(v) ? { $float: v } : { $float: String(v) };
  }
  if (Array.isArray(v)) {
    return v.map(tagged);
  }
  if (v !== null && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      o[k] = tagged(x);
    }
    return o;
  }
  return v;
}

// tokens lists the msgpack items of b, one per header, for reading by eye.
function tokens(b) {
  const out = [];
  let i = 0;
  const u = (n) => b.readUIntBE(i + 1, n);
  const push = (len, what) => {
    out.push(`${b.subarray(i, i + len).toString("hex")}  ${what}`);
    i += len;
  };
  const one = () => {
    const t = b[i];
    if (t <= 0x7f) return push(1, `positive fixint ${t}`);
    if (t >= 0xe0) return push(1, `negative fixint ${t - 256}`);
    if ((t & 0xf0) === 0x80) { const n = t & 15; push(1, `fixmap ${n}`); for (let k = 0; k < 2 * n; k++) one(); return; }
    if ((t & 0xf0) === 0x90) { const n = t & 15; push(1, `fixarray ${n}`); for (let k = 0; k < n; k++) one(); return; }
    if ((t & 0xe0) === 0xa0) { const n = t & 31; return push(1 + n, `fixstr ${JSON.stringify(b.toString("utf8", i + 1, i + 1 + n))}`); }
    switch (t) {
      case 0xc0: return push(1, "nil");
      case 0xc2: return push(1, "false");
      case 0xc3: return push(1, "true");
      case 0xc4: case 0xc5: case 0xc6: { const w = { 0xc4: 1, 0xc5: 2, 0xc6: 4 }[t]; const n = u(w); return push(1 + w + n, `bin${w * 8} len ${n}`); }
      case 0xc7: case 0xc8: case 0xc9: { const w = { 0xc7: 1, 0xc8: 2, 0xc9: 4 }[t]; const n = u(w); return push(2 + w + n, `ext${w * 8} len ${n} type ${b.readInt8(i + 1 + w)}`); }
      case 0xca: return push(5, `float32 ${b.readFloatBE(i + 1)}`);
      case 0xcb: return push(9, `float64 ${b.readDoubleBE(i + 1)}`);
      case 0xcc: return push(2, `uint8 ${u(1)}`);
      case 0xcd: return push(3, `uint16 ${u(2)}`);
      case 0xce: return push(5, `uint32 ${u(4)}`);
      case 0xcf: return push(9, `uint64 ${b.readBigUInt64BE(i + 1)}`);
      case 0xd0: return push(2, `int8 ${b.readInt8(i + 1)}`);
      case 0xd1: return push(3, `int16 ${b.readInt16BE(i + 1)}`);
      case 0xd2: return push(5, `int32 ${b.readInt32BE(i + 1)}`);
      case 0xd3: return push(9, `int64 ${b.readBigInt64BE(i + 1)}`);
      case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: { const n = 1 << (t - 0xd4); return push(2 + n, `fixext${n} type ${b.readInt8(i + 1)}`); }
      case 0xd9: case 0xda: case 0xdb: { const w = { 0xd9: 1, 0xda: 2, 0xdb: 4 }[t]; const n = u(w); return push(1 + w + n, `str${w * 8} ${JSON.stringify(b.toString("utf8", i + 1 + w, i + 1 + w + n))}`); }
      case 0xdc: case 0xdd: { const w = t === 0xdc ? 2 : 4; const n = u(w); push(1 + w, `array${w * 8} ${n}`); for (let k = 0; k < n; k++) one(); return; }
      case 0xde: case 0xdf: { const w = t === 0xde ? 2 : 4; const n = u(w); push(1 + w, `map${w * 8} ${n}`); for (let k = 0; k < 2 * n; k++) one(); return; }
      default: throw new Error(`msgpack byte ${t.toString(16)}`);
    }
  };
  while (i < b.length) one();
  return out;
}

// ---------------------------------------------------------------------------
// Servers and clients

const clientNames = new Map(); // "ip:port" -> connection name

async function refreshNames(admin) {
  const text = await admin.sendCommand(["CLIENT", "LIST"]);
  for (const line of text.split("\n")) {
    const addr = /\baddr=(\S+)/.exec(line);
    const name = /\bname=(\S*)/.exec(line);
    if (addr && name && name[1]) {
      clientNames.set(addr[1], name[1]);
    }
  }
}

async function mkServer(tag, adapterOpts, namespaces, admin) {
  const client = createClient({ url: URL, name: `cap-${tag}` });
  await client.connect();
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    adapter: createAdapter(client, adapterOpts),
    connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true },
  });
  const srv = { tag, io, client, sockets: new Map(), connections: [] };
  for (const n of namespaces) {
    io.of(n).on("connection", (s) => {
      srv.sockets.set(s.id, s);
      srv.connections.push({ nsp: n, id: s.id, recovered: s.recovered, rooms: [...s.rooms] });
      s.on("disconnect", (reason) => srv.connections.push({ nsp: n, id: s.id, disconnect: reason }));
    });
  }
  const streams = adapterOpts.streamCount || 1;
  const sharded = !!adapterOpts.useShardedPubSub;
  for (;;) {
    const text = await admin.sendCommand(["CLIENT", "LIST"]);
    const mine = text.split("\n").filter((l) => l.includes(` name=cap-${tag} `));
    const reading = mine.filter((l) => / cmd=xread /.test(l)).length;
    const subs = mine.reduce((n, l) => n + Number((new RegExp(` ${sharded ? "ssub" : "sub"}=(\\d+) `).exec(l) || [0, 0])[1]), 0);
    if (reading >= streams && subs >= 2 * namespaces.length) {
      break;
    }
    await sleep(10);
  }
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  srv.url = `http://127.0.0.1:${httpServer.address().port}`;
  srv.uid = (n) => io.of(n).adapter.uid;
  await refreshNames(admin);
  return srv;
}

// mkClient connects a socket.io-client socket and records what it receives
// (events with their arguments, Socket.IO packets as text) and sends.
function mkClient(url, nsp, opts = {}) {
  const socket = ioc(url + nsp, Object.assign({ transports: ["websocket"], forceNew: true, reconnection: false }, opts));
  const c = { socket, events: [], frames: [], sent: [], acks: {} };
  const hooked = new WeakSet();
  const hook = () => {
    const e = socket.io.engine;
    if (!e || hooked.has(e)) return;
    hooked.add(e);
    e.on("packet", (p) => p.type === "message" && c.frames.push(typeof p.data === "string" ? p.data : { hex: Buffer.from(p.data).toString("hex") }));
    e.on("packetCreate", (p) => p.type === "message" && c.sent.push(typeof p.data === "string" ? p.data : { hex: Buffer.from(p.data).toString("hex") }));
  };
  socket.io.on("open", hook);
  hook();
  socket.onAny((event, ...args) => {
    let ack = null;
    if (typeof args[args.length - 1] === "function") ack = args.pop();
    c.events.push({ event, args: tagged(args), ack: ack !== null });
    if (ack && c.acks[event] !== undefined) ack(c.acks[event]);
  });
  c.connected = new Promise((resolve, reject) => {
    socket.on("connect", resolve);
    socket.on("connect_error", reject);
  });
  return c;
}

// ---------------------------------------------------------------------------

async function main() {
  const admin = createClient({ url: URL, name: "cap-admin" });
  await admin.connect();
  await admin.flushAll();
  const mon = startMonitor();
  await sleep(100);
  const vectors = [];
  const facts = {};

  const cmdName = (e) => e.args[0].toString().toUpperCase();
  const who = (e) => clientNames.get(e.addr) || e.addr;
  const line = (e) => ({ client: who(e), args: e.args.map(argRepr) });
  let mark = 0;
  // step runs fn and returns the MONITOR entries of the step, without the
  // admin's own commands and the re-issued XREADs unless asked.
  async function step(fn, settle = 250) {
    mark = mon.entries.length;
    const out = await fn();
    await sleep(settle);
    await refreshNames(admin);
    const es = mon.entries.slice(mark).filter((e) => who(e) !== "cap-admin");
    return { out, es };
  }
  const only = (es, name) => es.filter((e) => cmdName(e) === name);

  function xaddVector(name, node, es, extra = {}) {
    const xs = only(es, "XADD");
    if (xs.length !== 1) throw new Error(`${name}: ${xs.length} XADD`);
    const a = xs[0].args.map((b) => b.toString("utf8"));
    const fields = [];
    for (let i = 6; i < a.length; i += 2) fields.push([a[i], a[i + 1]]);
    const data = (fields.find((f) => f[0] === "data") || [])[1];
    const v = { name, kind: "xadd", node, client: who(xs[0]), command: a, key: a[1], fields };
    if (data !== undefined) {
      v.data = data;
      if (data.startsWith("{")) {
        v.dataEncoding = "json";
        v.decoded = JSON.parse(data);
      } else {
        const raw = Buffer.from(data, "base64");
        v.dataEncoding = "base64(msgpack)";
        v.dataMsgpackHex = raw.toString("hex");
        v.decoded = tagged(msgpack.decode(raw));
        v.msgpackTokens = tokens(raw);
      }
    }
    vectors.push(Object.assign(v, extra));
    return v;
  }

  function publishVector(name, node, e, extra = {}) {
    const payload = e.args[2];
    const v = {
      name,
      kind: cmdName(e).toLowerCase(),
      node,
      client: who(e),
      command: [e.args[0].toString(), e.args[1].toString(), { hex: payload.toString("hex") }],
      channel: e.args[1].toString(),
      payloadHex: payload.toString("hex"),
      decoded: tagged(msgpack.decode(payload)),
      msgpackTokens: tokens(payload),
    };
    vectors.push(Object.assign(v, extra));
    return v;
  }

  // ---- Phase 1: two servers, default options (streamCount 1) --------------
  const nsps = ["/", "/chat"];
  const { es: startEs, out: [A, B] } = await step(async () => [
    await mkServer("A", {}, nsps, admin),
    await mkServer("B", {}, nsps, admin),
  ]);
  vectors.push({
    name: "startup_A",
    kind: "monitor",
    node: 'createAdapter(redisClient) (defaults), namespaces "/" then "/chat"; the first commands of server A\'s connections',
    uids: { "/": A.uid("/"), "/chat": A.uid("/chat") },
    monitor: startEs.filter((e) => who(e) === "cap-A").map(line),
  });

  const cA1 = mkClient(A.url, "/");
  const cB1 = mkClient(B.url, "/");
  const cB2 = mkClient(B.url, "/");
  await Promise.all([cA1.connected, cB1.connected, cB2.connected]);
  const sA1 = A.sockets.get(cA1.socket.id);
  const sB1 = B.sockets.get(cB1.socket.id);
  sB1.join("room1");
  sB1.data = { user: "bob", n: 7 };
  const context = {
    A: { uid: A.uid("/"), uidChat: A.uid("/chat") },
    B: { uid: B.uid("/"), uidChat: B.uid("/chat") },
    sockets: { cA1: cA1.socket.id, cB1: cB1.socket.id, cB2: cB2.socket.id },
  };

  let r;
  r = await step(async () => A.io.emit("ev", 1, "two", { a: [1, 2] }));
  const v1 = xaddVector("broadcast_all", 'A: io.emit("ev", 1, "two", {a: [1, 2]})', r.es);
  v1.readersAfter = only(r.es, "XREAD").map(line);

  r = await step(async () => A.io.to("room1").emit("ev", "to-room1"));
  xaddVector("broadcast_room", 'A: io.to("room1").emit("ev", "to-room1")', r.es);
  r = await step(async () => A.io.to(["room1", "room2"]).except("room3").except(["room4"]).emit("ev", "rooms-except"));
  xaddVector("broadcast_rooms_except", 'A: io.to(["room1", "room2"]).except("room3").except(["room4"]).emit("ev", "rooms-except")', r.es);
  r = await step(async () => A.io.volatile.emit("ev", "volatile"));
  xaddVector("broadcast_volatile", 'A: io.volatile.emit("ev", "volatile")', r.es);
  r = await step(async () => A.io.compress(false).emit("ev", "nocompress"));
  xaddVector("broadcast_compress_false", 'A: io.compress(false).emit("ev", "nocompress")', r.es);
  r = await step(async () => A.io.volatile.compress(true).emit("ev", "volatile-compress"));
  xaddVector("broadcast_volatile_compress", 'A: io.volatile.compress(true).emit("ev", "volatile-compress")', r.es);
  r = await step(async () => A.io.emit("bin", Buffer.from([1, 2, 3])));
  xaddVector("broadcast_binary", 'A: io.emit("bin", Buffer.from([1, 2, 3]))', r.es);
  r = await step(async () =>
    A.io.to("room1").emit("bin", { buf: Buffer.from([4, 5]), n: 1.5, big: 2 ** 32, d: new Date("2024-01-02T03:04:05.678Z"), u: undefined }),
  );
  xaddVector(
    "broadcast_binary_nested",
    'A: io.to("room1").emit("bin", {buf: Buffer.from([4, 5]), n: 1.5, big: 2 ** 32, d: new Date("2024-01-02T03:04:05.678Z"), u: undefined})',
    r.es,
  );
  r = await step(async () => A.io.emit("date", new Date("2024-01-02T03:04:05.678Z"), null, undefined, { u: undefined, n: null, f: 0.5 }));
  xaddVector("broadcast_date_json", 'A: io.emit("date", new Date("2024-01-02T03:04:05.678Z"), null, undefined, {u: undefined, n: null, f: 0.5})', r.es);
  r = await step(async () => sA1.broadcast.emit("ev", "from-socket"));
  xaddVector("broadcast_from_socket", 'A: socket.broadcast.emit("ev", "from-socket") (socket = cA1\'s)', r.es);
  r = await step(async () => sA1.to("room1").emit("ev", "socket-to-room1"));
  xaddVector("broadcast_from_socket_to_room", 'A: socket.to("room1").emit("ev", "socket-to-room1") (socket = cA1\'s)', r.es);
  r = await step(async () => A.io.of("/chat").emit("ev", "chat"));
  xaddVector("broadcast_namespace_chat", 'A: io.of("/chat").emit("ev", "chat")', r.es);

  r = await step(async () => A.io.in("room1").socketsJoin(["room2", "room3"]));
  xaddVector("sockets_join", 'A: io.in("room1").socketsJoin(["room2", "room3"])', r.es);
  r = await step(async () => A.io.socketsJoin("room4"));
  xaddVector("sockets_join_all_one_room", 'A: io.socketsJoin("room4")', r.es);
  r = await step(async () => A.io.in("room1").except("room9").socketsLeave("room2"));
  xaddVector("sockets_leave", 'A: io.in("room1").except("room9").socketsLeave("room2")', r.es);
  r = await step(async () => A.io.in("nobody").disconnectSockets());
  xaddVector("disconnect_sockets", 'A: io.in("nobody").disconnectSockets()', r.es);
  r = await step(async () => A.io.in("nobody").disconnectSockets(true));
  xaddVector("disconnect_sockets_close", 'A: io.in("nobody").disconnectSockets(true)', r.es);

  // Ephemeral messages (PUB/SUB).
  r = await step(async () => A.io.in("room1").fetchSockets());
  {
    const [numsub] = only(r.es, "PUBSUB");
    vectors.push({ name: "server_count", kind: "command", node: "A: serverCount(), called by fetchSockets", client: who(numsub), command: numsub.args.map(argRepr) });
    const pubs = only(r.es, "PUBLISH");
    publishVector("fetch_sockets_request", 'A: io.in("room1").fetchSockets()', pubs.find((e) => who(e) === "cap-A"));
    publishVector("fetch_sockets_response", "B answers A's fetch_sockets_request (cB1 is in room1, data {user: \"bob\", n: 7})", pubs.find((e) => who(e) === "cap-B"), {
      note: "handshake.time, issued, headers, address, query, url are of this run",
    });
  }
  r = await step(async () => A.io.serverSideEmit("hello", "world", 1));
  publishVector("server_side_emit", 'A: io.serverSideEmit("hello", "world", 1)', only(r.es, "PUBLISH")[0]);

  B.io.on("ping", (arg, cb) => cb({ ok: true, got: arg }));
  r = await step(() => new Promise((resolve) => A.io.serverSideEmit("ping", "x", (err, res) => resolve({ err: err && err.message, res }))));
  {
    const pubs = only(r.es, "PUBLISH");
    publishVector("server_side_emit_with_ack", 'A: io.serverSideEmit("ping", "x", cb)', pubs.find((e) => who(e) === "cap-A"));
    publishVector("server_side_emit_response", 'B: io.on("ping", (arg, cb) => cb({ok: true, got: arg}))', pubs.find((e) => who(e) === "cap-B"), {
      ackResult: tagged(r.out),
    });
  }

  const typesArgs = [
    1.5, -1, -200, 2 ** 32, 2 ** 31, -(2 ** 31) - 1, 255, 65535, 2 ** 53 + 2, 0.1, -0,
    new Date("2024-01-02T03:04:05.678Z"), new Date("2024-01-02T03:04:05Z"), new Date("1969-12-31T23:59:59.500Z"),
    { nested: { a: [1, { b: "c" }], z: true }, k2: null, u: undefined },
    undefined, null, Buffer.from([1, 2, 3]), "x".repeat(40), "é😀",
  ];
  r = await step(async () => A.io.serverSideEmit("types", ...typesArgs));
  {
    const e = only(r.es, "PUBLISH")[0];
    const v = publishVector(
      "server_side_emit_types",
      'A: io.serverSideEmit("types", 1.5, -1, -200, 2**32, 2**31, -(2**31)-1, 255, 65535, 2**53+2, 0.1, -0, new Date("2024-01-02T03:04:05.678Z"), new Date("2024-01-02T03:04:05Z"), new Date("1969-12-31T23:59:59.500Z"), {nested: {a: [1, {b: "c"}], z: true}, k2: null, u: undefined}, undefined, null, Buffer.from([1, 2, 3]), "x".repeat(40), "é😀")',
      e,
    );
    // The same message through notepack.io (the classic adapter's encoder),
    // computed here, not captured: where the two encoders differ.
    const msg = msgpack.decode(e.args[2]);
    const sameMsg = { type: msg.type, data: { packet: ["types", ...typesArgs] }, uid: msg.uid, nsp: msg.nsp };
    const mine = Buffer.from(msgpack.encode(sameMsg));
    const np = notepack.encode(sameMsg);
    v.reencodedByMsgpackEqualsWire = mine.equals(e.args[2]);
    v.notepackHex = np.toString("hex");
    v.notepackTokens = tokens(np);
    v.notepackEqualsWire = np.equals(e.args[2]);
  }

  cA1.acks.ask = "from-cA1";
  cB1.acks.ask = "from-cB1";
  cB2.acks.ask = { b2: [1, 2] };
  r = await step(() => new Promise((resolve) => A.io.timeout(1000).emit("ask", "q", (err, acks) => resolve({ err: err && err.message, acks }))));
  {
    const pubs = only(r.es, "PUBLISH");
    publishVector("broadcast_with_ack", 'A: io.timeout(1000).emit("ask", "q", cb)', pubs.find((e) => who(e) === "cap-A"));
    const fromB = pubs.filter((e) => who(e) === "cap-B");
    fromB.forEach((e, i) => {
      const t = msgpack.decode(e.args[2]).type;
      publishVector(
        t === 11 ? "broadcast_client_count" : `broadcast_ack_${i}`,
        t === 11 ? "B: the number of its clients reached (2)" : "B: the ack of one of its clients",
        e,
      );
    });
    vectors.push({ name: "broadcast_with_ack_result", kind: "result", node: "the callback of A's emit", value: tagged(r.out) });
  }

  // What the clients see: offsets on broadcasts (sender and receivers).
  // With connectionStateRecovery, socket.emit() is a broadcast to the
  // socket's own room, through the adapter (socket.io 4.8 Socket#emit).
  r = await step(async () => sA1.emit("direct", 1));
  xaddVector("socket_emit", 'A: socket.emit("direct", 1) (socket = cA1\'s; recovery on)', r.es);
  cA1.acks["direct-ack"] = "ok";
  r = await step(() => new Promise((resolve) => sA1.timeout(1000).emit("direct-ack", 2, (err, v) => resolve({ err: err && err.message, v }))));
  xaddVector("socket_emit_with_ack", 'A: socket.timeout(1000).emit("direct-ack", 2, cb) (socket = cA1\'s; recovery on)', r.es, { ackResult: tagged(r.out) });
  r = await step(async () => A.io.local.emit("local", 2));
  r = await step(async () => A.io.emit("plain", 3));
  r = await step(async () => A.io.volatile.emit("vol", 4));
  vectors.push({
    name: "client_frames",
    kind: "client",
    node: "every Socket.IO packet (Engine.IO message data, text) and event received by cA1 (on A, the sender) and cB1 (on B) during phase 1, which ends with socket_emit, socket_emit_with_ack, then io.local.emit(\"local\", 2), io.emit(\"plain\", 3), io.volatile.emit(\"vol\", 4) on A",
    cA1: { id: cA1.socket.id, pid: cA1.socket._pid, received: cA1.frames, sent: cA1.sent, events: cA1.events },
    cB1: { id: cB1.socket.id, pid: cB1.socket._pid, received: cB1.frames, sent: cB1.sent, events: cB1.events },
  });

  // ---- Phase 2: session persistence and restore ---------------------------
  const cR = mkClient(A.url, "/");
  await cR.connected;
  const sR = A.sockets.get(cR.socket.id);
  sR.join(["roomR", "roomS"]);
  sR.data = { user: "rita", n: 7 };
  await step(async () => A.io.emit("r-before", 0));
  const idBefore = cR.socket.id;
  const offsetBefore = cR.socket._lastOffset;
  r = await step(async () => {
    cR.socket.io.engine.close();
  });
  {
    const set = only(r.es, "SET")[0];
    const a = set.args.map((b) => b.toString("utf8"));
    const raw = Buffer.from(a[2], "base64");
    vectors.push({
      name: "session_persist",
      kind: "set",
      node: "client cR (on A, rooms roomR roomS, data {user: \"rita\", n: 7}) closes its Engine.IO connection (client reason \"forced close\", server reason \"transport close\"); A persists the session",
      client: who(set),
      command: a,
      key: a[1],
      pid: cR.socket._pid,
      sid: idBefore,
      lastOffset: offsetBefore,
      sessionMsgpackHex: raw.toString("hex"),
      decoded: tagged(msgpack.decode(raw)),
      msgpackTokens: tokens(raw),
      serverEvents: A.connections.filter((c) => c.id === idBefore),
      monitor: r.es.filter((e) => cmdName(e) !== "XREAD").map(line),
    });
  }
  const missed = [];
  missed.push(await step(async () => B.io.emit("r-missed-1", "a", { x: 1 })));
  missed.push(await step(async () => B.io.to("roomR").emit("r-missed-room", 2)));
  missed.push(await step(async () => B.io.to("other").emit("r-not-mine", 3)));
  missed.push(await step(async () => B.io.volatile.emit("r-volatile", 4)));
  missed.push(await step(async () => A.io.emit("r-missed-2", 5)));
  missed.push(await step(async () => B.io.except("roomS").emit("r-excepted", 6)));
  missed.push(await step(async () => B.io.of("/chat").emit("r-chat", 7)));
  missed.push(await step(async () => B.io.to(idBefore).emit("r-to-sid", 8)));
  const streamAfterOffset = (await admin.xRange("socket.io", offsetBefore, "+")).map((e) => Object.assign({ id: e.id }, e.message));

  // Reconnect to B: a new Manager for B's URL, carrying _pid and _lastOffset.
  const cR2 = mkClient(B.url, "/", { autoConnect: false });
  cR2.socket._pid = cR.socket._pid;
  cR2.socket._lastOffset = cR.socket._lastOffset;
  r = await step(async () => {
    cR2.socket.connect();
    await cR2.connected;
  }, 400);
  vectors.push({
    name: "session_restore",
    kind: "monitor",
    node: "cR reconnects to B (new Manager, _pid and _lastOffset copied): the commands B issues to restore, in MONITOR order (XREADs left out), and what cR receives",
    pid: cR.socket._pid,
    offset: offsetBefore,
    streamFromOffset: streamAfterOffset,
    monitor: r.es.filter((e) => cmdName(e) !== "XREAD").map(line),
    client: {
      recovered: cR2.socket.recovered,
      id: cR2.socket.id,
      sameId: cR2.socket.id === idBefore,
      sent: cR2.sent,
      received: cR2.frames,
      events: cR2.events,
    },
    server: { connections: B.connections.filter((c) => c.id === idBefore), rooms: [...B.sockets.get(idBefore).rooms], data: B.sockets.get(idBefore).data },
  });
  facts.volatileReplayedOnRestore = cR2.events.some((e) => e.event === "r-volatile");

  // Restore attempts that fail.
  const cU = mkClient(B.url, "/", { auth: { pid: "unknown-pid", offset: "1-0" } });
  r = await step(async () => cU.connected);
  vectors.push({
    name: "session_restore_unknown_pid",
    kind: "monitor",
    node: 'a client connects to B with auth {pid: "unknown-pid", offset: "1-0"}',
    monitor: r.es.filter((e) => cmdName(e) !== "XREAD").map(line),
    client: { recovered: !!cU.socket.recovered, sent: cU.sent, received: cU.frames },
  });
  const cI = mkClient(B.url, "/", { auth: { pid: "some-pid", offset: "not-an-offset" } });
  r = await step(async () => cI.connected);
  vectors.push({
    name: "session_restore_invalid_offset",
    kind: "monitor",
    node: 'a client connects to B with auth {pid: "some-pid", offset: "not-an-offset"}: rejected before any Redis command (offset must match /^[0-9]+-[0-9]+$/)',
    monitor: r.es.filter((e) => cmdName(e) !== "XREAD").map(line),
    client: { recovered: !!cI.socket.recovered, sent: cI.sent, received: cI.frames },
  });

  // ---- Phase 3: streamCount 4 ---------------------------------------------
  const names4 = ["/", "/chat", "/orders-namespace", "/café", "/😀", "/日本語", "/custom", "/a"];
  const hashes = names4.map((n) => {
    const h = util.hashCode(n);
    return { nsp: n, utf16: [...Array(n.length).keys()].map((i) => n.charCodeAt(i).toString(16)).join(" "), hashCode: h, index: h % 4, stream: `socket.io-${h % 4}` };
  });
  const opts4 = { streamCount: 4, channelPrefix: "sc4" };
  r = await step(async () => [await mkServer("C", opts4, names4, admin), await mkServer("D", opts4, names4, admin)]);
  const [C, D] = r.out;
  const xreadsC = r.es.filter((e) => who(e) === "cap-C" && cmdName(e) === "XREAD").map(line);
  const dClients = {};
  for (const n of names4) {
    dClients[n] = mkClient(D.url, n);
  }
  await Promise.all(Object.values(dClients).map((c) => c.connected));
  const live = [];
  for (const n of names4) {
    const s = await step(async () => C.io.of(n).emit("s4", n));
    const x = only(s.es, "XADD")[0];
    live.push({ nsp: n, key: x.args[1].toString("utf8"), receivedOnOtherServer: dClients[n].events.some((e) => e.event === "s4") });
  }
  vectors.push({
    name: "stream_keys_count4",
    kind: "streams",
    node: 'createAdapter(redisClient, {streamCount: 4, channelPrefix: "sc4"}); servers C and D; C emits once in every namespace, D has a client in every namespace',
    hashCode: hashes,
    readers: xreadsC,
    live,
  });
  facts.negativeIndexStreamNotRead = live.filter((l) => l.key.startsWith("socket.io--")).every((l) => !l.receivedOnOtherServer);

  // ---- Phase 4: useShardedPubSub -------------------------------------------
  const optsS = { useShardedPubSub: true, channelPrefix: "shard", streamName: "shard-stream" };
  r = await step(async () => [await mkServer("E", optsS, ["/"], admin), await mkServer("F", optsS, ["/"], admin)]);
  const [E, F] = r.out;
  const subsE = r.es.filter((e) => who(e) === "cap-E" && !["XREAD", "CLIENT", "INFO"].includes(cmdName(e))).map(line);
  r = await step(async () => E.io.serverSideEmit("s", 1));
  const spub = only(r.es, "SPUBLISH")[0];
  publishVector("sharded_server_side_emit", 'E (useShardedPubSub): io.serverSideEmit("s", 1)', spub);
  r = await step(async () => E.io.fetchSockets());
  vectors.push({
    name: "sharded_pubsub",
    kind: "monitor",
    node: 'createAdapter(redisClient, {useShardedPubSub: true, channelPrefix: "shard", streamName: "shard-stream"}): subscriptions at startup, and E.io.fetchSockets()',
    startup: subsE,
    fetchSockets: r.es.filter((e) => cmdName(e) !== "XREAD").map(line),
  });

  // ---- Encoders compared, computed here (not captured) -----------------------
  class WithToJSON {
    constructor() {
      this.secret = 1;
    }
    toJSON() {
      return "json";
    }
  }
  const samples = [
    ["{u: undefined, v: 1}", { u: undefined, v: 1 }],
    ["[undefined]", [undefined]],
    ["2 ** 53 + 2", 2 ** 53 + 2],
    ["-(2 ** 53) - 2", -(2 ** 53) - 2],
    ["2 ** 64", 2 ** 64],
    ["NaN", NaN],
    ["new ArrayBuffer(2)", new ArrayBuffer(2)],
    ["new Uint16Array([1])", new Uint16Array([1])],
    ["object with toJSON() (own key secret: 1)", new WithToJSON()],
    ["new Date(\"2024-01-02T03:04:05.678Z\")", new Date("2024-01-02T03:04:05.678Z")],
    ["new Map([[\"k\", 1]])", new Map([["k", 1]])],
  ];
  facts.encoders = samples.map(([what, value]) => {
    const enc = (f) => {
      try {
        return Buffer.from(f(value)).toString("hex");
      } catch (e) {
        return `throws: ${e.message}`;
      }
    };
    const m = enc(msgpack.encode);
    const n = enc(notepack.encode);
    return { value: what, "@msgpack/msgpack": m, "notepack.io": n, same: m === n };
  });

  // ---- Out -------------------------------------------------------------------
  const pkg = (p) => require(`${p}/package.json`).version;
  const out = {
    about:
      "Wire vectors of @socket.io/redis-streams-adapter captured from live Node servers with MONITOR on a private redis-server; see README.md. Strings are UTF-8 text; {hex} marks bytes.",
    versions: {
      node: process.version,
      "@socket.io/redis-streams-adapter": pkg("@socket.io/redis-streams-adapter"),
      "@msgpack/msgpack": pkg("@msgpack/msgpack"),
      "socket.io": pkg("socket.io"),
      "socket.io-adapter": pkg("socket.io-adapter"),
      "socket.io-client": pkg("socket.io-client"),
      redis: pkg("redis"),
      "notepack.io (comparison only)": pkg("notepack.io"),
      "redis-server": (await admin.sendCommand(["INFO", "server"])).match(/redis_version:(\S+)/)[1],
    },
    context,
    facts,
    vectors,
  };
  process.stdout.write(JSON.stringify(out, null, 1) + "\n");

  for (const c of [cA1, cB1, cB2, cR, cR2, cU, cI, ...Object.values(dClients)]) c.socket.disconnect();
  for (const s of [A, B, C, D, E, F]) s.io.close();
  mon.close();
  await sleep(200);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
