package redisadapter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io/v2/socket"
)

// waitTimeout bounds every wait for a condition in the tests.
const waitTimeout = 10 * time.Second

// testRedis is the Redis a test runs against: the real server named by
// REDIS_URL when it is set (CI sets it), an in-process miniredis otherwise.
type testRedis struct {
	mini *miniredis.Miniredis // nil on real Redis
	opts *redis.Options
}

func newTestRedis(t testing.TB) *testRedis {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("REDIS_URL: %v", err)
		}
		return &testRedis{opts: o}
	}
	m := miniredis.RunT(t)
	return &testRedis{mini: m, opts: &redis.Options{Addr: m.Addr()}}
}

// client returns a new go-redis client for this Redis, closed at the end of
// the test.
func (r *testRedis) client(t testing.TB) *redis.Client {
	t.Helper()
	o := *r.opts
	c := redis.NewClient(&o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// uniqueKey gives every test its own channel prefix so that tests sharing a
// real Redis never see each other's traffic.
func uniqueKey(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

// node is one Socket.IO server instance of a test cluster.
type node struct {
	io      *socket.Server
	http    *httptest.Server
	b       *Builder
	rdb     *redis.Client
	mu      sync.Mutex
	sockets map[string]chan *socket.Socket // by namespace
}

// cluster is a set of Socket.IO servers sharing one Redis, in one process.
type cluster struct {
	t     testing.TB
	redis *testRedis
	key   string
	nodes []*node
	nsps  []string
}

// newCluster starts n servers with namespaces "/" and every name in nsps.
// Each server has its own go-redis client and its own Builder.
func newCluster(t testing.TB, n int, opts *Options, nsps ...string) *cluster {
	t.Helper()
	if tt, ok := t.(*testing.T); ok {
		// Registered first, so it runs after every other cleanup.
		verifyNoLeaks(tt)
	}
	return newClusterOn(t, newTestRedis(t), n, opts, nsps...)
}

// newClusterOn is newCluster on a given Redis.
func newClusterOn(t testing.TB, r *testRedis, n int, opts *Options, nsps ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, redis: r, key: uniqueKey(t), nsps: append([]string{"/"}, nsps...)}
	for i := 0; i < n; i++ {
		c.nodes = append(c.nodes, c.startNode(opts))
	}
	t.Cleanup(c.close)
	for _, nsp := range c.nsps {
		c.waitSubscribed(nsp, n)
	}
	return c
}

func (c *cluster) startNode(opts *Options) *node {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o.Key = c.key
	nd := &node{rdb: c.redis.client(c.t), sockets: map[string]chan *socket.Socket{}}
	nd.b = New(nd.rdb, &o)
	so := socket.DefaultServerOptions()
	so.SetConnectTimeout(time.Second)
	if os.Getenv("NOADAPTER") == "" {
		so.SetAdapter(nd.b)
	}
	nd.io = socket.NewServer(nil, so)
	for _, nsp := range c.nsps {
		ch := make(chan *socket.Socket, 64)
		nd.sockets[nsp] = ch
		nd.io.Of(nsp, func(args ...any) { ch <- args[0].(*socket.Socket) })
	}
	nd.http = httptest.NewServer(nd.io.ServeHandler(nil))
	return nd
}

// close stops every server and Builder of the cluster.
func (c *cluster) close() {
	for _, nd := range c.nodes {
		nd.close()
	}
}

func (nd *node) close() {
	done := make(chan struct{})
	nd.io.Close(func(error) { close(done) })
	select {
	case <-done:
	case <-time.After(waitTimeout):
	}
	nd.http.Close()
	_ = nd.b.Close()
}

// waitSubscribed waits until n servers are subscribed to the request channel
// of nsp, as PUBSUB NUMSUB (the server count) sees them.
func (c *cluster) waitSubscribed(nsp string, n int) {
	c.t.Helper()
	rdb := c.redis.client(c.t)
	ch := newChannels(c.key, nsp, "").request
	waitFor(c.t, fmt.Sprintf("%d servers subscribed to %s", n, nsp), func() bool {
		m, err := rdb.PubSubNumSub(context.Background(), ch).Result()
		return err == nil && m[ch] == int64(n)
	})
}

// connect opens a real Socket.IO client to server i on nsp and returns it with
// its server-side socket.
func (c *cluster) connect(i int, nsp string) (*sioclient.Client, *socket.Socket) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl, err := sioclient.Dial(ctx, c.nodes[i].http.URL, nsp)
	if err != nil {
		if f, e := os.Create("/tmp/goroutines.txt"); e == nil {
			_ = pprof.Lookup("goroutine").WriteTo(f, 2)
			f.Close()
		}
		c.t.Fatalf("connect to server %d %s: %v", i, nsp, err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	select {
	case s := <-c.nodes[i].sockets[nsp]:
		return cl, s
	case <-ctx.Done():
		c.t.Fatalf("server %d never saw the connection on %s", i, nsp)
		return nil, nil
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEvents waits until cl received n events named name.
func waitEvents(t testing.TB, cl *sioclient.Client, name string, n int) []sioclient.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	evs, err := cl.WaitFor(ctx, name, n)
	if err != nil {
		t.Fatalf("waiting for %d %q events on client %s: %v (got %d)", n, name, cl.ID(), err, len(cl.Received(name)))
	}
	return evs
}

// httptestServer serves io on a new httptest.Server closed at the end of the
// test, and returns its base URL.
func httptestServer(t testing.TB, io *socket.Server) string {
	t.Helper()
	srv := httptest.NewServer(io.ServeHandler(nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

type typesSet = types.Set[socket.Room]

func newTypesSet() *typesSet { return types.NewSet[socket.Room]() }
