package testkit_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
)

// fakeTB records a fatal failure instead of failing the real test.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// runFake runs fn with a fakeTB on its own goroutine (Fatalf exits it) and
// returns the recorded failure.
func runFake(t *testing.T, fn func(tb testing.TB)) string {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.fatal
}

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	testkit.WaitFor(t, "three polls", func() bool { return n.Add(1) >= 3 })

	start := time.Now()
	msg := runFake(t, func(tb testing.TB) {
		testkit.WaitForWithin(tb, 50*time.Millisecond, "the impossible", func() bool { return false })
	})
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Errorf("WaitForWithin gave up after %v, want about 50ms", d)
	}
	if !strings.Contains(msg, "the impossible") {
		t.Errorf("failure %q does not say what it waited for", msg)
	}
}

func TestUniqueKeyAndFreePort(t *testing.T) {
	a, b := testkit.UniqueKey(t), testkit.UniqueKey(t)
	if a == b || !strings.HasPrefix(a, "test-") || len(a) != len("test-")+8 {
		t.Errorf("UniqueKey: %q, %q", a, b)
	}
	if p := testkit.FreePort(t); p <= 0 || p > 65535 {
		t.Errorf("FreePort = %d", p)
	}
}
