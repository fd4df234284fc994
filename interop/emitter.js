#!/usr/bin/env node
// Runs operations through the official @socket.io/redis-emitter 5.x, then
// exits once Redis has processed every PUBLISH.
//
//   REDIS_URL=redis://127.0.0.1:6379 KEY=socket.io node emitter.js '<ops JSON>'
//
// ops is a JSON array of {op, nsp, in, except, ...}:
//   {op: "emit", event, args}             args: {"$binary": b64} becomes a Buffer
//   {op: "socketsJoin", rooms} / {op: "socketsLeave", rooms}
//   {op: "disconnectSockets", close}
//   {op: "serverSideEmit", event, args}
"use strict";

const { Emitter } = require("@socket.io/redis-emitter");
const { createClient } = require("redis");

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

async function main() {
  if (!process.env.REDIS_URL) {
    throw new Error("REDIS_URL is required");
  }
  const ops = JSON.parse(process.argv[2] || "[]");
  const client = createClient({ url: process.env.REDIS_URL });
  client.on("error", (err) => console.error("redis error:", err.message));
  await client.connect();
  const emitter = new Emitter(client, { key: process.env.KEY || "socket.io" });
  for (const o of ops) {
    let target = emitter.of(o.nsp || "/");
    if (o.op === "serverSideEmit") {
      target.serverSideEmit(o.event, ...fromWire(o.args || []));
      continue;
    }
    if (o.in && o.in.length) {
      target = target.in(o.in);
    }
    if (o.except && o.except.length) {
      target = target.except(o.except);
    }
    switch (o.op) {
      case "emit":
        target.emit(o.event, ...fromWire(o.args || []));
        break;
      case "socketsJoin":
        target.socketsJoin(o.rooms);
        break;
      case "socketsLeave":
        target.socketsLeave(o.rooms);
        break;
      case "disconnectSockets":
        target.disconnectSockets(!!o.close);
        break;
      default:
        throw new Error(`unknown op ${o.op}`);
    }
  }
  // QUIT is answered after every command sent before it.
  await client.quit();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
