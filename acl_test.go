package redisadapter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// These tests run the adapter as a Redis ACL user restricted to the adapter's
// channels and to the commands it sends, on a redis-server the test starts.
//
// The rule set (aclAdapterRules) is the minimal one: TestACLEveryRuleIsNeeded
// removes each rule in turn and shows Redis refusing something the adapter
// does. Things worth knowing, found here:
//
//   - Redis matches a PSUBSCRIBE pattern *literally* against the user's
//     channel rules (only PUBLISH and SUBSCRIBE channels are glob-matched). So
//     "&socket.io#*" does not allow the adapter's PSUBSCRIBE "socket.io#/#*":
//     each namespace needs its own "&<key>#<nsp>#*" rule, spelled exactly as
//     the adapter's pattern.
//   - HELLO and AUTH need no rule (Redis exempts them from command rules).
//   - go-redis v9 sends CLIENT SETINFO on every new connection and ignores a
//     refusal; from Redis 7.2, "+client|setinfo" keeps the refusals out of ACL
//     LOG. Redis 7.0 has no such subcommand and rejects the rule.
//   - SELECT is sent only for a DB other than 0 (pub/sub ignores the DB).

const aclPassword = "s3cret-adapter-pw"

// aclCommandRules are the commands the adapter sends.
var aclCommandRules = []string{
	"+publish", "+subscribe", "+psubscribe", "+unsubscribe", "+punsubscribe", "+ping", "+pubsub|numsub",
}

// aclChannelRules are the channel rules for Options.Key key and the given
// namespaces: the literal PSUBSCRIBE pattern of each namespace, and the
// request and response channels of every namespace.
func aclChannelRules(key string, nsps ...string) []string {
	var rules []string
	for _, nsp := range nsps {
		rules = append(rules, "&"+newChannels(key, nsp, "").pattern)
	}
	return append(rules, "&"+key+"-request#*", "&"+key+"-response#*")
}

// aclAdapterRules is the full rule set of a user for key and nsps.
func aclAdapterRules(key string, nsps ...string) []string {
	rules := []string{"on", ">" + aclPassword, "resetchannels", "resetkeys", "-@all"}
	rules = append(rules, aclChannelRules(key, nsps...)...)
	return append(rules, aclCommandRules...)
}

// aclSetUser creates user with rules, or replaces its rules, through the
// default (unrestricted) user. When the server knows CLIENT SETINFO (Redis
// 7.2 and later), the user may also send it.
func aclSetUser(t testing.TB, admin *redis.Client, user string, rules []string) {
	t.Helper()
	ctx := context.Background()
	args := []any{"ACL", "SETUSER", user, "reset"}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := admin.Do(ctx, append(args, "+client|setinfo")...).Err(); err != nil {
		if !strings.Contains(err.Error(), "client|setinfo") {
			t.Fatalf("ACL SETUSER %s: %v", user, err)
		}
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %s %v: %v", user, rules, err)
		}
	}
}

// aclDenial is one entry of ACL LOG.
type aclDenial struct{ reason, object, username string }

// aclLog returns the entries of ACL LOG.
func aclLog(t testing.TB, admin *redis.Client) []aclDenial {
	t.Helper()
	res, err := admin.Do(context.Background(), "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	var out []aclDenial
	for _, e := range res {
		m := map[string]string{}
		switch e := e.(type) {
		case map[any]any: // RESP3
			for k, v := range e {
				m[fmt.Sprint(k)] = fmt.Sprint(v)
			}
		case []any: // RESP2
			for i := 0; i+1 < len(e); i += 2 {
				m[fmt.Sprint(e[i])] = fmt.Sprint(e[i+1])
			}
		}
		out = append(out, aclDenial{reason: m["reason"], object: m["object"], username: m["username"]})
	}
	return out
}

// aclServer starts a redis-server and returns it with a client of its
// default, unrestricted user.
func aclServer(t *testing.T) (*redisProc, *redis.Client) {
	t.Helper()
	srv := startRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	return srv, admin
}

// aclUserRedis is a testRedis that logs in as user.
func aclUserRedis(srv *redisProc, user string) *testRedis {
	return &testRedis{opts: &redis.Options{Addr: srv.Addr(), Username: user, Password: aclPassword}}
}

// newClusterWithKey is newClusterOn with a chosen Options.Key: the ACL rules
// name the channels, so the key must be known before the user exists.
func newClusterWithKey(t *testing.T, r *testRedis, key string, n int, opts *Options, nsps ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, redis: r, key: key, nsps: append([]string{"/"}, nsps...)}
	for i := 0; i < n; i++ {
		c.nodes = append(c.nodes, c.startNode(opts))
	}
	t.Cleanup(c.close)
	for _, nsp := range c.nsps {
		c.waitSubscribed(nsp, n)
	}
	return c
}

// TestACLRestrictedUser: two servers logged in as a user restricted to the
// adapter's channels and commands (aclAdapterRules, with the default key)
// form a cluster on two namespaces: broadcasts (to all and to a room),
// fetchSockets, serverSideEmit with an acknowledgement, ServerCount, the
// subscriber's health ping and a namespace's unsubscription all work, and
// Redis refuses nothing (ACL LOG stays empty).
func TestACLRestrictedUser(t *testing.T) {
	verifyNoLeaks(t)
	srv, admin := aclServer(t)
	key := DefaultKey
	aclSetUser(t, admin, "adapter", aclAdapterRules(key, "/", "/chat"))
	if err := admin.Do(context.Background(), "ACL", "LOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	c := newClusterWithKey(t, aclUserRedis(srv, "adapter"), key, 2,
		&Options{HealthCheckInterval: 250 * time.Millisecond}, "/chat")
	_, _ = c.connect(0, "/")
	cl1, s1 := c.connect(1, "/")
	chat1, _ := c.connect(1, "/chat")
	s1.Join("room1")
	io0, io1 := c.nodes[0].io, c.nodes[1].io

	io0.Emit("all", 1)
	waitEvents(t, cl1, "all", 1)
	io0.To("room1").Emit("room", 2)
	waitEvents(t, cl1, "room", 1)
	io0.Of("/chat", nil).Emit("chat", 3)
	waitEvents(t, chat1, "chat", 1)

	if n := io0.Of("/", nil).Adapter().ServerCount(); n != 2 {
		t.Fatalf("ServerCount = %d, want 2", n)
	}
	got, err := fetch(t, io0)
	if err != nil || len(got) != 2 || !slices.ContainsFunc(got, func(rs *socket.RemoteSocket) bool { return rs.Id() == s1.Id() }) {
		t.Fatalf("fetchSockets: %d sockets, err %v", len(got), err)
	}

	io1.Of("/", nil).On("sse", func(args ...any) {
		args[len(args)-1].(socket.Ack)([]any{"pong from 1"}, nil)
	})
	done := make(chan result, 1)
	if err := io0.ServerSideEmitWithAck("sse", "ping")(func(args []any, err error) { done <- result{args, err} }); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, done); r.err != nil || fmt.Sprint(r.args) != "[pong from 1]" {
		t.Fatalf("serverSideEmit with ack: %v, %v", r.args, r.err)
	}

	// The subscriber pings Redis when idle (HealthCheckInterval).
	waitFor(t, "a health ping from the restricted user", func() bool {
		list, err := admin.ClientList(context.Background()).Result()
		if err != nil {
			return false
		}
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " user=adapter ") && strings.Contains(line, " cmd=ping ") {
				return true
			}
		}
		return false
	})

	// Closing a namespace's adapter unsubscribes it.
	c.nodes[0].io.Of("/chat", nil).Adapter().Close()
	ch := newChannels(key, "/chat", "").request
	waitFor(t, "server 0 unsubscribed from /chat", func() bool {
		m, err := admin.PubSubNumSub(context.Background(), ch).Result()
		return err == nil && m[ch] == 1
	})
	waitFor(t, "server 0 unsubscribed from the /chat pattern", func() bool {
		// PUBSUB NUMPAT counts distinct patterns: sum CLIENT LIST's psub.
		list, err := admin.ClientList(context.Background()).Result()
		if err != nil {
			return false
		}
		psub := 0
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " user=adapter ") {
				for _, f := range strings.Fields(line) {
					if v, ok := strings.CutPrefix(f, "psub="); ok {
						n, _ := strconv.Atoi(v)
						psub += n
					}
				}
			}
		}
		return psub == 3 // "/" on both servers, "/chat" on server 1
	})

	for i, nd := range c.nodes {
		if st := nd.b.Stats(); st.State != StateConnected || st.PublishErrors != 0 || st.StateChanges != 1 {
			t.Errorf("server %d: state %v, %d publish errors, %d state changes; want connected, 0, 1",
				i, st.State, st.PublishErrors, st.StateChanges)
		}
	}
	if log := aclLog(t, admin); len(log) != 0 {
		t.Fatalf("Redis refused commands of the restricted user: %+v", log)
	}
}

// TestACLEveryRuleIsNeeded removes each rule of aclAdapterRules in turn: Redis
// then refuses something a single server does (subscribe at start, broadcast,
// count the servers, ping when idle, close a namespace), which ACL LOG shows.
// Together with TestACLRestrictedUser this makes the rule set minimal.
func TestACLEveryRuleIsNeeded(t *testing.T) {
	srv, admin := aclServer(t)
	key := DefaultKey
	nsps := []string{"/", "/chat"}
	for i, removed := range append(aclChannelRules(key, nsps...), aclCommandRules...) {
		// "/" would nest subtests in -run patterns.
		t.Run("without "+strings.ReplaceAll(removed, "/", "_"), func(t *testing.T) {
			verifyNoLeaks(t)
			rules := slices.DeleteFunc(aclAdapterRules(key, nsps...), func(r string) bool { return r == removed })
			user := fmt.Sprintf("adapter-%d", i)
			aclSetUser(t, admin, user, rules)
			refused := func(d aclDenial) bool {
				if strings.HasPrefix(removed, "&") { // a channel rule: the refused channel or pattern
					glob := removed[1:]
					return d.reason == "channel" && (d.object == glob || strings.HasPrefix(d.object, strings.TrimSuffix(glob, "*")))
				}
				return d.reason == "command" && d.object == removed[1:]
			}

			rdb := aclUserRedis(srv, user).client(t)
			b := New(rdb, &Options{Key: key, HealthCheckInterval: 50 * time.Millisecond})
			t.Cleanup(func() { _ = b.Close() })
			io, _ := singleServer(t, b)
			t.Cleanup(func() { io.Close(nil) })
			// Subscribes /chat, then unsubscribes it (in that order).
			io.Of("/chat", nil).Adapter().Close()
			var last time.Time
			var denials []aclDenial
			waitFor(t, fmt.Sprintf("Redis refuses what %s allows", removed), func() bool {
				// Every 200ms, so that the subscriber idles long enough to
				// ping (it receives this server's own broadcasts).
				if time.Since(last) > 200*time.Millisecond {
					last = time.Now()
					io.Emit("x", 1)                         // PUBLISH
					io.Of("/", nil).Adapter().ServerCount() // PUBSUB NUMSUB
				}
				denials = nil
				found := false
				for _, d := range aclLog(t, admin) {
					if d.username == user {
						denials = append(denials, d)
						found = found || refused(d)
					}
				}
				return found
			})
			t.Logf("without %s: ACL LOG %+v; adapter %v", removed, denials, b.State())
		})
	}
}

// TestACLWithoutChannelPermissionDegrades: a user allowed every command the
// adapter sends but no channel gets NOPERM for each subscription and
// publish. The adapter goes degraded and says why, nothing panics or hangs,
// each server keeps serving its own clients, nothing crosses instances, and
// everything closes.
func TestACLWithoutChannelPermissionDegrades(t *testing.T) {
	verifyNoLeaks(t)
	srv, admin := aclServer(t)
	key := uniqueKey(t)
	rules := slices.DeleteFunc(aclAdapterRules(key, "/"), func(r string) bool { return strings.HasPrefix(r, "&") })
	aclSetUser(t, admin, "nochannels", rules)
	r := aclUserRedis(srv, "nochannels")

	type aclNode struct {
		b      *Builder
		io     *socket.Server
		cl     *sioclient.Client
		mu     sync.Mutex
		errs   []error
		states []State
	}
	nodes := make([]*aclNode, 2)
	for i := range nodes {
		nd := &aclNode{}
		nd.b = New(r.client(t), &Options{Key: key, OnStateChange: func(_, to State, err error) {
			nd.mu.Lock()
			defer nd.mu.Unlock()
			nd.states = append(nd.states, to)
			if err != nil {
				nd.errs = append(nd.errs, err)
			}
		}})
		t.Cleanup(func() { _ = nd.b.Close() })
		nd.io, nd.cl = singleServer(t, nd.b)
		t.Cleanup(func() { nd.io.Close(nil) })
		nodes[i] = nd
	}
	for i, nd := range nodes {
		waitFor(t, fmt.Sprintf("server %d degraded with NOPERM", i), func() bool {
			nd.mu.Lock()
			defer nd.mu.Unlock()
			for _, err := range nd.errs {
				if strings.HasPrefix(err.Error(), "NOPERM") {
					return true
				}
			}
			return false
		})
	}
	for i, nd := range nodes {
		nd.io.Emit("local", i)
		if evs := waitEvents(t, nd.cl, "local", 1); evs[0].Args[0] != float64(i) {
			t.Fatalf("server %d's client got %v", i, evs[0].Args)
		}
	}
	// Nothing crosses: every event a client gets comes from its own server.
	for round := 0; round < 5; round++ {
		nodes[0].io.Emit("round", round)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := nodes[1].cl.WaitFor(ctx, "round", 1); err == nil {
		t.Fatal("an event crossed instances through a user without channel permissions")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting on server 1's client: %v", err)
	}
	for i, nd := range nodes {
		nd.mu.Lock()
		t.Logf("server %d: state now %v; transitions %v; first error %v", i, nd.b.State(), nd.states, nd.errs[0])
		nd.mu.Unlock()
		if st := nd.b.Stats(); st.Published != 0 || st.Received != 0 {
			t.Errorf("server %d: %d frames published, %d received with no channel permission", i, st.Published, st.Received)
		}
	}
}

// TestACLDeniedSubscriptionIsNeverConnected is the strict form of the test
// above: an adapter whose subscriptions Redis refuses must not report
// StateConnected, since it would receive nothing from the other instances.
// Two users: one without any channel, one with the natural-looking but
// insufficient "&socket.io#*" (PSUBSCRIBE patterns are matched literally).
//
// (Before the subscriber counted Redis' subscription confirmations, the state
// flapped back to connected on the next PONG, and a refused subscription was
// never retried.)
func TestACLDeniedSubscriptionIsNeverConnected(t *testing.T) {
	srv, admin := aclServer(t)
	key := DefaultKey
	noChannels := slices.DeleteFunc(aclAdapterRules(key, "/"), func(r string) bool { return strings.HasPrefix(r, "&") })
	globOnly := append(slices.Clone(noChannels), "&"+key+"#*", "&"+key+"-request#*", "&"+key+"-response#*")
	for _, tc := range []struct {
		user  string
		rules []string
	}{{"nochannels", noChannels}, {"globonly", globOnly}} {
		t.Run(tc.user, func(t *testing.T) {
			verifyNoLeaks(t)
			aclSetUser(t, admin, tc.user, tc.rules)
			states := &stateRecorder{}
			b := New(aclUserRedis(srv, tc.user).client(t), &Options{Key: key, OnStateChange: states.record,
				HealthCheckInterval: 50 * time.Millisecond, MaxReconnectDelay: 200 * time.Millisecond})
			t.Cleanup(func() { _ = b.Close() })
			io, _ := singleServer(t, b)
			t.Cleanup(func() { io.Close(nil) })
			waitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
			// Health pings, publishes and resubscriptions happen meanwhile:
			// none of them may bring the adapter back to connected.
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				io.Emit("x", 1)
				if st := b.State(); st != StateDegraded {
					t.Fatalf("state %v with refused subscriptions", st)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if n := states.count(StateDegraded, StateConnected); n != 0 {
				t.Fatalf("%d transitions degraded -> connected with refused subscriptions", n)
			}
			// Once the administrator grants the channels, the adapter
			// recovers by itself.
			aclSetUser(t, admin, tc.user, aclAdapterRules(key, "/"))
			waitFor(t, "connected once the channels are granted", func() bool { return b.State() == StateConnected })
		})
	}
}
