// Command chat is a small chat room served by several Socket.IO server
// instances in one process. Every instance has its own Redis client and its
// own redisadapter, so a message sent through any instance reaches every
// browser tab, whichever instance that tab is connected to.
//
// Run it from the repository root and open two tabs, one per instance:
//
//	go run ./examples/chat
//	# then open http://127.0.0.1:3000/ and http://127.0.0.1:3001/
//
// By default it starts an embedded Redis (miniredis). Set REDIS_URL or pass
// -redis redis://host:6379/0 to use a real one instead. The other flags are
// -instances (how many servers, default 2), -port (the first port, default
// 3000), -host (default 127.0.0.1), -client-js (the URL, or a local file, of
// the Socket.IO browser client; default: the public CDN) and -adapter, the
// transport between the instances:
//
//	classic  redisadapter.New: PUBLISH, one PSUBSCRIBE pattern per namespace (default)
//	rooms    redisadapter.New with Options.RoomSubscriptions: one SUBSCRIBE per held room
//	sharded  redisadapter.NewSharded: SPUBLISH/SSUBSCRIBE (needs Redis 7: -redis or REDIS_URL)
//	streams  redisadapter.NewStreams: Redis Streams, with connection state recovery
//
// With -adapter streams a tab whose connection drops for a moment (try
// chatSocket.io.engine.close() in its console) gets back, on reconnection,
// the messages it missed, marked "recovered".
package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"

	"github.com/d38ad898/redisadapter"
)

// The chat page is a template: the server fills in the URL of the Socket.IO
// browser client and the port of the instance that served the page.
//
//go:embed index.html
var indexHTML string

var pageTemplate = template.Must(template.New("index.html").Parse(indexHTML))

// defaultClientJS is the Socket.IO browser client, loaded from its public CDN.
const defaultClientJS = "https://cdn.socket.io/4.8.1/socket.io.min.js"

// localClientJSPath is where the browser client is served from when
// -client-js names a local file instead of a URL.
const localClientJSPath = "/socket.io-client.js"

// room is the Socket.IO room that every chat participant joins.
const room = socket.Room("lobby")

// The values of -adapter: the transports between the instances.
const (
	adapterClassic = "classic" // redisadapter.New
	adapterRooms   = "rooms"   // redisadapter.New with Options.RoomSubscriptions
	adapterSharded = "sharded" // redisadapter.NewSharded
	adapterStreams = "streams" // redisadapter.NewStreams, with connection state recovery
)

// adapterTitles describe each transport in the banner and on the page.
var adapterTitles = map[string]string{
	adapterClassic: "classic pub/sub (PUBLISH, PSUBSCRIBE per namespace)",
	adapterRooms:   "classic pub/sub with room subscriptions (SUBSCRIBE per room)",
	adapterSharded: "sharded pub/sub (SPUBLISH, SSUBSCRIBE)",
	adapterStreams: "Redis Streams, with connection state recovery",
}

// config holds everything run needs. main fills it from flags; the test
// fills it directly.
type config struct {
	Host      string // address to listen on, such as 127.0.0.1
	Port      int    // port of the first instance; instance i listens on Port+i, and 0 picks free ports
	Instances int    // number of Socket.IO server instances
	RedisURL  string // Redis to use, such as redis://localhost:6379/0; empty starts an embedded miniredis
	ClientJS  string // URL, or local file, of the Socket.IO browser client
	Adapter   string // transport: classic (the default when empty), rooms, sharded or streams
	Key       string // the adapters' channel prefix, and stream name with streams; empty: "socket.io" (tests sharing a Redis set their own)

	Logger *slog.Logger // where logs go
	Out    io.Writer    // where the welcome banner with the URLs goes

	// Ready, if set, is called with the base URL of every instance once all
	// of them are listening and their adapters are connected to Redis.
	Ready func(urls []string)
}

func main() {
	cfg := config{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Out:    os.Stdout,
	}
	flag.StringVar(&cfg.Host, "host", "127.0.0.1", "address to listen on")
	flag.IntVar(&cfg.Port, "port", 3000, "port of the first instance; the others use the ports after it")
	flag.IntVar(&cfg.Instances, "instances", 2, "number of Socket.IO server instances")
	flag.StringVar(&cfg.RedisURL, "redis", "", "Redis URL, such as redis://localhost:6379/0 (default $REDIS_URL, or an embedded miniredis)")
	flag.StringVar(&cfg.ClientJS, "client-js", defaultClientJS, "URL or local file path of the Socket.IO browser client")
	flag.StringVar(&cfg.Adapter, "adapter", adapterClassic, "transport between the instances: classic, rooms (room subscriptions), sharded (Redis 7, needs -redis) or streams (Redis Streams, with connection state recovery)")
	flag.Parse()
	if cfg.RedisURL == "" {
		cfg.RedisURL = os.Getenv("REDIS_URL")
	}

	// go-redis logs a few lines of its own, such as when it drops a broken
	// connection; send them through slog too, so that all logs look alike.
	redis.SetLogger(redisLogger{cfg.Logger.With("component", "go-redis")})

	// Ctrl-C or SIGTERM cancels ctx, which makes run shut everything down.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, cfg); err != nil {
		cfg.Logger.Error("chat example failed", "err", err)
		os.Exit(1)
	}
}

// run starts the chat cluster and serves it until ctx is cancelled, then shuts
// it down cleanly. It returns an error if the cluster could not start or an
// instance stopped serving unexpectedly.
func run(ctx context.Context, cfg config) (err error) {
	if cfg.Instances < 1 {
		return fmt.Errorf("need at least one instance, got %d", cfg.Instances)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Adapter == "" {
		cfg.Adapter = adapterClassic
	}
	if _, ok := adapterTitles[cfg.Adapter]; !ok {
		return fmt.Errorf("-adapter must be classic, rooms, sharded or streams, not %q", cfg.Adapter)
	}
	clientJS, clientJSFile, err := resolveClientJS(cfg.ClientJS)
	if err != nil {
		return err
	}

	// Use the Redis the user named, or start an embedded one. The embedded
	// one is closed last, after everything that talks to it.
	redisURL := cfg.RedisURL
	if redisURL == "" {
		if cfg.Adapter == adapterSharded {
			// miniredis has no SPUBLISH/SSUBSCRIBE.
			return errors.New("-adapter sharded needs Redis 7 or later (sharded pub/sub), which the embedded miniredis is not: pass -redis redis://host:6379/0 or set REDIS_URL")
		}
		mr, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("start embedded miniredis: %w", err)
		}
		defer mr.Close()
		redisURL = "redis://" + mr.Addr()
		fmt.Fprintf(cfg.Out, "Using an embedded miniredis at %s (set REDIS_URL or -redis to use a real Redis).\n", mr.Addr())
	} else {
		fmt.Fprintf(cfg.Out, "Using Redis at %s.\n", redactURL(redisURL))
	}
	if _, err := redis.ParseURL(redisURL); err != nil {
		return fmt.Errorf("parse Redis URL: %w", err)
	}
	fmt.Fprintf(cfg.Out, "Transport between the instances: %s (-adapter %s).\n", adapterTitles[cfg.Adapter], cfg.Adapter)

	// Start the instances. Whatever has started is shut down when run
	// returns, including when a later instance fails to start.
	var instances []*instance
	defer func() { err = errors.Join(err, shutdown(instances, cfg.Logger)) }()
	serveErrs := make(chan error, cfg.Instances)
	for i := range cfg.Instances {
		port := 0
		if cfg.Port != 0 {
			port = cfg.Port + i
		}
		inst, err := startInstance(cfg, redisURL, port, clientJS, clientJSFile, serveErrs)
		if err != nil {
			return err
		}
		instances = append(instances, inst)
	}

	urls := make([]string, len(instances))
	fmt.Fprintln(cfg.Out, "The chat is up. Open two browser tabs on different instances:")
	for i, inst := range instances {
		urls[i] = "http://" + inst.addr + "/"
		fmt.Fprintf(cfg.Out, "  %s\n", urls[i])
	}
	fmt.Fprintln(cfg.Out, "Press Ctrl-C to stop.")

	// Messages reach the other instances once every adapter is connected to
	// Redis. Until then (or whenever Redis is down) each instance still
	// serves its own clients, and the adapters keep reconnecting.
	for _, inst := range instances {
		select {
		case <-inst.connected:
		case err := <-serveErrs:
			return err
		case <-ctx.Done():
			return nil
		}
	}
	if cfg.Ready != nil {
		cfg.Ready(urls)
	}

	select {
	case <-ctx.Done():
		return nil
	case err := <-serveErrs:
		return err
	}
}

// instance is one Socket.IO server with its own HTTP server, Redis client
// and adapter.
type instance struct {
	addr      string                // host:port it listens on
	io        *socket.Server        // the Socket.IO server
	http      *http.Server          // the HTTP server that serves the page and Socket.IO
	adapter   *redisadapter.Builder // the Redis adapter that links it to the other instances
	redis     *redis.Client         // its own Redis client
	connected chan struct{}         // closed once the adapter first reaches StateConnected
}

// startInstance starts one instance listening on port (0 picks a free one).
// If its HTTP server stops unexpectedly, the error is sent to serveErrs.
func startInstance(cfg config, redisURL string, port int, clientJS, clientJSFile string, serveErrs chan<- error) (*instance, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	log := cfg.Logger.With("instance", fmt.Sprintf(":%d", port))

	// Each instance gets its own Redis client, as separate processes would.
	redisOpts, err := redis.ParseURL(redisURL)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("parse Redis URL: %w", err)
	}
	inst := &instance{
		addr:      ln.Addr().String(),
		redis:     redis.NewClient(redisOpts),
		connected: make(chan struct{}),
	}

	// The adapter must be set in the server options before the server is
	// created, because the server creates its default namespace right away.
	// OnStateChange runs on a goroutine of the adapter and must not block;
	// logging and closing a channel are fine.
	var connectedOnce sync.Once
	ao := redisadapter.Options{
		Key:    cfg.Key,
		Logger: log,
		OnStateChange: func(from, to redisadapter.State, err error) {
			if err != nil {
				log.Warn("adapter state changed", "from", from, "to", to, "err", err)
			} else {
				log.Info("adapter state changed", "from", from, "to", to)
			}
			if to == redisadapter.StateConnected {
				connectedOnce.Do(func() { close(inst.connected) })
			}
		},
	}
	opts := socket.DefaultServerOptions()
	switch cfg.Adapter {
	case adapterRooms:
		ao.RoomSubscriptions = true
		inst.adapter = redisadapter.New(inst.redis, &ao)
	case adapterSharded:
		inst.adapter = redisadapter.NewSharded(inst.redis, &redisadapter.ShardedOptions{Options: ao})
	case adapterStreams:
		inst.adapter = redisadapter.NewStreams(inst.redis, &redisadapter.StreamsOptions{Options: ao, StreamName: cfg.Key})
		// A client whose connection drops comes back, to any instance, with
		// its id, its rooms and the messages it missed, for up to 2 minutes
		// (while the stream still holds them).
		opts.SetConnectionStateRecovery(&socket.ConnectionStateRecovery{})
	default:
		inst.adapter = redisadapter.New(inst.redis, &ao)
	}
	opts.SetAdapter(inst.adapter)
	inst.io = socket.NewServer(nil, opts)
	inst.io.On("connection", func(args ...any) {
		onConnection(inst.io, args[0].(*socket.Socket), port, log)
	})

	// The page is served at / and Socket.IO at /socket.io/.
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", inst.io.ServeHandler(nil))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		var page bytes.Buffer
		if err := pageTemplate.Execute(&page, map[string]any{"ClientJS": clientJS, "Instance": port, "Adapter": cfg.Adapter, "Recovery": cfg.Adapter == adapterStreams}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page.Bytes())
	})
	if clientJSFile != "" {
		mux.HandleFunc("GET "+localClientJSPath, func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, clientJSFile)
		})
	}

	inst.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := inst.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			serveErrs <- fmt.Errorf("instance :%d: %w", port, err)
		}
	}()
	return inst, nil
}

// onConnection sets up one chat participant: it joins the lobby, and its
// messages are broadcast to the lobby on every instance. A socket whose
// session was recovered (-adapter streams) is already in the lobby, and has
// already been sent what it missed.
func onConnection(srv *socket.Server, s *socket.Socket, port int, log *slog.Logger) {
	name := "anonymous"
	if auth, ok := s.Handshake().Auth.(map[string]any); ok {
		if n, ok := auth["name"].(string); ok {
			name = clean(n, 32, name)
		}
	}
	event := "joined"
	if s.Recovered() {
		event = "is back"
	}
	log.Info("client connected", "socket", s.Id(), "name", name, "recovered", s.Recovered())

	s.Join(room)
	srv.To(room).Emit("presence", map[string]any{"name": name, "event": event, "instance": port})

	s.On("chat message", func(args ...any) {
		msg, ok := first(args).(map[string]any)
		if !ok {
			return
		}
		name, _ := msg["name"].(string)
		text, _ := msg["text"].(string)
		if text = clean(text, 500, ""); text == "" {
			return
		}
		srv.To(room).Emit("chat message", map[string]any{"name": clean(name, 32, "anonymous"), "text": text, "instance": port})
	})

	s.On("disconnect", func(args ...any) {
		log.Info("client disconnected", "socket", s.Id(), "name", name, "reason", first(args))
		// Not to the socket itself: if it comes back with its session, it
		// is not told that it left.
		srv.To(room).Except(socket.Room(s.Id())).Emit("presence", map[string]any{"name": name, "event": "left", "instance": port})
	})
}

// shutdown stops the instances in order: first the Socket.IO servers, which
// disconnect their clients, then the HTTP servers, then the adapters, and
// last the Redis clients. It never closes the embedded miniredis; run does
// that afterwards.
func shutdown(instances []*instance, log *slog.Logger) error {
	if len(instances) == 0 {
		return nil
	}
	log.Info("shutting down")
	var errs []error
	for _, inst := range instances {
		inst.io.Close(nil)
	}
	// Requests still running after 5 seconds are cut off.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, inst := range instances {
		if err := inst.http.Shutdown(ctx); err != nil {
			errs = append(errs, inst.http.Close())
		}
	}
	for _, inst := range instances {
		errs = append(errs, inst.adapter.Close())
	}
	for _, inst := range instances {
		errs = append(errs, inst.redis.Close())
	}
	return errors.Join(errs...)
}

// resolveClientJS turns the -client-js value into the URL the page loads.
// An http(s) URL is used as it is; anything else is taken as a local file,
// which the instances then serve themselves.
func resolveClientJS(v string) (pageURL, file string, err error) {
	if v == "" {
		v = defaultClientJS
	}
	if u, err := url.Parse(v); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		return v, "", nil
	}
	if st, err := os.Stat(v); err != nil || st.IsDir() {
		return "", "", fmt.Errorf("-client-js %q is neither an http(s) URL nor a readable file", v)
	}
	return localClientJSPath, v, nil
}

// redisLogger passes go-redis's log lines to slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// redactURL hides any password in a Redis URL before it is printed.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// clean trims s and cuts it to at most limit characters; it returns def if
// nothing is left.
func clean(s string, limit int, def string) string {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > limit {
		s = strings.TrimSpace(string([]rune(s)[:limit]))
	}
	if s == "" {
		return def
	}
	return s
}

// first returns the first argument of an event, or nil if there is none.
func first(args []any) any {
	if len(args) == 0 {
		return nil
	}
	return args[0]
}
