package redisadapter

import (
	"reflect"
	"testing"
	"time"
)

// TestBroadcastAckOneResponsePerClient: as in Node, every client contributes
// one response, the first argument of its ack (nil for an ack without
// arguments), whether it is connected to the emitting server or another one.
func TestBroadcastAckOneResponsePerClient(t *testing.T) {
	rc := newRequestCluster(t, nil)
	for i, cl := range rc.clients {
		n := i + 1
		cl.OnAck("multi", func([]any) []any { return []any{n, "extra"} })
		cl.OnAck("empty", func([]any) []any { return []any{} })
	}
	done := make(chan result, 1)
	rc.nodes[0].io.Timeout(2*time.Second).Emit("multi", func(args []any, err error) { done <- result{args, err} })
	r := waitResult(t, done)
	if r.err != nil || len(r.args) != 3 {
		t.Fatalf("multi: err = %v, responses %v; want 3 responses, the first arguments", r.err, r.args)
	}
	if got := asNumbers(t, r.args); !reflect.DeepEqual(got, []float64{1, 2, 3}) {
		t.Fatalf("multi: responses = %v, want 1, 2, 3", got)
	}
	rc.nodes[0].io.Timeout(2*time.Second).Emit("empty", func(args []any, err error) { done <- result{args, err} })
	r = waitResult(t, done)
	if r.err != nil || !reflect.DeepEqual(r.args, []any{nil, nil, nil}) {
		t.Fatalf("empty: err = %v, responses %#v; want [nil nil nil]", r.err, r.args)
	}
}
