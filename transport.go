package redisadapter

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
)

// transport is the seam between what every mode shares (the Builder, the
// per-namespace Adapter, requests, acknowledgements, the publisher, the
// health machine) and what differs between modes: which protocol and
// channels a namespace uses, what is subscribed for it and its rooms, how a
// batch of frames is written, and how servers are counted. The classic,
// sharded and streams transports implement it; none of them calls into an
// Adapter (frames go up through Builder.receive, health through
// Builder.report).
type transport interface {
	// protocol tells which message set the transport speaks.
	protocol() protocol
	// start starts the transport's goroutines; stop stops them and waits.
	// Neither blocks on Redis.
	start()
	stop()
	// open subscribes to what namespace nsp needs, and shut undoes it.
	// Neither blocks.
	open(nsp string)
	shut(nsp string)
	// syncRooms is told which rooms of nsp are held (have a local member)
	// and which are not any more. It returns what a joiner may wait for: the
	// confirmations of the new subscriptions (none in the modes that do not
	// subscribe per room).
	syncRooms(nsp string, changes []roomState) []<-chan struct{}
	// encode fills f with the frame that carries m, a message of namespace
	// nsp; to is the requester of a response.
	encode(nsp string, m *wire.Message, to string, f *outFrame) error
	// decode turns a received frame into a message.
	decode(in *inbound) (*wire.Message, error)
	// write sends a batch of frames in one round trip, keeping their order,
	// and records each frame's result (its stream entry id).
	write(ctx context.Context, batch []*outFrame) error
	// serverCount returns the number of servers subscribed to nsp.
	serverCount(ctx context.Context, nsp string) (int64, error)
}

// protocol is the message set of a transport.
type protocol int

const (
	// classicProtocol is @socket.io/redis-adapter's createAdapter protocol:
	// [uid, packet, opts] broadcasts and the request types 0-9.
	classicProtocol protocol = iota
	// clusterProtocol is socket.io-adapter's ClusterAdapter messages
	// (createShardedAdapter, @socket.io/redis-streams-adapter).
	clusterProtocol
)

// roomState says whether a room of a namespace is held by a local socket.
type roomState struct {
	room string
	held bool
	// sid: the room is the id of a local socket (its private room).
	sid bool
}

// frameKind is what a received frame carries.
type frameKind uint8

const (
	// kindBroadcast: a classic broadcast frame ([uid, packet, opts]).
	kindBroadcast frameKind = iota
	// kindRequest and kindResponse: classic requests and responses.
	kindRequest
	kindResponse
	// kindMessage: a cluster message, JSON or MessagePack.
	kindMessage
	// kindEntry: a stream entry (the fields uid, nsp, type, data).
	kindEntry
)

// inbound is one frame received from Redis.
type inbound struct {
	nsp  string
	kind frameKind
	// room is set on frames of a room's own channel: they are dropped before
	// decoding when no local socket is in the room.
	room    string
	channel string
	payload string
	// Stream entries: the entry id and fields.
	id, uid, typ string
}

// command is the Redis command that writes a frame.
type command uint8

const (
	cmdPublish command = iota
	cmdSPublish
	cmdXAdd
	cmdSet // a persisted session: SET channel buf PX ttl
)

// outFrame is one frame waiting for the publisher.
type outFrame struct {
	cmd     command
	channel string // the channel, or the stream key of an XADD
	buf     []byte // the payload, or an entry's data field
	// XADD fields.
	uid, nsp, typ string
	hasData       bool
	maxLen        int64
	ttl           time.Duration
	// done, if set, is called once with the entry id (XADD) or the error,
	// after the frame was written or dropped.
	done func(id string, err error)
	// id is the result of an XADD, set by write.
	id string
}

// xaddArgs is the XADD of a stream entry: MAXLEN ~ maxLen, an id chosen by
// Redis, and the fields uid, nsp, type and data (when there is data).
func xaddArgs(f *outFrame) *redis.XAddArgs {
	values := []any{"uid", f.uid, "nsp", f.nsp, "type", f.typ}
	if f.hasData {
		values = append(values, "data", f.buf)
	}
	return &redis.XAddArgs{Stream: f.channel, MaxLen: f.maxLen, Approx: true, ID: "*", Values: values}
}

func (f *outFrame) size() int { return len(f.buf) + len(f.channel) + 64 }

var framePool = sync.Pool{New: func() any { return &outFrame{buf: make([]byte, 0, 256)} }}

func newFrame() *outFrame { return framePool.Get().(*outFrame) }

// release returns f to the pool; frames whose buffer grew past 64 KiB are
// dropped so that one large message does not pin memory.
func (f *outFrame) release() {
	if cap(f.buf) > 64<<10 {
		return
	}
	*f = outFrame{buf: f.buf[:0]}
	framePool.Put(f)
}

// finish calls done once.
func (f *outFrame) finish(err error) {
	if f.done != nil {
		done := f.done
		f.done = nil
		done(f.id, err)
	}
}

// Errors of frames that were not written.
var (
	errSkipped = errors.New("redisadapter: not published: redis is unreachable")
	errDropped = errors.New("redisadapter: not published: the publish queue stayed full")
	errOwn     = errors.New("redisadapter: own frame")
)

// perNsp holds what a transport computes once per namespace (its channel
// names), safe for concurrent use.
type perNsp[T any] struct {
	mu sync.Mutex
	m  map[string]*T
}

// get returns the value of nsp, made by mk the first time.
func (p *perNsp[T]) get(nsp string, mk func() T) *T {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.m[nsp]; v != nil {
		return v
	}
	if p.m == nil {
		p.m = map[string]*T{}
	}
	v := mk()
	p.m[nsp] = &v
	return &v
}

// drop forgets nsp.
func (p *perNsp[T]) drop(nsp string) {
	p.mu.Lock()
	delete(p.m, nsp)
	p.mu.Unlock()
}
