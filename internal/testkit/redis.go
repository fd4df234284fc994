package testkit

import (
	"os"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Redis is the Redis a test runs against: the real server named by REDIS_URL
// when it is set (CI sets it), an embedded miniredis otherwise. Tests that
// share a real Redis must use their own channel prefix (UniqueKey).
type Redis struct {
	mini *miniredis.Miniredis // nil on real Redis
	opts *redis.Options
}

// NewRedis returns the Redis of the test. The embedded miniredis is stopped
// at the end of the test; a real Redis is left as it is.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("REDIS_URL: %v", err)
		}
		return &Redis{opts: o}
	}
	m := miniredis.RunT(t)
	return &Redis{mini: m, opts: &redis.Options{Addr: m.Addr()}}
}

// Client returns a new go-redis client of this Redis, closed at the end of
// the test.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(r.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Options returns a copy of the client options of this Redis, which the
// caller may change (timeouts, credentials) before creating a client.
func (r *Redis) Options() *redis.Options {
	o := *r.opts
	return &o
}

// Addr returns the address of this Redis, host:port.
func (r *Redis) Addr() string { return r.opts.Addr }

// Mini returns the embedded miniredis, or nil on a real Redis.
func (r *Redis) Mini() *miniredis.Miniredis { return r.mini }

// Real reports whether this is a real Redis (REDIS_URL), not miniredis.
func (r *Redis) Real() bool { return r.mini == nil }
