package redisadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The subscriber keeps a set of wanted channels and patterns subscribed, for
// every transport: the classic one (SUBSCRIBE and PSUBSCRIBE on one
// connection), the sharded one (SSUBSCRIBE on one connection per Redis
// master, each command carrying channels of one slot) and the streams one
// (its pub/sub channels).
//
// Goroutines: one manager turns the wanted set into (un)subscriptions and,
// on a Redis Cluster in sharded mode, follows slot moves; one reader per
// connection receives frames and hands them to Builder.receive in arrival
// order. A reader pings its connection when idle and replaces it when a ping
// stays unanswered (a frozen link), when Redis refuses a command on it (an
// ACL's NOPERM) or on any connection error, with capped exponential backoff.
// A replacement subscribes everything again itself: go-redis's own
// resubscription would send every channel in one command, which a cluster
// refuses with CROSSSLOT.
//
// The subscriber is healthy when every connection has had all its
// subscriptions confirmed by Redis since its last failure.

// subKey names a wanted channel or pattern.
type subKey struct {
	name    string
	pattern bool
}

// want is a channel or pattern some namespace needs, and where its frames go.
type want struct {
	route inbound // nsp, kind and room of the frames
	ready chan struct{}
	isSet bool
}

func (w *want) markReady() {
	if !w.isSet {
		w.isSet = true
		close(w.ready)
	}
}

// Tuning of the subscriber.
const (
	// maxChannelsPerCommand bounds one (un)subscription command.
	maxChannelsPerCommand = 512
	// topologyCheckInterval is how often a cluster's slot owners are checked
	// against the sharded subscriptions (also on MOVED replies, evictions
	// and connection errors).
	topologyCheckInterval = 5 * time.Second
	// minRebalanceInterval spaces out topology reloads.
	minRebalanceInterval = 100 * time.Millisecond
)

type subscriber struct {
	b       *Builder
	sharded bool                 // SSUBSCRIBE instead of SUBSCRIBE
	cluster *redis.ClusterClient // sharded on a cluster: one connection per master

	mu     sync.Mutex
	want   map[subKey]*want
	placed map[subKey]*subConn // subscribed (or being) on a connection
	// dirty holds the keys set changed since the last reconcile, which
	// looks only at them unless full is set (a reconcile left something to
	// retry, or placements were dropped elsewhere): with tens of thousands
	// of rooms, comparing all of want and placed at every join made
	// subscribing N rooms cost O(N²).
	dirty  map[subKey]struct{}
	full   bool
	conns  map[string]*subConn // by master address ("" for the one connection)
	failed map[*subConn]error  // connections failing since their last success
	wake   chan struct{}

	rebalance     atomic.Bool
	lastRebalance time.Time

	// psubRefused is set once Redis refused PSUBSCRIBE (logged once).
	psubRefused atomic.Bool
}

func newSubscriber(b *Builder, sharded bool) *subscriber {
	s := &subscriber{
		b: b, sharded: sharded,
		want:   map[subKey]*want{},
		placed: map[subKey]*subConn{},
		dirty:  map[subKey]struct{}{},
		conns:  map[string]*subConn{},
		failed: map[*subConn]error{},
		wake:   make(chan struct{}, 1),
	}
	if sharded {
		s.cluster, _ = b.rdb.(*redis.ClusterClient)
	}
	return s
}

func (s *subscriber) start() { s.b.spawn(s.manageLoop) }

// stop closes every connection; the Builder waits for the goroutines.
func (s *subscriber) stop() {
	s.mu.Lock()
	conns := make([]*subConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

func (s *subscriber) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// set adds and removes wanted channels and patterns, and returns the
// readiness channels of the added ones Redis has not confirmed yet. It never
// blocks on Redis.
func (s *subscriber) set(add map[subKey]inbound, remove []subKey) []<-chan struct{} {
	var waits []<-chan struct{}
	s.mu.Lock()
	closed := s.b.isClosed()
	for _, k := range remove {
		delete(s.want, k)
		s.dirty[k] = struct{}{}
	}
	if !closed {
		for k, route := range add {
			s.dirty[k] = struct{}{}
			w := s.want[k]
			if w == nil {
				w = &want{ready: make(chan struct{})}
				if c := s.placed[k]; c != nil && c.isConfirmed(k) {
					w.markReady()
				}
				s.want[k] = w
			}
			w.route = route
			if !w.isSet {
				waits = append(waits, w.ready)
			}
		}
	}
	s.mu.Unlock()
	s.poke()
	return waits
}

// route returns where the frames of a channel (or pattern) go.
func (s *subscriber) route(k subKey) (inbound, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.want[k]
	if w == nil {
		return inbound{}, false
	}
	return w.route, true
}

// manageLoop applies changes of the wanted set, retrying with backoff what
// could not be placed, and keeps a cluster's sharded channels on their slot
// owners.
func (s *subscriber) manageLoop() {
	var tick <-chan time.Time
	if s.cluster != nil {
		t := time.NewTicker(topologyCheckInterval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	bo := newBackoff(s.b.opts.MaxReconnectDelay)
	for {
		select {
		case <-s.wake:
		case <-tick:
			s.rebalance.Store(true)
		case <-retry.C:
		case <-s.b.done:
			return
		}
		if s.reconcile() {
			bo.reset()
		} else {
			d := bo.next()
			if s.rebalance.Load() {
				d = min(d, time.Until(s.lastRebalance.Add(minRebalanceInterval)))
			}
			retry.Reset(d)
		}
	}
}

// reconcile subscribes the wanted keys that are not, and unsubscribes the
// others. It reports false when something is left to retry.
func (s *subscriber) reconcile() bool {
	ctx, cancel := context.WithTimeout(s.b.ctx, s.b.opts.RequestsTimeout)
	defer cancel()
	ok := true
	if s.cluster != nil && s.rebalance.Load() {
		if time.Since(s.lastRebalance) < minRebalanceInterval {
			// Placing channels now would use the view that just sent a
			// command to the wrong node: each MOVED would request another
			// placement at once, a burst of hundreds of commands until the
			// reload. Wait for the reload (the retry timer ends with the
			// interval).
			return false
		}
		s.rebalance.Store(false)
		s.lastRebalance = time.Now()
		if err := s.rebalanceSlots(ctx); err != nil {
			s.b.log.Debug("cluster topology check failed", slog.Any("error", err))
			s.rebalance.Store(true)
			ok = false
		}
	}
	s.mu.Lock()
	var subs []subKey
	unsubs := map[*subConn][]subKey{}
	if s.full {
		for k := range s.want {
			if s.placed[k] == nil {
				subs = append(subs, k)
			}
		}
		for k, c := range s.placed {
			if s.want[k] == nil {
				unsubs[c] = append(unsubs[c], k)
				delete(s.placed, k)
			}
		}
	} else {
		for k := range s.dirty {
			if s.want[k] != nil {
				if s.placed[k] == nil {
					subs = append(subs, k)
				}
			} else if c := s.placed[k]; c != nil {
				unsubs[c] = append(unsubs[c], k)
				delete(s.placed, k)
			}
		}
	}
	clear(s.dirty)
	s.full = false
	s.mu.Unlock()
	defer func() {
		if !ok {
			s.mu.Lock()
			s.full = true
			s.mu.Unlock()
		}
	}()
	for c, ks := range unsubs {
		c.unsubscribe(ctx, ks)
	}
	byConn := map[*subConn][]subKey{}
	for _, k := range subs {
		c, err := s.connFor(ctx, k.name)
		if err != nil {
			if !s.b.isClosed() {
				s.b.log.Debug("cannot find the node of a channel; retrying", slog.String("channel", k.name), slog.Any("error", err))
				s.b.report(sourceSubscriber, false, err)
			}
			ok = false
			continue
		}
		byConn[c] = append(byConn[c], k)
	}
	s.mu.Lock()
	for c, ks := range byConn {
		kept := ks[:0]
		for _, k := range ks {
			if s.want[k] != nil && s.placed[k] == nil {
				s.placed[k] = c
				kept = append(kept, k)
			}
		}
		byConn[c] = kept
	}
	s.mu.Unlock()
	for c, ks := range byConn {
		c.subscribe(ctx, ks)
	}
	return ok
}

// connFor returns the connection for channel: the one of the master owning
// its slot on a cluster in sharded mode, the only one otherwise. It is
// created (without I/O) if needed.
func (s *subscriber) connFor(ctx context.Context, channel string) (*subConn, error) {
	addr := ""
	var node *redis.Client
	if s.cluster != nil {
		var err error
		if node, err = s.cluster.MasterForKey(ctx, channel); err != nil {
			return nil, err
		}
		addr = node.Options().Addr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[addr]; c != nil {
		return c, nil
	}
	if s.b.isClosed() {
		return nil, errClosed
	}
	c := &subConn{
		s: s, addr: addr, node: node, done: make(chan struct{}),
		keys: map[subKey]struct{}{}, pending: map[subKey]int{}, unsubs: map[subKey]int{},
	}
	c.ps = c.newPubSub()
	s.conns[addr] = c
	s.b.spawn(c.readLoop)
	return c, nil
}

// rebalanceSlots reloads a cluster's topology, moves the channels whose slot
// changed owner, and closes the connections of nodes that are no longer
// masters.
func (s *subscriber) rebalanceSlots(ctx context.Context) error {
	var mu sync.Mutex
	masters := map[string]bool{}
	// ForEachMaster reloads the cluster state first.
	if err := s.cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		masters[c.Options().Addr] = true
		mu.Unlock()
		return nil
	}); err != nil {
		return err
	}
	s.mu.Lock()
	snapshot := make(map[subKey]*subConn, len(s.placed))
	for k, c := range s.placed {
		snapshot[k] = c
	}
	s.mu.Unlock()
	moves := map[*subConn][]subKey{}
	for k, c := range snapshot {
		node, err := s.cluster.MasterForKey(ctx, k.name)
		if err != nil {
			return err
		}
		if node.Options().Addr != c.addr {
			moves[c] = append(moves[c], k)
		}
	}
	s.mu.Lock()
	for c, ks := range moves {
		for _, k := range ks {
			if s.placed[k] == c {
				delete(s.placed, k)
				s.dirty[k] = struct{}{}
			}
		}
	}
	s.mu.Unlock()
	for c, ks := range moves {
		c.unsubscribe(ctx, ks)
		s.b.log.Debug("moving channels to their new slot owner", slog.String("from", c.addr), slog.Int("channels", len(ks)))
	}
	var dead []*subConn
	s.mu.Lock()
	for addr, c := range s.conns {
		if !masters[addr] && c.empty() {
			delete(s.conns, addr)
			delete(s.failed, c)
			dead = append(dead, c)
		}
	}
	allOK := len(s.failed) == 0
	s.mu.Unlock()
	for _, c := range dead {
		c.close()
	}
	if len(dead) > 0 && allOK {
		s.b.report(sourceSubscriber, true, nil)
	}
	return nil
}

// connOK records that c is healthy (all its subscriptions confirmed).
func (s *subscriber) connOK(c *subConn) {
	if !c.failing.Load() && c.okOnce.Load() && s.b.load() == StateConnected {
		return
	}
	c.failing.Store(false)
	c.okOnce.Store(true)
	s.mu.Lock()
	delete(s.failed, c)
	allOK := len(s.failed) == 0
	for _, o := range s.conns {
		allOK = allOK && o.okOnce.Load()
	}
	s.mu.Unlock()
	if allOK {
		s.b.report(sourceSubscriber, true, nil)
	}
}

// connFailed records a failure of c: the adapter is degraded until every
// connection is healthy again.
func (s *subscriber) connFailed(c *subConn, err error) {
	first := !c.failing.Swap(true)
	c.okOnce.Store(false)
	s.mu.Lock()
	if s.conns[c.addr] == c {
		s.failed[c] = err
	}
	s.mu.Unlock()
	if first {
		s.b.log.Debug("redis subscriber failed", slog.String("node", c.addr), slog.Any("error", err))
	}
	s.b.report(sourceSubscriber, false, err)
}

// onConfirmed marks a want ready once its subscription on c is confirmed.
func (s *subscriber) onConfirmed(c *subConn, k subKey) {
	s.mu.Lock()
	if w := s.want[k]; w != nil && s.placed[k] == c {
		w.markReady()
	}
	s.mu.Unlock()
}

// onEvicted handles Redis unsubscribing a channel by itself (its slot moved
// to another master): the channel is placed again, on the new owner.
func (s *subscriber) onEvicted(c *subConn, k subKey) {
	s.mu.Lock()
	if s.placed[k] == c {
		delete(s.placed, k)
		s.dirty[k] = struct{}{}
	}
	s.mu.Unlock()
	s.b.log.Debug("redis unsubscribed a channel; placing it again", slog.String("node", c.addr), slog.String("channel", k.name))
	s.requestRebalance()
	s.poke()
}

func (s *subscriber) requestRebalance() {
	if s.cluster == nil {
		return
	}
	s.rebalance.Store(true)
	s.poke()
}

// onReplyError handles an error reply read on a connection.
func (s *subscriber) onReplyError(c *subConn, err error) {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK "):
		// A (un)subscription sent to a node that no longer owns the slot.
		// The reply names the slot, not the channels: every channel of
		// that slot is forgotten on c (expected replies included) and
		// placed again once the topology is reloaded.
		s.b.log.Debug("subscription redirected; checking the cluster topology", slog.String("node", c.addr), slog.Any("error", err))
		var slot int
		if _, serr := fmt.Sscanf(strings.Fields(msg)[1], "%d", &slot); serr == nil {
			moved := c.forgetSlot(slot)
			s.mu.Lock()
			for _, k := range moved {
				if s.placed[k] == c {
					delete(s.placed, k)
					s.dirty[k] = struct{}{}
				}
			}
			s.mu.Unlock()
		}
		s.requestRebalance()
	default:
		// Redis refused a command (NOPERM from an ACL, CROSSSLOT, ...):
		// go-redis keeps the connection and never sends the refused
		// command again, so the connection is replaced, which subscribes
		// everything again.
		if strings.Contains(strings.ToLower(msg), "'psubscribe'") {
			// An ACL without +psubscribe (NOPERM), or a service without
			// the command (ERR unknown command): retrying cannot help.
			err = fmt.Errorf("%w (redis refuses pattern subscriptions: set Options.RoomSubscriptions)", err)
			if !s.psubRefused.Swap(true) {
				s.b.log.Error("redis refuses PSUBSCRIBE: set Options.RoomSubscriptions to subscribe per room instead; running single-instance until then",
					slog.String("addr", s.b.addr), slog.Any("error", err))
			}
		}
		c.markBroken()
		s.connFailed(c, err)
	}
}

// groupBySlot splits channels into groups of the same slot, each at most max
// long, in a stable order. Without cluster, only max splits them.
func groupBySlot(keys []subKey, cluster bool, max int) [][]string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.name
	}
	sort.Strings(names)
	var groups [][]string
	split := func(g []string) {
		for len(g) > 0 {
			n := min(len(g), max)
			groups = append(groups, g[:n:n])
			g = g[n:]
		}
	}
	if !cluster {
		split(names)
		return groups
	}
	bySlot := map[int][]string{}
	var slots []int
	for _, n := range names {
		sl := keySlot(n)
		if _, ok := bySlot[sl]; !ok {
			slots = append(slots, sl)
		}
		bySlot[sl] = append(bySlot[sl], n)
	}
	sort.Ints(slots)
	for _, sl := range slots {
		split(bySlot[sl])
	}
	return groups
}

// dispatch hands a frame to the Builder with its route.
func (s *subscriber) dispatch(m *redis.Message) {
	k := subKey{name: m.Channel}
	if m.Pattern != "" {
		k = subKey{name: m.Pattern, pattern: true}
	}
	in, ok := s.route(k)
	if !ok {
		// A channel unsubscribed in the meantime.
		s.b.stats.received.Add(1)
		s.b.stats.droppedUnsupported.Add(1)
		return
	}
	in.channel = m.Channel
	in.payload = m.Payload
	s.b.receive(&in)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
