// Package emitter sends Socket.IO events to a cluster of servers that use the
// Redis adapter, from a process that is not a Socket.IO server itself: a job
// worker, a cron task, an HTTP handler of another service.
//
// It is the Go counterpart of the Node.js package @socket.io/redis-emitter
// 5.x, and puts the same bytes on Redis: the servers of this module
// (github.com/d38ad898/redisadapter) and Node servers running
// @socket.io/redis-adapter (classic mode) both accept its messages.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//	em := emitter.New(rdb, nil)
//	err := em.To("lobby").Emit("chat message", map[string]any{"text": "hello"})
//
// # Targeting
//
// An Emitter is an immutable value: To, In, Except, Of, Volatile and Compress
// each return a new Emitter and leave the receiver unchanged, so one Emitter
// can be shared by any number of goroutines and specialised per call.
//
//	admins := em.Of("/admin")                  // namespace "/admin"
//	admins.To("room1", "room2").Except("muted").Emit("news", 1)
//
// # Delivery
//
// Redis pub/sub is at-most-once. A nil error means that Redis accepted the
// message, not that any client received it: servers that are not connected to
// Redis at that moment never see it, and nothing is replayed. The emitter does
// not know how many servers or clients exist, and it cannot collect
// acknowledgements.
//
// Every method that talks to Redis returns the error Redis or the network
// gave, wrapped with the channel it was publishing to. The emitter never
// retries on its own beyond what the go-redis client is configured to do.
//
// # Streams
//
// Servers that use the Redis Streams transport (redisadapter.NewStreams, or
// Node's @socket.io/redis-streams-adapter 0.3.x) read broadcasts from a
// stream, not from pub/sub: reach them with NewStreams, whose StreamsEmitter
// has the same targeting methods and the same calls. It writes what a
// streams server writes (XADD <stream> MAXLEN ~ <MaxLen> * uid emitter nsp
// <nsp> type <type> [data <data>]), so a server that was cut off from Redis
// for a moment still gets the entry, and connection state recovery replays
// it to clients that were away. Entry data is JSON, or base64 of MessagePack
// when it holds binary, as those servers write it. Its defaults are the servers': StreamName
// "socket.io", StreamCount 1, MaxLen 10000, Key "socket.io" (the prefix of
// the pub/sub channel of ServerSideEmit), UseShardedPubSub false.
//
//	sem := emitter.NewStreams(rdb, nil)
//	err := sem.To("lobby").Emit("chat message", "hello")
//
// # Arguments
//
// Event arguments travel as MessagePack, encoded as the Node emitter encodes
// them (notepack.io): integers in their smallest form, non-integer numbers as
// float64, []byte as binary, time.Time as a timestamp (a Date in Node). The
// servers forward binary arguments to their clients as binary attachments.
// Readers are read when the event is sent: *bytes.Buffer, *bytes.Reader and
// engine.io's *types.BytesBuffer (without consuming them) and any other
// io.Reader (read to EOF, not closed) become binary; *strings.Reader and
// *types.StringBuffer become strings. Values of other types, structs included,
// are converted as encoding/json would encode them (json tags and
// MarshalJSON apply), which is what a Go server would send to its own
// clients.
package emitter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
)

// Defaults of Options.
const (
	// DefaultKey is the default prefix of every Redis channel, the one of the
	// Node adapter and emitter and of redisadapter.
	DefaultKey = "socket.io"

	// DefaultTimeout bounds each call that takes no context (Emit,
	// SocketsJoin, SocketsLeave, DisconnectSockets, ServerSideEmit).
	DefaultTimeout = 5 * time.Second
)

// Errors returned by the emitter; test them with errors.Is.
var (
	// ErrReservedEvent is returned by Emit for an event name that Socket.IO
	// reserves for itself ("connect", "connect_error", "disconnect",
	// "disconnecting", "newListener", "removeListener"), as the Node emitter
	// throws.
	ErrReservedEvent = errors.New("emitter: reserved event name")

	// ErrAckNotSupported is returned when the last argument of an event is a
	// function: the emitter cannot receive acknowledgements. The Node emitter
	// throws "Acknowledgements are not supported" in the same case.
	ErrAckNotSupported = errors.New("emitter: acknowledgements are not supported")

	// ErrNoEventName is returned by ServerSideEmit when its first argument is
	// missing or is not a string.
	ErrNoEventName = errors.New("emitter: the first argument of ServerSideEmit must be the event name, a string")
)

// reservedEvents are the event names Emit refuses (socket.io's
// RESERVED_EVENTS, which the Node emitter checks too).
var reservedEvents = map[string]bool{
	"connect":        true,
	"connect_error":  true,
	"disconnect":     true,
	"disconnecting":  true,
	"newListener":    true,
	"removeListener": true,
}

// Options configures an Emitter. The zero value of every field means its
// default; a nil *Options means all defaults.
type Options struct {
	// Key is the prefix of every Redis channel. It must be the Key of the
	// servers to reach (redisadapter.Options.Key, or the Node adapter's key
	// option). A Key containing '#', which redisadapter servers refuse (they
	// use the default instead), is replaced by the default too, so that the
	// emitter keeps reaching them. Default: "socket.io" (DefaultKey).
	Key string

	// Timeout bounds each call that takes no context: Emit, SocketsJoin,
	// SocketsLeave, DisconnectSockets and ServerSideEmit. EmitContext is
	// bounded by its context only. Default: 5s (DefaultTimeout).
	//
	// go-redis applies a context's deadline to the reads and writes of a
	// connection only when the client has ContextTimeoutEnabled set. Without
	// it, a Redis that accepts connections but never answers holds a call for
	// the client's own ReadTimeout (3s by default) on each of its retries;
	// a refused connection fails within the deadline either way.
	Timeout time.Duration
}

// Validate reports the invalid fields of o. New does not fail on them: it
// uses the field's default instead.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	if strings.Contains(o.Key, "#") {
		errs = append(errs, fmt.Errorf("emitter: Options.Key %q contains '#', the channel separator", o.Key))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("emitter: Options.Timeout is negative (%v)", o.Timeout))
	}
	return errors.Join(errs...)
}

// Emitter publishes events and cluster commands for one namespace, to a set
// of rooms, through Redis. Its methods are safe for concurrent use; the
// targeting methods return new Emitters and never modify the receiver.
type Emitter struct {
	client  redis.UniversalClient
	key     string
	timeout time.Duration
	target
}

// New returns an Emitter for the namespace "/" of the servers sharing
// opts.Key, publishing through client, which may be a *redis.Client, a
// *redis.ClusterClient or a failover client. A nil opts means defaults.
//
// New does no network I/O and never fails. The caller keeps ownership of
// client: the Emitter has nothing to close, and the client must stay open
// while the Emitter is used. New panics if client is nil, a programming
// error.
func New(client redis.UniversalClient, opts *Options) *Emitter {
	if client == nil {
		panic("emitter: New called with a nil redis client")
	}
	e := &Emitter{client: client, key: DefaultKey, timeout: DefaultTimeout, target: target{nsp: "/"}}
	if opts != nil {
		if opts.Key != "" && !strings.Contains(opts.Key, "#") {
			e.key = opts.Key
		}
		if opts.Timeout > 0 {
			e.timeout = opts.Timeout
		}
	}
	return e
}

// with returns a copy of e that targets t.
func (e *Emitter) with(t target) *Emitter {
	c := *e
	c.target = t
	return &c
}

// Namespace returns the namespace e targets, such as "/" or "/admin".
func (e *Emitter) Namespace() string { return e.nsp }

// Of returns an Emitter for the namespace nsp, with the rooms, exceptions and
// flags of e. A leading "/" is added when nsp lacks one, as in Node, so
// Of("admin") and Of("/admin") are the same namespace and Of("") is "/".
func (e *Emitter) Of(nsp string) *Emitter { return e.with(e.of(nsp)) }

// To returns an Emitter that targets the sockets in any of rooms, in addition
// to the rooms e already targets. Without any room an Emitter targets every
// socket of its namespace. A socket id is a room holding that socket only.
func (e *Emitter) To(rooms ...string) *Emitter { return e.with(e.to(rooms)) }

// In is the same as To.
func (e *Emitter) In(rooms ...string) *Emitter { return e.To(rooms...) }

// Except returns an Emitter that leaves out the sockets in any of rooms, in
// addition to the rooms e already leaves out.
func (e *Emitter) Except(rooms ...string) *Emitter { return e.with(e.exclude(rooms)) }

// Volatile returns an Emitter whose events may be dropped by the servers for
// clients that are not ready to receive them (a slow network, or a
// long-polling client between two requests).
func (e *Emitter) Volatile() *Emitter { return e.with(e.withFlag("volatile", true)) }

// Compress returns an Emitter whose events are sent to clients with (true) or
// without (false) per-message compression. Without a call to Compress the
// servers use their default, which is to compress.
func (e *Emitter) Compress(compress bool) *Emitter {
	return e.with(e.withFlag("compress", compress))
}

// Emit sends the event ev with args to the targeted clients of every server,
// within the Options.Timeout (5s by default). See EmitContext.
func (e *Emitter) Emit(ev string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	return e.EmitContext(ctx, ev, args...)
}

// EmitContext sends the event ev with args to the targeted clients of every
// server: those in any of the rooms of e (every client of the namespace when
// there are none) and in none of its exceptions. It is bounded by ctx only.
//
// The message is published on the room's channel when e targets exactly one
// room, and on the namespace's channel otherwise, as the Node emitter does.
// EmitContext returns ErrReservedEvent for a name Socket.IO reserves,
// ErrAckNotSupported when the last argument is a function, an error when an
// argument cannot be encoded, and the Redis error when the publish fails.
func (e *Emitter) EmitContext(ctx context.Context, ev string, args ...any) error {
	data, err := eventData(ev, args)
	if err != nil {
		return err
	}
	frame, err := wire.AppendEmitterBroadcast(nil, e.nsp, data, e.rooms, e.except, e.flags)
	if err != nil {
		return fmt.Errorf("emitter: encode %q: %w", ev, err)
	}
	channel := e.key + "#" + e.nsp + "#"
	if len(e.rooms) == 1 {
		channel += e.rooms[0] + "#"
	}
	return e.publish(ctx, channel, frame)
}

// SocketsJoin makes the targeted sockets of every server join rooms. Like the
// other cluster commands it is fire-and-forget: a nil error means that Redis
// accepted the request, and nothing tells which sockets joined.
func (e *Emitter) SocketsJoin(rooms ...string) error {
	return e.request(&wire.Message{Type: wire.TypeSocketsJoin, Opts: e.targetOpts(), Rooms: rooms})
}

// SocketsLeave makes the targeted sockets of every server leave rooms.
func (e *Emitter) SocketsLeave(rooms ...string) error {
	return e.request(&wire.Message{Type: wire.TypeSocketsLeave, Opts: e.targetOpts(), Rooms: rooms})
}

// DisconnectSockets disconnects the targeted sockets of every server from
// their namespace; with close, it also closes their underlying connection,
// which disconnects them from every namespace.
func (e *Emitter) DisconnectSockets(close bool) error {
	return e.request(&wire.Message{Type: wire.TypeDisconnectSockets, Opts: e.targetOpts(), Close: close})
}

// ServerSideEmit sends an event to the Socket.IO servers of the namespace
// themselves (not to their clients): args[0] is the event name, a string, and
// the rest its arguments, which the servers' listeners receive (in Go,
// io.Of(nsp, nil).On(name, ...)). The rooms, exceptions and flags of e do not
// apply.
//
// The request is JSON, as in Node, so binary arguments arrive base64-encoded
// rather than as binary. Acknowledgements are not supported: a function as the
// last argument gives ErrAckNotSupported.
func (e *Emitter) ServerSideEmit(args ...any) error {
	data, err := serverSideArgs(args)
	if err != nil {
		return err
	}
	return e.request(&wire.Message{Type: wire.TypeServerSideEmit, UID: wire.EmitterUID, Args: data})
}

// request publishes a JSON request on the namespace's request channel, within
// the Options.Timeout.
func (e *Emitter) request(m *wire.Message) error {
	frame, err := wire.AppendClassicRequest(nil, m)
	if err != nil {
		return fmt.Errorf("emitter: encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	return e.publish(ctx, e.key+"-request#"+e.nsp+"#", frame)
}

func (e *Emitter) publish(ctx context.Context, channel string, frame []byte) error {
	if err := e.client.Publish(ctx, channel, frame).Err(); err != nil {
		return fmt.Errorf("emitter: publish to %s: %w", channel, err)
	}
	return nil
}
