package redisadapter

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// State is the adapter's connection state. It is read without locks on every
// broadcast.
type State int32

const (
	// StateConnecting is the state from New until the first successful
	// exchange with Redis.
	StateConnecting State = iota
	// StateConnected means the subscriber is subscribed and publishes succeed:
	// broadcasts and requests reach every instance.
	StateConnected
	// StateDegraded means Redis is unreachable or unhealthy. The server keeps
	// delivering to its own clients (single-instance mode); remote publishes
	// are skipped and counted, requests answer from local state, and
	// reconnection goes on in the background with capped backoff.
	StateDegraded
	// StateClosed means Builder.Close was called.
	StateClosed
)

// String returns the lower-case name of the state.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateDegraded:
		return "degraded"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Stats is a snapshot of the adapter's counters since New. Counters only grow.
type Stats struct {
	// State is the current connection state.
	State State
	// Published counts frames written to Redis (broadcasts, requests,
	// responses).
	Published uint64
	// PublishErrors counts frames whose PUBLISH failed or timed out.
	PublishErrors uint64
	// PublishDropped counts frames dropped because the publish queue stayed
	// full for PublishTimeout.
	PublishDropped uint64
	// SkippedDegraded counts frames not sent because the adapter was degraded
	// (the local part of those broadcasts was still delivered).
	SkippedDegraded uint64
	// Received counts frames read from Redis on the adapter's channels.
	Received uint64
	// DroppedOwn counts frames ignored because this instance sent them.
	DroppedOwn uint64
	// DroppedUnknownRoom counts broadcast frames for a room this instance does
	// not hold, dropped before decoding.
	DroppedUnknownRoom uint64
	// DroppedMalformed counts frames that failed to decode (empty, truncated,
	// wrong shape, hostile lengths). They are logged at debug level.
	DroppedMalformed uint64
	// DroppedOversized counts frames refused because decoding them would
	// take more memory than their budget: 4 times their size plus 16 KiB
	// (event arguments forwarded to clients as received do not count).
	DroppedOversized uint64
	// EncodeErrors counts messages that could not be encoded (a value
	// neither MessagePack nor JSON can carry); they are logged as errors.
	EncodeErrors uint64
	// JoinWaitExpired counts local joins that stopped waiting for their room
	// subscription after JoinTimeout.
	JoinWaitExpired uint64
	// DroppedUnsupported counts well-formed frames of a kind this version does
	// not handle.
	DroppedUnsupported uint64
	// DroppedLate counts answers to requests that had already completed or
	// timed out, or that this server never sent.
	DroppedLate uint64
	// PendingRequests is the number of requests of this server waiting for
	// answers (fetchSockets, serverSideEmit with ack, allRooms, broadcasts
	// with acks).
	PendingRequests int
	// Reconnects counts times the subscriber connection was re-established
	// after a failure.
	Reconnects uint64
	// StateChanges counts transitions of State.
	StateChanges uint64
	// QueueLength is the number of frames waiting in the publish queue, and
	// QueueBytes their size.
	QueueLength int
	QueueBytes  int
}

// counters are the atomics behind Stats.
type counters struct {
	published          atomic.Uint64
	publishErrors      atomic.Uint64
	publishDropped     atomic.Uint64
	skippedDegraded    atomic.Uint64
	received           atomic.Uint64
	droppedOwn         atomic.Uint64
	droppedUnknownRoom atomic.Uint64
	droppedMalformed   atomic.Uint64
	droppedOversized   atomic.Uint64
	encodeErrors       atomic.Uint64
	joinWaitExpired    atomic.Uint64
	droppedUnsupported atomic.Uint64
	droppedLate        atomic.Uint64
	reconnects         atomic.Uint64
	stateChanges       atomic.Uint64
}

// Health sources. The adapter is connected when no source reports a failure
// and every required source (the subscriber, and the stream readers in
// streams mode) has succeeded since its last failure.
const (
	sourceSubscriber = 1 << iota
	sourcePublisher
	sourceReader
)

var errNoPong = errors.New("redisadapter: subscriber connection did not answer a health ping")

// health tracks the state machine. Transitions are computed under mu and
// announced, in order, by the notifier goroutine.
type health struct {
	state atomic.Int32

	mu       sync.Mutex
	failing  int // bit set of sources currently failing
	okOnce   int // bit set of sources that succeeded since their last failure
	required int // sources that must be in okOnce to be connected
	events   []stateEvent
	wake     chan struct{}
	probe    chan struct{} // poked when the publisher fails

	// published is set by every successful publish batch; the probe loop
	// resets its backoff when it finds it set.
	published atomic.Bool
}

type stateEvent struct {
	from, to State
	err      error
}

func (h *health) init() {
	h.wake = make(chan struct{}, 1)
	h.probe = make(chan struct{}, 1)
	h.required = sourceSubscriber
}

// load returns the current state.
func (b *Builder) load() State { return State(b.health.state.Load()) }

// State returns the adapter's connection state.
func (b *Builder) State() State { return b.load() }

// report records the outcome of an exchange with Redis for one source and
// moves the state machine. It is cheap when nothing changes.
func (b *Builder) report(source int, ok bool, err error) {
	h := &b.health
	if ok && b.load() == StateConnected {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	from := State(h.state.Load())
	if from == StateClosed {
		return
	}
	if ok {
		h.failing &^= source
		h.okOnce |= source
	} else {
		h.failing |= source
		h.okOnce &^= source
	}
	if !ok && source == sourcePublisher {
		// The probe loop clears the publisher's failure once Redis answers
		// a ping again; poke it whether or not the state changes.
		select {
		case h.probe <- struct{}{}:
		default:
		}
	}
	to := from
	switch {
	case h.failing != 0:
		to = StateDegraded
	case h.okOnce&h.required == h.required:
		to = StateConnected
	}
	if to == from {
		return
	}
	b.transitionLocked(from, to, err)
}

// transitionLocked stores the new state and queues the event for the
// notifier. h.mu must be held.
func (b *Builder) transitionLocked(from, to State, err error) {
	h := &b.health
	h.state.Store(int32(to))
	b.stats.stateChanges.Add(1)
	if from == StateDegraded && to == StateConnected {
		b.stats.reconnects.Add(1)
	}
	h.events = append(h.events, stateEvent{from: from, to: to, err: err})
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// notifyLoop logs state changes and calls Options.OnStateChange, one event at a
// time and in order, outside every lock.
func (b *Builder) notifyLoop() {
	h := &b.health
	for {
		select {
		case <-h.wake:
		case <-b.done:
			// Deliver what is left (including the transition to closed).
			b.flushEvents()
			return
		}
		b.flushEvents()
	}
}

func (b *Builder) flushEvents() {
	h := &b.health
	for {
		h.mu.Lock()
		events := h.events
		h.events = nil
		h.mu.Unlock()
		if len(events) == 0 {
			return
		}
		for _, ev := range events {
			b.logTransition(ev)
			if b.opts.OnStateChange != nil {
				b.opts.OnStateChange(ev.from, ev.to, ev.err)
			}
		}
	}
}

func (b *Builder) logTransition(ev stateEvent) {
	log := b.log
	switch ev.to {
	case StateDegraded:
		msg := "redis unreachable: running single-instance, delivering to local clients only; reconnecting in the background"
		if ev.from == StateConnected {
			msg = "lost redis: running single-instance, delivering to local clients only; reconnecting in the background"
		}
		log.Warn(msg, slog.String("addr", b.addr), slog.Any("error", ev.err))
	case StateConnected:
		if ev.from == StateDegraded {
			log.Info("redis is back: resubscribed, cluster delivery resumed", slog.String("addr", b.addr))
		} else {
			log.Info("connected to redis", slog.String("addr", b.addr))
		}
	case StateClosed:
		log.Debug("adapter closed")
	}
}

// probeLoop restores the publisher's health after a failed publish: it pings
// Redis with capped exponential backoff until a ping succeeds.
//
// Its backoff carries over from one failure to the next until a publish
// succeeds again: when PING works but PUBLISH keeps failing (an ACL without
// +publish, say), the adapter would otherwise flip between degraded and
// connected every 100ms.
func (b *Builder) probeLoop() {
	bo := newBackoff(b.opts.MaxReconnectDelay)
	for {
		select {
		case <-b.health.probe:
		case <-b.done:
			return
		}
		if b.health.published.Swap(false) {
			bo.reset()
		}
		for {
			if !b.sleep(bo.next()) {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.PublishTimeout)
			err := b.rdb.Ping(ctx).Err()
			cancel()
			if err == nil {
				b.report(sourcePublisher, true, nil)
				break
			}
			b.log.Debug("redis ping failed", slog.Any("error", err))
		}
	}
}

// sleep waits for d or until the Builder closes; it reports false on close.
func (b *Builder) sleep(d time.Duration) bool { return sleepUnless(d, b.done, nil) }

// sleepUnless waits for d; it reports false when stop or also (which may be
// nil) is closed first.
func sleepUnless(d time.Duration, stop, also <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	case <-also:
		return false
	}
}

// backoff is capped exponential backoff with jitter, starting at 100ms.
type backoff struct {
	cur, max time.Duration
}

const minBackoff = 100 * time.Millisecond

func newBackoff(max time.Duration) *backoff { return &backoff{max: max} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = minBackoff
	} else {
		b.cur *= 2
	}
	if b.cur > b.max {
		b.cur = b.max
	}
	// Jitter of ±20% so that instances do not reconnect in lockstep.
	j := time.Duration(rand.Int64N(int64(b.cur)/5*2+1)) - b.cur/5
	return b.cur + j
}

func (b *backoff) reset() { b.cur = 0 }

// Stats returns a snapshot of the adapter's counters.
func (b *Builder) Stats() Stats {
	s := &b.stats
	return Stats{
		State:              b.load(),
		Published:          s.published.Load(),
		PublishErrors:      s.publishErrors.Load(),
		PublishDropped:     s.publishDropped.Load(),
		SkippedDegraded:    s.skippedDegraded.Load(),
		Received:           s.received.Load(),
		DroppedOwn:         s.droppedOwn.Load(),
		DroppedUnknownRoom: s.droppedUnknownRoom.Load(),
		DroppedMalformed:   s.droppedMalformed.Load(),
		DroppedOversized:   s.droppedOversized.Load(),
		EncodeErrors:       s.encodeErrors.Load(),
		JoinWaitExpired:    s.joinWaitExpired.Load(),
		DroppedUnsupported: s.droppedUnsupported.Load(),
		DroppedLate:        s.droppedLate.Load(),
		PendingRequests:    b.pendingCount(),
		Reconnects:         s.reconnects.Load(),
		StateChanges:       s.stateChanges.Load(),
		QueueLength:        len(b.pub.queue),
		QueueBytes:         int(b.pub.queued.Load()),
	}
}
