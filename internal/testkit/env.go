package testkit

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Env is a Redis deployment a multi-instance test runs on: a standalone
// embedded miniredis, a standalone real Redis (REDIS_URL or a private
// process), a Sentinel setup or a Redis Cluster. Tests may build their own
// (for instance with per-user credentials) by filling the fields.
type Env struct {
	// Name names the deployment in test names and messages.
	Name string
	// Client returns a new client of the deployment, closed at the end of
	// the test. Every server of a Cluster fixture gets its own.
	Client func(t testing.TB) redis.UniversalClient
	// Masters returns one plain client per master (one on a standalone
	// server), closed at the end of the test, for administrative commands
	// such as PUBSUB NUMSUB.
	Masters func(t testing.TB) []*redis.Client
	// Ordered reports that a server reads every channel on one connection,
	// so frames arrive in the order they were published (true on a
	// standalone server; on a cluster, channels on different masters are
	// not ordered).
	Ordered bool
	// Real reports a real Redis (not miniredis).
	Real bool

	// Redis is the Redis of EmbeddedOrURLEnv, nil otherwise.
	Redis *Redis
	// Proc is the process of ProcessEnv or RedisProc.Env, nil otherwise.
	Proc *RedisProc
	// RedisCluster is the cluster of ClusterEnv or RedisCluster.Env, nil
	// otherwise.
	RedisCluster *RedisCluster
}

// EmbeddedOrURLEnv returns the Redis of NewRedis as an environment: the real
// server named by REDIS_URL when set (Real is then true), an embedded
// miniredis otherwise.
func EmbeddedOrURLEnv(t testing.TB) *Env {
	t.Helper()
	r := NewRedis(t)
	name := "miniredis"
	if r.Real() {
		name = "REDIS_URL"
	}
	return &Env{
		Name:    name,
		Ordered: true,
		Real:    r.Real(),
		Redis:   r,
		Client:  func(t testing.TB) redis.UniversalClient { return r.Client(t) },
		Masters: func(t testing.TB) []*redis.Client { return []*redis.Client{r.Client(t)} },
	}
}

// ProcessEnv starts a private redis-server (StartRedis with extra arguments)
// and returns it as an environment: the sharded transport and the fault
// tests need Redis 7 features or control that miniredis and a shared Redis
// do not give. It skips the test without redis-server (fails under CI=true).
func ProcessEnv(t testing.TB, extra ...string) *Env {
	t.Helper()
	return StartRedis(t, extra...).Env(nil)
}

// Env returns the server as an environment. configure, when not nil,
// adjusts the options of the servers' clients (Env.Client), for instance
// their ReadTimeout; the administrative clients (Env.Masters) keep the
// defaults.
func (p *RedisProc) Env(configure func(*redis.Options)) *Env {
	return &Env{
		Name:    "redis-server",
		Ordered: true,
		Real:    true,
		Proc:    p,
		Client: func(t testing.TB) redis.UniversalClient {
			o := p.Options()
			if configure != nil {
				configure(o)
			}
			c := redis.NewClient(o)
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
		Masters: func(t testing.TB) []*redis.Client { return []*redis.Client{p.Client(t)} },
	}
}

// ClusterEnv starts a Redis Cluster of masters masters without replicas
// (StartRedisCluster) and returns it as an environment.
func ClusterEnv(t testing.TB, masters int) *Env {
	t.Helper()
	return StartRedisCluster(t, masters, 0).Env()
}

// Env returns the cluster as an environment: every server gets its own
// cluster client; Masters asks the cluster for its current masters.
func (rc *RedisCluster) Env() *Env {
	return &Env{
		Name:         "cluster",
		Ordered:      false,
		Real:         true,
		RedisCluster: rc,
		Client:       func(t testing.TB) redis.UniversalClient { return rc.Client(t) },
		Masters:      func(t testing.TB) []*redis.Client { return rc.MasterClients(t) },
	}
}

// NumSub returns PUBSUB NUMSUB of channel summed over masters, or -1 when a
// master does not answer.
func NumSub(masters []*redis.Client, channel string) int64 {
	var n int64
	for _, m := range masters {
		r, err := m.PubSubNumSub(context.Background(), channel).Result()
		if err != nil {
			return -1
		}
		n += r[channel]
	}
	return n
}

// ShardNumSub returns PUBSUB SHARDNUMSUB of channel summed over masters, or
// -1 when a master does not answer.
func ShardNumSub(masters []*redis.Client, channel string) int64 {
	var n int64
	for _, m := range masters {
		r, err := m.PubSubShardNumSub(context.Background(), channel).Result()
		if err != nil {
			return -1
		}
		n += r[channel]
	}
	return n
}
