package testkit

import (
	"fmt"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// Mode says how a server's adapter is built: the transport under test and
// its options.
type Mode struct {
	// Name names the mode in test names and messages.
	Name string
	// New builds the adapter constructor of one server on its own client
	// rdb, with the cluster's channel prefix key.
	New func(rdb redis.UniversalClient, key string) Builder
	// NeedsRealRedis makes the fixture skip the test on miniredis (sharded
	// pub/sub, streams features miniredis lacks).
	NeedsRealRedis bool
	// Ready, when set, is an extra condition WaitServers waits for on every
	// server's adapter of every namespace once it counts the servers (for
	// instance: a sharded server's response channel is subscribed).
	Ready func(c *Cluster, a socket.Adapter) bool
	// ConnectTimeout is the servers' Socket.IO connect timeout;
	// DefaultConnectTimeout when zero.
	ConnectTimeout time.Duration
	// ServerOptions, when set, adjusts the options of every server before
	// it is created (for instance connection state recovery).
	ServerOptions func(*socket.ServerOptions)
}

// ClusterConfig describes a Cluster fixture for StartCluster.
type ClusterConfig struct {
	// Env is the Redis deployment.
	Env *Env
	// N is the number of servers.
	N int
	// Mode builds each server's adapter.
	Mode Mode
	// Nsps are the namespaces every server serves besides "/".
	Nsps []string
	// Key is the channel prefix the servers share; UniqueKey when empty.
	// A test sets it when the prefix must be known before the servers
	// start (ACL rules that name channels).
	Key string
}

// Cluster is a set of Socket.IO servers in one process, sharing one Redis
// deployment through the adapters their Mode builds: the multi-instance
// fixture of every transport.
type Cluster struct {
	// T is the test the fixture belongs to; its helpers fail it.
	T testing.TB
	// Env is the Redis deployment and Mode the servers' adapters.
	Env  *Env
	Mode Mode
	// Key is the channel prefix of the servers' adapters.
	Key string
	// Masters are administrative clients of the deployment's masters, as
	// Env.Masters returned them at the start.
	Masters []*redis.Client
	// Nodes are the servers, in start order (AddNode appends); closed
	// nodes stay in the slice.
	Nodes []*Node
	// Nsps are the namespaces of every server, "/" first.
	Nsps []string
}

// NewCluster starts n servers on env with the adapters of mode and
// namespaces "/" and nsps (see StartCluster).
func NewCluster(t *testing.T, env *Env, n int, mode Mode, nsps ...string) *Cluster {
	t.Helper()
	return StartCluster(t, ClusterConfig{Env: env, N: n, Mode: mode, Nsps: nsps})
}

// StartCluster starts the servers of cfg: it checks goroutine leaks around
// the test (VerifyNoLeaks, registered first so that it runs after every
// other cleanup), skips a mode that needs a real Redis on miniredis, starts
// each server with its own client (Env.Client) and adapter (Mode.New), and
// waits until every server counts all of them on every namespace
// (WaitServers). Every server is closed at the end of the test, before its
// client.
func StartCluster(t *testing.T, cfg ClusterConfig) *Cluster {
	t.Helper()
	if cfg.Mode.NeedsRealRedis && !cfg.Env.Real {
		t.Skipf("mode %s needs a real Redis; %s is not one (set REDIS_URL or install redis-server)", cfg.Mode.Name, cfg.Env.Name)
	}
	VerifyNoLeaks(t)
	c := &Cluster{T: t, Env: cfg.Env, Mode: cfg.Mode, Key: cfg.Key, Nsps: append([]string{"/"}, cfg.Nsps...)}
	if c.Key == "" {
		c.Key = UniqueKey(t)
	}
	c.Masters = cfg.Env.Masters(t)
	for i := 0; i < cfg.N; i++ {
		c.startNode()
	}
	c.WaitServers(cfg.N)
	return c
}

func (c *Cluster) startNode() *Node {
	c.T.Helper()
	rdb := c.Env.Client(c.T)
	ct := c.Mode.ConnectTimeout
	if ct == 0 {
		ct = DefaultConnectTimeout
	}
	nd := newNode(c.T, c.Mode.New(rdb, c.Key), ct, c.Nsps, c.Mode.ServerOptions)
	nd.Index, nd.RDB = len(c.Nodes), rdb
	c.Nodes = append(c.Nodes, nd)
	return nd
}

// AddNode starts one more server and waits until every live server counts
// them all.
func (c *Cluster) AddNode() *Node {
	c.T.Helper()
	nd := c.startNode()
	c.WaitServers(len(c.Live()))
	return nd
}

// Live returns the servers not closed.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, nd := range c.Nodes {
		if !nd.Closed() {
			out = append(out, nd)
		}
	}
	return out
}

// WaitServers waits until every live server counts n servers
// (Adapter().ServerCount()) on every namespace, then for Mode.Ready.
func (c *Cluster) WaitServers(n int) {
	c.T.Helper()
	for _, nd := range c.Live() {
		for _, nsp := range c.Nsps {
			a := nd.Ns(nsp).Adapter()
			WaitFor(c.T, fmt.Sprintf("server %d (%s on %s) counts %d servers on %s", nd.Index, c.Mode.Name, c.Env.Name, n, nsp),
				func() bool { return a.ServerCount() == int64(n) })
			if c.Mode.Ready != nil {
				WaitFor(c.T, fmt.Sprintf("server %d (%s) ready on %s", nd.Index, c.Mode.Name, nsp),
					func() bool { return c.Mode.Ready(c, a) })
			}
		}
	}
}

// Ns returns namespace nsp of server i.
func (c *Cluster) Ns(i int, nsp string) socket.Namespace { return c.Nodes[i].Ns(nsp) }

// Connect opens a real Socket.IO client to server i on nsp and returns it
// with its server-side socket (see Node.Connect).
func (c *Cluster) Connect(i int, nsp string) (*sioclient.Client, *socket.Socket) {
	c.T.Helper()
	return c.Nodes[i].Connect(c.T, nsp)
}

// ConnectEach connects one client to every live server on nsp, and returns
// the clients and their server-side sockets in server order.
func (c *Cluster) ConnectEach(nsp string) ([]*sioclient.Client, []*socket.Socket) {
	c.T.Helper()
	var cls []*sioclient.Client
	var socks []*socket.Socket
	for _, nd := range c.Live() {
		cl, s := nd.Connect(c.T, nsp)
		cls, socks = append(cls, cl), append(socks, s)
	}
	return cls, socks
}
