package redisadapter

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ownClient returns the client the Builder runs its commands on: a client of
// its own built from the options of c, with ContextTimeoutEnabled set so that
// a context's deadline bounds every read and write (go-redis otherwise bounds
// a read by ReadTimeout only, 3s by default), no retries (a retried PUBLISH or
// XADD whose reply was lost would be delivered twice), and no idle
// connections kept open in advance. Closing it at Close interrupts the
// commands in flight. owned is false for client types it cannot rebuild
// (a *redis.Ring, or another UniversalClient): c itself is used, and the time
// bounds then also depend on c's ReadTimeout.
//
// Hooks added to c with AddHook do not apply to the Builder's own client.
func ownClient(c redis.UniversalClient) (rdb redis.UniversalClient, owned bool) {
	switch t := c.(type) {
	case *redis.Client:
		o := *t.Options()
		o.ContextTimeoutEnabled = true
		o.MaxRetries = -1
		o.MinIdleConns = 0
		return redis.NewClient(&o), true
	case *redis.ClusterClient:
		o := *t.Options()
		o.ContextTimeoutEnabled = true
		o.MaxRetries = -1
		o.MinIdleConns = 0
		return redis.NewClusterClient(&o), true
	}
	return c, false
}

// readTimeoutOf returns the client's read timeout, or 0 when unknown or
// disabled.
func readTimeoutOf(c redis.UniversalClient) time.Duration {
	var rt time.Duration
	switch t := c.(type) {
	case *redis.Client:
		rt = t.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = t.Options().ReadTimeout
	}
	return max(rt, 0)
}

// clientAddr describes the Redis endpoint for log lines.
func clientAddr(c redis.UniversalClient) string {
	switch t := c.(type) {
	case *redis.Client:
		return t.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(t.Options().Addrs, ",")
	case *redis.Ring:
		return "ring"
	}
	return fmt.Sprintf("%T", c)
}

// goid returns the id of the calling goroutine, from its stack header
// ("goroutine 42 [running]:"). Close uses it to tell whether it runs on one of
// the Builder's own goroutines.
func goid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseInt(string(b), 10, 64)
	return id
}
