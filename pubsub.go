package redisadapter

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// The publisher: one goroutine drains a queue bounded in frames and in bytes
// and writes everything it finds in one round trip (transport.write), in
// queue order, so that a server's broadcasts keep their order. Broadcasting
// goroutines never wait on Redis: they wait for room in a full queue at most
// PublishTimeout, then drop the frame (counted). While degraded nothing is
// queued. The subscriber side is in subscriber.go.

// publisher is the queue between broadcasting goroutines and publishLoop.
type publisher struct {
	queue    chan *outFrame
	maxBytes int64
	queued   atomic.Int64 // bytes of the frames in the queue

	// freed is closed (and replaced) whenever queued bytes are released, to
	// wake senders waiting for room.
	mu      sync.Mutex
	freed   chan struct{}
	waiting bool
}

func (p *publisher) init(frames, bytes int) {
	p.queue = make(chan *outFrame, frames)
	p.maxBytes = int64(bytes)
	p.freed = make(chan struct{})
}

// reserve takes room for n bytes if there is some; otherwise it returns the
// channel that is closed when bytes are freed.
func (p *publisher) reserve(n int64) (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// A frame larger than the whole bound still goes through an empty
	// queue, alone.
	if q := p.queued.Load(); q+n > p.maxBytes && q > 0 {
		p.waiting = true
		return false, p.freed
	}
	p.queued.Add(n)
	return true, nil
}

func (p *publisher) unreserve(n int64) {
	p.mu.Lock()
	p.queued.Add(-n)
	if p.waiting {
		p.waiting = false
		close(p.freed)
		p.freed = make(chan struct{})
	}
	p.mu.Unlock()
}

// publish hands f to the publisher. With wait, a full queue is waited for up
// to PublishTimeout; without (the subscriber goroutines answering requests),
// the frame is dropped at once. While degraded the frame is skipped. It
// reports whether f was queued; f belongs to the publisher either way, and
// its done function is called once in all cases.
func (b *Builder) publish(f *outFrame, wait bool) bool {
	if st := b.load(); st == StateDegraded || st == StateClosed {
		b.stats.skippedDegraded.Add(1)
		f.finish(errSkipped)
		f.release()
		return false
	}
	p := &b.pub
	n := int64(f.size())
	var deadline *time.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	timeout := func() <-chan time.Time {
		if deadline == nil {
			deadline = time.NewTimer(b.opts.PublishTimeout)
		}
		return deadline.C
	}
	for {
		ok, freed := p.reserve(n)
		if ok {
			break
		}
		if !wait {
			return b.dropFrame(f)
		}
		select {
		case <-freed:
		case <-timeout():
			return b.dropFrame(f)
		case <-b.done:
			return b.dropFrame(f)
		}
	}
	select {
	case p.queue <- f:
		return true
	default:
	}
	if wait {
		select {
		case p.queue <- f:
			return true
		case <-timeout():
		case <-b.done:
		}
	}
	p.unreserve(n)
	return b.dropFrame(f)
}

// dropFrame counts and releases a frame that found no room.
func (b *Builder) dropFrame(f *outFrame) bool {
	dropped := b.stats.publishDropped.Add(1)
	f.finish(errDropped)
	f.release()
	if dropped%1000 == 1 {
		b.log.Warn("publish queue full: frames dropped", slog.Int("queue", cap(b.pub.queue)),
			slog.Int64("queued_bytes", b.pub.queued.Load()), slog.Uint64("dropped_total", dropped))
	}
	return false
}

// maxBatch bounds the number of frames written in one round trip.
const maxBatch = 512

// publishLoop drains the queue: everything found in it goes out in one
// round trip, in queue order.
func (b *Builder) publishLoop() {
	b.pubGoid.Store(goid())
	defer close(b.pubDone)
	p := &b.pub
	batch := make([]*outFrame, 0, maxBatch)
	for {
		// Close first: once it is called, what is queued goes out in the
		// flush, within its deadline, not in a write of its own.
		select {
		case <-b.done:
			b.flushQueue(batch[:0])
			return
		default:
		}
		select {
		case f := <-p.queue:
			batch = append(batch[:0], f)
		case <-b.done:
			b.flushQueue(batch[:0])
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case f := <-p.queue:
				batch = append(batch, f)
			default:
				break fill
			}
		}
		b.completeBatch(batch, b.writeBatch(context.Background(), batch))
	}
}

// completeBatch reports the outcome of a batch to its frames and frees their
// room in the queue.
func (b *Builder) completeBatch(batch []*outFrame, err error) {
	var n int64
	for i, f := range batch {
		n += int64(f.size())
		f.finish(err)
		f.release()
		batch[i] = nil
	}
	b.pub.unreserve(n)
}

// flushQueue writes what is still queued at Close, until PublishTimeout
// after Close was called (a graceful shutdown keeps its last broadcasts and
// the sessions the server persists while closing; a write already in flight
// at Close counts in that time), and drops the rest.
func (b *Builder) flushQueue(batch []*outFrame) {
	ctx, cancel := context.WithDeadline(context.Background(), b.flushUntil)
	defer cancel()
	for ctx.Err() == nil {
		batch = batch[:0]
	fill:
		for len(batch) < maxBatch {
			select {
			case f := <-b.pub.queue:
				batch = append(batch, f)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		b.completeBatch(batch, b.writeBatch(ctx, batch))
	}
	b.drainQueue()
}

// writeBatch writes one batch and reports the outcome to the health machine.
func (b *Builder) writeBatch(ctx context.Context, batch []*outFrame) error {
	if b.load() == StateDegraded {
		// Redis went away while these frames waited: do not spend
		// PublishTimeout on each batch.
		b.stats.skippedDegraded.Add(uint64(len(batch)))
		return errSkipped
	}
	ctx, cancel := context.WithTimeout(ctx, b.publishDeadline)
	defer cancel()
	if err := b.t.write(ctx, batch); err != nil {
		b.stats.publishErrors.Add(uint64(len(batch)))
		b.log.Debug("publish failed", slog.Int("frames", len(batch)), slog.Any("error", err))
		b.report(sourcePublisher, false, err)
		return err
	}
	b.stats.published.Add(uint64(len(batch)))
	b.health.published.Store(true)
	b.report(sourcePublisher, true, nil)
	return nil
}

// drainQueue releases the frames left after the flush at Close.
func (b *Builder) drainQueue() {
	for {
		select {
		case f := <-b.pub.queue:
			f.finish(errSkipped)
			f.release()
		default:
			return
		}
	}
}
