package redisadapter

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults of Options.
const (
	DefaultKey                 = "socket.io"
	DefaultRequestsTimeout     = 5 * time.Second
	DefaultPublishTimeout      = 500 * time.Millisecond
	DefaultPublishQueueSize    = 8192
	DefaultPublishQueueBytes   = 64 << 20
	DefaultHealthCheckInterval = 2 * time.Second
	DefaultMaxReconnectDelay   = 5 * time.Second
	DefaultJoinTimeout         = time.Second
)

// Options configures a Builder. The zero value of every field means its
// default; a nil *Options means all defaults, which are the Node adapter's.
// ShardedOptions and StreamsOptions embed it.
type Options struct {
	// Key is the prefix of every Redis channel (Node's key, or channelPrefix
	// in the sharded and streams adapters). Servers share a cluster when they
	// use the same Key. Default: "socket.io" (DefaultKey).
	Key string

	// RequestsTimeout bounds how long a cross-server request (fetchSockets,
	// serverSideEmit with ack, allRooms) waits for answers, unless the
	// operator has its own timeout (io.Timeout(d)). It also bounds
	// subscription commands. Default: 5s (DefaultRequestsTimeout).
	RequestsTimeout time.Duration

	// PublishOnSpecificResponseChannel makes this server answer requests on
	// the requester's own response channel instead of the shared one, so that
	// other servers do not receive and discard the answer (classic mode; the
	// sharded and streams protocols always answer on the requester's
	// channel). Servers with different settings work together. Default:
	// false (as in Node).
	PublishOnSpecificResponseChannel bool

	// RoomSubscriptions makes a classic server subscribe to the channel of
	// each room it holds (socket-id rooms included) and to its namespace's
	// channel, instead of one pattern per namespace: it never sends
	// PSUBSCRIBE (some managed Redis services refuse it), and Redis sends it
	// only the frames of its rooms. The wire is unchanged, so Node servers
	// and emitters interoperate. Ignored by the sharded and streams modes.
	// Default: false (one PSUBSCRIBE pattern per namespace, as in Node).
	RoomSubscriptions bool

	// JoinTimeout bounds how long a local join (Socket.Join, and the join of
	// every new socket to its own room) waits for Redis to confirm the
	// subscription to a new room's channel, in the modes that subscribe per
	// room (RoomSubscriptions, and the sharded dynamic modes): a broadcast
	// sent by another server right after the join is then not lost. Joins
	// applied for another server's socketsJoin never wait. Default: 1s
	// (DefaultJoinTimeout); set NoJoinWait to not wait at all.
	JoinTimeout time.Duration

	// NoJoinWait turns the join wait off (Node's behaviour: a broadcast in
	// the first round trip after a join may be lost). Default: false.
	NoJoinWait bool

	// PublishTimeout bounds one pipelined batch of writes to Redis, how long
	// ServerCount and an emit with acknowledgements wait for Redis, and how
	// long a broadcast waits for room when the publish queue is full before
	// its remote part is dropped (counted in Stats.PublishDropped). Local
	// delivery never waits for it. Default: 500ms (DefaultPublishTimeout).
	PublishTimeout time.Duration

	// PublishQueueSize is the capacity, in frames, of the queue between
	// broadcasting goroutines and the publisher. Default: 8192
	// (DefaultPublishQueueSize).
	PublishQueueSize int

	// PublishQueueBytes bounds the bytes of the frames waiting in the publish
	// queue, so that large payloads cannot queue unbounded memory while Redis
	// is slow. Default: 64 MiB (DefaultPublishQueueBytes).
	PublishQueueBytes int

	// HealthCheckInterval is how long a subscriber connection may stay idle
	// before it is pinged; a ping left unanswered for another interval marks
	// the link dead (degraded) and replaces the connection. Default: 2s
	// (DefaultHealthCheckInterval).
	HealthCheckInterval time.Duration

	// MaxReconnectDelay caps the exponential backoff between reconnection
	// attempts (which starts at 100ms). Default: 5s
	// (DefaultMaxReconnectDelay).
	MaxReconnectDelay time.Duration

	// Logger receives the adapter's logs: one warning when Redis becomes
	// unreachable, one info line when it is back, debug lines per dropped
	// frame. Default: nil, nothing is logged.
	Logger *slog.Logger

	// OnStateChange, if set, is called on every state transition, in order,
	// from one goroutine owned by the Builder, with the error that caused the
	// transition (nil when there is none). It must not block; it may call
	// Builder.Close.
	OnStateChange func(from, to State, err error)
}

// Validate reports the invalid fields of o. The constructors do not fail:
// they log the same error through o.Logger and use each invalid field's
// default instead.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	check := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("redisadapter: Options.%s is negative (%v)", name, d))
		}
	}
	check("RequestsTimeout", o.RequestsTimeout)
	check("PublishTimeout", o.PublishTimeout)
	check("HealthCheckInterval", o.HealthCheckInterval)
	check("MaxReconnectDelay", o.MaxReconnectDelay)
	check("JoinTimeout", o.JoinTimeout)
	if o.PublishQueueSize < 0 {
		errs = append(errs, fmt.Errorf("redisadapter: Options.PublishQueueSize is negative (%d)", o.PublishQueueSize))
	}
	if o.PublishQueueBytes < 0 {
		errs = append(errs, fmt.Errorf("redisadapter: Options.PublishQueueBytes is negative (%d)", o.PublishQueueBytes))
	}
	if strings.Contains(o.Key, "#") {
		errs = append(errs, fmt.Errorf("redisadapter: Options.Key %q contains '#', the channel separator", o.Key))
	}
	if o.NoJoinWait && o.JoinTimeout > 0 {
		errs = append(errs, errors.New("redisadapter: Options.NoJoinWait and Options.JoinTimeout are both set; the join wait is off"))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of o with defaults filled in and invalid values
// replaced by defaults.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Key == "" || strings.Contains(r.Key, "#") {
		r.Key = DefaultKey
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&r.RequestsTimeout, DefaultRequestsTimeout)
	def(&r.PublishTimeout, DefaultPublishTimeout)
	def(&r.HealthCheckInterval, DefaultHealthCheckInterval)
	def(&r.MaxReconnectDelay, DefaultMaxReconnectDelay)
	def(&r.JoinTimeout, DefaultJoinTimeout)
	if r.NoJoinWait {
		r.JoinTimeout = 0
	}
	if r.PublishQueueSize <= 0 {
		r.PublishQueueSize = DefaultPublishQueueSize
	}
	if r.PublishQueueBytes <= 0 {
		r.PublishQueueBytes = DefaultPublishQueueBytes
	}
	if r.MaxReconnectDelay < minBackoff {
		r.MaxReconnectDelay = minBackoff
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}
