package redisadapter

import (
	"os"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// The modes every behaviour is proven in. A table test runs its cases once
// per mode, on the Redis the mode can use: the embedded miniredis (or
// REDIS_URL) for the classic and streams transports, a private redis-server
// for the sharded one unless REDIS_URL names a real Redis 7.

// testOptions are the options every mode's servers share in tests:
// generous bounds, because the suite also runs on loaded 2-core machines
// where a 500ms publish deadline would degrade a starved sender.
func testOptions(key string) Options {
	return Options{Key: key, RequestsTimeout: time.Second, PublishTimeout: 2 * time.Second, JoinTimeout: 3 * time.Second}
}

// modeClassic is New with one pattern per namespace (Node's createAdapter).
func modeClassic(configure ...func(*Options)) testkit.Mode {
	return testkit.Mode{Name: "classic", New: func(rdb redis.UniversalClient, key string) testkit.Builder {
		o := testOptions(key)
		for _, c := range configure {
			c(&o)
		}
		return New(rdb, &o)
	}}
}

// modeRooms is New with Options.RoomSubscriptions.
func modeRooms(configure ...func(*Options)) testkit.Mode {
	m := modeClassic(append([]func(*Options){func(o *Options) { o.RoomSubscriptions = true }}, configure...)...)
	m.Name = "classic-rooms"
	return m
}

// modeSharded is NewSharded in one subscription mode.
func modeSharded(sm SubscriptionMode, configure ...func(*Options)) testkit.Mode {
	return testkit.Mode{
		Name:           "sharded-" + string(sm),
		NeedsRealRedis: true,
		New: func(rdb redis.UniversalClient, key string) testkit.Builder {
			o := ShardedOptions{Options: testOptions(key), SubscriptionMode: sm}
			for _, c := range configure {
				c(&o.Options)
			}
			return NewSharded(rdb, &o)
		},
		// The response channel must be subscribed before a request is sent.
		Ready: func(c *testkit.Cluster, a socket.Adapter) bool {
			ad := a.(*Adapter)
			ch := wire.NewClusterChannels(c.Key, ad.name, ad.b.uid)
			return testkit.ShardNumSub(c.Masters, ch.Private) == 1
		},
	}
}

// modeStreams is NewStreams, on a stream of the test's own.
func modeStreams(configure ...func(*StreamsOptions)) testkit.Mode {
	return testkit.Mode{
		Name: "streams",
		New: func(rdb redis.UniversalClient, key string) testkit.Builder {
			o := StreamsOptions{Options: testOptions(key), StreamName: key, SessionKeyPrefix: key + ":session:", BlockTime: time.Second}
			for _, c := range configure {
				c(&o)
			}
			return NewStreams(rdb, &o)
		},
		// Besides the response channel, the stream reader must know where
		// the stream ends: it reads from there, so a broadcast written
		// before would never reach this server. Every namespace of a test
		// shares one stream and one reader, whose first success makes the
		// adapter connected.
		Ready: func(c *testkit.Cluster, a socket.Adapter) bool {
			ad := a.(*Adapter)
			ch := wire.NewClusterChannels(c.Key, ad.name, ad.b.uid)
			return ad.b.State() == StateConnected && testkit.NumSub(c.Masters, ch.Private) == 1
		},
	}
}

// allModes are the modes of the table tests.
func allModes() []testkit.Mode {
	return []testkit.Mode{
		modeClassic(),
		modeRooms(),
		modeSharded(SubscriptionModeStatic),
		modeSharded(SubscriptionModeDynamic),
		modeSharded(SubscriptionModeDynamicPrivate),
		modeStreams(),
	}
}

// envFor returns the Redis a mode runs on in a table test: a private
// redis-server when the mode needs a real Redis and REDIS_URL is not set.
func envFor(t *testing.T, m testkit.Mode) *testkit.Env {
	t.Helper()
	if m.NeedsRealRedis && os.Getenv("REDIS_URL") == "" {
		return testkit.ProcessEnv(t)
	}
	return testkit.EmbeddedOrURLEnv(t)
}

// forEachMode runs fn as a subtest per mode.
func forEachMode(t *testing.T, modes []testkit.Mode, fn func(t *testing.T, m testkit.Mode)) {
	for _, m := range modes {
		t.Run(m.Name, func(t *testing.T) { fn(t, m) })
	}
}

// newModeCluster starts n servers of mode m, on the Redis envFor gives it.
func newModeCluster(t *testing.T, m testkit.Mode, n int, nsps ...string) *testkit.Cluster {
	t.Helper()
	return testkit.NewCluster(t, envFor(t, m), n, m, nsps...)
}

// builderOf returns the Builder of server i.
func builderOf(c *testkit.Cluster, i int) *Builder { return c.Nodes[i].B.(*Builder) }
