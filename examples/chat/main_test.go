package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
)

// TestChatAcrossInstances starts a two-instance cluster on an embedded
// miniredis, with each transport of -adapter, and checks that a message sent
// through one instance reaches a client connected to the other. The sharded
// transport needs Redis 7: it runs when REDIS_URL names one.
func TestChatAcrossInstances(t *testing.T) {
	for _, adapter := range []string{"", adapterClassic, adapterRooms, adapterSharded, adapterStreams} {
		name := adapter
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			cfg := config{Instances: 2, Adapter: adapter}
			if adapter == adapterSharded {
				cfg.RedisURL = os.Getenv("REDIS_URL")
				if cfg.RedisURL == "" {
					t.Skip("-adapter sharded needs Redis 7: set REDIS_URL")
				}
				cfg.Key = fmt.Sprintf("chat-test-%d-%d", os.Getpid(), time.Now().UnixNano())
			}
			testChatAcrossInstances(t, cfg)
		})
	}
}

func testChatAcrossInstances(t *testing.T, cfg config) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	urls := startCluster(t, ctx, cfg)

	// The page is served at / and loads the Socket.IO client from the CDN.
	page := get(t, ctx, urls[0])
	if want := `<script src="` + defaultClientJS + `"></script>`; !strings.Contains(page, want) {
		t.Errorf("page at %s does not contain %s:\n%s", urls[0], want, page)
	}
	if want := fmt.Sprintf(`data-instance="%d"`, port(t, urls[0])); !strings.Contains(page, want) {
		t.Errorf("page at %s does not contain %s", urls[0], want)
	}

	// Connect bob to instance 1 and alice to instance 0. Each one's own
	// "joined" line shows that the server has put it in the lobby.
	bob := dial(t, ctx, urls[1], "bob")
	waitPresence(t, ctx, bob, "bob", port(t, urls[1]))
	alice := dial(t, ctx, urls[0], "alice")
	waitPresence(t, ctx, alice, "alice", port(t, urls[0]))

	if err := alice.Emit("chat message", map[string]any{"name": "alice", "text": "  hello from instance 0  "}); err != nil {
		t.Fatalf("emit: %v", err)
	}
	want := chatMessage{Name: "alice", Text: "hello from instance 0", Instance: port(t, urls[0])}
	for who, c := range map[string]*sioclient.Client{"bob on instance 1": bob, "alice on instance 0": alice} {
		events, err := c.WaitFor(ctx, "chat message", 1)
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if got := decodeMessage(t, events[0]); got != want {
			t.Errorf("%s got chat message %+v, want %+v", who, got, want)
		}
	}

	// Bob also heard alice join through the other instance.
	waitPresence(t, ctx, bob, "alice", port(t, urls[0]))
}

// TestChatShardedNeedsRedis checks that -adapter sharded without a Redis
// fails at once with an error that says what to do: the embedded miniredis
// has no sharded pub/sub.
func TestChatShardedNeedsRedis(t *testing.T) {
	err := run(context.Background(), config{Instances: 1, Adapter: adapterSharded, Host: "127.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), "-redis") || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("run with -adapter sharded and no Redis = %v, want an error naming -redis and REDIS_URL", err)
	}
	if err := run(context.Background(), config{Instances: 1, Adapter: "nope"}); err == nil || !strings.Contains(err.Error(), "-adapter") {
		t.Fatalf("run with -adapter nope = %v, want an error naming -adapter", err)
	}
}

// TestChatStreamsRecovery runs -adapter streams on the embedded miniredis:
// alice, on instance 0, loses her connection; bob, on instance 1, sends
// three messages meanwhile; alice comes back with her session, first to
// instance 0, then (after another drop) to instance 1, and each time gets
// what she missed, once, in order, with her socket id.
func TestChatStreamsRecovery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	urls := startCluster(t, ctx, config{Instances: 2, Adapter: adapterStreams})
	if page := get(t, ctx, urls[0]); !strings.Contains(page, `data-recovery="true"`) {
		t.Errorf("page of -adapter streams does not say recovery is on:\n%s", page)
	}

	bob := dial(t, ctx, urls[1], "bob")
	waitPresence(t, ctx, bob, "bob", port(t, urls[1]))
	alice := dial(t, ctx, urls[0], "alice")
	waitPresence(t, ctx, alice, "alice", port(t, urls[0]))
	waitPresence(t, ctx, bob, "alice", port(t, urls[0]))
	if alice.PID() == "" {
		t.Fatal("alice got no private session id: recovery is off")
	}

	sent, left, at := 0, 0, urls[0]
	for round, back := range []string{urls[0], urls[1]} {
		id, from := alice.ID(), at
		at = back
		alice.Drop()
		// Once bob hears that alice left, her server has seen the drop and
		// saved her session (before the broadcast, on the same queue).
		left++
		waitPresenceEvent(t, ctx, bob, "alice", "left", port(t, from), left)
		// Bob sends one message at a time, as someone typing does:
		// socket.io/v2 handles each incoming packet on a goroutine of its
		// own, so two events sent back to back by one client may be
		// broadcast in either order. He gets each back once it is in the
		// stream (it carries its entry id).
		var want []chatMessage
		for i := range 3 {
			text := fmt.Sprintf("missed %d.%d", round, i)
			if err := bob.Emit("chat message", map[string]any{"name": "bob", "text": text}); err != nil {
				t.Fatal(err)
			}
			want = append(want, chatMessage{Name: "bob", Text: text, Instance: port(t, urls[1])})
			sent++
			if _, err := bob.WaitFor(ctx, "chat message", sent); err != nil {
				t.Fatalf("bob: %v", err)
			}
		}
		next, err := alice.Reconnect(ctx, back)
		if err != nil {
			t.Fatalf("alice reconnecting to %s: %v", back, err)
		}
		t.Cleanup(func() { next.Close() })
		alice = next
		if !alice.Recovered() || alice.ID() != id {
			t.Fatalf("round %d: alice reconnected to %s with recovered=%v, id %q (was %q), want her session back", round, back, alice.Recovered(), alice.ID(), id)
		}
		// A fence: bob sends one more message live. Once alice has it,
		// everything replayed before it has arrived (the replay precedes her
		// CONNECT, and bob's messages cross the stream in order).
		fence := fmt.Sprintf("fence %d", round)
		if err := bob.Emit("chat message", map[string]any{"name": "bob", "text": fence}); err != nil {
			t.Fatal(err)
		}
		sent++
		var got []chatMessage
		for n := 1; ; n++ {
			events, err := alice.WaitFor(ctx, "chat message", n)
			if err != nil {
				t.Fatalf("round %d: alice: %v", round, err)
			}
			got = got[:0]
			done := false
			for _, ev := range events {
				m := decodeMessage(t, ev)
				if done = m.Text == fence; done {
					break
				}
				got = append(got, m)
			}
			if done {
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round %d: alice recovered %v, want %v", round, got, want)
		}
	}
}

// TestLocalClientJS checks that -client-js may name a local file, which the
// instances then serve themselves; browser tests rely on this.
func TestLocalClientJS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := filepath.Join(t.TempDir(), "socket.io.min.js")
	const body = "/* a stand-in for the Socket.IO browser client */"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	urls := startCluster(t, ctx, config{Instances: 1, ClientJS: file})

	if page, want := get(t, ctx, urls[0]), `<script src="`+localClientJSPath+`"></script>`; !strings.Contains(page, want) {
		t.Errorf("page does not contain %s:\n%s", want, page)
	}
	if got := get(t, ctx, strings.TrimSuffix(urls[0], "/")+localClientJSPath); got != body {
		t.Errorf("GET %s = %q, want %q", localClientJSPath, got, body)
	}
}

// startCluster runs the example with cfg on free ports and an embedded
// miniredis, and returns the base URL of each instance once the cluster is
// ready. The cluster is stopped, and run is checked to have returned nil,
// when the test ends. Logs are shown only if the test fails.
func startCluster(t *testing.T, ctx context.Context, cfg config) []string {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Host, cfg.Port = "127.0.0.1", 0 // cfg.RedisURL empty: an embedded miniredis
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Out = logs
	ready := make(chan []string, 1)
	cfg.Ready = func(urls []string) { ready <- urls }

	// The cluster gets its own context, so that it outlives the test's
	// clients: they are closed first, by their own cleanups.
	runCtx, stop := context.WithCancel(context.Background())
	var runErr error
	done := make(chan struct{})
	go func() {
		runErr = run(runCtx, cfg)
		close(done)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
			if runErr != nil {
				t.Errorf("run returned %v", runErr)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("run did not return within 15s of being cancelled")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})

	select {
	case urls := <-ready:
		if len(urls) != cfg.Instances {
			t.Fatalf("got %d URLs, want %d: %v", len(urls), cfg.Instances, urls)
		}
		return urls
	case <-done:
		t.Fatalf("run returned before the cluster was ready: %v", runErr)
	case <-ctx.Done():
		t.Fatalf("cluster not ready: %v", ctx.Err())
	}
	return nil
}

// get fetches rawURL, fails the test unless the status is 200, and returns
// the body.
func get(t *testing.T, ctx context.Context, rawURL string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200:\n%s", rawURL, resp.StatusCode, body)
	}
	return string(body)
}

// dial connects a test client named name to the instance at baseURL and
// closes it when the test ends.
func dial(t *testing.T, ctx context.Context, baseURL, name string) *sioclient.Client {
	t.Helper()
	c, err := sioclient.Dial(ctx, baseURL, "/", sioclient.WithAuth(map[string]any{"name": name}))
	if err != nil {
		t.Fatalf("dial %s: %v", baseURL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitPresence waits until c has been told that name joined via the instance
// on port.
func waitPresence(t *testing.T, ctx context.Context, c *sioclient.Client, name string, port int) {
	t.Helper()
	waitPresenceEvent(t, ctx, c, name, "joined", port, 1)
}

// waitPresenceEvent waits until c has been told count times that name did
// event ("joined", "left", "is back") via the instance on port.
func waitPresenceEvent(t *testing.T, ctx context.Context, c *sioclient.Client, name, event string, port, count int) {
	t.Helper()
	want := fmt.Sprintf("%s %s via :%d", name, event, port)
	seen := 0
	for n := 1; ; n++ {
		events, err := c.WaitFor(ctx, "presence", n)
		if err != nil {
			t.Fatalf("waiting for %q (#%d): %v", want, count, err)
		}
		if len(events[n-1].Args) > 0 {
			if p, ok := events[n-1].Args[0].(map[string]any); ok && presenceLine(p) == want {
				if seen++; seen == count {
					return
				}
			}
		}
	}
}

// presenceLine renders a presence event the way the page does.
func presenceLine(p map[string]any) string {
	name, _ := p["name"].(string)
	event, _ := p["event"].(string)
	inst, _ := p["instance"].(float64)
	return fmt.Sprintf("%s %s via :%d", name, event, int(inst))
}

// chatMessage is the payload of a "chat message" event sent by the server.
type chatMessage struct {
	Name     string
	Text     string
	Instance int
}

// decodeMessage returns the payload of a "chat message" event. With
// connection state recovery (-adapter streams) the server appends the
// message's offset, a string.
func decodeMessage(t *testing.T, ev sioclient.Event) chatMessage {
	t.Helper()
	if len(ev.Args) == 2 {
		if _, ok := ev.Args[1].(string); ok {
			ev.Args = ev.Args[:1]
		}
	}
	if len(ev.Args) != 1 {
		t.Fatalf("chat message has %d arguments, want 1: %v", len(ev.Args), ev.Args)
	}
	m, ok := ev.Args[0].(map[string]any)
	if !ok {
		t.Fatalf("chat message payload is %T, want an object", ev.Args[0])
	}
	var msg chatMessage
	msg.Name, _ = m["name"].(string)
	msg.Text, _ = m["text"].(string)
	inst, _ := m["instance"].(float64)
	msg.Instance = int(inst)
	return msg
}

// port returns the port of a base URL.
func port(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("no port in %s", rawURL)
	}
	return p
}

// syncBuffer is a bytes.Buffer that is safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
