package redisadapter

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// The receive side: one *redis.PubSub (one connection) per Builder, shared by
// every namespace. Three goroutines own it:
//
//   - readLoop receives frames and dispatches them to namespaces, in arrival
//     order. It never waits on Redis for anything but the next frame.
//   - subscribeLoop applies (un)subscriptions, so that a namespace created
//     while Redis is slow or down never blocks the server.
//   - the health logic inside readLoop pings the connection when it is idle and
//     replaces it when a ping stays unanswered (a frozen link).
//
// The send side is one publisher goroutine that drains a bounded queue into
// one pipeline per batch.

// subOp is one change of the subscription set.
type subOp struct {
	subscribe bool
	patterns  []string
	channels  []string
	rebuild   bool // replace the PubSub connection (health check failed)
}

// pubsub returns the current PubSub.
func (b *Builder) pubsub() *redis.PubSub {
	b.psMu.Lock()
	defer b.psMu.Unlock()
	return b.ps
}

// enqueueSub hands a subscription change to subscribeLoop without blocking.
func (b *Builder) enqueueSub(op subOp) {
	b.subMu.Lock()
	b.subOps = append(b.subOps, op)
	b.subMu.Unlock()
	select {
	case b.subWake <- struct{}{}:
	default:
	}
}

// subscribeLoop applies subscription changes in order. go-redis records the
// channels even when the command fails, and resubscribes them on the next
// reconnection, so a failure here only needs logging.
func (b *Builder) subscribeLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.subWake:
		case <-b.done:
			return
		}
		for {
			b.subMu.Lock()
			ops := b.subOps
			b.subOps = nil
			b.subMu.Unlock()
			if len(ops) == 0 {
				break
			}
			for _, op := range ops {
				b.applySub(op)
			}
		}
	}
}

func (b *Builder) applySub(op subOp) {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.RequestsTimeout)
	defer cancel()
	if op.rebuild {
		b.rebuild(ctx)
		return
	}
	ps := b.pubsub()
	var err error
	if op.subscribe {
		if len(op.patterns) > 0 {
			err = errors.Join(err, ps.PSubscribe(ctx, op.patterns...))
		}
		if len(op.channels) > 0 {
			err = errors.Join(err, ps.Subscribe(ctx, op.channels...))
		}
	} else {
		if len(op.patterns) > 0 {
			err = errors.Join(err, ps.PUnsubscribe(ctx, op.patterns...))
		}
		if len(op.channels) > 0 {
			err = errors.Join(err, ps.Unsubscribe(ctx, op.channels...))
		}
	}
	if err != nil && !b.isClosed() {
		b.log.Debug("subscription change deferred until redis answers",
			slog.Bool("subscribe", op.subscribe), slog.Any("patterns", op.patterns),
			slog.Any("channels", op.channels), slog.Any("error", err))
	}
}

// rebuild replaces the PubSub after a failed health check: a connection that
// accepts writes but never answers cannot be repaired in place.
func (b *Builder) rebuild(ctx context.Context) {
	b.psMu.Lock()
	old := b.ps
	b.ps = b.client.Subscribe(ctx)
	ps := b.ps
	b.psMu.Unlock()
	_ = old.Close()

	b.mu.RLock()
	var patterns, chans []string
	for _, a := range b.nsps {
		patterns = append(patterns, a.ch.pattern)
		chans = append(chans, a.ch.request, a.ch.response, a.ch.specificResponse)
	}
	b.mu.RUnlock()
	if len(patterns) > 0 {
		_ = ps.PSubscribe(ctx, patterns...)
		_ = ps.Subscribe(ctx, chans...)
	}
}

// readLoop receives frames until Close. On errors it backs off exponentially
// (100ms doubling to MaxReconnectDelay, with jitter): never a hot loop.
//
// The subscriber counts as healthy only once Redis has confirmed every
// subscription of the connection (the count in its (p)subscribe replies):
// a PONG or a message alone does not prove that a refused PSUBSCRIBE (an
// ACL's NOPERM) went through.
func (b *Builder) readLoop() {
	defer b.wg.Done()
	bo := newBackoff(b.opts.MaxReconnectDelay)
	pingPending := false
	failures := 0
	subs := 0 // subscriptions Redis last confirmed on the current connection
	for !b.isClosed() {
		ps := b.pubsub()
		msg, err := ps.ReceiveTimeout(context.Background(), b.opts.HealthCheckInterval)
		if b.isClosed() {
			return
		}
		if err != nil {
			if isTimeout(err) {
				if !pingPending {
					// Idle: check the link is alive.
					pingPending = true
					if perr := ps.Ping(context.Background()); perr != nil {
						pingPending = false
						subs = 0
						b.subscriberFailed(perr, &failures)
						b.sleep(bo.next())
					}
					continue
				}
				// A whole interval without an answer to our ping: the
				// connection is frozen. Replace it.
				pingPending = false
				subs = 0
				b.subscriberFailed(errNoPong, &failures)
				b.enqueueSub(subOp{rebuild: true})
				b.sleep(bo.next())
				continue
			}
			pingPending = false
			subs = 0
			b.subscriberFailed(err, &failures)
			b.sleep(bo.next())
			var rerr redis.Error
			if errors.As(err, &rerr) {
				// Redis refused a command on this connection (NOPERM from an
				// ACL, ...). go-redis keeps the connection and never sends
				// the refused (P)SUBSCRIBE again: replace the connection,
				// which resubscribes everything, after the backoff.
				b.enqueueSub(subOp{rebuild: true})
			}
			continue
		}
		pingPending = false
		if s, ok := msg.(*redis.Subscription); ok {
			subs = s.Count
		}
		if b.load() == StateConnected || subs >= b.wantedSubscriptions() {
			failures = 0
			bo.reset()
			b.report(sourceSubscriber, true, nil)
		}
		if m, ok := msg.(*redis.Message); ok {
			b.dispatch(m)
		}
	}
}

// wantedSubscriptions is the number of subscriptions the subscriber
// connection must hold: one pattern and three channels per namespace.
func (b *Builder) wantedSubscriptions() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return 4 * len(b.nsps)
}

// subscriberFailed records a receive failure. Only the first failure of an
// outage is logged above debug level (by the state change).
func (b *Builder) subscriberFailed(err error, failures *int) {
	*failures++
	if *failures == 1 {
		b.log.Debug("redis subscriber failed", slog.Any("error", err))
	}
	b.report(sourceSubscriber, false, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dispatch routes a frame to its namespace. Broadcast frames arrive through a
// namespace's pattern; requests and responses through plain channels.
func (b *Builder) dispatch(m *redis.Message) {
	b.stats.received.Add(1)
	b.mu.RLock()
	var a *Adapter
	if m.Pattern != "" {
		a = b.byPattern[m.Pattern]
	} else {
		a = b.byChannel[m.Channel]
	}
	b.mu.RUnlock()
	if a == nil {
		// A frame for a namespace closed in the meantime, or on a channel we
		// never asked for.
		b.stats.droppedUnsupported.Add(1)
		return
	}
	if m.Pattern != "" {
		a.onBroadcast(m.Channel, m.Payload)
		return
	}
	a.onRequestChannel(m.Channel, m.Payload)
}

// outFrame is one frame waiting to be published. The encoder holding its bytes
// returns to the pool once the frame is written.
type outFrame struct {
	channel string
	enc     *encoder
}

// publish queues a frame for the publisher and never waits on Redis. While
// degraded it drops the frame (counted). When the queue is full it waits up to
// PublishTimeout for room, then drops the frame (counted). It reports whether
// the frame was queued; the encoder belongs to the publisher either way.
func (b *Builder) publish(channel string, e *encoder) bool {
	if st := b.load(); st == StateDegraded || st == StateClosed {
		b.stats.skippedDegraded.Add(1)
		putEncoder(e)
		return false
	}
	f := outFrame{channel: channel, enc: e}
	select {
	case b.queue <- f:
		return true
	default:
	}
	t := time.NewTimer(b.opts.PublishTimeout)
	defer t.Stop()
	select {
	case b.queue <- f:
		return true
	case <-t.C:
	case <-b.done:
	}
	b.stats.publishDropped.Add(1)
	putEncoder(e)
	if b.stats.publishDropped.Load()%1000 == 1 {
		b.log.Warn("publish queue full: frames dropped", slog.Int("queue", cap(b.queue)),
			slog.Uint64("dropped_total", b.stats.publishDropped.Load()))
	}
	return false
}

// publishNoWait queues a frame if there is room, and otherwise drops it
// (counted). The subscriber goroutine uses it for answers so that it never
// waits.
func (b *Builder) publishNoWait(channel string, e *encoder) bool {
	if st := b.load(); st == StateDegraded || st == StateClosed {
		b.stats.skippedDegraded.Add(1)
		putEncoder(e)
		return false
	}
	select {
	case b.queue <- outFrame{channel: channel, enc: e}:
		return true
	default:
	}
	b.stats.publishDropped.Add(1)
	putEncoder(e)
	return false
}

// maxBatch bounds the number of frames written in one pipeline.
const maxBatch = 512

// publishLoop drains the queue: everything found in it goes out in one
// pipeline, in queue order, so an instance's broadcasts keep their order.
func (b *Builder) publishLoop() {
	defer b.wg.Done()
	drainBatches(b.queue, b.done, b.writeBatch, b.drainQueue)
}

// drainBatches is the body of a publisher goroutine: it takes the first frame
// waiting in queue, everything queued behind it (up to maxBatch), hands the
// batch to write and releases the encoders, until done is closed; then drain
// releases what is left.
func drainBatches(queue chan outFrame, done chan struct{}, write func([]outFrame), drain func()) {
	batch := make([]outFrame, 0, maxBatch)
	for {
		select {
		case f := <-queue:
			batch = append(batch[:0], f)
		case <-done:
			drain()
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case f := <-queue:
				batch = append(batch, f)
			default:
				break fill
			}
		}
		write(batch)
		for i := range batch {
			putEncoder(batch[i].enc)
			batch[i] = outFrame{}
		}
	}
}

func (b *Builder) writeBatch(batch []outFrame) {
	if b.load() == StateDegraded {
		// Redis went away while these frames waited: do not spend
		// PublishTimeout on each batch.
		b.stats.skippedDegraded.Add(uint64(len(batch)))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.publishDeadline)
	defer cancel()
	var err error
	if len(batch) == 1 {
		err = b.client.Publish(ctx, batch[0].channel, batch[0].enc.buf.Bytes()).Err()
	} else {
		pipe := b.client.Pipeline()
		for i := range batch {
			pipe.Publish(ctx, batch[i].channel, batch[i].enc.buf.Bytes())
		}
		_, err = pipe.Exec(ctx)
	}
	if err != nil {
		b.stats.publishErrors.Add(uint64(len(batch)))
		b.log.Debug("publish failed", slog.Int("frames", len(batch)), slog.Any("error", err))
		b.report(sourcePublisher, false, err)
		return
	}
	b.stats.published.Add(uint64(len(batch)))
	b.health.published.Store(true)
	b.report(sourcePublisher, true, nil)
}

// drainQueue releases the frames still queued at Close. They are not sent:
// Close must not wait on a Redis that may be gone.
func (b *Builder) drainQueue() {
	for {
		select {
		case f := <-b.queue:
			putEncoder(f.enc)
		default:
			return
		}
	}
}
