// Package redisadapter lets many instances of a Go Socket.IO server
// (github.com/zishang520/socket.io/v2) act as one cluster through Redis: a
// broadcast, a room emit, a private message, fetchSockets, socketsJoin,
// disconnectSockets or serverSideEmit issued on any instance reaches the
// sockets of every instance. Its wire formats are those of the Node.js
// adapters, byte for byte, so Go and Node servers can share a cluster:
//
//   - New: @socket.io/redis-adapter's createAdapter (PUBLISH, one pattern per
//     namespace, or one channel per held room with Options.RoomSubscriptions);
//   - NewSharded: its createShardedAdapter (Redis 7 sharded pub/sub);
//   - NewStreams: @socket.io/redis-streams-adapter (Redis Streams, with
//     connection state recovery across instances).
//
// Wiring takes one expression. Set the adapter in the server options, before
// the server creates its namespaces:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//	b := redisadapter.New(rdb, nil)
//	defer b.Close()
//	opts := socket.DefaultServerOptions()
//	opts.SetAdapter(b)
//	io := socket.NewServer(httpServer, opts)
//
// # Concurrency
//
// A Builder owns what is per process; its methods are safe for concurrent
// use. Broadcast never waits on Redis: frames go to a queue bounded in frames
// and bytes that one goroutine writes in pipelined batches, in order. Frames
// received from Redis are handled in arrival order by the goroutine that read
// them.
//
// # When Redis is not there
//
// The constructors do no network I/O and never fail. If Redis is down at
// start, or goes away later, the adapter switches to StateDegraded: every
// instance keeps delivering to its own clients, remote publishes are skipped
// and counted (pub/sub is at-most-once: nothing is replayed; the streams
// transport resumes its stream where it stopped), and reconnection goes on in
// the background with capped exponential backoff. When Redis answers again
// the adapter resubscribes and returns to StateConnected by itself. Watch it
// with Builder.State, Builder.Stats and Options.OnStateChange. Every command
// runs on a client of the Builder's own, built from the caller's options
// with ContextTimeoutEnabled, so that its time bounds hold whatever those
// options are.
//
// # Architecture
//
// One adapter, several transports. Above the seam, written once for every
// mode: the Builder and the per-namespace Adapter with its socket.Adapter
// methods (adapter.go), local delivery and room bookkeeping (rooms.go),
// cross-server requests and the answers to other servers (requests.go,
// answers.go), broadcasts with acknowledgements (acks.go), the publisher
// (pubsub.go), the health machine (fallback.go), the conversions to the wire
// types (codec.go) and connection state recovery (recovery.go). Below it, the
// transport interface (transport.go) and its implementations: classic.go,
// sharded.go, streams.go; the pub/sub subscriber they share is
// subscriber.go. The Node formats live in internal/wire.
//
// Goroutines, all owned by the Builder and stopped by Close: one publisher,
// one state-change notifier, one probe that pings Redis after a failed
// publish, the subscriber's manager and one reader per subscriber connection,
// and, in streams mode, one reader per stream. Timers (request timeouts)
// use time.AfterFunc.
//
// Reading order: transport.go, adapter.go, pubsub.go, subscriber.go,
// classic.go, then requests.go, answers.go, acks.go, and the other
// transports.
package redisadapter
