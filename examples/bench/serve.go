package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"

	"github.com/d38ad898/redisadapter"
)

// serveEnv, set to "1" in the environment of a child process, makes the
// benchmark binary (or its test binary) run one server instance instead of
// the benchmark. main also accepts the hidden -serve flag.
const serveEnv = "REDISADAPTER_BENCH_SERVE"

// serveMain runs one Go Socket.IO server instance for the benchmark until it
// receives SIGTERM or SIGINT. args are the flags after -serve.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	adapterKind := fs.String("adapter", "redis", `"redis" (redisadapter.New), "rooms" (New with RoomSubscriptions), "sharded" (redisadapter.NewSharded), "streams" (redisadapter.NewStreams, with connection state recovery) or "memory" (socket.io's in-memory adapter)`)
	redisURL := fs.String("redis", "", "Redis URL (adapter redis)")
	clusterAddrs := fs.String("cluster", "", "comma-separated Redis Cluster node addresses: use a cluster client instead of -redis")
	shardedMode := fs.String("sharded-mode", string(redisadapter.SubscriptionModeDynamic), "adapter sharded: subscription mode")
	key := fs.String("key", redisadapter.DefaultKey, "the adapter's channel prefix")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	logDisconnects := fs.Bool("log-disconnects", false, "log every client disconnection with its reason on stderr (-soak)")
	_ = fs.Bool("serve", true, "run as a server instance (hidden)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	opts := socket.DefaultServerOptions()
	var builder statsBuilder
	newClient := func() (redis.UniversalClient, error) {
		if *clusterAddrs != "" {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(*clusterAddrs, ",")}), nil
		}
		ro, err := redis.ParseURL(*redisURL)
		if err != nil {
			return nil, fmt.Errorf("parse -redis: %w", err)
		}
		return redis.NewClient(ro), nil
	}
	switch *adapterKind {
	case "redis", "rooms":
		rdb, err := newClient()
		if err != nil {
			return err
		}
		b := redisadapter.New(rdb, &redisadapter.Options{Key: *key, RoomSubscriptions: *adapterKind == "rooms"})
		builder = b
		opts.SetAdapter(b)
	case "streams":
		rdb, err := newClient()
		if err != nil {
			return err
		}
		// As Node's streams configuration: recovery on, defaults otherwise.
		b := redisadapter.NewStreams(rdb, &redisadapter.StreamsOptions{Options: redisadapter.Options{Key: *key}, StreamName: *key})
		builder = b
		opts.SetAdapter(b)
		opts.SetConnectionStateRecovery(&socket.ConnectionStateRecovery{})
	case "sharded":
		rdb, err := newClient()
		if err != nil {
			return err
		}
		so := &redisadapter.ShardedOptions{Options: redisadapter.Options{Key: *key}, SubscriptionMode: redisadapter.SubscriptionMode(*shardedMode)}
		if err := so.Validate(); err != nil {
			return err
		}
		b := redisadapter.NewSharded(rdb, so)
		builder = b
		opts.SetAdapter(b)
	case "memory":
	default:
		return fmt.Errorf("unknown -adapter %q", *adapterKind)
	}
	io := socket.NewServer(nil, opts)
	io.On("connection", func(args ...any) {
		s := args[0].(*socket.Socket)
		if *logDisconnects {
			s.On("disconnect", func(args ...any) {
				fmt.Fprintf(os.Stderr, "%s client %s disconnected: %v\n", time.Now().Format("15:04:05.000"), s.Id(), args)
			})
		}
		if auth, ok := s.Handshake().Auth.(map[string]any); ok {
			if r, ok := auth["room"].(string); ok && r != "" {
				s.Join(socket.Room(r))
			}
		}
	})
	nsp := io.Of("/", nil)

	srv := &server{io: io, nsp: nsp, builder: builder, adapterKind: *adapterKind}
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", io.ServeHandler(nil))
	mux.HandleFunc("GET /bench/stats", func(w http.ResponseWriter, r *http.Request) {
		st := statsReply{
			Impl: "go", Adapter: *adapterKind, PID: os.Getpid(),
			CPUMicros: processCPU(), MaxRSSKB: peakRSSKB(), RSSKB: rssKB(), WriteCalls: writeSyscalls(), NowNanos: time.Now().UnixNano(),
			Goroutines: runtime.NumGoroutine(), Rooms: map[string]int{},
		}
		if r.URL.Query().Get("nocount") == "" {
			st.ServerCount = nsp.Adapter().ServerCount()
		}
		for _, room := range strings.Split(r.URL.Query().Get("rooms"), ",") {
			if room == "" {
				continue
			}
			n := 0
			if ids, ok := nsp.Adapter().Rooms().Load(socket.Room(room)); ok {
				n = ids.Len()
			}
			st.Rooms[room] = n
		}
		if builder != nil {
			s := builder.Stats()
			st.State = s.State.String()
			st.AdapterStats = map[string]int64{
				"published": int64(s.Published), "publish_errors": int64(s.PublishErrors),
				"publish_dropped": int64(s.PublishDropped), "skipped_degraded": int64(s.SkippedDegraded),
				"received": int64(s.Received), "queue_length": int64(s.QueueLength), "queue_bytes": int64(s.QueueBytes),
				"dropped_own": int64(s.DroppedOwn), "dropped_unknown_room": int64(s.DroppedUnknownRoom),
				"dropped_malformed": int64(s.DroppedMalformed), "dropped_oversized": int64(s.DroppedOversized),
				"encode_errors": int64(s.EncodeErrors), "join_wait_expired": int64(s.JoinWaitExpired),
				"reconnects": int64(s.Reconnects), "state_changes": int64(s.StateChanges),
			}
		}
		st.SoakSent = srv.soakSent.Load()
		writeJSON(w, st)
	})
	mux.HandleFunc("POST /bench/emit", func(w http.ResponseWriter, r *http.Request) {
		var req emitRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep, err := srv.emit(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, rep)
	})
	mux.HandleFunc("POST /bench/join", func(w http.ResponseWriter, r *http.Request) {
		var req joinRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep, err := srv.join(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, rep)
	})
	mux.HandleFunc("POST /bench/soak", func(w http.ResponseWriter, r *http.Request) {
		var req soakRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep, err := srv.soak(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, rep)
	})
	mux.HandleFunc("POST /bench/profile", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Action, Path string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := srv.profile(req.Action, req.Path); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, struct{}{})
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("LISTENING %d\n", ln.Addr().(*net.TCPAddr).Port)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		_ = srv.profile("stop", "")
		os.Exit(0)
	}()
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// statsBuilder is what the benchmark needs of an adapter builder: its
// counters. *redisadapter.Builder has them, whatever its transport.
type statsBuilder interface {
	Stats() redisadapter.Stats
}

// server is the state of one -serve instance.
type server struct {
	io          *socket.Server
	nsp         socket.Namespace
	builder     statsBuilder // nil with the in-memory adapter
	adapterKind string

	soakMu   sync.Mutex
	soakOn   bool
	soakSent atomic.Int64 // messages the soak emitter has sent

	emitMu sync.Mutex // one emission at a time

	profMu   sync.Mutex
	profFile *os.File
}

// publishedTotal counts the frames the adapter is done with: written to
// Redis, failed or dropped.
func (s *server) publishedTotal() uint64 {
	st := s.builder.Stats()
	return st.Published + st.PublishErrors + st.PublishDropped + st.SkippedDegraded
}

func (s *server) emit(req emitRequest) (emitReply, error) {
	s.emitMu.Lock()
	defer s.emitMu.Unlock()
	pad := strings.Repeat("x", max(req.Payload, 0))
	room := socket.Room(req.Room)
	// Blast mode with Rooms: round-robin over them.
	rooms := make([]socket.Room, len(req.Rooms))
	for i, r := range req.Rooms {
		rooms[i] = socket.Room(r)
	}
	var rep emitReply
	var before uint64
	if req.WaitPublished && s.builder != nil {
		before = s.publishedTotal()
	}
	to := func(i int) socket.Room {
		if len(rooms) > 0 {
			return rooms[i%len(rooms)]
		}
		return room
	}
	switch req.Mode {
	case "blast":
		rep.StartNanos = time.Now().UnixNano()
		if len(rooms) > 0 {
			for i := range req.Count {
				s.io.To(rooms[i%len(rooms)]).Emit(req.Event, i, time.Now().UnixNano(), pad)
			}
		} else {
			for i := range req.Count {
				s.io.To(room).Emit(req.Event, i, time.Now().UnixNano(), pad)
			}
		}
		rep.Emitted = req.Count
		rep.EndNanos = time.Now().UnixNano()
	case "rate":
		if req.Rate <= 0 || req.DurationMS <= 0 {
			return rep, errors.New("rate mode needs rate > 0 and duration_ms > 0")
		}
		n := req.Rate * req.DurationMS / 1000
		interval := time.Second / time.Duration(req.Rate)
		start := time.Now()
		rep.StartNanos = start.UnixNano()
		for i := range n {
			due := start.Add(time.Duration(i) * interval)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			now := time.Now()
			rep.MaxLagNs = max(rep.MaxLagNs, int64(now.Sub(due)))
			s.io.To(to(i)).Emit(req.Event, i, now.UnixNano(), pad)
		}
		rep.Emitted = n
		rep.EndNanos = time.Now().UnixNano()
	default:
		return rep, fmt.Errorf("unknown mode %q", req.Mode)
	}
	if req.WaitPublished && s.builder != nil {
		deadline := time.Now().Add(30 * time.Second)
		for s.publishedTotal()-before < uint64(rep.Emitted) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		rep.DrainNanos = time.Now().UnixNano()
	}
	return rep, nil
}

// profile starts or stops a CPU profile of this instance.
func (s *server) profile(action, path string) error {
	s.profMu.Lock()
	defer s.profMu.Unlock()
	switch action {
	case "start":
		if s.profFile != nil {
			return errors.New("a profile is already running")
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		s.profFile = f
	case "stop":
		if s.profFile == nil {
			return nil
		}
		pprof.StopCPUProfile()
		err := s.profFile.Close()
		s.profFile = nil
		return err
	default:
		return fmt.Errorf("unknown profile action %q", action)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
