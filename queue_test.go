package redisadapter

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/redis/go-redis/v9"
)

// The publisher's bounds: the queue is bounded in bytes, not only in frames
// (issue 11, item 6), and the probe that restores the publisher's health
// starts its backoff again after a publish succeeded, in every mode (issue
// 10).

const (
	// queueBound is Options.PublishQueueBytes of TestPublishQueueBoundedInBytes
	// (default 64 MiB; smaller here to keep the test light).
	queueBound = 8 << 20
	// queuePayload is the size of each broadcast's payload.
	queuePayload = 1 << 20
	// queueBroadcasts is the number of broadcasts: eight times the bound.
	queueBroadcasts = 64
	// queueHeapMargin is added to the bound for the heap: the payload
	// itself, the frame being encoded and the local delivery's encoding
	// (a few MiB), and the test's own allocations between two GCs.
	queueHeapMargin = 24 << 20
)

// TestPublishQueueBoundedInBytes broadcasts, in every mode, 64 payloads of
// 1 MiB from one goroutine (as a chat server's loop would), each followed by
// a small broadcast to a local client, while Redis is frozen behind a proxy.
// The publish queue never holds more than PublishQueueBytes
// (Stats().QueueBytes, sampled every millisecond); every broadcast not
// written is counted; the live heap (sampled every 10ms) stays under the
// bound plus a margin; and the local client gets every small broadcast, in
// order.
//
// Which counter takes the frames beyond the bound: the broadcast that finds
// the queue full waits for room up to PublishTimeout (PublishDropped when it
// gets none); the first write fails at PublishTimeout too, the adapter goes
// degraded, and from then on broadcasts skip Redis (SkippedDegraded). Against
// a frozen Redis the failed write comes first, so the rest are counted as
// skipped; both are logged.
//
// On the old code (9e907aa) the queue held 8,192 frames of any size: the 64
// MiB of this test (and gigabytes with more traffic) sat in the queue while
// the first write hung.
func TestPublishQueueBoundedInBytes(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		env := envFor(t, m)
		if m.NeedsRealRedis && !env.Real {
			t.Skipf("%s needs a real Redis", m.Name)
		}
		testkit.VerifyNoLeaks(t)
		o := envOptions(env)
		proxy := testkit.NewProxy(t, o.Addr)
		o.Addr = proxy.Addr()
		mode := closeModeWith(m, func(opts *Options) {
			opts.PublishQueueBytes = queueBound
			opts.PublishTimeout = time.Second
		})
		rdb := redis.NewClient(o)
		t.Cleanup(func() { _ = rdb.Close() })
		nd := testkit.NewNode(t, mode.New(rdb, testkit.UniqueKey(t)))
		b := nd.B.(*Builder)
		testkit.WaitFor(t, "connected", func() bool { return b.State() == StateConnected })
		cl, s := nd.Connect(t, "/")
		s.Join("room1")

		payload := strings.Repeat("x", queuePayload)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		baseHeap := ms.HeapAlloc

		var maxQueue, maxHeap atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if q := int64(b.Stats().QueueBytes); q > maxQueue.Load() {
						maxQueue.Store(q)
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					if h := int64(ms.HeapAlloc); h > maxHeap.Load() {
						maxHeap.Store(h)
					}
				}
			}
		}()

		proxy.Freeze()
		before := b.Stats()
		start := time.Now()
		for i := 0; i < queueBroadcasts; i++ {
			// The large broadcasts go to a room no local socket is in:
			// Socket.IO's own buffers for a local client (tens of MiB for
			// a client reading slower than this loop) are not the
			// adapter's. A small one to the local client follows each.
			nd.Ns("/").To("elsewhere").Emit("big", i, payload)
			nd.Ns("/").To("room1").Emit("small", i)
		}
		elapsed := time.Since(start)
		testkit.WaitFor(t, "every broadcast accounted for", func() bool {
			st := b.Stats()
			return st.QueueLength == 0 &&
				(st.PublishDropped-before.PublishDropped)+(st.SkippedDegraded-before.SkippedDegraded)+(st.PublishErrors-before.PublishErrors) >= 2*queueBroadcasts
		})
		close(stop)
		wg.Wait()
		st := b.Stats()
		dropped, skipped, failed := st.PublishDropped-before.PublishDropped, st.SkippedDegraded-before.SkippedDegraded, st.PublishErrors-before.PublishErrors
		t.Logf("%d broadcasts of %d KiB (and as many small ones) in %v: queue peak %d KiB (bound %d KiB); %d failed in the write, %d dropped after waiting for room, %d skipped as degraded; heap peak +%d KiB",
			queueBroadcasts, queuePayload>>10, elapsed.Round(time.Millisecond), maxQueue.Load()>>10, queueBound>>10,
			failed, dropped, skipped, (maxHeap.Load()-int64(baseHeap))>>10)
		if maxQueue.Load() > queueBound {
			t.Errorf("the publish queue held %d bytes, over its bound %d", maxQueue.Load(), queueBound)
		}
		if st.Published != before.Published {
			t.Errorf("%d frames published through a frozen Redis", st.Published-before.Published)
		}
		if got := dropped + skipped + failed; got != 2*queueBroadcasts {
			t.Errorf("%d broadcasts counted as not written, want %d", got, 2*queueBroadcasts)
		}
		if growth := maxHeap.Load() - int64(baseHeap); growth > queueBound+queueHeapMargin {
			t.Errorf("heap grew by %d MiB, over the bound plus margin (%d MiB)", growth>>20, (queueBound+queueHeapMargin)>>20)
		}
		evs := testkit.WaitEvents(t, cl, "small", queueBroadcasts)
		for i, ev := range evs {
			if len(ev.Args) != 1 || ev.Args[0] != float64(i) {
				t.Fatalf("local broadcast %d: got %v", i, ev.Args)
			}
		}
		proxy.Thaw()
	})
}

// queueStates records the transitions of one Builder with their times.
type queueStates struct {
	mu     sync.Mutex
	events []queueState
}

type queueState struct {
	at       time.Time
	from, to State
}

func (r *queueStates) record(from, to State, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, queueState{time.Now(), from, to})
}

// last returns the time of the last transition to st.
func (r *queueStates) last(st State) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].to == st {
			return r.events[i].at, true
		}
	}
	return time.Time{}, false
}

func (r *queueStates) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// TestProbeBackoffResetsAfterPublish: while PING works but every publish
// fails (an ACL user whose publishing commands are revoked: PUBLISH, SPUBLISH
// and XADD), the probe's backoff carries over from one failure to the next
// (100, 200, 400ms: without it the adapter would flip between degraded and
// connected every 100ms). Once a publish succeeds (the commands granted
// again), the next failure is back to the first step: connected again about
// 100ms (±20% jitter) after it, in every mode.
//
// On the old code (9e907aa) the sharded builder's write never recorded a
// successful publish, so after three failures the fourth kept it degraded
// 800ms, the next 1.6s, and so on up to MaxReconnectDelay (issue 10; classic
// 80-120ms, sharded 100ms growing to 4.4s).
func TestProbeBackoffResetsAfterPublish(t *testing.T) {
	const (
		user     = "adapter"
		password = "s3cret-adapter-pw"
		// carried is the number of failures in a row before the publish
		// that succeeds: the backoff reaches 400ms, the next step 800ms.
		carried = 3
		// firstStepBound bounds the time from a failure to connected after
		// a successful publish: the first step is 80-120ms, plus a PING;
		// the carried step would be at least 640ms.
		firstStepBound = 450 * time.Millisecond
	)
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		testkit.VerifyNoLeaks(t)
		proc := testkit.StartRedis(t)
		admin := proc.Client(t)
		ctx := context.Background()
		setUser := func(publish string) {
			t.Helper()
			if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+password, "~*", "&*", "+@all",
				publish+"publish", publish+"spublish", publish+"xadd").Err(); err != nil {
				t.Fatalf("ACL SETUSER: %v", err)
			}
		}
		setUser("+")
		env := proc.Env(func(o *redis.Options) { o.Username, o.Password = user, password })
		states := &queueStates{}
		mode := closeModeWith(m, func(o *Options) {
			o.OnStateChange = states.record
			o.MaxReconnectDelay = 5 * time.Second
		})
		nd := testkit.NewNode(t, mode.New(env.Client(t), testkit.UniqueKey(t)))
		b := nd.B.(*Builder)

		// fail publishes once while publishing is revoked and returns how
		// long the adapter stayed degraded.
		fail := func() time.Duration {
			t.Helper()
			testkit.WaitFor(t, "connected", func() bool { return b.State() == StateConnected })
			n := states.count()
			before := b.Stats().PublishErrors
			nd.Ns("/").Emit("x", 1)
			testkit.WaitFor(t, "the publish fails", func() bool { return b.Stats().PublishErrors > before })
			testkit.WaitFor(t, "connected again", func() bool {
				return states.count() >= n+2 && b.State() == StateConnected
			})
			down, _ := states.last(StateDegraded)
			up, _ := states.last(StateConnected)
			return up.Sub(down)
		}
		succeed := func() {
			t.Helper()
			testkit.WaitFor(t, "connected", func() bool { return b.State() == StateConnected })
			before := b.Stats().Published
			nd.Ns("/").Emit("x", 2)
			testkit.WaitFor(t, "the publish succeeds", func() bool { return b.Stats().Published > before })
		}

		testkit.WaitFor(t, "connected", func() bool { return b.State() == StateConnected })
		setUser("-")
		var carriedSteps []time.Duration
		for i := 0; i < carried; i++ {
			carriedSteps = append(carriedSteps, fail())
		}
		var after []time.Duration
		for round := 0; round < 2; round++ {
			setUser("+")
			succeed()
			setUser("-")
			d := fail()
			after = append(after, d)
			if d > firstStepBound {
				t.Errorf("round %d: degraded %v after a failure that followed a successful publish, want the first backoff step (about 100ms, bound %v)",
					round, d, firstStepBound)
			}
		}
		setUser("+")
		t.Logf("degraded per failure: %v while publishing fails; %v after each successful publish", fmtDurations(carriedSteps), fmtDurations(after))
		if last := carriedSteps[len(carriedSteps)-1]; last < 2*minBackoff {
			t.Errorf("the backoff did not carry over while publishes kept failing: %v", fmtDurations(carriedSteps))
		}
	})
}

func fmtDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Millisecond).String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}
