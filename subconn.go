package redisadapter

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// One connection of the subscriber (see subscriber.go): its PubSub, the
// channels and patterns it holds with the replies still expected, its
// replacement after a failure, and the reader goroutine.

// subConn is one pub/sub connection: one *redis.PubSub, the channels and
// patterns it holds, and the confirmations still expected.
type subConn struct {
	s    *subscriber
	addr string
	node *redis.Client // the master's client on a cluster in sharded mode

	// ioMu serializes the commands and replacements of the connection, so
	// that they reach Redis in the order of the state changes; mu guards the
	// state and is never held during I/O.
	ioMu    sync.Mutex
	mu      sync.Mutex
	ps      *redis.PubSub
	broken  bool // the reader must replace ps before reading again
	closed  bool
	keys    map[subKey]struct{} // subscribed (or being) on this connection
	pending map[subKey]int      // confirmations expected
	unsubs  map[subKey]int      // unsubscription replies expected

	failing atomic.Bool
	okOnce  atomic.Bool // healthy since the last failure
	done    chan struct{}
	once    sync.Once
}

// newPubSub returns a PubSub without connecting (no channel, no I/O).
func (c *subConn) newPubSub() *redis.PubSub {
	ctx := context.Background()
	switch {
	case c.node != nil:
		return c.node.SSubscribe(ctx)
	case c.s.sharded:
		return c.s.b.rdb.SSubscribe(ctx)
	}
	return c.s.b.rdb.Subscribe(ctx)
}

func (c *subConn) pubsub() *redis.PubSub {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ps
}

func (c *subConn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *subConn) isBroken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

func (c *subConn) markBroken() {
	c.mu.Lock()
	c.broken = true
	c.mu.Unlock()
}

func (c *subConn) markBrokenIf(ps *redis.PubSub) {
	c.mu.Lock()
	if c.ps == ps {
		c.broken = true
	}
	c.mu.Unlock()
}

func (c *subConn) isConfirmed(k subKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.keys[k]
	return ok && c.pending[k] == 0 && !c.broken
}

func (c *subConn) settled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) == 0 && !c.broken
}

func (c *subConn) empty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys) == 0
}

// send runs the (un)subscription commands for keys on ps, one slot per
// command on a cluster in sharded mode.
func (c *subConn) send(ctx context.Context, ps *redis.PubSub, keys []subKey, subscribe bool) error {
	var chans, pats []subKey
	for _, k := range keys {
		if k.pattern {
			pats = append(pats, k)
		} else {
			chans = append(chans, k)
		}
	}
	for _, g := range groupBySlot(chans, c.node != nil, maxChannelsPerCommand) {
		var err error
		switch {
		case c.s.sharded && subscribe:
			err = ps.SSubscribe(ctx, g...)
		case c.s.sharded:
			err = ps.SUnsubscribe(ctx, g...)
		case subscribe:
			err = ps.Subscribe(ctx, g...)
		default:
			err = ps.Unsubscribe(ctx, g...)
		}
		if err != nil {
			return err
		}
	}
	for _, g := range groupBySlot(pats, false, maxChannelsPerCommand) {
		var err error
		if subscribe {
			err = ps.PSubscribe(ctx, g...)
		} else {
			err = ps.PUnsubscribe(ctx, g...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *subConn) subscribe(ctx context.Context, keys []subKey) {
	if len(keys) == 0 {
		return
	}
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	c.mu.Lock()
	for _, k := range keys {
		c.keys[k] = struct{}{}
		c.pending[k]++
	}
	ps, skip := c.ps, c.broken || c.closed
	c.mu.Unlock()
	if skip {
		return // the reader's rebuild subscribes them
	}
	if err := c.send(ctx, ps, keys, true); err != nil {
		c.s.b.log.Debug("subscribe failed; the connection will be replaced", slog.String("node", c.addr), slog.Any("error", err))
		c.markBrokenIf(ps)
	}
}

func (c *subConn) unsubscribe(ctx context.Context, keys []subKey) {
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	c.mu.Lock()
	var list []subKey
	for _, k := range keys {
		if _, ok := c.keys[k]; !ok {
			continue
		}
		delete(c.keys, k)
		delete(c.pending, k)
		list = append(list, k)
	}
	ps, skip := c.ps, len(list) == 0 || c.broken || c.closed
	if !skip {
		for _, k := range list {
			c.unsubs[k]++
		}
	}
	c.mu.Unlock()
	if skip {
		return
	}
	if err := c.send(ctx, ps, list, false); err != nil {
		c.markBrokenIf(ps)
	}
}

// confirm records a subscription reply; it reports whether the key's
// subscription just became confirmed.
func (c *subConn) confirm(k subKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.pending[k]
	if n == 0 {
		return false
	}
	if n > 1 {
		c.pending[k] = n - 1
		return false
	}
	delete(c.pending, k)
	_, ok := c.keys[k]
	return ok
}

// unsubscribed records an unsubscription reply; it reports true when Redis
// unsubscribed a key we did not ask to leave (its slot moved).
func (c *subConn) unsubscribed(k subKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.unsubs[k]; n > 0 {
		if n == 1 {
			delete(c.unsubs, k)
		} else {
			c.unsubs[k] = n - 1
		}
		return false
	}
	if _, ok := c.keys[k]; !ok {
		return false
	}
	delete(c.keys, k)
	delete(c.pending, k)
	return true
}

// forgetSlot drops every key of slot from the connection's bookkeeping,
// expected replies included, and returns the keys that were held.
func (c *subConn) forgetSlot(slot int) []subKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []subKey
	for k := range c.keys {
		if !k.pattern && keySlot(k.name) == slot {
			out = append(out, k)
			delete(c.keys, k)
			delete(c.pending, k)
		}
	}
	for k := range c.unsubs {
		if keySlot(k.name) == slot {
			delete(c.unsubs, k)
		}
	}
	return out
}

// rebuild replaces the PubSub with a fresh connection and subscribes every
// key again. It runs on the reader goroutine; a Close racing it wins: the
// fresh connection is closed and nothing is subscribed.
func (c *subConn) rebuild(ctx context.Context) error {
	fresh := c.newPubSub()
	// Ping dials; a fresh PubSub has nothing for go-redis to resubscribe.
	if err := fresh.Ping(ctx); err != nil {
		_ = fresh.Close()
		return err
	}
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = fresh.Close()
		return errClosed
	}
	old := c.ps
	c.ps = fresh
	c.broken = false
	c.pending = map[subKey]int{}
	c.unsubs = map[subKey]int{}
	keys := make([]subKey, 0, len(c.keys))
	for k := range c.keys {
		keys = append(keys, k)
		c.pending[k] = 1
	}
	c.mu.Unlock()
	_ = old.Close()
	if err := c.send(ctx, fresh, keys, true); err != nil {
		c.markBrokenIf(fresh)
		return err
	}
	return nil
}

func (c *subConn) ping() error {
	ctx, cancel := context.WithTimeout(c.s.b.ctx, c.s.b.opts.HealthCheckInterval)
	defer cancel()
	return c.pubsub().Ping(ctx)
}

func (c *subConn) close() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		ps := c.ps
		c.mu.Unlock()
		close(c.done)
		_ = ps.Close()
	})
}

// sleep waits for d; it reports false when the connection or the Builder
// closes first.
func (c *subConn) sleep(d time.Duration) bool { return sleepUnless(d, c.done, c.s.b.done) }

func (c *subConn) stopped() bool { return c.s.b.isClosed() || c.isClosed() }

// readLoop receives the frames of the connection until it closes.
func (c *subConn) readLoop() {
	s := c.s
	bo := newBackoff(s.b.opts.MaxReconnectDelay)
	pingPending := false
	for !c.stopped() {
		if c.isBroken() {
			if !c.sleep(bo.next()) {
				return
			}
			ctx, cancel := context.WithTimeout(s.b.ctx, s.b.opts.RequestsTimeout)
			err := c.rebuild(ctx)
			cancel()
			if c.stopped() {
				return
			}
			if err != nil {
				s.connFailed(c, err)
				s.requestRebalance()
				continue
			}
			pingPending = false
		}
		ps := c.pubsub()
		msg, err := ps.ReceiveTimeout(s.b.ctx, s.b.opts.HealthCheckInterval)
		if c.stopped() {
			return
		}
		if err != nil {
			var rerr redis.Error
			switch {
			case isTimeout(err) && !pingPending:
				// Idle: check that the link is alive.
				pingPending = true
				if perr := c.ping(); perr != nil {
					pingPending = false
					c.markBroken()
					s.connFailed(c, perr)
				}
			case isTimeout(err):
				// A whole interval without an answer to our ping: frozen.
				pingPending = false
				c.markBroken()
				s.connFailed(c, errNoPong)
			case errors.As(err, &rerr):
				s.onReplyError(c, err)
			default:
				pingPending = false
				c.markBroken()
				s.connFailed(c, err)
				s.requestRebalance()
			}
			continue
		}
		pingPending = false
		switch m := msg.(type) {
		case *redis.Message:
			bo.reset()
			if (!c.okOnce.Load() || c.failing.Load()) && c.settled() {
				s.connOK(c)
			}
			s.dispatch(m)
		case *redis.Subscription:
			k := subKey{name: m.Channel, pattern: m.Kind == "psubscribe" || m.Kind == "punsubscribe"}
			switch m.Kind {
			case "subscribe", "ssubscribe", "psubscribe":
				if c.confirm(k) {
					s.onConfirmed(c, k)
				}
				bo.reset()
			case "unsubscribe", "sunsubscribe", "punsubscribe":
				if c.unsubscribed(k) {
					s.onEvicted(c, k)
				}
			}
			if c.settled() {
				s.connOK(c)
			}
		case *redis.Pong:
			if c.settled() {
				s.connOK(c)
			}
		}
	}
}
