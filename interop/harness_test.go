//go:build interop

// Package interop proves that Go servers using redisadapter and Node.js
// servers using the official Node adapters form one Socket.IO cluster, for
// each transport: classic (@socket.io/redis-adapter's createAdapter; the Go
// servers with a pattern per namespace, then with room subscriptions), sharded
// (createShardedAdapter) and streams (@socket.io/redis-streams-adapter, with
// connection state recovery). Each suite starts its own redis-server, two
// Node servers, two Go servers in this process and a driver of real
// socket.io-client clients (clients.js), runs every cluster operation from
// every server and checks the clients and servers of both languages.
//
// Run with: go test -tags interop ./interop/   (after `npm ci` in interop/)
package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter"
	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/redis/go-redis/v9"
)

const (
	// requestsTimeout is the adapters' requestsTimeout, Go and Node alike
	// (classic; the sharded and streams suites say theirs).
	requestsTimeout = 1500 * time.Millisecond
	// waitTimeout bounds every wait for a condition.
	waitTimeout = 10 * time.Second
	// startTimeout bounds the start of one external process.
	startTimeout = 20 * time.Second
)

// The Node packages the suite needs, with the versions it was proven with
// (major.minor prefixes accepted).
var nodePackages = []struct{ name, version string }{
	{"socket.io", "4.8."},
	{"socket.io-client", "4.8."},
	{"@socket.io/redis-adapter", "8."},
	{"@socket.io/redis-emitter", "5."},
	{"@socket.io/redis-streams-adapter", "0.3."},
	{"redis", "4."},
}

// server is one member of the test cluster, Go or Node, driven through the
// control API (see server.js and goServer).
type server struct {
	name string // "go-0", "node-1"
	lang string // "Go" or "Node"
	url  string
	goS  *goServer // Go servers
	proc *proc     // Node servers
}

// clusterSpec describes one test cluster: two Go servers on one adapter mode
// and two Node servers running one script, on a redis-server.
type clusterSpec struct {
	suite string // for logs: "classic (Go: pattern)"
	// redis is the redis-server to use; nil starts one for the cluster.
	redis *redisServer
	// redisCluster runs the cluster on a Redis Cluster of three masters of
	// its own instead (testkit.StartRedisCluster): the Go servers on a
	// go-redis ClusterClient, the Node servers on node-redis createCluster.
	redisCluster bool
	// namespaces of every server; default "/" and "/custom".
	namespaces []string
	// goAdapter builds the adapter of a Go server on its Redis client, with
	// the cluster's key.
	goAdapter func(rdb redis.UniversalClient, key string) *redisadapter.Builder
	// goRecovery turns on the Go servers' connection state recovery
	// (Node's defaults: 2 minutes, middlewares skipped).
	goRecovery bool
	// nodeScript is the Node server (server.js, sharded-server.js,
	// streams-server.js); nodeEnv its configuration beyond PORT, REDIS_URL,
	// KEY, NAME and NAMESPACES.
	nodeScript string
	nodeEnv    func(e *env) []string
	// ready reports whether every server listens to the cluster (e.g.
	// PUBSUB NUMSUB); the start waits for it.
	ready func(e *env) (bool, string)
	// offsets: recoverable broadcasts carry their stream entry id as their
	// last argument (streams with recovery).
	offsets bool
	// datesAsText: a Date crosses Redis as JSON text (streams entries
	// without binary), not as a MessagePack timestamp.
	datesAsText bool
	// noAllRooms tells the servers that have no allRooms (Node's streams
	// adapter).
	noAllRooms func(s *server) bool
}

// env is one test cluster.
type env struct {
	spec      clusterSpec
	redis     *redisServer
	redisAddr string
	rdb       *redis.Client
	// clusterAddrs are the masters of the Redis Cluster (redisCluster), and
	// masters a plain client of each; redisAddr and rdb are then the first.
	clusterAddrs []string
	masters      []*redis.Client
	key          string
	namespaces   []string
	servers      []*server // go-0, go-1, node-0, node-1
	clients      *proc
	clientURL    string
	seq          atomic.Int64
	versions     map[string]string
}

// redisServer is a redis-server process of the suite, on a free loopback
// port.
type redisServer struct {
	proc *proc
	addr string
	rdb  *redis.Client
}

// goServerZone is the local time zone of this process, and so of the Go
// servers: not UTC, so that time-zone mistakes show whatever the machine's
// zone is. Set before anything starts.
var goServerZone = time.FixedZone("UTC+02:00", 2*60*60)

func TestMain(m *testing.M) {
	time.Local = goServerZone
	os.Exit(m.Run())
}

// checkPrerequisites reports what is missing to run the suite, with the way
// to fix it.
func checkPrerequisites() (map[string]string, error) {
	var problems []string
	if _, err := exec.LookPath("node"); err != nil {
		problems = append(problems, "node is not in PATH: install Node.js >= 18")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		problems = append(problems, "redis-server is not in PATH: install Redis (e.g. apt-get install redis-server)")
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		problems = append(problems, "redis-cli is not in PATH (it creates the Redis Cluster): install Redis (e.g. apt-get install redis-server redis-tools)")
	}
	versions := map[string]string{}
	var missing, wrong []string
	for _, p := range nodePackages {
		raw, err := os.ReadFile(filepath.Join("node_modules", filepath.FromSlash(p.name), "package.json"))
		if err != nil {
			missing = append(missing, p.name)
			continue
		}
		var pj struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal(raw, &pj); err != nil || !strings.HasPrefix(pj.Version, p.version) {
			wrong = append(wrong, fmt.Sprintf("%s is %q, want %s*", p.name, pj.Version, p.version))
			continue
		}
		versions[p.name] = pj.Version
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("npm packages not installed (%s): run `npm ci` in interop/", strings.Join(missing, ", ")))
	}
	if len(wrong) > 0 {
		problems = append(problems, fmt.Sprintf("npm packages at the wrong version (%s): run `npm ci` in interop/", strings.Join(wrong, "; ")))
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		versions["node"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		versions["redis-server"] = strings.TrimSpace(string(out))
	}
	return versions, nil
}

// startRedis starts a redis-server on a free loopback port, without
// persistence; it is stopped at the end of the test. A missing prerequisite
// fails the test (never skips it).
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := checkPrerequisites(); err != nil {
		t.Fatalf("interop prerequisites: %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	r.proc, err = startProc("redis-server", "redis-server", nil, false,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err != nil {
		t.Fatal(err)
	}
	r.rdb = redis.NewClient(&redis.Options{Addr: r.addr})
	t.Cleanup(func() {
		_ = r.rdb.Close()
		r.proc.stop()
	})
	if err := waitCond(startTimeout, func() bool {
		return r.proc.alive() && r.rdb.Ping(context.Background()).Err() == nil
	}); err != nil {
		t.Fatalf("redis-server did not answer on %s: %v\n%s", r.addr, err, r.proc.output())
	}
	return r
}

// startCluster starts the cluster of spec: its Go servers in this process,
// its Node servers and clients.js as processes (concurrently), and waits
// until every server is ready. Everything is stopped, each process by its
// own PID, at the end of the test.
func startCluster(t testing.TB, spec clusterSpec) *env {
	t.Helper()
	begin := time.Now()
	versions, err := checkPrerequisites()
	if err != nil {
		t.Fatalf("interop prerequisites: %v", err)
	}
	if spec.namespaces == nil {
		spec.namespaces = []string{"/", "/custom"}
	}
	e := &env{spec: spec, key: "interop-" + randHex(4), namespaces: spec.namespaces, versions: versions}
	if spec.redisCluster {
		rc := testkit.StartRedisCluster(t, 3, 0)
		e.clusterAddrs = rc.MasterAddrs(t)
		e.masters = rc.MasterClients(t)
		e.redisAddr, e.rdb = e.clusterAddrs[0], e.masters[0]
	} else {
		if spec.redis == nil {
			spec.redis = startRedis(t)
		}
		e.redis, e.redisAddr, e.rdb = spec.redis, spec.redis.addr, spec.redis.rdb
	}
	t.Cleanup(e.close)

	for i := 0; i < 2; i++ {
		g := startGoServer(fmt.Sprintf("go-%d", i), e)
		e.servers = append(e.servers, &server{name: g.name, lang: "Go", url: g.http.URL, goS: g})
	}
	type started struct {
		p   *proc
		err error
	}
	var wg sync.WaitGroup
	procs := make([]started, 3)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 2 {
				procs[i].p, procs[i].err = startProc("clients.js", "node", []string{"PORT=0"}, true, "clients.js")
				return
			}
			name := fmt.Sprintf("node-%d", i)
			env := append([]string{"PORT=0", "REDIS_URL=redis://" + e.redisAddr, "KEY=" + e.key, "NAME=" + name,
				"NAMESPACES=" + strings.Join(e.namespaces, ",")}, spec.nodeEnv(e)...)
			if len(e.clusterAddrs) > 0 {
				env = append(env, "CLUSTER_NODES="+strings.Join(e.clusterAddrs, ","))
			}
			procs[i].p, procs[i].err = startProc(name, "node", env, true, spec.nodeScript)
		}()
	}
	wg.Wait()
	for i, s := range procs {
		if s.p != nil {
			if i == 2 {
				e.clients = s.p
			} else {
				e.servers = append(e.servers, &server{name: s.p.name, lang: "Node", url: "http://" + s.p.listening, proc: s.p})
			}
		}
	}
	for _, s := range procs {
		if s.err != nil {
			t.Fatalf("%s: %v", spec.suite, s.err)
		}
	}
	e.clientURL = "http://" + e.clients.listening

	var detail string
	if err := waitCond(startTimeout, func() bool {
		var ok bool
		ok, detail = spec.ready(e)
		return ok
	}); err != nil {
		t.Fatalf("%s: servers not ready: %s\n%s", spec.suite, detail, e.logs())
	}
	t.Logf("%s: cluster up in %v: %s", spec.suite, time.Since(begin).Round(time.Millisecond), e.describe())
	return e
}

// numSubReady is a clusterSpec.ready: every server subscribes to channel(nsp)
// of every namespace (PUBSUB NUMSUB, or SHARDNUMSUB).
func numSubReady(channel func(e *env, nsp string) string, sharded bool) func(e *env) (bool, string) {
	return func(e *env) (bool, string) {
		for _, nsp := range e.namespaces {
			ch := channel(e, nsp)
			var n int64
			if sharded {
				n = e.shardNumSub(ch)
			} else {
				n = e.numSub(ch)
			}
			if n != int64(len(e.servers)) {
				return false, fmt.Sprintf("%d servers subscribed to %s, want %d", n, ch, len(e.servers))
			}
		}
		return true, ""
	}
}

func (e *env) describe() string {
	var keys []string
	for k := range e.versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+e.versions[k])
	}
	var names []string
	for _, s := range e.servers {
		names = append(names, s.name+"="+s.url)
	}
	where := "redis " + e.redisAddr
	if len(e.clusterAddrs) > 0 {
		where = "Redis Cluster " + strings.Join(e.clusterAddrs, " ")
	}
	return fmt.Sprintf("%s, key %q, servers %s; %s", where, e.key, strings.Join(names, " "), strings.Join(parts, ", "))
}

// close stops everything the cluster started (not its redis-server, which
// stops with the test that started it), each process by its own PID.
func (e *env) close() {
	for _, s := range e.servers {
		if s.goS != nil {
			s.goS.close()
		}
		if s.proc != nil {
			s.proc.stop()
		}
	}
	if e.clients != nil {
		e.clients.stop()
	}
}

// logs returns the output of the Node processes, for failure messages.
func (e *env) logs() string {
	var b strings.Builder
	for _, s := range e.servers {
		if s.proc != nil {
			fmt.Fprintf(&b, "--- %s output:\n%s\n", s.name, s.proc.output())
		}
	}
	if e.clients != nil {
		fmt.Fprintf(&b, "--- clients.js output:\n%s\n", e.clients.output())
	}
	return b.String()
}

// nodes are plain clients of the Redis nodes a subscription may live on:
// every master of a Redis Cluster, or the one redis-server.
func (e *env) nodes() []*redis.Client {
	if len(e.masters) > 0 {
		return e.masters
	}
	return []*redis.Client{e.rdb}
}

// numSub is PUBSUB NUMSUB of channel, summed over the nodes (a subscriber
// of a Redis Cluster is counted only by the node it is connected to); -1 on
// an error.
func (e *env) numSub(channel string) int64 {
	return e.sumOverNodes(channel, (*redis.Client).PubSubNumSub)
}

// shardNumSub is PUBSUB SHARDNUMSUB of channel, summed over the nodes (only
// the master of the channel's slot counts its subscribers); -1 on an error.
func (e *env) shardNumSub(channel string) int64 {
	return e.sumOverNodes(channel, (*redis.Client).PubSubShardNumSub)
}

func (e *env) sumOverNodes(channel string, count func(*redis.Client, context.Context, ...string) *redis.MapStringIntCmd) int64 {
	var n int64
	for _, c := range e.nodes() {
		m, err := count(c, context.Background(), channel).Result()
		if err != nil {
			return -1
		}
		n += m[channel]
	}
	return n
}

// suiteTest is one test of a suite's table, run on the suite's cluster.
type suiteTest struct {
	name string
	run  func(t *testing.T, e *env)
}

// runTests runs tests as subtests on e, and prints the Node logs if one
// failed.
func (e *env) runTests(t *testing.T, tests []suiteTest) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, e) })
	}
	if t.Failed() {
		t.Logf("%s logs:\n%s", e.spec.suite, strings.TrimSpace(e.logs()))
	}
}

// ---------------------------------------------------------------------------
// External processes

// proc is an external process started by the suite.
type proc struct {
	name      string
	cmd       *exec.Cmd
	buf       syncBuffer
	listening string // host:port announced by a "LISTENING <port>" line
	done      chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProc starts name; with announce, it waits for the process to print
// "LISTENING <port>" on stdout.
func startProc(name, bin string, env []string, announce bool, args ...string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = procAttr()
	p.cmd.Stderr = &p.buf
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if port, ok := strings.CutPrefix(line, "LISTENING "); ok {
				select {
				case listening <- "127.0.0.1:" + port:
				default:
				}
			}
			fmt.Fprintln(&p.buf, line)
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = p.cmd.Wait()
		close(p.done)
	}()
	if !announce {
		return p, nil
	}
	select {
	case p.listening = <-listening:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before listening (%v):\n%s", name, p.cmd.ProcessState, p.buf.String())
	case <-time.After(startTimeout):
		p.stop()
		return nil, fmt.Errorf("%s did not start within %v:\n%s", name, startTimeout, p.buf.String())
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) output() string {
	out := p.buf.String()
	if !p.alive() {
		out += fmt.Sprintf("\n[%s exited: %v]", p.name, p.cmd.ProcessState)
	}
	return out
}

// stop ends the process by its PID: SIGTERM, then SIGKILL after a grace
// period.
func (p *proc) stop() {
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitCond polls cond until it holds or d has passed.
func waitCond(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// waitUntil polls cond until it reports true, or fails the test after
// waitTimeout with cond's last explanation.
func waitUntil(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", waitTimeout, what, detail)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Control API

// M is a JSON object.
type M = map[string]any

var httpClient = &http.Client{Timeout: 30 * time.Second}

func post(url string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := httpClient.Post(url, "application/json", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// call runs a control action on the server and decodes its answer into out
// (may be nil).
func (s *server) call(t testing.TB, action string, body M, out any) {
	t.Helper()
	if err := post(s.url+"/control/"+action, body, out); err != nil {
		extra := ""
		if s.proc != nil {
			extra = "\n" + s.proc.output()
		}
		t.Fatalf("%s (%s server): control %s %v: %v%s", s.name, s.lang, action, body, err, extra)
	}
}

// localSocket is a socket as its own server sees it.
type localSocket struct {
	ID    string `json:"id"`
	Rooms []any  `json:"rooms"`
	Data  any    `json:"data"`
}

func (s *server) localSockets(t testing.TB, nsp string) map[string]localSocket {
	t.Helper()
	var out struct {
		Sockets []localSocket `json:"sockets"`
	}
	s.call(t, "localSockets", M{"nsp": nsp}, &out)
	m := map[string]localSocket{}
	for _, ls := range out.Sockets {
		m[ls.ID] = ls
	}
	return m
}

// ---------------------------------------------------------------------------
// Clients

// client is one socket.io-client client of clients.js, connected to srv.
type client struct {
	k   string
	srv *server
	nsp string
	id  string // socket id once connected
}

func (c *client) String() string { return fmt.Sprintf("client of %s on %s", c.srv.name, c.nsp) }

type clientEvent struct {
	Event string `json:"event"`
	Args  []any  `json:"args"`
	Ack   bool   `json:"ack"`
}

type clientState struct {
	Connected     bool          `json:"connected"`
	ID            string        `json:"id"`
	Connects      int           `json:"connects"`
	Disconnects   []string      `json:"disconnects"`
	ConnectErrors []string      `json:"connectErrors"`
	Events        []clientEvent `json:"events"`
	// Connection state recovery (see clients.js).
	Recovered   bool   `json:"recovered"`
	PID         string `json:"pid"`
	LastOffset  string `json:"lastOffset"`
	URL         string `json:"url"`
	Connections []struct {
		ID        string `json:"id"`
		Recovered bool   `json:"recovered"`
		URL       string `json:"url"`
	} `json:"connections"`
}

// offsetRE matches a stream entry id, the offset a streams server with
// recovery appends to a recoverable broadcast.
var offsetRE = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// payload splits the arguments of an event a client received into those the
// sender emitted and the offset appended to them ("" when there is none: the
// cluster does not recover, or the packet is not recoverable).
func (e *env) payload(ev clientEvent) ([]any, string) {
	if e.spec.offsets && len(ev.Args) > 0 {
		if s, ok := ev.Args[len(ev.Args)-1].(string); ok && offsetRE.MatchString(s) {
			return ev.Args[:len(ev.Args)-1], s
		}
	}
	return ev.Args, ""
}

func (e *env) clientCall(t testing.TB, action string, body M, out any) {
	t.Helper()
	if err := post(e.clientURL+"/control/"+action, body, out); err != nil {
		t.Fatalf("clients.js: %s %v: %v\n%s", action, body, err, e.clients.output())
	}
}

// clientSpec describes a client to connect.
type clientSpec struct {
	srv     *server
	nsp     string
	query   map[string]string
	headers map[string]string
	auth    M
}

// connect connects one client per spec, concurrently, and waits until each is
// connected and its server's connection handler has run. The clients are
// closed at the end of the test.
func (e *env) connect(t testing.TB, specs ...clientSpec) []*client {
	t.Helper()
	start := time.Now()
	var cs []*client
	for _, sp := range specs {
		c := &client{k: fmt.Sprintf("c%d", e.seq.Add(1)), srv: sp.srv, nsp: sp.nsp}
		if c.nsp == "" {
			c.nsp = "/"
		}
		body := M{"k": c.k, "url": sp.srv.url, "nsp": c.nsp}
		if sp.query != nil {
			body["query"] = sp.query
		}
		if sp.headers != nil {
			body["headers"] = sp.headers
		}
		if sp.auth != nil {
			body["auth"] = sp.auth
		}
		e.clientCall(t, "connect", body, nil)
		cs = append(cs, c)
		t.Cleanup(func() { e.closeClient(t, c) })
	}
	waitUntil(t, "clients connected", func() (bool, string) {
		st := e.states(t, cs)
		for _, c := range cs {
			s := st[c.k]
			if !s.Connected || s.ID == "" {
				return false, fmt.Sprintf("%s not connected (connect errors %v, disconnects %v)", c, s.ConnectErrors, s.Disconnects)
			}
			c.id = s.ID
		}
		return true, ""
	})
	waitUntil(t, "servers saw the connections", func() (bool, string) {
		for _, c := range cs {
			if _, ok := c.srv.localSockets(t, c.nsp)[c.id]; !ok {
				return false, fmt.Sprintf("%s does not list socket %s of %s", c.srv.name, c.id, c)
			}
		}
		return true, ""
	})
	if d := time.Since(start); d > 500*time.Millisecond {
		// A Go socket.io/v2 server sometimes misses a CONNECT sent right
		// after the open packet; the client then reconnects after the
		// server's connect timeout.
		t.Logf("connecting %d clients took %v", len(cs), d.Round(time.Millisecond))
	}
	return cs
}

// connectOnePerServer connects one client to every server on nsp.
func (e *env) connectOnePerServer(t testing.TB, nsp string, spec func(s *server) clientSpec) []*client {
	t.Helper()
	var specs []clientSpec
	for _, s := range e.servers {
		sp := clientSpec{srv: s, nsp: nsp}
		if spec != nil {
			sp = spec(s)
			sp.srv, sp.nsp = s, nsp
		}
		specs = append(specs, sp)
	}
	return e.connect(t, specs...)
}

// closeClient disconnects c and waits until its server forgot it, so that
// the next test starts from a clean cluster.
func (e *env) closeClient(t testing.TB, c *client) {
	st := e.states(t, []*client{c})[c.k]
	e.clientCall(t, "close", M{"k": c.k}, nil)
	ids := []string{c.id, st.ID}
	_ = waitCond(waitTimeout, func() bool {
		var out struct {
			Sockets []localSocket `json:"sockets"`
		}
		if err := post(c.srv.url+"/control/localSockets", M{"nsp": c.nsp}, &out); err != nil {
			return true
		}
		for _, ls := range out.Sockets {
			for _, id := range ids {
				if id != "" && ls.ID == id {
					return false
				}
			}
		}
		return true
	})
}

func (e *env) states(t testing.TB, cs []*client) map[string]clientState {
	t.Helper()
	ks := make([]string, len(cs))
	for i, c := range cs {
		ks[i] = c.k
	}
	var out struct {
		States map[string]clientState `json:"states"`
	}
	e.clientCall(t, "states", M{"ks": ks}, &out)
	return out.States
}

// setAck makes c answer acks of event with reply (nil: never answer).
func (e *env) setAck(t testing.TB, c *client, event string, reply []any) {
	t.Helper()
	body := M{"k": c.k, "event": event, "reply": reply}
	if reply == nil {
		body["reply"] = nil
	}
	e.clientCall(t, "setAck", body, nil)
}

// join makes c's socket join rooms on its own server.
func (e *env) join(t testing.TB, c *client, rooms ...any) {
	t.Helper()
	c.srv.call(t, "join", M{"nsp": c.nsp, "id": c.id, "rooms": rooms}, nil)
}

// ---------------------------------------------------------------------------
// Synchronisation

func (e *env) uniq(prefix string) string {
	return fmt.Sprintf("%s-%d-%s", prefix, e.seq.Add(1), randHex(2))
}

// fence makes every server emit a "fence" event to all the clients of the
// namespaces of cs, and waits until every client of cs has the fence of every
// server. Each server delivers in the order it emits (locally and through
// Redis), so after the fence every client has everything the servers emitted
// before it.
//
// On a Redis Cluster the fence runs twice: node-redis createCluster sends a
// PUBLISH (a command without a key) to a node it picks for each command, so
// a Node server's broadcast and its fence cross the cluster bus on different
// paths and may arrive in either order (a Go server sends all its publishes
// through one node and keeps its order). The second
// round starts after every client has the first, a full round trip after
// anything published before it reached the node it went through.
func (e *env) fence(t testing.TB, cs []*client) {
	t.Helper()
	e.fenceOnce(t, cs)
	if len(e.clusterAddrs) > 0 {
		e.fenceOnce(t, cs)
	}
}

func (e *env) fenceOnce(t testing.TB, cs []*client) {
	t.Helper()
	id := e.uniq("fence")
	nsps := map[string]bool{}
	for _, c := range cs {
		nsps[c.nsp] = true
	}
	for _, s := range e.servers {
		for nsp := range nsps {
			s.call(t, "emit", M{"nsp": nsp, "event": "fence", "args": []any{s.name, id}}, nil)
		}
	}
	waitUntil(t, "fence "+id, func() (bool, string) {
		st := e.states(t, cs)
		for _, c := range cs {
			for _, s := range e.servers {
				if count(st[c.k], "fence", s.name, id) != 1 {
					return false, fmt.Sprintf("%s has no fence from %s (%s→%s)", c, s.name, s.lang, c.srv.lang)
				}
			}
		}
		return true, ""
	})
}

// settle waits until every server has processed what actor published before:
// a fetchSockets from actor completes only after every other server answered
// it, and each of them (and actor itself, for its own frames) reads Redis in
// publish order. Then it fences cs. In streams mode the fetchSockets request
// travels by pub/sub and orders only the other ephemeral messages (e.g.
// serverSideEmit); the fence, through the stream, orders the entries (joins,
// leaves, disconnects), so tests that change memberships there pass the
// clients to fence, or wait for the memberships they expect.
func (e *env) settle(t testing.TB, actor *server, nsp string, cs []*client) {
	t.Helper()
	var out struct {
		Err any `json:"err"`
	}
	actor.call(t, "fetchSockets", M{"nsp": nsp, "in": []any{e.uniq("settle")}}, &out)
	if out.Err != nil {
		t.Fatalf("settle: fetchSockets from %s: %v", actor.name, out.Err)
	}
	if len(cs) > 0 {
		e.fence(t, cs)
	}
}

// count returns how many events named event, whose first arguments are args,
// the client received.
func count(st clientState, event string, args ...any) int {
	n := 0
	for _, ev := range st.Events {
		if ev.Event != event || len(ev.Args) < len(args) {
			continue
		}
		if reflect.DeepEqual(ev.Args[:len(args)], args) {
			n++
		}
	}
	return n
}

// dir names a direction for failure messages: actor's language → the
// receiving server's language, with the server names.
func dir(actor, to *server) string {
	return fmt.Sprintf("%s→%s (%s → %s)", actor.lang, to.lang, actor.name, to.name)
}

// forEachActor runs f as a subtest from every server of the cluster.
func (e *env) forEachActor(t *testing.T, f func(t *testing.T, actor *server)) {
	for _, s := range e.servers {
		t.Run("from "+s.name, func(t *testing.T) { f(t, s) })
	}
}

// roundTrip returns v after a JSON round trip, the form in which the control
// API reports values.
func roundTrip(v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(err)
	}
	return out
}

func jsonString(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(raw)
}
