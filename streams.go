package redisadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
)

// The streams transport: the protocol of @socket.io/redis-streams-adapter
// 0.3.x. Broadcasts, joins, leaves and disconnects are entries of a Redis
// stream (XADD ... MAXLEN ~ n), which every server reads with a blocking
// XREAD: after a short outage a reader resumes from the last entry it read,
// so nothing is lost or delivered twice. Broadcasts with acknowledgements,
// serverSideEmit, fetchSockets and the answers are ephemeral: MessagePack over
// PUBLISH (or SPUBLISH) on prefix#nsp# and the requester's prefix#nsp#uid#.
// The stream also holds what a client missed while disconnected: see
// recovery.go.

// Defaults of StreamsOptions.
const (
	DefaultStreamName       = "socket.io"
	DefaultStreamCount      = 1
	DefaultMaxLen           = 10000
	DefaultReadCount        = 100
	DefaultBlockTime        = 5 * time.Second
	DefaultSessionKeyPrefix = "sio:session:"
)

// StreamsOptions configures NewStreams. A nil *StreamsOptions means Node's
// defaults; the zero value of each field means its default.
type StreamsOptions struct {
	// Options are the options of every mode; Key is Node's channelPrefix,
	// the prefix of the pub/sub channels of ephemeral messages.
	// RoomSubscriptions, JoinTimeout and NoJoinWait do not apply.
	Options

	// StreamName is the stream's key, or its prefix with several streams.
	// Default: "socket.io".
	StreamName string
	// StreamCount spreads namespaces over this many streams (name-i, i
	// computed from the namespace as Node does; it can be negative). Each
	// stream a server needs is read by one connection of its own. Default 1.
	StreamCount int
	// MaxLen trims each stream to about this many entries (XADD MAXLEN ~).
	// It bounds the Redis memory a stream takes, and the window in which a
	// disconnected client can be recovered. Default: 10000.
	MaxLen int64
	// ReadCount is the maximum number of entries one XREAD returns (and one
	// page of a recovery reads). Default: 100.
	ReadCount int64
	// BlockTime is how long one XREAD waits for entries. Default: 5s.
	BlockTime time.Duration
	// SessionKeyPrefix is the key prefix of persisted sessions. Default:
	// "sio:session:".
	SessionKeyPrefix string
	// OnlyPlaintext never encodes entry data in MessagePack (the data holds
	// no binary). Default: false.
	OnlyPlaintext bool
	// UseShardedPubSub sends the ephemeral messages with SPUBLISH and
	// SSUBSCRIBE (Redis 7). Default: false.
	UseShardedPubSub bool
}

// Validate reports the invalid fields of o. NewStreams does not fail: it logs
// the same error and uses the defaults of the invalid fields.
func (o *StreamsOptions) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	neg := func(name string, bad bool, v any) {
		if bad {
			errs = append(errs, fmt.Errorf("redisadapter: StreamsOptions.%s is negative (%v)", name, v))
		}
	}
	neg("StreamCount", o.StreamCount < 0, o.StreamCount)
	neg("MaxLen", o.MaxLen < 0, o.MaxLen)
	neg("ReadCount", o.ReadCount < 0, o.ReadCount)
	neg("BlockTime", o.BlockTime < 0, o.BlockTime)
	if err := o.Options.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *StreamsOptions) withDefaults() StreamsOptions {
	var r StreamsOptions
	if o != nil {
		r = *o
	}
	r.Options = r.Options.withDefaults()
	if r.StreamName == "" {
		r.StreamName = DefaultStreamName
	}
	if r.StreamCount <= 0 {
		r.StreamCount = DefaultStreamCount
	}
	if r.MaxLen <= 0 {
		r.MaxLen = DefaultMaxLen
	}
	if r.ReadCount <= 0 {
		r.ReadCount = DefaultReadCount
	}
	if r.BlockTime <= 0 {
		r.BlockTime = DefaultBlockTime
	}
	if r.SessionKeyPrefix == "" {
		r.SessionKeyPrefix = DefaultSessionKeyPrefix
	}
	return r
}

// NewStreams returns a Builder for the protocol of Node's
// @socket.io/redis-streams-adapter 0.3.x on client (a *redis.Client, a
// failover client or a *redis.ClusterClient), with connection state recovery
// across servers when the Socket.IO server enables it
// (ServerOptions.SetConnectionStateRecovery). Like New, it does no network
// I/O and never fails. A nil opts means Node's defaults.
func NewStreams(client redis.UniversalClient, opts *StreamsOptions) *Builder {
	if client == nil {
		panic("redisadapter: NewStreams called with a nil redis client")
	}
	so := opts.withDefaults()
	b := newBuilder(client, so.Options, "streams")
	if err := opts.Validate(); err != nil {
		b.log.Error("invalid options, using defaults for the invalid fields", slog.Any("error", err))
	}
	b.health.required |= sourceReader
	b.start(&streamsTransport{
		b: b, opts: so, sub: newSubscriber(b, so.UseShardedPubSub),
		nsps: map[string]*streamNsp{}, readers: map[string]*streamReader{}, failing: map[*streamReader]bool{},
	})
	return b
}

type streamsTransport struct {
	b    *Builder
	opts StreamsOptions
	sub  *subscriber

	mu      sync.Mutex
	nsps    map[string]*streamNsp
	readers map[string]*streamReader // by stream key
	failing map[*streamReader]bool
	stopped bool
}

// streamNsp is what the transport keeps of a namespace.
type streamNsp struct {
	ch     wire.ClusterChannels
	stream string
}

func (t *streamsTransport) protocol() protocol { return clusterProtocol }
func (t *streamsTransport) start()             { t.sub.start() }

func (t *streamsTransport) stop() {
	t.sub.stop()
	t.mu.Lock()
	t.stopped = true
	for _, r := range t.readers {
		r.stop()
	}
	t.mu.Unlock()
}

func (t *streamsTransport) ns(nsp string) *streamNsp {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nsps[nsp]
	if n == nil {
		n = &streamNsp{
			ch:     wire.NewClusterChannels(t.b.opts.Key, nsp, t.b.uid),
			stream: wire.StreamName(t.opts.StreamName, t.opts.StreamCount, nsp),
		}
		t.nsps[nsp] = n
	}
	return n
}

func (t *streamsTransport) open(nsp string) {
	n := t.ns(nsp)
	t.sub.set(map[subKey]inbound{
		{name: n.ch.Main}:    {nsp: nsp, kind: kindMessage},
		{name: n.ch.Private}: {nsp: nsp, kind: kindMessage},
	}, nil)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	r := t.readers[n.stream]
	if r == nil {
		r = &streamReader{t: t, key: n.stream, done: make(chan struct{})}
		t.readers[n.stream] = r
		t.b.spawn(r.loop)
	}
	r.users++
}

func (t *streamsTransport) shut(nsp string) {
	n := t.ns(nsp)
	t.sub.set(nil, []subKey{{name: n.ch.Main}, {name: n.ch.Private}})
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nsps, nsp)
	if r := t.readers[n.stream]; r != nil {
		if r.users--; r.users == 0 {
			r.stop()
			delete(t.readers, n.stream)
			delete(t.failing, r)
		}
	}
}

func (t *streamsTransport) syncRooms(string, []roomState) []<-chan struct{} { return nil }

// ephemeral reports whether m travels over pub/sub rather than the stream.
func ephemeral(m *wire.Message) bool {
	switch m.Type {
	case wire.TypeBroadcast:
		return m.RequestID != ""
	case wire.TypeServerSideEmit, wire.TypeFetchSockets:
		return true
	}
	return m.Type.IsResponse()
}

func (t *streamsTransport) encode(nsp string, m *wire.Message, to string, f *outFrame) error {
	n := t.ns(nsp)
	if !ephemeral(m) {
		typ, data, hasData, err := wire.StreamFields(m, !t.opts.OnlyPlaintext)
		if err != nil {
			return err
		}
		f.cmd, f.channel, f.maxLen = cmdXAdd, n.stream, t.opts.MaxLen
		f.uid, f.nsp, f.typ, f.hasData = m.UID, m.Nsp, typ, hasData
		f.buf = append(f.buf, data...)
		return nil
	}
	f.cmd = cmdPublish
	if t.opts.UseShardedPubSub {
		f.cmd = cmdSPublish
	}
	f.channel = n.ch.Main
	if m.Type.IsResponse() {
		f.channel = n.ch.ResponseOf(to)
	}
	var err error
	f.buf, err = wire.AppendCluster(f.buf, m, wire.FormatMsgpack)
	return err
}

func (t *streamsTransport) decode(in *inbound) (*wire.Message, error) {
	if in.kind == kindEntry {
		return wire.DecodeStreamEntry(in.uid, in.nsp, in.typ, in.payload)
	}
	return wire.DecodeCluster(in.payload)
}

func (t *streamsTransport) write(ctx context.Context, batch []*outFrame) error {
	return writePipelined(ctx, t.b.rdb, batch)
}

// serverCount is PUBSUB NUMSUB (or SHARDNUMSUB) of the namespace's public
// channel, summed over a cluster's masters.
func (t *streamsTransport) serverCount(ctx context.Context, nsp string) (int64, error) {
	return numSub(ctx, t.b.rdb, t.ns(nsp).ch.Main, t.opts.UseShardedPubSub)
}

// readerFailed and readerOK aggregate the health of the readers: the
// adapter is degraded while one of them fails.
func (t *streamsTransport) readerFailed(r *streamReader, err error) {
	t.mu.Lock()
	if t.readers[r.key] == r {
		t.failing[r] = true
	}
	t.mu.Unlock()
	t.b.report(sourceReader, false, err)
}

func (t *streamsTransport) readerOK(r *streamReader) {
	t.mu.Lock()
	delete(t.failing, r)
	ok := len(t.failing) == 0
	t.mu.Unlock()
	if ok {
		t.b.report(sourceReader, true, nil)
	}
}

// streamReader reads one stream with a blocking XREAD, from where it
// stopped, until stopped.
type streamReader struct {
	t     *streamsTransport
	key   string
	users int // namespaces reading this stream (guarded by t.mu)
	done  chan struct{}
	once  sync.Once
}

func (r *streamReader) stop() { r.once.Do(func() { close(r.done) }) }

func (r *streamReader) stopped() bool {
	select {
	case <-r.done:
		return true
	case <-r.t.b.done:
		return true
	default:
		return false
	}
}

// loop reads entries and hands them to Builder.receive in stream order. It
// starts after the stream's last entry (read once, so that no entry added
// between two empty reads is skipped as XREAD "$" would), and after an error
// resumes from the last entry it read, with capped exponential backoff.
func (r *streamReader) loop() {
	t, b := r.t, r.t.b
	bo := newBackoff(b.opts.MaxReconnectDelay)
	last := ""
	// After a failure the first read does not block, so that the adapter
	// is reported connected as soon as Redis answers, not BlockTime later.
	probe := false
	for !r.stopped() {
		var err error
		if last == "" {
			last, err = r.tail()
		} else {
			err = r.read(&last, !probe)
		}
		probe = err != nil
		if r.stopped() {
			return
		}
		if err != nil {
			b.log.Debug("stream read failed", slog.String("stream", r.key), slog.Any("error", err))
			t.readerFailed(r, err)
			if !r.sleep(bo.next()) {
				return
			}
			continue
		}
		bo.reset()
		t.readerOK(r)
	}
}

// tail returns the id of the stream's last entry ("0-0" for an empty or
// missing stream).
func (r *streamReader) tail() (string, error) {
	ctx, cancel := context.WithTimeout(r.t.b.ctx, r.t.b.opts.PublishTimeout)
	defer cancel()
	entries, err := r.t.b.rdb.XRevRangeN(ctx, r.key, "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(entries) == 0 {
		return "0-0", nil
	}
	return entries[0].ID, nil
}

// read runs one XREAD and dispatches its entries.
func (r *streamReader) read(last *string, block bool) error {
	o := &r.t.opts
	ctx, cancel := context.WithTimeout(r.t.b.ctx, o.BlockTime+r.t.b.opts.HealthCheckInterval)
	defer cancel()
	res, err := r.t.b.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{r.key, *last}, Count: o.ReadCount, Block: blockArg(block, o.BlockTime)}).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, s := range res {
		for _, e := range s.Messages {
			*last = e.ID
			if r.stopped() {
				return nil
			}
			nsp, _ := e.Values["nsp"].(string)
			if nsp == "" {
				// Ignored, as Node does; counted as the hostile
				// frame it is.
				r.t.b.stats.received.Add(1)
				r.t.b.stats.droppedMalformed.Add(1)
				continue
			}
			uid, _ := e.Values["uid"].(string)
			typ, _ := e.Values["type"].(string)
			data, _ := e.Values["data"].(string)
			r.t.b.receive(&inbound{nsp: nsp, kind: kindEntry, id: e.ID, uid: uid, typ: typ, payload: data, channel: r.key})
		}
	}
	return nil
}

func (r *streamReader) sleep(d time.Duration) bool { return sleepUnless(d, r.done, r.t.b.done) }

// blockArg is XReadArgs.Block: BlockTime, or no BLOCK argument at all.
func blockArg(block bool, d time.Duration) time.Duration {
	if !block {
		return -1
	}
	return d
}
