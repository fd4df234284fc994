package testkit

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// Builder is what the fixture needs of an adapter constructor: the adapter
// of each namespace, and Close, which stops what the constructor owns.
type Builder interface {
	socket.AdapterConstructor
	Close() error
}

// DefaultConnectTimeout is the Socket.IO connect timeout of the fixture's
// servers: how long a connection may take to join its namespace (which
// includes the adapter's join of the socket's own room). It does not exceed
// VerifyNoLeaks' patience, so a connect timer left behind by socket.io/v2's
// race (see IgnoreEngineTimers) fires before the leak check gives up.
const DefaultConnectTimeout = 5 * time.Second

// Node is one Socket.IO server of a test: its server, its HTTP endpoint and
// its adapter constructor, with the server-side sockets of new connections
// kept for Connect.
type Node struct {
	// Index is the node's position in its Cluster (0 for a lone node).
	Index int
	// IO is the Socket.IO server.
	IO *socket.Server
	// HTTP serves IO; URL is its base URL.
	HTTP *httptest.Server
	URL  string
	// B is the adapter constructor of IO (nil for the server's default
	// in-memory adapter).
	B Builder
	// RDB is the Redis client B was built on, when a Cluster built it.
	RDB redis.UniversalClient

	mu       sync.Mutex
	accepted map[string]map[socket.SocketId]*socket.Socket // by namespace, not yet claimed by Connect
	notify   chan struct{}                                 // closed and replaced on every new socket
	once     sync.Once
	closed   bool
}

// NewNode starts a Socket.IO server with adapter constructor b (nil: the
// server's default in-memory adapter) and namespaces "/" and nsps, served
// by an httptest server, with connect timeout DefaultConnectTimeout. The
// node is closed at the end of the test (Close).
func NewNode(t testing.TB, b Builder, nsps ...string) *Node {
	t.Helper()
	return newNode(t, b, DefaultConnectTimeout, append([]string{"/"}, nsps...), nil)
}

func newNode(t testing.TB, b Builder, connectTimeout time.Duration, nsps []string, configure func(*socket.ServerOptions)) *Node {
	t.Helper()
	nd := &Node{B: b, accepted: map[string]map[socket.SocketId]*socket.Socket{}, notify: make(chan struct{})}
	so := socket.DefaultServerOptions()
	so.SetConnectTimeout(connectTimeout)
	if b != nil {
		so.SetAdapter(b)
	}
	if configure != nil {
		configure(so)
	}
	nd.IO = socket.NewServer(nil, so)
	for _, nsp := range nsps {
		nd.accepted[nsp] = map[socket.SocketId]*socket.Socket{}
		nd.IO.Of(nsp, func(args ...any) { nd.accept(nsp, args[0].(*socket.Socket)) })
	}
	nd.HTTP = httptest.NewServer(nd.IO.ServeHandler(nil))
	nd.URL = nd.HTTP.URL
	t.Cleanup(nd.Close)
	return nd
}

func (nd *Node) accept(nsp string, s *socket.Socket) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.accepted[nsp][s.Id()] = s
	close(nd.notify)
	nd.notify = make(chan struct{})
}

// Ns returns the server's namespace nsp.
func (nd *Node) Ns(nsp string) socket.Namespace { return nd.IO.Of(nsp, nil) }

// Connect opens a real Socket.IO client (closed at the end of the test) to
// the server on nsp, one of the node's namespaces, and returns it with its
// server-side socket, once the server's connection handler has run.
func (nd *Node) Connect(t testing.TB, nsp string) (*sioclient.Client, *socket.Socket) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	cl, err := sioclient.Dial(ctx, nd.URL, nsp)
	if err != nil {
		t.Fatalf("connect to server %d on %s: %v", nd.Index, nsp, err)
	}
	return cl, nd.Accept(t, nsp, cl)
}

// Accept returns the server-side socket of cl, a client the caller
// connected to the server on nsp (for instance with Client.Reconnect), once
// the server's connection handler has run; cl is closed at the end of the
// test.
func (nd *Node) Accept(t testing.TB, nsp string, cl *sioclient.Client) *socket.Socket {
	t.Helper()
	t.Cleanup(func() { _ = cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	id := socket.SocketId(cl.ID())
	for {
		nd.mu.Lock()
		byID, ok := nd.accepted[nsp]
		if !ok {
			nd.mu.Unlock()
			t.Fatalf("server %d has no namespace %s in the fixture", nd.Index, nsp)
		}
		s, found := byID[id]
		delete(byID, id)
		notify := nd.notify
		nd.mu.Unlock()
		if found {
			return s
		}
		select {
		case <-notify:
		case <-ctx.Done():
			t.Fatalf("server %d never ran its connection handler for %s on %s", nd.Index, id, nsp)
			return nil
		}
	}
}

// Close stops the server (waiting up to WaitTimeout), its HTTP endpoint,
// then its adapter constructor. It is idempotent, and runs at the end of
// the test.
func (nd *Node) Close() {
	nd.once.Do(func() {
		nd.mu.Lock()
		nd.closed = true
		nd.mu.Unlock()
		done := make(chan struct{})
		nd.IO.Close(func(error) { close(done) })
		select {
		case <-done:
		case <-time.After(WaitTimeout):
		}
		nd.HTTP.Close()
		if nd.B != nil {
			_ = nd.B.Close()
		}
	})
}

// Closed reports whether Close was called.
func (nd *Node) Closed() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.closed
}
