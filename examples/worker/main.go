// Command worker is a background job that is not a Socket.IO server: every
// few seconds it posts a system message to the room "lobby" of the chat
// example, through the Redis emitter (package emitter). The message reaches
// every user of the chat, whichever instance their browser is connected to.
//
// The worker and the chat must share a Redis. The chat's embedded miniredis
// lives inside the chat process, out of the worker's reach, so run the chat on
// a real Redis:
//
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/chat
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/worker -every 5s -message "Backup done."
//
// Flags: -redis (the Redis URL; default $REDIS_URL, else
// redis://127.0.0.1:6379/0), -every (the interval, default 10s; the first
// message goes out at start), -room (default "lobby") and -message (the text).
// The messages appear in the chat as coming from "system", via "worker". If
// Redis is unreachable the worker logs a warning and tries again at the next
// tick. Ctrl-C (or SIGTERM) stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/d38ad898/redisadapter/emitter"
)

// defaultRedis is the Redis used when neither -redis nor REDIS_URL names one.
const defaultRedis = "redis://127.0.0.1:6379/0"

// event is the event the chat page listens to; its payload is
// {name, text, instance}, as the chat servers emit it.
const event = "chat message"

// config holds everything run needs. main fills it from flags; the tests fill
// it directly.
type config struct {
	RedisURL string        // Redis shared with the chat servers
	Every    time.Duration // interval between two messages
	Room     string        // room to notify
	Message  string        // text of the message
	Logger   *slog.Logger  // where logs go; nil discards them
}

func main() {
	cfg := config{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	flag.StringVar(&cfg.RedisURL, "redis", defaultRedisURL(), "Redis URL shared with the chat servers (default $REDIS_URL, else "+defaultRedis+")")
	flag.DurationVar(&cfg.Every, "every", 10*time.Second, "interval between two messages")
	flag.StringVar(&cfg.Room, "room", "lobby", "room to notify")
	flag.StringVar(&cfg.Message, "message", "This is a scheduled message from the background worker.", "text of the message")
	flag.Parse()

	// go-redis logs a few lines of its own; send them through slog too.
	redis.SetLogger(redisLogger{cfg.Logger.With("component", "go-redis")})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		cfg.Logger.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

// defaultRedisURL is $REDIS_URL, or defaultRedis when it is not set.
func defaultRedisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return defaultRedis
}

// run notifies cfg.Room at start and then every cfg.Every until ctx is
// cancelled, when it returns nil. It returns an error only for an invalid
// configuration: a failed notification is logged and the next tick tries
// again.
func run(ctx context.Context, cfg config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	text := strings.TrimSpace(cfg.Message)
	switch {
	case cfg.Every <= 0:
		return fmt.Errorf("-every must be positive, got %v", cfg.Every)
	case cfg.Room == "":
		return errors.New("-room must not be empty")
	case text == "":
		return errors.New("-message must not be empty")
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("parse Redis URL: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	em := emitter.New(rdb, nil) // the chat's servers use the default key

	log.Info("worker started", "redis", redactURL(cfg.RedisURL), "room", cfg.Room, "every", cfg.Every)
	ticker := time.NewTicker(cfg.Every)
	defer ticker.Stop()
	for n := 1; ; n++ {
		// One notification may take at most the emitter's default timeout,
		// and is abandoned at once when ctx is cancelled.
		sendCtx, cancel := context.WithTimeout(ctx, emitter.DefaultTimeout)
		err := notify(sendCtx, em, cfg.Room, text)
		cancel()
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("notification not sent, will try again", "n", n, "room", cfg.Room, "err", err)
		default:
			log.Info("notification sent", "n", n, "room", cfg.Room)
		}
		select {
		case <-ctx.Done():
			log.Info("worker stopped")
			return nil
		case <-ticker.C:
		}
	}
}

// notify sends one system message to the users in room, on every chat
// instance.
func notify(ctx context.Context, em *emitter.Emitter, room, text string) error {
	return em.To(room).EmitContext(ctx, event, chatMessage(text))
}

// chatMessage is the payload of a chat message as the chat page displays it:
// who wrote it, the text, and the instance it came through.
func chatMessage(text string) map[string]any {
	return map[string]any{"name": "system", "text": text, "instance": "worker"}
}

// redisLogger passes go-redis's log lines to slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// redactURL hides any password in a Redis URL before it is logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
