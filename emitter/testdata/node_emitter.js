// Prints what @socket.io/redis-emitter publishes for the calls of
// TestNodeEmitterParity (emitter_test.go), one line per PUBLISH: the channel,
// then the payload in hex (msgpack) or "J" and the text (JSON). No Redis is
// needed: the Redis client is a stand-in that records the calls.
//
// Regenerate the golden file from the repository root, after `npm ci` in
// interop/ (which pins @socket.io/redis-emitter 5.1.0):
//
//	NODE_PATH=interop/node_modules node emitter/testdata/node_emitter.js > emitter/testdata/node_emitter.golden
const { Emitter } = require("@socket.io/redis-emitter");
const out = [];
const client = { publish(ch, msg) { out.push(ch + " " + (typeof msg === "string" ? "J" + msg : Buffer.from(msg).toString("hex"))); } };
const em = new Emitter(client);
em.emit("em", 1);
em.to(["r1", "r2"]).except("r3").volatile.compress(false).emit("x");
em.compress(true).volatile.compress(false).emit("y");
em.of("admin").to("r1").emit("ev", "s", 1.5, -33, 4294967296, Buffer.from([3, 4]), null, true, [1, [2]], { a: 1 });
em.to("r").volatile.emit("v", "a string that is longer than thirty-one chars", 300, 70000, -200, 2.5, 0, -1, 255, 65536, "héllo ✓");
em.except("c").except(["c", "d"]).to("a").to("b").to("a").emit("z", new Date(Date.UTC(2000, 5, 13)));
em.in("room1").socketsJoin("room7");
em.socketsLeave(["a", "b"]);
em.to("x").except("y").disconnectSockets(true);
em.disconnectSockets();
em.serverSideEmit("hello", "world", 1, "<&>", { k: [true, null] });
em.of("/custom").serverSideEmit("hi");
em.of("").emit("root");
console.log(out.join("\n"));
