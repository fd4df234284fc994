package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/zishang520/socket.io/v2/socket"

	"github.com/d38ad898/redisadapter"
	"github.com/d38ad898/redisadapter/emitter"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 10 * time.Second

// subscribe subscribes to channel on m and returns the channel of messages.
func subscribe(t *testing.T, addr, channel string) <-chan *redis.Message {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ps := rdb.Subscribe(ctx, channel)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("subscribe %s: %v", channel, err)
	}
	return ps.Channel()
}

func next(t *testing.T, msgs <-chan *redis.Message) *redis.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a notification")
		return nil
	}
}

// checkFrame checks that payload is the emitter frame of a chat message
// with text to the room "lobby" of the namespace "/".
func checkFrame(t *testing.T, payload, text string) {
	t.Helper()
	var frame []any
	if err := msgpack.Unmarshal([]byte(payload), &frame); err != nil {
		t.Fatalf("decode %x: %v", payload, err)
	}
	want := []any{
		"emitter",
		map[string]any{
			"type": int8(2),
			"data": []any{"chat message", map[string]any{"name": "system", "text": text, "instance": "worker"}},
			"nsp":  "/",
		},
		map[string]any{"rooms": []any{"lobby"}, "flags": map[string]any{}, "except": []any{}},
	}
	if !reflect.DeepEqual(frame, want) {
		t.Errorf("frame = %#v\nwant    %#v", frame, want)
	}
}

// TestNotifyPublishesChatMessage checks the frame one notification puts on
// Redis: the chat message the chat page displays, for the room's channel.
func TestNotifyPublishesChatMessage(t *testing.T) {
	m := miniredis.RunT(t)
	msgs := subscribe(t, m.Addr(), "socket.io#/#lobby#")
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := notify(ctx, emitter.New(rdb, nil), "lobby", "Backup done."); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, next(t, msgs).Payload, "Backup done.")
}

// TestRunNotifiesUntilCancelled checks that run sends a first message at
// start, then one per tick, and returns nil once its context is cancelled.
func TestRunNotifiesUntilCancelled(t *testing.T) {
	m := miniredis.RunT(t)
	msgs := subscribe(t, m.Addr(), "socket.io#/#lobby#")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{RedisURL: "redis://" + m.Addr(), Every: 10 * time.Millisecond, Room: "lobby", Message: "  tick  "})
	}()
	for range 3 {
		checkFrame(t, next(t, msgs).Payload, "tick")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancellation", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("run did not return after cancellation")
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
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

// TestRunSurvivesRedisOutage checks that the worker logs failed
// notifications while Redis is down, and resumes once it is back.
func TestRunSurvivesRedisOutage(t *testing.T) {
	m := miniredis.RunT(t)
	addr := m.Addr()
	m.Close()

	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{
			RedisURL: "redis://" + addr, Every: 20 * time.Millisecond, Room: "lobby", Message: "back",
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
	}()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(logs.String(), "notification not sent") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning logged while Redis is down; logs:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}

	if err := m.Restart(); err != nil { // same address
		t.Fatalf("restart miniredis on %s: %v", addr, err)
	}
	msgs := subscribe(t, addr, "socket.io#/#lobby#")
	checkFrame(t, next(t, msgs).Payload, "back")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("run did not return after cancellation")
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	ok := config{RedisURL: "redis://127.0.0.1:1/0", Every: time.Second, Room: "lobby", Message: "hi"}
	for name, mutate := range map[string]func(*config){
		"bad URL":       func(c *config) { c.RedisURL = "http://nope" },
		"zero interval": func(c *config) { c.Every = 0 },
		"empty room":    func(c *config) { c.Room = "" },
		"blank message": func(c *config) { c.Message = " \t" },
	} {
		c := ok
		mutate(&c)
		if err := run(context.Background(), c); err == nil {
			t.Errorf("%s: run returned nil", name)
		}
	}
}

// TestWorkerReachesChatClient runs the seed use case end to end: a Socket.IO
// server that puts its clients in the lobby, as the chat example does, and a
// client that receives the worker's message as the chat page would.
func TestWorkerReachesChatClient(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	b := redisadapter.New(rdb, nil)
	so := socket.DefaultServerOptions()
	so.SetConnectTimeout(time.Second)
	so.SetAdapter(b)
	io := socket.NewServer(nil, so)
	joined := make(chan struct{}, 1)
	io.On("connection", func(args ...any) {
		args[0].(*socket.Socket).Join("lobby")
		joined <- struct{}{}
	})
	hs := httptest.NewServer(io.ServeHandler(nil))
	t.Cleanup(func() {
		closed := make(chan struct{})
		io.Close(func(error) { close(closed) })
		select {
		case <-closed:
		case <-time.After(waitTimeout):
		}
		hs.Close()
		_ = b.Close()
	})
	const reqCh = "socket.io-request#/#"
	deadline := time.Now().Add(waitTimeout)
	for {
		n, err := rdb.PubSubNumSub(context.Background(), reqCh).Result()
		if err == nil && n[reqCh] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the adapter never subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl, err := sioclient.Dial(ctx, hs.URL, "/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	select {
	case <-joined:
	case <-ctx.Done():
		t.Fatal("the server never saw the client")
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, config{RedisURL: "redis://" + m.Addr(), Every: time.Hour, Room: "lobby", Message: "Maintenance at noon."})
	}()
	evs, err := cl.WaitFor(ctx, "chat message", 1)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []any{map[string]any{"name": "system", "text": "Maintenance at noon.", "instance": "worker"}}
	if !reflect.DeepEqual(evs[0].Args, want) {
		t.Errorf("chat message args = %#v, want %#v", evs[0].Args, want)
	}
}
