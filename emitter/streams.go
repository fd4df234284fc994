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

// The streams emitter: the counterpart of Emitter for servers that use the
// Redis Streams transport (redisadapter.NewStreams, or Node's
// @socket.io/redis-streams-adapter 0.3.x). Broadcasts, joins, leaves and
// disconnects are entries of the namespace's stream, written as such a
// server writes them, with the uid "emitter"; serverSideEmit is a MessagePack
// message on the namespace's public pub/sub channel.

// Defaults of StreamsOptions, those of the streams servers.
const (
	DefaultStreamName  = "socket.io"
	DefaultStreamCount = 1
	DefaultMaxLen      = 10000
)

// StreamsOptions configures a StreamsEmitter. The zero value of every field
// means its default; a nil *StreamsOptions means all defaults. The fields
// that say where messages go must match the servers' options.
type StreamsOptions struct {
	// Key is the prefix of the pub/sub channel of ServerSideEmit: the
	// servers' Key (Node's channelPrefix). A Key containing '#' is replaced
	// by the default. Default: "socket.io" (DefaultKey).
	Key string
	// StreamName is the servers' stream, or its prefix with several
	// streams. Default: "socket.io" (DefaultStreamName).
	StreamName string
	// StreamCount is the servers' number of streams; a namespace's stream
	// is computed as the servers compute it. Default: 1.
	StreamCount int
	// MaxLen trims the stream to about this many entries at each write
	// (XADD MAXLEN ~), as the servers do. Default: 10000 (DefaultMaxLen).
	MaxLen int64
	// UseShardedPubSub sends ServerSideEmit with SPUBLISH, for servers with
	// UseShardedPubSub. Default: false (PUBLISH).
	UseShardedPubSub bool
	// OnlyPlaintext writes entry data as JSON even when it holds binary
	// (which then arrives base64-encoded), as servers with OnlyPlaintext
	// do. Default: false (binary data is written as base64 of MessagePack).
	OnlyPlaintext bool
	// Timeout bounds each call that takes no context, as Options.Timeout.
	// Default: 5s (DefaultTimeout).
	Timeout time.Duration
}

// Validate reports the invalid fields of o. NewStreams does not fail on
// them: it uses the field's default instead.
func (o *StreamsOptions) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	if strings.Contains(o.Key, "#") {
		errs = append(errs, fmt.Errorf("emitter: StreamsOptions.Key %q contains '#', the channel separator", o.Key))
	}
	if o.StreamCount < 0 {
		errs = append(errs, fmt.Errorf("emitter: StreamsOptions.StreamCount is negative (%d)", o.StreamCount))
	}
	if o.MaxLen < 0 {
		errs = append(errs, fmt.Errorf("emitter: StreamsOptions.MaxLen is negative (%d)", o.MaxLen))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("emitter: StreamsOptions.Timeout is negative (%v)", o.Timeout))
	}
	return errors.Join(errs...)
}

// StreamsEmitter sends events and cluster commands for one namespace, to a
// set of rooms, to servers that use the Redis Streams transport. Like
// Emitter, it is an immutable value: To, In, Except, Of, Volatile and
// Compress return new StreamsEmitters, and its methods are safe for
// concurrent use.
//
// Unlike pub/sub, a stream keeps what is written to it: a server that was
// cut off from Redis for a moment reads the entries it missed when it is
// back, and a client that reconnects with connection state recovery gets the
// events it missed, each with the entry id as offset, whichever server it
// reconnects to. ServerSideEmit remains at-most-once, as between servers.
type StreamsEmitter struct {
	client    redis.UniversalClient
	key       string
	stream    string
	count     int
	maxLen    int64
	sharded   bool
	plaintext bool
	timeout   time.Duration
	target
}

// NewStreams returns a StreamsEmitter for the namespace "/", writing through
// client (a *redis.Client, a *redis.ClusterClient or a failover client). A
// nil opts means defaults. Like New, it does no network I/O, never fails,
// and panics if client is nil; the caller keeps ownership of client.
func NewStreams(client redis.UniversalClient, opts *StreamsOptions) *StreamsEmitter {
	if client == nil {
		panic("emitter: NewStreams called with a nil redis client")
	}
	e := &StreamsEmitter{
		client: client, key: DefaultKey, stream: DefaultStreamName, count: DefaultStreamCount,
		maxLen: DefaultMaxLen, timeout: DefaultTimeout, target: target{nsp: "/"},
	}
	if o := opts; o != nil {
		if o.Key != "" && !strings.Contains(o.Key, "#") {
			e.key = o.Key
		}
		if o.StreamName != "" {
			e.stream = o.StreamName
		}
		if o.StreamCount > 0 {
			e.count = o.StreamCount
		}
		if o.MaxLen > 0 {
			e.maxLen = o.MaxLen
		}
		if o.Timeout > 0 {
			e.timeout = o.Timeout
		}
		e.sharded, e.plaintext = o.UseShardedPubSub, o.OnlyPlaintext
	}
	return e
}

func (e *StreamsEmitter) with(t target) *StreamsEmitter {
	c := *e
	c.target = t
	return &c
}

// Namespace returns the namespace e targets.
func (e *StreamsEmitter) Namespace() string { return e.nsp }

// Stream returns the key of the stream e writes to: the one the servers
// read for e's namespace.
func (e *StreamsEmitter) Stream() string { return wire.StreamName(e.stream, e.count, e.nsp) }

// Of returns a StreamsEmitter for the namespace nsp (see Emitter.Of).
func (e *StreamsEmitter) Of(nsp string) *StreamsEmitter { return e.with(e.of(nsp)) }

// To returns a StreamsEmitter that also targets the sockets in rooms (see
// Emitter.To).
func (e *StreamsEmitter) To(rooms ...string) *StreamsEmitter { return e.with(e.to(rooms)) }

// In is the same as To.
func (e *StreamsEmitter) In(rooms ...string) *StreamsEmitter { return e.To(rooms...) }

// Except returns a StreamsEmitter that also leaves out the sockets in rooms.
func (e *StreamsEmitter) Except(rooms ...string) *StreamsEmitter {
	return e.with(e.exclude(rooms))
}

// Volatile returns a StreamsEmitter whose events may be dropped for clients
// that are not ready to receive them. Volatile events carry no offset and
// are not replayed to a recovering client.
func (e *StreamsEmitter) Volatile() *StreamsEmitter { return e.with(e.withFlag("volatile", true)) }

// Compress returns a StreamsEmitter whose events are sent with (true) or
// without (false) per-message compression.
func (e *StreamsEmitter) Compress(compress bool) *StreamsEmitter {
	return e.with(e.withFlag("compress", compress))
}

// Emit sends the event ev with args to the targeted clients of every server,
// within the Timeout. See EmitContext.
func (e *StreamsEmitter) Emit(ev string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	return e.EmitContext(ctx, ev, args...)
}

// EmitContext sends the event ev with args to the targeted clients of every
// server, as a broadcast entry of the namespace's stream. The flags are
// written volatile first, then compress, whatever the order of the calls
// (Node writes them in call order; the servers read them the same way). It
// returns the same errors as Emitter.EmitContext, and the Redis error when
// the XADD fails.
func (e *StreamsEmitter) EmitContext(ctx context.Context, ev string, args ...any) error {
	data, err := eventData(ev, args)
	if err != nil {
		return err
	}
	return e.add(ctx, &wire.Message{
		Type:   wire.TypeBroadcast,
		Packet: wire.Packet{Type: wire.PacketEvent, Data: data},
		Opts:   e.broadcastOpts(),
	})
}

// SocketsJoin makes the targeted sockets of every server join rooms (an
// entry of the stream; nothing tells which sockets joined).
func (e *StreamsEmitter) SocketsJoin(rooms ...string) error {
	return e.request(&wire.Message{Type: wire.TypeSocketsJoin, Opts: e.targetOpts(), Rooms: rooms})
}

// SocketsLeave makes the targeted sockets of every server leave rooms.
func (e *StreamsEmitter) SocketsLeave(rooms ...string) error {
	return e.request(&wire.Message{Type: wire.TypeSocketsLeave, Opts: e.targetOpts(), Rooms: rooms})
}

// DisconnectSockets disconnects the targeted sockets of every server; with
// close, it also closes their underlying connections.
func (e *StreamsEmitter) DisconnectSockets(close bool) error {
	return e.request(&wire.Message{Type: wire.TypeDisconnectSockets, Opts: e.targetOpts(), Close: close})
}

// ServerSideEmit sends an event to the servers of the namespace themselves:
// args[0] is the event name. As between streams servers, it is not written
// to the stream: it is published (SPUBLISH with UseShardedPubSub) in
// MessagePack on the namespace's channel Key#nsp#, so servers that are not
// connected to Redis at that moment never get it. Binary arguments arrive as
// binary. Acknowledgements are not supported.
func (e *StreamsEmitter) ServerSideEmit(args ...any) error {
	data, err := serverSideArgs(args)
	if err != nil {
		return err
	}
	m := &wire.Message{Type: wire.TypeServerSideEmit, UID: wire.EmitterUID, Nsp: e.nsp, Args: data}
	frame, err := wire.AppendCluster(nil, m, wire.FormatMsgpack)
	if err != nil {
		return fmt.Errorf("emitter: encode serverSideEmit: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	channel := wire.NewClusterChannels(e.key, e.nsp, "").Main
	if e.sharded {
		err = e.client.SPublish(ctx, channel, frame).Err()
	} else {
		err = e.client.Publish(ctx, channel, frame).Err()
	}
	if err != nil {
		return fmt.Errorf("emitter: publish to %s: %w", channel, err)
	}
	return nil
}

func (e *StreamsEmitter) request(m *wire.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	return e.add(ctx, m)
}

// add writes m as an entry of the namespace's stream, with the fields a
// server writes (uid "emitter").
func (e *StreamsEmitter) add(ctx context.Context, m *wire.Message) error {
	m.UID, m.Nsp = wire.EmitterUID, e.nsp
	typ, data, hasData, err := wire.StreamFields(m, !e.plaintext)
	if err != nil {
		return fmt.Errorf("emitter: encode: %w", err)
	}
	values := []any{"uid", m.UID, "nsp", m.Nsp, "type", typ}
	if hasData {
		values = append(values, "data", data)
	}
	stream := e.Stream()
	args := &redis.XAddArgs{Stream: stream, MaxLen: e.maxLen, Approx: true, ID: "*", Values: values}
	if err := e.client.XAdd(ctx, args).Err(); err != nil {
		return fmt.Errorf("emitter: XADD to %s: %w", stream, err)
	}
	return nil
}
