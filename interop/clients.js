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

const actions = {
  connect: async (body) => {
    if (clients.has(body.k)) {
      throw new Error(`client ${body.k} exists`);
    }
    const nsp = body.nsp || "/";
    const socket = io(body.url + nsp, {
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
    });
    const c = { socket, events: [], disconnects: [], connects: 0, connectErrors: [], acks: new Map() };
    clients.set(body.k, c);
    socket.on("connect", () => {
      c.connects++;
    });
    socket.on("disconnect", (reason) => {
      c.disconnects.push(reason);
    });
    socket.on("connect_error", (err) => {
      c.connectErrors.push(err.message);
    });
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
    return {};
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
      };
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
