#!/usr/bin/env node
// A driver of real socket.io-client 4.8 clients for the Go interop tests.
//
// It listens on 127.0.0.1 (PORT, default any free port), prints
// "LISTENING <port>" on stdout, and takes commands as POST /control/<action>
// with a JSON body, answered with JSON (status 500 and {"error": "..."} when
// the action fails). Binary values travel as {"$binary": "<base64>"}: a binary
// argument the client received as a Node Buffer is reported that way (and an
// ArrayBuffer or typed array as {"$arraybuffer": "<base64>"}, so that the two
// can be told apart). Actions:
//   connect   {k, url, nsp, query?, headers?, auth?}  new client k (websocket only, forceNew)
//   states    {ks: [k...]}   -> {states: {k: {connected, id, connects, disconnects: [reason], events: [...]}}}
//   setAck    {k, event, reply: [args] | null}  answer acks of event with reply (null: never answer)
//   emit      {k, event, args}
//   close     {k}
// Every event is recorded as {event, args, ack} (ack: the server asked for an
// acknowledgement), in arrival order.
//
// Connection state recovery (streams-server.js, or any server with
// connectionStateRecovery): a server that recovers the state stamps the last
// argument of a broadcast EVENT with its offset, and the client reports the
// arguments as received, offset included. Extra fields and actions:
//   connect {..., frames?: true, reconnection?: false}
//             frames: record the data of every Engine.IO message packet the
//             client receives, i.e. the Socket.IO packet text without the
//             Engine.IO "4" (e.g. `2["ev",1,"1712345678901-0"]`,
//             `0{"sid":"…","pid":"…"}`), in states' "frames";
//             reconnection: false turns automatic reconnection off
//   states    also gives, per client: recovered (socket.recovered of the
//             current connection), pid (socket._pid), lastOffset
//             (socket._lastOffset), url (the server it talks to now), and
//             connections: [{id, recovered, url}] one per "connect" event
//   drop      {k, reconnect?: true}
//             closes the client's Engine.IO connection from the client side
//             (socket.io.engine.close()): the client's disconnect reason is
//             "forced close", the server's "transport close", a recoverable
//             one, so the server persists the session.
//             reconnect (default true): the client reconnects by itself to the
//             same server after its reconnection delay (100-500 ms), sending
//             {pid, offset} in CONNECT; false: it stays disconnected (for
//             reconnectTo)
//   reconnectTo {k, url, auth?, carry?: "state" | "auth"}
//             connects client k again, to url (another server, or the same),
//             on its namespace, keeping its event log. The old connection is
//             dropped first if still up (as drop with reconnect false).
//             socket.io-client 4.8 keeps the session in socket._pid and
//             socket._lastOffset (the last argument of the last event received,
//             when it is a string) and sends them in CONNECT only when _pid is
//             set; a socket is bound to its Manager, whose URL is fixed, so the
//             new connection is a new Socket on a new Manager for url:
//               carry "state" (default): _pid and _lastOffset are copied to the
//                 new socket before it connects; CONNECT carries {pid, offset,
//                 ...auth} and socket.recovered is true when the server
//                 answers with the same pid (what a reconnection gives).
//               carry "auth": {pid, offset} are put in the new socket's auth
//                 only; the server recovers the session alike, but the client's
//                 socket.recovered stays false (it has no _pid to compare with).
//             The connect options are those of the first connect.
"use strict";

const http = require("node:http");
const { io } = require("socket.io-client");

function fromWire(v) {
  if (Array.isArray(v)) {
    return v.map(fromWire);
  }
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$binary" && typeof v.$binary === "string") {
      return Buffer.from(v.$binary, "base64");
    }
    const out = {};
    for (const k of keys) {
      out[k] = fromWire(v[k]);
    }
    return out;
  }
  return v;
}

function toWire(v) {
  if (Buffer.isBuffer(v)) {
    return { $binary: v.toString("base64") };
  }
  if (v instanceof ArrayBuffer) {
    return { $arraybuffer: Buffer.from(v).toString("base64") };
  }
  if (ArrayBuffer.isView(v)) {
    return { $arraybuffer: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
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

const clients = new Map(); // k -> {socket, events, disconnects, connects, acks}

function get(k) {
  const c = clients.get(k);
  if (!c) {
    throw new Error(`no client ${k}`);
  }
  return c;
}

// newSocket creates the socket.io-client socket of c for url (a new Manager:
// forceNew), with the connect options of c.
function newSocket(c, url, extra) {
  const body = c.body;
  return io(
    url + c.nsp,
    Object.assign(
      {
        transports: ["websocket"],
        forceNew: true,
        query: body.query || {},
        extraHeaders: body.headers || {},
        auth: body.auth || {},
        // A Go socket.io/v2 server occasionally drops a CONNECT sent right
        // after the open packet and closes the connection after its connect
        // timeout: reconnect quickly.
        reconnectionDelay: 100,
        reconnectionDelayMax: 500,
        reconnection: body.reconnection !== false,
      },
      extra,
    ),
  );
}

// attach makes socket the current socket of c and records what it receives.
function attach(c, socket) {
  c.socket = socket;
  socket.on("connect", () => {
    c.connects++;
    c.connections.push({ id: socket.id, recovered: !!socket.recovered, url: c.url });
  });
  socket.on("disconnect", (reason) => {
    c.disconnects.push(reason);
  });
  socket.on("connect_error", (err) => {
    c.connectErrors.push(err.message);
  });
  if (c.frames) {
    // Every Engine.IO connection of the Manager (one per (re)connection),
    // once: the first one may exist already, and then opens later.
    const hooked = new WeakSet();
    const hook = () => {
      const engine = socket.io.engine;
      if (!engine || hooked.has(engine)) {
        return;
      }
      hooked.add(engine);
      engine.on("packet", (p) => {
        if (p.type === "message") {
          c.frames.push(typeof p.data === "string" ? p.data : { $binary: Buffer.from(p.data).toString("base64") });
        }
      });
    };
    socket.io.on("open", hook);
    hook();
  }
  socket.onAny((event, ...args) => {
    let ack = null;
    if (args.length && typeof args[args.length - 1] === "function") {
      ack = args.pop();
    }
    c.events.push({ event, args: toWire(args), ack: ack !== null });
    if (ack && c.acks.has(event)) {
      const reply = c.acks.get(event);
      if (reply !== null) {
        ack(...fromWire(reply));
      }
    }
  });
}

// drop closes the Engine.IO connection of c from the client side ("transport
// close" on both ends); the client reconnects by itself only with reconnect.
function drop(c, reconnect) {
  const m = c.socket.io;
  if (!reconnect) {
    m.reconnection(false);
  }
  if (!m.engine) {
    throw new Error("no Engine.IO connection to drop");
  }
  m.engine.close();
}

const actions = {
  connect: async (body) => {
    if (clients.has(body.k)) {
      throw new Error(`client ${body.k} exists`);
    }
    const c = {
      socket: null,
      url: body.url,
      nsp: body.nsp || "/",
      body,
      events: [],
      disconnects: [],
      connects: 0,
      connectErrors: [],
      acks: new Map(),
      connections: [],
      frames: body.frames ? [] : null,
    };
    clients.set(body.k, c);
    attach(c, newSocket(c, body.url, {}));
    return {};
  },

  drop: async (body) => {
    const c = get(body.k);
    drop(c, body.reconnect !== false);
    return {};
  },

  reconnectTo: async (body) => {
    const c = get(body.k);
    const old = c.socket;
    if (old.io.engine && old.io.engine.readyState !== "closed") {
      drop(c, false);
    }
    const pid = old._pid;
    const offset = old._lastOffset;
    // The old socket will not reconnect (reconnection is off): release its
    // Manager, without a DISCONNECT packet (it is not connected).
    old.offAny();
    old.removeAllListeners();
    old.disconnect();
    const carry = body.carry || "state";
    let auth = Object.assign({}, c.body.auth || {}, body.auth || {});
    if (carry === "auth") {
      auth = Object.assign({ pid, offset }, auth);
    } else if (carry !== "state") {
      throw new Error(`carry ${carry}: want "state" or "auth"`);
    }
    const socket = newSocket(c, body.url, { autoConnect: false, auth });
    if (carry === "state") {
      socket._pid = pid;
      socket._lastOffset = offset;
    }
    c.url = body.url;
    attach(c, socket);
    socket.connect();
    return { pid: pid || null, offset: offset || null };
  },

  states: async (body) => {
    const states = {};
    for (const k of body.ks || []) {
      const c = get(k);
      states[k] = {
        connected: c.socket.connected,
        id: c.socket.id || "",
        connects: c.connects,
        disconnects: c.disconnects,
        connectErrors: c.connectErrors,
        events: c.events,
        recovered: !!c.socket.recovered,
        pid: c.socket._pid || "",
        lastOffset: c.socket._lastOffset || "",
        url: c.url,
        connections: c.connections,
      };
      if (c.frames) {
        states[k].frames = c.frames;
      }
    }
    return { states };
  },

  setAck: async (body) => {
    get(body.k).acks.set(body.event, body.reply === undefined ? null : body.reply);
    return {};
  },

  emit: async (body) => {
    get(body.k).socket.emit(body.event, ...fromWire(body.args || []));
    return {};
  },

  close: async (body) => {
    const c = clients.get(body.k);
    if (c) {
      c.socket.disconnect();
      clients.delete(body.k);
    }
    return {};
  },
};

const server = http.createServer((req, res) => {
  (async () => {
    const prefix = "/control/";
    const action = req.method === "POST" && req.url.startsWith(prefix) ? actions[req.url.slice(prefix.length)] : undefined;
    if (!action) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `unknown action ${req.method} ${req.url}` }));
      return;
    }
    const chunks = [];
    for await (const c of req) {
      chunks.push(c);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    const out = await action(text ? JSON.parse(text) : {});
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(out));
  })().catch((err) => {
    if (!res.headersSent) {
      res.writeHead(500, { "content-type": "application/json" });
    }
    res.end(JSON.stringify({ error: String((err && err.stack) || err) }));
  });
});

server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

const shutdown = () => {
  for (const c of clients.values()) {
    c.socket.disconnect();
  }
  server.close();
  setTimeout(() => process.exit(0), 200).unref();
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
