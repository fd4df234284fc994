package testkit

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakPatience is how long VerifyNoLeaks waits for goroutines that are still
// winding down before it reports them.
const leakPatience = 5 * time.Second

// IgnoreRedial ignores go-redis' background redial of a connection pool whose
// dials failed: that goroutine exits up to a second after the pool is
// closed, and a test that stopped Redis can leave one behind for the next
// test to see. Clients belong to the tests (the adapter creates none).
var IgnoreRedial = goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial")

// IgnoreEngineTimers ignores the goroutines of Engine.IO timers
// (utils.SetTimeout). VerifyNoLeaks does not ignore them by default, since
// a server left open shows up as its ping timers. A test may pass it when
// socket.io/v2 v2.5.0's connect-timer race is expected and its server's
// ConnectTimeout exceeds the leak check's patience: socket.(*Client).setup
// stores the connect timer after registering its packet listeners, so a fast
// client's join (or close) may clear it before it is stored, and the timer's
// goroutine lives until the timer fires. The fixture's servers use a
// ConnectTimeout (DefaultConnectTimeout) no longer than the patience, and
// the timer starts before the check does, so it fires in time.
var IgnoreEngineTimers = goleak.IgnoreAnyFunction("github.com/zishang520/engine.io/v2/utils.SetTimeout.func1")

// VerifyNoLeaks registers a cleanup that fails t when goroutines started
// during the test are still running, after retrying for a few seconds for
// those that are winding down. Goroutines running when it is called are
// ignored, and so are those named by IgnoreRedial and by opts. Call it first
// in a test, so that its cleanup runs after every other one (servers,
// clients, processes).
func VerifyNoLeaks(t *testing.T, opts ...goleak.Option) {
	t.Helper()
	opts = append([]goleak.Option{goleak.IgnoreCurrent(), IgnoreRedial}, opts...)
	t.Cleanup(func() {
		deadline := time.Now().Add(leakPatience)
		for {
			err := goleak.Find(opts...)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines left behind: %v", err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
