package redisadapter

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/zishang520/socket.io/v2/socket"
)

// Broadcasts with acknowledgements (io.Timeout(d).Emit(ev, ..., ack)), in
// every mode: the acks of the clients of every server, binary acks, one
// response per client, timeouts, requests that could not be published, and
// ServerCount called by other goroutines while emits are in flight.

// longTimeout is the timeout of emits that must complete long before it:
// one that waited for it would fail the test's wait (testkit.WaitTimeout).
const longTimeout = time.Minute

// emitWithAcks emits ev with args and an ack through op, and returns the
// replies.
func emitWithAcks(op *socket.BroadcastOperator, ev string, args ...any) replies {
	r := newReplies()
	_ = op.Emit(ev, append(args, socket.Ack(r.ack))...)
	return r
}

// sorted returns the numbers among vs (of any numeric type), sorted.
func sorted(vs []any) []float64 {
	var out []float64
	for _, v := range vs {
		switch r := reflect.ValueOf(v); {
		case r.CanInt():
			out = append(out, float64(r.Int()))
		case r.CanUint():
			out = append(out, float64(r.Uint()))
		case r.CanFloat():
			out = append(out, r.Float())
		}
	}
	sort.Float64s(out)
	return out
}

// flaky marshals to JSON on every call but the first. The adapter normalises
// a packet (the first call) before it encodes it for Redis: that fails, so
// the request cannot be encoded, while the server's own encoder (later
// calls) delivers the packet to the local clients.
type flaky struct{ calls atomic.Int32 }

func (f *flaky) MarshalJSON() ([]byte, error) {
	if f.calls.Add(1) == 1 {
		return nil, errors.New("flaky: not this time")
	}
	return []byte(`"x"`), nil
}

// TestBroadcastWithAcks: the acks of the matching clients of every server
// reach the emitter, one response per client.
func TestBroadcastWithAcks(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		shared := newModeCluster(t, m, 3)
		t.Run("acks from the clients of every server", func(t *testing.T) {
			c := bind(shared, t)
			cls, _ := connectEach(t, c, "/")
			for i, cl := range cls {
				n := i + 1
				cl.OnAck("test", func([]any) []any { return []any{n} })
			}
			r := emitWithAcks(c.Nodes[0].IO.Timeout(longTimeout), "test", 1)
			got := r.wait(t)
			if got.err != nil {
				t.Fatalf("err = %v", got.err)
			}
			if n := numbers(t, got.args); !reflect.DeepEqual(n, []float64{1, 2, 3}) {
				t.Fatalf("responses = %v, want 1, 2, 3", n)
			}
			waitSettled(t, c, 0)
			r.once(t)
		})
		t.Run("binary acks to a room", func(t *testing.T) {
			c := bind(shared, t)
			cls, socks := connectEach(t, c, "/")
			socks[1].Join("acked")
			socks[2].Join("acked")
			for _, cl := range cls {
				cl.OnAck("test", func([]any) []any { return []any{[]byte{1, 2}} })
			}
			r := emitWithAcks(c.Nodes[0].IO.To("acked").Timeout(longTimeout), "test", []byte{9})
			got := r.wait(t)
			if got.err != nil || len(got.args) != 2 {
				t.Fatalf("err = %v, %d responses, want 2", got.err, len(got.args))
			}
			for _, v := range got.args {
				if b := asBytes(v); string(b) != "\x01\x02" {
					t.Fatalf("response %#v (%T), want binary 1, 2", v, v)
				}
			}
			for i, cl := range cls[1:] {
				if evs := cl.Received("test"); len(evs) != 1 || !evs[0].Binary || string(asBytes(evs[0].Args[0])) != "\x09" {
					t.Errorf("client on server %d received %#v", i+1, evs)
				}
			}
			c.Fence("/", cls...)
			if n := len(cls[0].Received("test")); n != 0 {
				t.Fatalf("the client outside the room received %d events", n)
			}
			waitSettled(t, c, 0)
			r.once(t)
		})
		t.Run("no matching client completes at once", func(t *testing.T) {
			c := bind(shared, t)
			connectEach(t, c, "/")
			r := emitWithAcks(c.Nodes[0].IO.To("nobody").Timeout(longTimeout), "test")
			if got := r.wait(t); got.err != nil || len(got.args) != 0 {
				t.Fatalf("err = %v, responses = %v", got.err, got.args)
			}
			waitSettled(t, c, 0)
			r.once(t)
		})
		t.Run("a silent client gives the timeout error with the other acks", func(t *testing.T) {
			c := bind(shared, t)
			cls, _ := connectEach(t, c, "/")
			for i, cl := range cls[:2] {
				n := i + 1
				cl.OnAck("test", func([]any) []any { return []any{n} })
			}
			r := emitWithAcks(c.Nodes[0].IO.Timeout(500*time.Millisecond), "test")
			got := r.wait(t)
			if got.err == nil || got.err.Error() != "operation has timed out" {
				t.Fatalf("err = %v, want the server's timeout error", got.err)
			}
			if n := numbers(t, got.args); !reflect.DeepEqual(n, []float64{1, 2}) {
				t.Fatalf("responses = %v, want 1, 2", n)
			}
			waitSettled(t, c, 0)
			r.once(t)
		})
		t.Run("one response per client: its first argument", func(t *testing.T) {
			// As in Node, whether the client is on the emitting server or
			// another one; nil for an ack without arguments.
			c := bind(shared, t)
			cls, _ := connectEach(t, c, "/")
			for i, cl := range cls {
				n := i + 1
				cl.OnAck("multi", func([]any) []any { return []any{n, "extra"} })
				cl.OnAck("empty", func([]any) []any { return []any{} })
			}
			r := emitWithAcks(c.Nodes[0].IO.Timeout(longTimeout), "multi")
			got := r.wait(t)
			if got.err != nil || len(got.args) != 3 {
				t.Fatalf("multi: err = %v, responses %v; want 3 responses, the first arguments", got.err, got.args)
			}
			if n := numbers(t, got.args); !reflect.DeepEqual(n, []float64{1, 2, 3}) {
				t.Fatalf("multi: responses = %v, want 1, 2, 3", n)
			}
			r2 := emitWithAcks(c.Nodes[0].IO.Timeout(longTimeout), "empty")
			if got := r2.wait(t); got.err != nil || !reflect.DeepEqual(got.args, []any{nil, nil, nil}) {
				t.Fatalf("empty: err = %v, responses %#v; want [nil nil nil]", got.err, got.args)
			}
			waitSettled(t, c, 0)
			r.once(t)
			r2.once(t)
		})
		t.Run("a request that could not be published completes with the local acks", func(t *testing.T) {
			// The other servers can never answer a request that was not
			// published: the emit completes as soon as the local clients
			// acked, not at its timeout.
			c := bind(shared, t)
			cls, _ := connectEach(t, c, "/")
			for _, cl := range cls {
				cl.OnAck("test", func(args []any) []any { return []any{fmt.Sprint(args...)} })
			}
			b := builderOf(c, 0)
			before := b.Stats().EncodeErrors
			r := emitWithAcks(c.Nodes[0].IO.Timeout(longTimeout), "test", &flaky{})
			got := r.wait(t)
			if got.err != nil || !reflect.DeepEqual(got.args, []any{"x"}) {
				t.Fatalf("err = %v, responses %#v; want the local client's ack", got.err, got.args)
			}
			if n := b.Stats().EncodeErrors - before; n != 1 {
				t.Errorf("%d encoding errors counted, want 1", n)
			}
			c.Fence("/", cls...)
			for i, cl := range cls[1:] {
				if n := len(cl.Received("test")); n != 0 {
					t.Errorf("client on server %d received %d events of an unpublished request", i+1, n)
				}
			}
			waitSettled(t, c, 0)
			r.once(t)
		})
		t.Run("ServerCount called by other goroutines never takes an emit's window", func(t *testing.T) {
			// socket.io/v2 reads the server count the emitting goroutine
			// stores after its ServerCount call from the ack callbacks; the
			// adapter hands the other servers' counts over inside that
			// call. A monitoring ServerCount on another goroutine must not
			// take that hand-over: the emitting call would then count the
			// servers again, and expect answers that will never come from
			// a request that was not published (every other emit here), or
			// the callbacks would run on the wrong goroutine (a data race
			// in the server under -race).
			const emitters, emits, monitors = 2, 20, 3
			c := bind(shared, t)
			cls, _ := connectEach(t, c, "/")
			for i, cl := range cls {
				n := i + 1
				cl.OnAck("count", func(args []any) []any {
					if len(args) == 3 {
						return []any{args[2]} // the value of an unpublished emit
					}
					return []any{n}
				})
			}
			a := c.Ns(0, "/").Adapter()
			stop := make(chan struct{})
			var mon sync.WaitGroup
			var monCalls, monBad atomic.Int64
			for g := 0; g < monitors; g++ {
				mon.Add(1)
				go func() {
					defer mon.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if n := a.ServerCount(); n != 3 {
							monBad.Store(n)
						}
						monCalls.Add(1)
					}
				}()
			}
			var em sync.WaitGroup
			errs := make(chan string, emitters*emits)
			for e := 0; e < emitters; e++ {
				em.Add(1)
				go func() {
					defer em.Done()
					for k := 0; k < emits; k++ {
						args, want := []any{e, k}, "[1 2 3]"
						if k%2 == 1 {
							// Not published: only the local client acks.
							args, want = append(args, &flaky{}), "[x]"
						}
						r := emitWithAcks(c.Nodes[0].IO.Timeout(longTimeout), "count", args...)
						select {
						case got := <-r:
							values := fmt.Sprint(got.args)
							if len(sorted(got.args)) == len(got.args) {
								values = fmt.Sprint(sorted(got.args))
							}
							if got.err != nil || values != want {
								errs <- fmt.Sprintf("emit %d.%d: err %v, responses %v, want %s", e, k, got.err, got.args, want)
							}
						case <-time.After(testkit.WaitTimeout):
							errs <- fmt.Sprintf("emit %d.%d never completed", e, k)
							return
						}
					}
				}()
			}
			em.Wait()
			close(stop)
			mon.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			if n := monBad.Load(); n != 0 {
				t.Errorf("a monitoring ServerCount returned %d, want 3", n)
			}
			t.Logf("%d monitoring ServerCount calls during %d emits with acks", monCalls.Load(), emitters*emits)
			waitSettled(t, c, 0)
		})
	})
}
