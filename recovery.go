package redisadapter

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// Connection state recovery across servers (streams transport), as
// @socket.io/redis-streams-adapter does it. A recoverable packet (an event
// without acknowledgement, not volatile) carries the id of its stream entry
// as its last argument, on the sending server and on every receiving one, so
// that each client knows the last offset it got. When a socket disconnects
// for a recoverable reason, the server persists its session (SET ... PX); when
// the client comes back, to any server, with its session id and offset, the
// session is fetched and deleted at once and the entries after the offset are
// replayed to it.
//
// The sender's clients must see the entry id too, so their delivery waits for
// the XADD reply: each namespace keeps its broadcasts in a queue, delivered
// in emit order as their replies arrive, and Broadcast never waits. While
// degraded, packets are delivered without an id (a client that reconnects
// after one of them is not recovered).

// maxRestorePages bounds the XRANGE pages (of ReadCount entries) of one
// restore, as Node bounds its XRANGE calls; a socket that missed more is
// not recovered (Node replays the first pages and drops the rest).
const maxRestorePages = 100

// recoveryOf tells whether namespace nsp of a Builder keeps offsets, and
// fills Node's defaults of the server's recovery options, as socket.io does
// for its own adapter (2 minutes; middlewares skipped on recovery).
func recoveryOf(b *Builder, nsp socket.Namespace) bool {
	if _, ok := b.t.(*streamsTransport); !ok {
		return false
	}
	csr := nsp.Server().Opts().ConnectionStateRecovery()
	if csr == nil {
		return false
	}
	if csr.GetRawMaxDisconnectionDuration() == nil {
		csr.SetMaxDisconnectionDuration(2 * 60 * 1000)
	}
	if csr.GetRawSkipMiddlewares() == nil {
		csr.SetSkipMiddlewares(true)
	}
	return true
}

// recoverable reports whether a client missing pkt gets it back on
// recovery: an event without acknowledgement id, not volatile.
func recoverable(pkt *parser.Packet, o *wire.Opts) bool {
	return pkt.Type == parser.EVENT && pkt.Id == nil && !o.Flags.Volatile
}

// addOffset appends the stream entry id of a received broadcast to its data
// when recovery needs it.
func (a *Adapter) addOffset(pkt *parser.Packet, o *wire.Opts, id string) {
	if id == "" || !a.recovery || !recoverable(pkt, o) {
		return
	}
	if data, ok := pkt.Data.([]any); ok {
		pkt.Data = append(data[:len(data):len(data)], id)
	}
}

// queued is a local delivery waiting for its turn.
type queued struct {
	pkt   *parser.Packet
	o     wire.Opts
	id    string // its stream entry id, once known
	ready bool
}

// broadcastInOrder publishes pkt (unless local) and delivers it locally once
// its entry id is known and every earlier broadcast of the namespace has been
// delivered.
func (a *Adapter) broadcastInOrder(pkt *parser.Packet, o wire.Opts, local bool) {
	q := &queued{pkt: pkt, o: o, ready: local}
	a.seqMu.Lock()
	if local && len(a.seq) == 0 {
		a.seqMu.Unlock()
		a.deliver(pkt, &o, nil)
		return
	}
	a.seq = append(a.seq, q)
	a.seqMu.Unlock()
	if !local {
		m := &wire.Message{Type: wire.TypeBroadcast, Packet: toWirePacket(pkt), Opts: o}
		a.send(m, "", true, func(id string, err error) {
			if err == nil {
				a.addOffset(pkt, &o, id)
			}
			a.seqMu.Lock()
			q.id = id
			q.ready = true
			a.seqMu.Unlock()
			a.drainQueue()
		})
	}
	a.drainQueue()
}

// drainQueue delivers the ready broadcasts at the head of the queue, in
// order. One goroutine drains at a time; others mark their entry ready and
// leave it to that one.
func (a *Adapter) drainQueue() {
	a.seqMu.Lock()
	if a.draining {
		a.seqMu.Unlock()
		return
	}
	a.draining = true
	for len(a.seq) > 0 && a.seq[0].ready {
		q := a.seq[0]
		a.seq[0] = nil
		a.seq = a.seq[1:]
		a.seqMu.Unlock()
		a.deliver(q.pkt, a.exceptRestored(&q.o, q.id, true), nil)
		a.seqMu.Lock()
	}
	a.draining = false
	a.seqMu.Unlock()
}

// PersistSession saves the session of a socket that disconnected for a
// recoverable reason (streams mode with recovery; a no-op otherwise), for the
// server's MaxDisconnectionDuration. It never waits on Redis.
func (a *Adapter) PersistSession(s *socket.SessionToPersist) {
	t, ok := a.b.t.(*streamsTransport)
	if !ok || !a.recovery || s == nil {
		a.Adapter.PersistSession(s)
		return
	}
	data, err := wire.Normalize(s.Data)
	if err != nil {
		a.b.log.Debug("cannot persist the data of a session; persisted without it", slog.Any("error", err))
		data = nil
	}
	ws := &wire.Session{SID: string(s.Sid), PID: string(s.Pid), Rooms: roomStrings(s.Rooms), Data: data}
	f := newFrame()
	if f.buf, err = wire.AppendSession(f.buf, ws); err != nil {
		f.release()
		a.b.stats.encodeErrors.Add(1)
		return
	}
	f.cmd = cmdSet
	f.channel = t.opts.SessionKeyPrefix + string(s.Pid)
	f.ttl = time.Duration(a.Nsp().Server().Opts().ConnectionStateRecovery().MaxDisconnectionDuration()) * time.Millisecond
	a.b.publish(f, true)
}

// RestoreSession fetches and deletes the session pid, and returns it with the
// packets its socket missed after offset in this namespace (streams mode with
// recovery). It fails when the session expired, the offset is not in the
// stream any more (trimmed by MaxLen) or Redis does not answer within
// RequestsTimeout; the server then creates a new session.
func (a *Adapter) RestoreSession(pid socket.PrivateSessionId, offset string) (*socket.Session, error) {
	t, ok := a.b.t.(*streamsTransport)
	if !ok || !a.recovery {
		return a.Adapter.RestoreSession(pid, offset)
	}
	if !wire.ValidOffset(offset) {
		return nil, errors.New("redisadapter: invalid offset")
	}
	if st := a.b.load(); st == StateDegraded || st == StateClosed {
		return nil, errors.New("redisadapter: redis is unreachable; session not restored")
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.b.opts.RequestsTimeout)
	defer cancel()
	return t.restore(ctx, a, string(pid), offset)
}

// restore is RestoreSession's exchange with Redis.
func (t *streamsTransport) restore(ctx context.Context, a *Adapter, pid, offset string) (*socket.Session, error) {
	rdb, stream := t.b.rdb, t.ns(a.name).stream
	var get *redis.StringCmd
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		key := t.opts.SessionKeyPrefix + pid
		get = p.Get(ctx, key)
		p.Del(ctx, key)
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	at, err := rdb.XRangeN(ctx, stream, offset, offset, 1).Result()
	if err != nil {
		return nil, err
	}
	raw, err := get.Result()
	if errors.Is(err, redis.Nil) || len(at) == 0 {
		return nil, errors.New("redisadapter: session or offset not found")
	}
	if err != nil {
		return nil, err
	}
	ws, err := wire.DecodeSession(raw)
	if err != nil {
		t.b.stats.droppedMalformed.Add(1)
		return nil, err
	}
	missed := []any{}
	start, upTo := wire.NextOffset(offset), offset
	for page := 0; ; page++ {
		n := t.opts.ReadCount
		if page == maxRestorePages {
			n = 1 // only to know whether entries are left
		}
		entries, err := rdb.XRangeN(ctx, stream, start, "+", n).Result()
		if err != nil {
			return nil, err
		}
		if len(entries) == 0 {
			break
		}
		if page == maxRestorePages {
			// Replaying part of what the socket missed would leave a gap
			// that the client, told it recovered, could not see.
			t.b.log.Debug("session not restored: more missed entries than a restore reads",
				slog.Int("pages", maxRestorePages), slog.Int64("read_count", t.opts.ReadCount))
			return nil, errors.New("redisadapter: too many missed entries; session not restored")
		}
		for _, e := range entries {
			start, upTo = wire.NextOffset(e.ID), e.ID
			if data := t.missedPacket(a.name, ws.Rooms, e); data != nil {
				missed = append(missed, data)
			}
		}
	}
	// The socket gets every entry up to upTo with its session: the stream
	// reader, or the local queue waiting for an XADD reply, may not have
	// delivered some of them yet, and must not deliver them to it again.
	a.guardRestored(socket.SocketId(ws.SID), upTo)
	return &socket.Session{
		SessionToPersist: &socket.SessionToPersist{
			Sid: socket.SocketId(ws.SID), Pid: socket.PrivateSessionId(ws.PID),
			Rooms: types.NewSet(toRooms(ws.Rooms)...), Data: ws.Data,
		},
		MissedPackets: missed,
	}, nil
}

// missedPacket returns the data (with its entry id appended) of an entry a
// socket in rooms missed, or nil: a recoverable broadcast of the namespace,
// to all or to one of rooms, and to none of the rooms it excludes.
func (t *streamsTransport) missedPacket(nsp string, rooms []string, e redis.XMessage) []any {
	if n, _ := e.Values["nsp"].(string); n != nsp {
		return nil
	}
	if typ, _ := e.Values["type"].(string); typ != "3" {
		return nil
	}
	uid, _ := e.Values["uid"].(string)
	data, _ := e.Values["data"].(string)
	m, err := wire.DecodeStreamEntry(uid, nsp, "3", data)
	if err != nil {
		t.b.stats.droppedMalformed.Add(1)
		return nil
	}
	pkt := fromWirePacket(&m.Packet, nsp)
	args, ok := pkt.Data.([]any)
	if !ok || m.RequestID != "" || !recoverable(pkt, &m.Opts) {
		return nil
	}
	included := len(m.Opts.Rooms) == 0
	for _, r := range rooms {
		if slices.Contains(m.Opts.Except, r) {
			return nil
		}
		included = included || slices.Contains(m.Opts.Rooms, r)
	}
	if !included {
		return nil
	}
	return append(args[:len(args):len(args)], e.ID)
}

// restoredGuard keeps, for each socket of the namespace whose session was
// restored, the id of the last stream entry its restore read: the socket got
// every entry up to that one with its session. A restore can run before the
// stream reader (or the local queue, for this server's own broadcasts, which
// waits for the XADD replies) has delivered the last of them; once the
// socket has joined its rooms, that delivery would reach it a second time.
// The guard excepts it from deliveries of entries up to its id. An entry is
// forgotten when its socket leaves all its rooms, and the whole guard once
// both the reader and the local queue have delivered an entry past every
// restore.
type restoredGuard struct {
	mu     sync.Mutex
	upTo   map[socket.SocketId]string
	max    string
	passed [2]bool // an entry past max delivered from the reader [0], from the local queue [1]
}

// guardRestored records that socket sid got every entry up to upTo.
func (a *Adapter) guardRestored(sid socket.SocketId, upTo string) {
	g := &a.restored
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.upTo == nil {
		g.upTo = map[socket.SocketId]string{}
	}
	g.upTo[sid] = upTo
	if g.max == "" || compareOffsets(upTo, g.max) > 0 {
		g.max = upTo
	}
	g.passed = [2]bool{}
}

// forgetRestored drops the guard of a socket that left.
func (a *Adapter) forgetRestored(sid socket.SocketId) {
	g := &a.restored
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.upTo, sid)
	if len(g.upTo) == 0 {
		g.max = ""
	}
}

// exceptRestored returns o, or a copy of it that also excepts the restored
// sockets that already got entry id; local tells the local queue from the
// stream reader.
func (a *Adapter) exceptRestored(o *wire.Opts, id string, local bool) *wire.Opts {
	if id == "" || !a.recovery {
		return o
	}
	g := &a.restored
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.upTo) == 0 {
		return o
	}
	if compareOffsets(id, g.max) > 0 {
		src := 0
		if local {
			src = 1
		}
		g.passed[src] = true
		if g.passed[0] && g.passed[1] {
			clear(g.upTo)
			g.max = ""
		}
		return o
	}
	var except []string
	for sid, upTo := range g.upTo {
		if compareOffsets(id, upTo) <= 0 {
			except = append(except, string(sid))
		}
	}
	if len(except) == 0 {
		return o
	}
	c := *o
	c.Except = append(slices.Clip(o.Except), except...)
	return &c
}

// compareOffsets compares two stream entry ids (ms-seq) as Redis orders
// them.
func compareOffsets(x, y string) int {
	xm, xs := splitOffset(x)
	ym, ys := splitOffset(y)
	if c := cmp.Compare(xm, ym); c != 0 {
		return c
	}
	return cmp.Compare(xs, ys)
}

func splitOffset(id string) (ms, seq uint64) {
	m, s, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(s, 10, 64)
	return ms, seq
}
