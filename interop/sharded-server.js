#!/usr/bin/env node
// server.js with the official SHARDED adapter (createShardedAdapter of
// @socket.io/redis-adapter 8.x, Redis 7 sharded pub/sub) instead of the
// classic one: the same control API, the same configuration, plus
//   SUBSCRIPTION_MODE   static | dynamic | dynamic-private (default dynamic)
// KEY is the adapter's channelPrefix; REQUESTS_TIMEOUT is ignored (the
// ClusterAdapter uses flags.timeout || 5000, and 5000 for serverSideEmit).
// node-redis >= 4.6 is required (sSubscribe); the subscriber is
// pubClient.duplicate(), as server.js creates it.
"use strict";

const adapter = require("@socket.io/redis-adapter");

const mode = process.env.SUBSCRIPTION_MODE || "dynamic";
const createShardedAdapter = adapter.createShardedAdapter;
// server.js takes createAdapter from the module when it loads: hand it the
// sharded one.
adapter.createAdapter = (pubClient, subClient, opts) =>
  createShardedAdapter(pubClient, subClient, {
    channelPrefix: (opts && opts.key) || "socket.io",
    subscriptionMode: mode,
  });

console.error(`[sharded-server] createShardedAdapter, subscriptionMode ${mode}`);
require("./server.js");
