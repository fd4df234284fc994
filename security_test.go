package redisadapter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// Deployments with security: TLS with a private CA, ACL users restricted to
// what the adapter needs (for the pattern and the room-subscription modes of
// the classic transport), and Sentinel. Every test starts its own
// redis-server processes.

// tlsEnv is a fixture environment whose servers' clients use opts.
func tlsEnv(srv *testkit.TLSRedis, opts func() *redis.Options) *testkit.Env {
	client := func(t testing.TB) *redis.Client {
		c := redis.NewClient(opts())
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return &testkit.Env{Name: "tls", Ordered: true, Real: true,
		Client:  func(t testing.TB) redis.UniversalClient { return client(t) },
		Masters: func(t testing.TB) []*redis.Client { return []*redis.Client{srv.Client(t)} },
	}
}

// TestTLSWithPrivateCA: servers whose go-redis clients verify the Redis
// certificate against a private CA form a cluster, with the CA set on
// explicit options and through redis.ParseURL("rediss://…") as the README
// shows.
func TestTLSWithPrivateCA(t *testing.T) {
	pki := testkit.NewPKI(t)
	srv := testkit.StartTLSRedis(t, pki)
	for _, tc := range []struct {
		name string
		opts func() *redis.Options
	}{
		{"options", srv.Options},
		{"ParseURL", func() *redis.Options {
			o, err := redis.ParseURL(srv.URL())
			if err != nil || o.TLSConfig == nil || o.TLSConfig.InsecureSkipVerify {
				panic(fmt.Sprintf("ParseURL(%q): %+v, %v", srv.URL(), o, err))
			}
			o.TLSConfig.RootCAs = pki.Pool
			return o
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testkit.NewCluster(t, tlsEnv(srv, tc.opts), 2, modeClassic())
			cls, _ := c.ConnectEach("/")
			c.Ns(0, "/").Emit("over-tls", "x")
			testkit.WaitEvents(t, cls[1], "over-tls", 1)
			for i := range c.Nodes {
				if st := builderOf(c, i).State(); st != StateConnected {
					t.Errorf("server %d: %v", i, st)
				}
			}
		})
	}
}

// TestTLSUntrustedCertificateDegrades: a client that does not trust the CA
// (the system roots, or another CA) never connects: the adapter is degraded
// with the certificate error, never connected, and serves its own clients.
func TestTLSUntrustedCertificateDegrades(t *testing.T) {
	pki := testkit.NewPKI(t)
	srv := testkit.StartTLSRedis(t, pki)
	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
	}{{"system roots", nil}, {"another CA", testkit.ForeignCAPool(t)}} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			testkit.VerifyNoLeaks(t)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1,
				TLSConfig: &tls.Config{RootCAs: tc.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}})
			t.Cleanup(func() { _ = rdb.Close() })
			w := newWatch(t)
			b := modeWith(t, modeClassic(), w.configure).New(rdb, testkit.UniqueKey(t)).(*Builder)
			nd := testkit.NewNode(t, b)
			testkit.WaitFor(t, "degraded with an error", func() bool { return len(w.state(0).errs()) > 0 })
			err := w.state(0).errs()[0]
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) && !strings.Contains(err.Error(), "certificate signed by unknown authority") {
				t.Fatalf("degraded with %v, want a certificate verification error", err)
			}
			t.Logf("degraded as expected: %v", err)
			cl, _ := nd.Connect(t, "/")
			nd.Ns("/").Emit("local", 1)
			testkit.WaitEvents(t, cl, "local", 1)
			if n := w.state(0).count(StateConnecting, StateConnected) + w.state(0).count(StateDegraded, StateConnected); n != 0 || b.State() == StateConnected {
				t.Fatal("the adapter reported connected through an unverified TLS link")
			}
			if n := b.Stats().Published; n != 0 {
				t.Fatalf("published %d frames through an unverified TLS link", n)
			}
		})
	}
}

const aclPassword = "s3cret-adapter-pw"

// aclRules is the minimal rule set of an adapter user, for key and the
// namespaces nsps, in the pattern mode (rooms false) or the room-subscription
// mode (rooms true): its channel rules and its command rules.
//
// Redis matches a PSUBSCRIBE pattern literally against the channel rules
// (SUBSCRIBE and PUBLISH channels are glob-matched), so the pattern mode
// needs one "&key#nsp#*" per namespace, spelled as the adapter's pattern;
// the room-subscription mode subscribes to channels only, and one
// "&key#*" covers every namespace and room. HELLO and AUTH need no rule;
// SELECT is sent only for a database other than 0; go-redis' CLIENT
// SETINFO is allowed when the server knows it (Redis >= 7.2) to keep ACL
// LOG clean (aclSetUser).
func aclRules(key string, rooms bool, nsps ...string) (channels, commands []string) {
	if rooms {
		channels = []string{"&" + key + "#*"}
		commands = []string{"+publish", "+subscribe", "+unsubscribe", "+ping", "+pubsub|numsub"}
	} else {
		for _, nsp := range nsps {
			channels = append(channels, "&"+key+"#"+nsp+"#*")
		}
		commands = []string{"+publish", "+subscribe", "+psubscribe", "+unsubscribe", "+punsubscribe", "+ping", "+pubsub|numsub"}
	}
	channels = append(channels, "&"+key+"-request#*", "&"+key+"-response#*")
	return channels, commands
}

// aclUser returns the full rule list of a user with the given rules.
func aclUser(channels, commands []string) []string {
	return slices.Concat([]string{"on", ">" + aclPassword, "resetchannels", "resetkeys", "-@all"}, channels, commands)
}

// aclSetUser creates user with rules (replacing its rules), allowing CLIENT
// SETINFO when the server knows it.
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
		case map[any]any:
			for k, v := range e {
				m[fmt.Sprint(k)] = fmt.Sprint(v)
			}
		case []any:
			for i := 0; i+1 < len(e); i += 2 {
				m[fmt.Sprint(e[i])] = fmt.Sprint(e[i+1])
			}
		}
		out = append(out, aclDenial{reason: m["reason"], object: m["object"], username: m["username"]})
	}
	return out
}

// userEnv is p as a fixture environment whose servers log in as user.
func userEnv(p *testkit.RedisProc, user string) *testkit.Env {
	return p.Env(func(o *redis.Options) { o.Username, o.Password = user, aclPassword })
}

func userClient(t testing.TB, p *testkit.RedisProc, user string) *redis.Client {
	o := p.Options()
	o.Username, o.Password, o.MaxRetries = user, aclPassword, -1
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// classicModes are the two modes of the classic transport, which the ACL
// tests cover.
func classicModes() []testkit.Mode { return []testkit.Mode{modeClassic(), modeRooms()} }

func isRooms(m testkit.Mode) bool { return m.Name == modeRooms().Name }

// TestACLRestrictedUser: two servers logged in as a user with exactly the
// mode's rules form a cluster on two namespaces: broadcasts (to all, to a
// room, in the other namespace), fetchSockets, serverSideEmit with an ack,
// ServerCount, the idle health ping and a namespace's unsubscription all
// work, and Redis refuses nothing (ACL LOG stays empty).
func TestACLRestrictedUser(t *testing.T) {
	p := testkit.StartRedis(t)
	admin := p.Client(t)
	forEachMode(t, classicModes(), func(t *testing.T, m testkit.Mode) {
		key := testkit.UniqueKey(t)
		user := "adapter-" + m.Name
		aclSetUser(t, admin, user, aclUser(aclRules(key, isRooms(m), "/", "/chat")))
		if err := admin.Do(context.Background(), "ACL", "LOG", "RESET").Err(); err != nil {
			t.Fatal(err)
		}
		c := testkit.StartCluster(t, testkit.ClusterConfig{Env: userEnv(p, user), N: 2, Key: key, Nsps: []string{"/chat"},
			Mode: modeWith(t, m, func(o *Options) { o.HealthCheckInterval = 250 * time.Millisecond })})
		_, _ = c.Connect(0, "/")
		cl1, s1 := c.Connect(1, "/")
		chat1, _ := c.Connect(1, "/chat")
		s1.Join("room1")
		c.Ns(0, "/").Emit("all", 1)
		testkit.WaitEvents(t, cl1, "all", 1)
		c.Ns(0, "/").To("room1").Emit("room", 2)
		testkit.WaitEvents(t, cl1, "room", 1)
		c.Ns(0, "/chat").Emit("chat", 3)
		testkit.WaitEvents(t, chat1, "chat", 1)
		if n := c.Ns(0, "/").Adapter().ServerCount(); n != 2 {
			t.Fatalf("ServerCount = %d, want 2", n)
		}
		fetched := make(chan int, 1)
		c.Ns(0, "/").Except().FetchSockets()(func(ss []*socket.RemoteSocket, err error) {
			if err != nil {
				t.Errorf("fetchSockets: %v", err)
			}
			fetched <- len(ss)
		})
		if n := <-fetched; n != 2 {
			t.Fatalf("fetchSockets found %d sockets, want 2", n)
		}
		c.Ns(1, "/").On("sse", func(args ...any) { args[len(args)-1].(socket.Ack)([]any{"pong"}, nil) })
		acked := make(chan string, 1)
		if err := c.Ns(0, "/").ServerSideEmitWithAck("sse", "ping")(func(args []any, err error) { acked <- fmt.Sprint(args, err) }); err != nil {
			t.Fatal(err)
		}
		if got := <-acked; got != "[pong] <nil>" {
			t.Fatalf("serverSideEmit with ack: %s", got)
		}
		testkit.WaitFor(t, "a health ping from the restricted user", func() bool {
			list, err := admin.ClientList(context.Background()).Result()
			return err == nil && strings.Contains(list, " user="+user+" ") && strings.Contains(list, " cmd=ping ")
		})
		// Closing a namespace's adapter unsubscribes it.
		c.Ns(0, "/chat").Adapter().Close()
		req := key + "-request#/chat#"
		testkit.WaitFor(t, "server 0 unsubscribed from /chat", func() bool { return testkit.NumSub([]*redis.Client{admin}, req) == 1 })
		for i := range c.Nodes {
			if st := builderOf(c, i).Stats(); st.State != StateConnected || st.PublishErrors != 0 || st.StateChanges != 1 {
				t.Errorf("server %d: state %v, %d publish errors, %d state changes; want connected, 0, 1", i, st.State, st.PublishErrors, st.StateChanges)
			}
		}
		if log := aclLog(t, admin); len(log) != 0 {
			t.Fatalf("Redis refused commands of the restricted user: %+v", log)
		}
	})
}

// TestACLEveryRuleIsNeeded removes each rule of the mode's set in turn:
// Redis then refuses something a single server does (subscribe at start,
// broadcast, count the servers, ping when idle, close a namespace), which
// ACL LOG shows. With TestACLRestrictedUser this makes each set minimal.
func TestACLEveryRuleIsNeeded(t *testing.T) {
	p := testkit.StartRedis(t)
	admin := p.Client(t)
	key := DefaultKey
	forEachMode(t, classicModes(), func(t *testing.T, m testkit.Mode) {
		channels, commands := aclRules(key, isRooms(m), "/", "/chat")
		for i, removed := range slices.Concat(channels, commands) {
			t.Run("without_"+strings.ReplaceAll(removed, "/", "_"), func(t *testing.T) {
				testkit.VerifyNoLeaks(t)
				rules := slices.DeleteFunc(aclUser(channels, commands), func(r string) bool { return r == removed })
				user := fmt.Sprintf("adapter-%s-%d", m.Name, i)
				aclSetUser(t, admin, user, rules)
				refused := func(d aclDenial) bool {
					if strings.HasPrefix(removed, "&") {
						glob := removed[1:]
						return d.reason == "channel" && (d.object == glob || strings.HasPrefix(d.object, strings.TrimSuffix(glob, "*")))
					}
					return d.reason == "command" && d.object == removed[1:]
				}
				b := modeWith(t, m, func(o *Options) {
					o.Key = key
					o.HealthCheckInterval = 50 * time.Millisecond
				}).New(userClient(t, p, user), key).(*Builder)
				nd := testkit.NewNode(t, b, "/chat")
				start := time.Now()
				chatClosed := false
				var last time.Time
				var denials []aclDenial
				testkit.WaitFor(t, fmt.Sprintf("Redis refuses what %s allows", removed), func() bool {
					// Every 200ms, so that the subscriber idles long enough
					// to ping.
					if time.Since(last) > 200*time.Millisecond {
						last = time.Now()
						if !chatClosed && time.Since(start) > 300*time.Millisecond {
							// Unsubscribes /chat, once its subscription had
							// time to be sent.
							chatClosed = true
							nd.Ns("/chat").Adapter().Close()
						}
						nd.Ns("/").Emit("x", 1)                 // PUBLISH
						nd.Ns("/").Adapter().ServerCount()      // PUBSUB NUMSUB
						nd.Ns("/").To("some-room").Emit("y", 1) // PUBLISH to a room channel
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
	})
}

// TestACLDeniedSubscriptionIsNeverConnected: an adapter whose subscriptions
// Redis refuses must never report StateConnected, since it would receive
// nothing from the other servers. Users: one without any channel, one with
// the natural-looking but insufficient "&socket.io#*" (a PSUBSCRIBE pattern is
// matched literally). Once the administrator grants the rules, the adapter
// recovers by itself.
func TestACLDeniedSubscriptionIsNeverConnected(t *testing.T) {
	p := testkit.StartRedis(t)
	admin := p.Client(t)
	key := DefaultKey
	channels, commands := aclRules(key, false, "/")
	globOnly := []string{"&" + key + "#*", "&" + key + "-request#*", "&" + key + "-response#*"}
	for _, tc := range []struct {
		user     string
		channels []string
	}{{"nochannels", nil}, {"globonly", globOnly}} {
		t.Run(tc.user, func(t *testing.T) {
			testkit.VerifyNoLeaks(t)
			aclSetUser(t, admin, tc.user, aclUser(tc.channels, commands))
			w := newWatch(t)
			b := modeWith(t, modeClassic(), w.configure, func(o *Options) {
				o.HealthCheckInterval = 50 * time.Millisecond
				o.MaxReconnectDelay = 200 * time.Millisecond
			}).New(userClient(t, p, tc.user), key).(*Builder)
			nd := testkit.NewNode(t, b)
			testkit.WaitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
			// Health pings, publishes and resubscriptions happen meanwhile
			// (one second of them): none may bring the adapter back.
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				nd.Ns("/").Emit("x", 1)
				if st := b.State(); st != StateDegraded {
					t.Fatalf("state %v with refused subscriptions", st)
				}
			}
			if n := w.state(0).count(StateDegraded, StateConnected); n != 0 {
				t.Fatalf("%d transitions degraded -> connected with refused subscriptions", n)
			}
			aclSetUser(t, admin, tc.user, aclUser(channels, commands))
			testkit.WaitFor(t, "connected once the channels are granted", func() bool { return b.State() == StateConnected })
		})
	}
}

// TestRedisWithoutPSubscribe (issue 13): on a Redis that refuses PSUBSCRIBE
// — a user without +psubscribe, or a service without the command — the
// default classic mode degrades with an error that names
// Options.RoomSubscriptions, logged once, and the room-subscription mode
// works there.
func TestRedisWithoutPSubscribe(t *testing.T) {
	p := testkit.StartRedis(t)
	admin := p.Client(t)
	key := testkit.UniqueKey(t)
	// The room-subscription mode's rules: no +psubscribe.
	aclSetUser(t, admin, "nopattern", aclUser(aclRules(key, true, "/")))

	t.Run("classic degrades and says why", func(t *testing.T) {
		testkit.VerifyNoLeaks(t)
		w := newWatch(t)
		b := modeWith(t, modeClassic(), w.configure, func(o *Options) { o.MaxReconnectDelay = 200 * time.Millisecond }).
			New(userClient(t, p, "nopattern"), key).(*Builder)
		nd := testkit.NewNode(t, b)
		testkit.WaitFor(t, "degraded with an error naming RoomSubscriptions", func() bool {
			for _, err := range w.state(0).errs() {
				if strings.Contains(err.Error(), "Options.RoomSubscriptions") {
					return true
				}
			}
			return false
		})
		t.Logf("degraded with: %v", w.state(0).errs()[0])
		cl, _ := nd.Connect(t, "/")
		nd.Ns("/").Emit("local", 1)
		testkit.WaitEvents(t, cl, "local", 1)
		// It keeps retrying with backoff; the hint is logged once.
		before := aclLogCount(t, admin, "nopattern")
		testkit.WaitFor(t, "another refused PSUBSCRIBE", func() bool { return aclLogCount(t, admin, "nopattern") > before })
		hints := 0
		for _, r := range w.log(0).at(slog.LevelError) {
			if strings.Contains(r.Message, "Options.RoomSubscriptions") {
				hints++
			}
		}
		if hints != 1 {
			t.Errorf("the hint was logged %d times, want once", hints)
		}
		if st := b.State(); st != StateDegraded {
			t.Errorf("state %v, want degraded", st)
		}
	})
	t.Run("classic-rooms works", func(t *testing.T) {
		c := testkit.StartCluster(t, testkit.ClusterConfig{Env: userEnv(p, "nopattern"), N: 2, Key: key, Mode: modeRooms()})
		cls, socks := c.ConnectEach("/")
		socks[1].Join("room1")
		c.Ns(0, "/").To("room1").Emit("room", 1)
		testkit.WaitEvents(t, cls[1], "room", 1)
		c.Ns(1, "/").Emit("all", 2)
		testkit.WaitEvents(t, cls[0], "all", 1)
		for i := range c.Nodes {
			if st := builderOf(c, i).Stats(); st.State != StateConnected || st.StateChanges != 1 {
				t.Errorf("server %d: %v after %d state changes", i, st.State, st.StateChanges)
			}
		}
	})
}

// aclLogCount returns the number of refusals of user in ACL LOG (an entry
// counts repeated refusals).
func aclLogCount(t testing.TB, admin *redis.Client, user string) int {
	res, err := admin.Do(context.Background(), "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range res {
		m := map[string]any{}
		switch e := e.(type) {
		case map[any]any:
			for k, v := range e {
				m[fmt.Sprint(k)] = v
			}
		case []any:
			for i := 0; i+1 < len(e); i += 2 {
				m[fmt.Sprint(e[i])] = e[i+1]
			}
		}
		if fmt.Sprint(m["username"]) == user {
			c, _ := m["count"].(int64)
			n += int(c)
		}
	}
	return n
}

// TestSentinelFailover: two servers on go-redis failover clients form a
// cluster through a Sentinel-managed master; the master is killed, the
// sentinel promotes the replica, and without any restart of the servers
// cross-instance delivery resumes in both directions. The promotion and
// recovery times are logged.
func TestSentinelFailover(t *testing.T) {
	s := testkit.StartSentinel(t)
	c := testkit.NewCluster(t, s.Env(), 2, modeClassic(func(o *Options) { o.MaxReconnectDelay = time.Second }))
	cls, _ := c.ConnectEach("/")
	c.Ns(0, "/").Emit("before", "x")
	testkit.WaitEvents(t, cls[1], "before", 1)

	killed := time.Now()
	s.Master.Kill()
	testkit.WaitForWithin(t, 30*time.Second, "the sentinel promoted the replica", func() bool {
		addr, err := s.MasterAddr()
		return err == nil && addr == s.Replica.Addr()
	})
	promoted := time.Since(killed)
	t.Logf("sentinel promoted the replica %v after the kill", promoted.Round(time.Millisecond))
	d := crossUntilDelivered(t, c.Ns(0, "/"), cls[1], "after", killed, 30*time.Second)
	t.Logf("first cross-instance delivery %v after the kill (%v after the promotion)", d.Round(time.Millisecond), (d - promoted).Round(time.Millisecond))
	crossUntilDelivered(t, c.Ns(1, "/"), cls[0], "back", killed, 30*time.Second)
	for i := range c.Nodes {
		b := builderOf(c, i)
		testkit.WaitFor(t, fmt.Sprintf("server %d connected after the failover", i), func() bool { return b.State() == StateConnected })
		t.Logf("server %d after the failover: %+v", i, b.Stats())
	}
	if n := c.Ns(0, "/").Adapter().ServerCount(); n != 2 {
		t.Fatalf("ServerCount after the failover = %d, want 2", n)
	}
}
