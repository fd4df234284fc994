package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// config is everything a benchmark needs. main fills it from flags; the test
// fills it directly.
type config struct {
	RedisURL   string        // Redis the clusters use; empty: start a private redis-server
	Instances  int           // server instances of a cluster
	Clients    int           // clients, split evenly over the instances
	Payload    int           // padding bytes per message
	Blast      int           // messages of the blast
	Pub        int           // messages of the publish-path workload
	Rate       int           // messages per second of the fixed-rate workload
	Duration   time.Duration // duration of the fixed-rate workload
	Runs       int           // rounds; each runs every configuration once
	Configs    []string      // configurations to run, in order, among allConfigs
	CPUProfile string        // if set, CPU profiles of the Go instances during the first blast go to <CPUProfile>-<config>-<i>.pprof
	Quiet      time.Duration // a phase ends when no message has arrived for this long (default 2s)

	// The many-rooms comparisons: on a private Redis Cluster (-cluster), and
	// with 12 instances on a private standalone Redis (-many).
	Cluster     bool   // run the -cluster comparison instead of the default benchmark
	Many        bool   // run the -many comparison instead of the default benchmark
	Rooms       int    // rooms
	Holders     int    // instances that hold each room (its members are spread over them); default 1
	ShardedMode string // subscription mode of the sharded adapter (default dynamic)

	// The room subscription cost (-roomcost).
	JoinPerCall int // rooms per Socket.Join call
	JoinWorkers int // goroutines calling Socket.Join at once

	// The soak (-soak).
	Soak            time.Duration // how long; 0: no soak
	SoakKillEvery   time.Duration // kill and restart redis-server this often (0: never)
	SoakFreezeEvery time.Duration // freeze the link this often (0: never)
	SoakFreezeFor   time.Duration // how long a freeze lasts
	SoakDown        time.Duration // how long redis-server stays down when killed
	SoakReport      time.Duration // interval of the report rows
	SoakRate        int           // messages per second per instance
	SoakClients     int           // clients per instance
	SoakAdapter     string        // -serve -adapter of the instances

	// ServerExe is the binary started (with serveEnv=1) for Go instances;
	// empty: os.Executable().
	ServerExe string
	// NodeExe and InteropDir start Node instances: node InteropDir/bench-server.js.
	NodeExe    string
	InteropDir string
	// RedisCPU, when set, returns the CPU time used so far by the
	// redis-server (µs): set for a private redis-server only, whose CPU time
	// is then reported.
	RedisCPU func(context.Context) int64

	Log io.Writer // progress and child-process logs
}

// The configurations a round can run.
const (
	cfgGoRedis     = "go-redis"     // N Go instances, redisadapter.New (classic: PSUBSCRIBE per namespace)
	cfgGoRooms     = "go-rooms"     // N Go instances, redisadapter.New with RoomSubscriptions
	cfgGoStreams   = "go-streams"   // N Go instances, redisadapter.NewStreams, connection state recovery on
	cfgGoMemory    = "go-memory"    // 1 Go instance, socket.io's in-memory adapter: the ceiling
	cfgNodeRedis   = "node-redis"   // N Node instances, @socket.io/redis-adapter
	cfgNodeStreams = "node-streams" // N Node instances, @socket.io/redis-streams-adapter, recovery on
)

var allConfigs = []string{cfgGoRedis, cfgGoRooms, cfgGoStreams, cfgGoMemory, cfgNodeRedis, cfgNodeStreams}

var configTitles = map[string]string{
	cfgGoRedis:     "Go cluster, redisadapter.New (classic: PUBLISH, PSUBSCRIBE per namespace)",
	cfgGoRooms:     "Go cluster, redisadapter.New with RoomSubscriptions (SUBSCRIBE per held room)",
	cfgGoStreams:   "Go cluster, redisadapter.NewStreams (XADD/XREAD), connection state recovery on",
	cfgGoMemory:    "Go single, in-memory (ceiling)",
	cfgNodeRedis:   "Node cluster (@socket.io/redis-adapter 8, classic)",
	cfgNodeStreams: "Node cluster (@socket.io/redis-streams-adapter 0.3), connection state recovery on",
}

// configImpl returns the implementation ("go" or "node") and the -adapter of
// a configuration's servers.
func configImpl(name string) (impl, adapter string) {
	switch name {
	case cfgGoRooms:
		return "go", "rooms"
	case cfgGoStreams:
		return "go", "streams"
	case cfgGoMemory:
		return "go", "memory"
	case cfgNodeRedis:
		return "node", "redis"
	case cfgNodeStreams:
		return "node", "streams"
	}
	return "go", "redis"
}

// result holds the figures of one configuration in one round. Metrics absent
// from the map do not apply (such as remote latency on a single server).
type result struct {
	Config  string             `json:"config"`
	Round   int                `json:"round"`
	Metrics map[string]float64 `json:"metrics"`
	Notes   []string           `json:"notes,omitempty"`
}

// instance is one running server of a configuration.
type instance struct {
	proc *proc
	impl string // "go" or "node"
}

func (in *instance) url(path string) string { return "http://" + in.proc.addr() + path }

var httpClient = &http.Client{Timeout: 10 * time.Minute}

func getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return doJSON(req, out)
}

func postJSON(ctx context.Context, url string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return doJSON(req, out)
}

func doJSON(req *http.Request, out any) error {
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(raw)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// runConfig runs the three workloads on one configuration and returns its
// figures.
func runConfig(ctx context.Context, cfg *config, name string, round int) (res *result, err error) {
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "round %d %-10s "+format+"\n", append([]any{round, name}, args...)...)
	}
	res = &result{Config: name, Round: round, Metrics: map[string]float64{}}
	m := res.Metrics
	n := cfg.Instances
	impl, adapter := configImpl(name)
	if adapter == "memory" {
		n = 1
	}
	key := fmt.Sprintf("bench-%d-%d-%s-%d", os.Getpid(), round, name, time.Now().UnixNano()%1e6)

	// Servers.
	insts := make([]*instance, 0, n)
	defer func() {
		var wg sync.WaitGroup
		for _, in := range insts {
			wg.Add(1)
			go func() { defer wg.Done(); in.proc.stop() }()
		}
		wg.Wait()
	}()
	for i := range n {
		pname := fmt.Sprintf("%s-%d", name, i)
		var p *proc
		if impl == "go" {
			exe := cfg.ServerExe
			if exe == "" {
				if exe, err = os.Executable(); err != nil {
					return nil, err
				}
			}
			p, err = startServerProc(pname, exe,
				[]string{"-serve", "-adapter", adapter, "-redis", cfg.RedisURL, "-key", key},
				[]string{serveEnv + "=1"}, "", cfg.Log)
		} else {
			p, err = startServerProc(pname, cfg.NodeExe,
				[]string{filepath.Join(cfg.InteropDir, "bench-server.js"), "--port=0", "--redis-url=" + cfg.RedisURL, "--key=" + key, "--name=" + pname, "--adapter=" + adapter},
				nil, cfg.InteropDir, cfg.Log)
		}
		if err != nil {
			return nil, err
		}
		insts = append(insts, &instance{proc: p, impl: impl})
	}
	if err := waitUntil(ctx, 20*time.Second, "every instance sees the cluster", func() (bool, error) {
		for _, in := range insts {
			var st statsReply
			if err := getJSON(ctx, in.url("/bench/stats"), &st); err != nil {
				return false, err
			}
			if adapter != "memory" && st.ServerCount < int64(n) {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return nil, err
	}

	// Clients: cfg.Clients in room "bench", split evenly; with a cluster, one
	// more client, alone in room "solo", on the last instance.
	clients := make([]*benchClient, cfg.Clients)
	var solo *benchClient
	defer func() {
		var wg sync.WaitGroup
		for _, c := range append(slices.Clone(clients), solo) {
			if c != nil {
				wg.Add(1)
				go func() { defer wg.Done(); c.Close() }()
			}
		}
		wg.Wait()
	}()
	if err := connectClients(ctx, insts, clients); err != nil {
		return nil, err
	}
	hasPub := n > 1
	if hasPub {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		solo, err = dialClient(dctx, insts[n-1].proc.addr(), "solo", n-1)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("solo client: %w", err)
		}
	}
	want := make([]int, n)
	for i := range clients {
		want[i%n]++
	}
	if err := waitUntil(ctx, 20*time.Second, "every client joined its room", func() (bool, error) {
		for i, in := range insts {
			var st statsReply
			if err := getJSON(ctx, in.url("/bench/stats?rooms=bench,solo"), &st); err != nil {
				return false, err
			}
			wantSolo := 0
			if hasPub && i == n-1 {
				wantSolo = 1
			}
			if st.Rooms["bench"] != want[i] || st.Rooms["solo"] != wantSolo {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return nil, err
	}
	all := clients
	if solo != nil {
		all = append(slices.Clone(clients), solo)
	}
	checkClients := func() error {
		for _, c := range all {
			if err := c.Err(); err != nil {
				return fmt.Errorf("a client on instance %d lost its connection: %w", c.inst, err)
			}
		}
		return nil
	}

	// The emitting instance's clock against ours, for the latencies.
	offset, err := clockOffset(ctx, insts[0])
	if err != nil {
		return nil, err
	}

	// Warm-up: every client, the solo one included, receives messages.
	logf("warming up %d instance(s), %d clients", n, len(all))
	if err := waitUntil(ctx, 20*time.Second, "warm-up messages reach every client", func() (bool, error) {
		for _, room := range []string{"bench", "solo"} {
			if err := postJSON(ctx, insts[0].url("/bench/emit"), emitRequest{Mode: "blast", Room: room, Event: phaseEvents[phaseWarm], Count: 1, Payload: cfg.Payload}, nil); err != nil {
				return false, err
			}
		}
		if err := ctxSleep(ctx, 50*time.Millisecond); err != nil {
			return false, err
		}
		for _, c := range all {
			if c.count[phaseWarm].Load() == 0 {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return nil, err
	}
	if err := ctxSleep(ctx, 300*time.Millisecond); err != nil {
		return nil, err
	}

	// (1) Blast.
	profiling := cfg.CPUProfile != "" && round == 1 && impl == "go"
	stats0, err := allStats(ctx, insts)
	if err != nil {
		return nil, err
	}
	redis0 := redisCPU(ctx, cfg, adapter)
	self0 := processCPU()
	// For the share of the host that other programs took during the
	// workloads.
	first, host0, wall0 := stats0, hostBusyCPU(), time.Now()
	firstRedis, firstSelf := redis0, self0
	if profiling {
		if err := startProfiles(ctx, cfg, res, insts, "blast"); err != nil {
			return nil, err
		}
	}
	logf("blast: %d messages to %d clients", cfg.Blast, len(clients))
	var blast emitReply
	if err := postJSON(ctx, insts[0].url("/bench/emit"), emitRequest{Mode: "blast", Room: "bench", Event: phaseEvents[phaseBlast], Count: cfg.Blast, Payload: cfg.Payload}, &blast); err != nil {
		return nil, err
	}
	expected := int64(blast.Emitted) * int64(len(clients))
	got := waitDeliveries(ctx, clients, phaseBlast, expected, cfg.Quiet)
	if profiling {
		if err := stopProfiles(ctx, insts); err != nil {
			return nil, err
		}
	}
	stats1, err := allStats(ctx, insts)
	if err != nil {
		return nil, err
	}
	redis1 := redisCPU(ctx, cfg, adapter)
	self1 := processCPU()
	start := blast.StartNanos - offset // in our clock
	last := lastArrival(clients, phaseBlast)
	m["blast_loss"] = float64(expected - got)
	m["blast_loss_pct"] = pct(expected-got, expected)
	if got > 0 && last > start {
		m["blast_seconds"] = float64(last-start) / 1e9
		m["blast_deliveries_per_s"] = float64(got) / (float64(last-start) / 1e9)
		m["blast_cpu_us_per_delivery"] = float64(cpuDelta(stats0, stats1)) / float64(got)
		if w := writesDelta(stats0, stats1); w >= 0 {
			m["blast_write_syscalls_per_delivery"] = float64(w) / float64(got)
		}
		if redis0 >= 0 && redis1 >= 0 {
			m["blast_redis_cpu_us_per_msg"] = float64(redis1-redis0) / float64(blast.Emitted)
		}
		if self0 >= 0 && self1 >= 0 {
			m["blast_client_cpu_us_per_delivery"] = float64(self1-self0) / float64(got)
		}
	}
	if blast.EndNanos > blast.StartNanos {
		m["blast_emit_per_s"] = float64(blast.Emitted) / (float64(blast.EndNanos-blast.StartNanos) / 1e9)
	}
	logf("blast: %d/%d deliveries, %.0f/s", got, expected, m["blast_deliveries_per_s"])
	if err := checkClients(); err != nil {
		return nil, err
	}

	// (2) Fixed rate.
	logf("fixed rate: %d msg/s for %v", cfg.Rate, cfg.Duration)
	stats0, err = allStats(ctx, insts)
	if err != nil {
		return nil, err
	}
	if profiling {
		if err := startProfiles(ctx, cfg, res, insts, "rate"); err != nil {
			return nil, err
		}
	}
	var rate emitReply
	if err := postJSON(ctx, insts[0].url("/bench/emit"), emitRequest{Mode: "rate", Room: "bench", Event: phaseEvents[phaseRate], Rate: cfg.Rate, DurationMS: int(cfg.Duration / time.Millisecond), Payload: cfg.Payload}, &rate); err != nil {
		return nil, err
	}
	if profiling {
		if err := stopProfiles(ctx, insts); err != nil {
			return nil, err
		}
	}
	stats1, err = allStats(ctx, insts)
	if err != nil {
		return nil, err
	}
	expected = int64(rate.Emitted) * int64(len(clients))
	got = waitDeliveries(ctx, clients, phaseRate, expected, cfg.Quiet)
	m["rate_loss"] = float64(expected - got)
	m["rate_loss_pct"] = pct(expected-got, expected)
	if wall := rate.EndNanos - rate.StartNanos; wall > 0 {
		m["rate_server_cpu_pct"] = 100 * float64(cpuDelta(stats0, stats1)) / (float64(wall) / 1e3)
	}
	m["rate_max_emit_lag_ms"] = float64(rate.MaxLagNs) / 1e6
	var local, remote []int64
	for _, c := range clients {
		c.mu.Lock()
		for _, l := range c.rateLat {
			if c.inst == 0 {
				local = append(local, l+offset)
			} else {
				remote = append(remote, l+offset)
			}
		}
		c.mu.Unlock()
	}
	for prefix, lat := range map[string][]int64{"rate_local": local, "rate_remote": remote} {
		if len(lat) == 0 {
			continue
		}
		slices.Sort(lat)
		m[prefix+"_p50_ms"] = float64(quantile(lat, 0.50)) / 1e6
		m[prefix+"_p99_ms"] = float64(quantile(lat, 0.99)) / 1e6
		m[prefix+"_max_ms"] = float64(lat[len(lat)-1]) / 1e6
	}
	logf("fixed rate: %d/%d deliveries, remote p50 %.2fms", got, expected, m["rate_remote_p50_ms"])
	if err := checkClients(); err != nil {
		return nil, err
	}

	// (3) Publish path: a room whose only member is on another instance.
	if hasPub {
		logf("publish path: %d messages to a room held by instance %d only", cfg.Pub, n-1)
		if profiling {
			if err := startProfiles(ctx, cfg, res, insts, "pub"); err != nil {
				return nil, err
			}
		}
		pubStats0, err := allStats(ctx, insts)
		if err != nil {
			return nil, err
		}
		pubRedis0 := redisCPU(ctx, cfg, adapter)
		var pub emitReply
		if err := postJSON(ctx, insts[0].url("/bench/emit"), emitRequest{Mode: "blast", Room: "solo", Event: phaseEvents[phasePub], Count: cfg.Pub, Payload: cfg.Payload, WaitPublished: true}, &pub); err != nil {
			return nil, err
		}
		got := waitDeliveries(ctx, []*benchClient{solo}, phasePub, int64(pub.Emitted), cfg.Quiet)
		if profiling {
			if err := stopProfiles(ctx, insts); err != nil {
				return nil, err
			}
		}
		m["pub_loss"] = float64(int64(pub.Emitted) - got)
		pubStats1, err := allStats(ctx, insts)
		if err != nil {
			return nil, err
		}
		if pub.Emitted > 0 {
			m["pub_server_cpu_us_per_msg"] = float64(cpuDelta(pubStats0, pubStats1)) / float64(pub.Emitted)
			m["pub_sender_cpu_us_per_msg"] = float64(pubStats1[0].CPUMicros-pubStats0[0].CPUMicros) / float64(pub.Emitted)
			m["pub_receiver_cpu_us_per_msg"] = float64(pubStats1[n-1].CPUMicros-pubStats0[n-1].CPUMicros) / float64(pub.Emitted)
			if r1 := redisCPU(ctx, cfg, adapter); pubRedis0 >= 0 && r1 >= 0 {
				m["pub_redis_cpu_us_per_msg"] = float64(r1-pubRedis0) / float64(pub.Emitted)
			}
		}
		if d := pub.EndNanos - pub.StartNanos; d > 0 {
			m["pub_emit_per_s"] = float64(pub.Emitted) / (float64(d) / 1e9)
		}
		if d := pub.DrainNanos - pub.StartNanos; pub.DrainNanos > 0 && d > 0 {
			m["pub_published_per_s"] = float64(pub.Emitted) / (float64(d) / 1e9)
		}
		if last := solo.last[phasePub].Load(); got > 0 && last > pub.StartNanos-offset {
			m["pub_delivered_per_s"] = float64(got) / (float64(last-(pub.StartNanos-offset)) / 1e9)
		}
		logf("publish path: emit loop %.0f msg/s, %d/%d delivered", m["pub_emit_per_s"], got, pub.Emitted)
		if err := checkClients(); err != nil {
			return nil, err
		}
	}

	final, err := allStats(ctx, insts)
	if err != nil {
		return nil, err
	}
	if host1, redisEnd := hostBusyCPU(), redisCPU(ctx, cfg, adapter); host0 >= 0 && host1 >= 0 {
		ours := cpuDelta(first, final) + processCPU() - firstSelf
		if firstRedis >= 0 && redisEnd >= 0 {
			ours += redisEnd - firstRedis
		}
		wall := float64(time.Since(wall0).Microseconds()) * float64(runtime.NumCPU())
		m["host_other_cpu_pct"] = max(0, 100*float64(host1-host0-ours)/wall)
	}
	var maxRSS, sumRSS int64
	for _, st := range final {
		maxRSS = max(maxRSS, st.MaxRSSKB)
		sumRSS += st.MaxRSSKB
	}
	m["peak_rss_mb_max"] = float64(maxRSS) / 1024
	m["peak_rss_mb_total"] = float64(sumRSS) / 1024
	var bad int64
	for _, c := range all {
		bad += c.bad.Load()
	}
	if bad > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d frames could not be parsed by the clients", bad))
	}
	return res, nil
}

// startProfiles starts a CPU profile on every (Go) instance, written to
// <CPUProfile>-<config>-<phase>-<i>.pprof.
func startProfiles(ctx context.Context, cfg *config, res *result, insts []*instance, phase string) error {
	for i, in := range insts {
		path, err := filepath.Abs(fmt.Sprintf("%s-%s-%s-%d.pprof", cfg.CPUProfile, res.Config, phase, i))
		if err != nil {
			return err
		}
		if err := postJSON(ctx, in.url("/bench/profile"), map[string]string{"action": "start", "path": path}, nil); err != nil {
			return err
		}
		res.Notes = append(res.Notes, fmt.Sprintf("CPU profile of %s instance %d during the %s: %s", res.Config, i, phase, path))
	}
	return nil
}

func stopProfiles(ctx context.Context, insts []*instance) error {
	for _, in := range insts {
		if err := postJSON(ctx, in.url("/bench/profile"), map[string]string{"action": "stop"}, nil); err != nil {
			return err
		}
	}
	return nil
}

// connectClients connects clients[i] to instance i mod len(insts), in room
// "bench", a few at a time.
func connectClients(ctx context.Context, insts []*instance, clients []*benchClient) error {
	return connectClientsTo(ctx, insts, clients, func(i int) (int, string) { return i % len(insts), "bench" })
}

// connectClientsTo connects clients[i] to the instance and room that place
// returns for i, a few at a time.
func connectClientsTo(ctx context.Context, insts []*instance, clients []*benchClient, place func(i int) (int, string)) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			inst, room := place(i)
			c, err := dialClient(ctx, insts[inst].proc.addr(), room, inst)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d clients failed to connect, first: %w", len(errs), len(clients), errs[0])
	}
	return nil
}

// waitDeliveries waits until the clients received want messages of a phase
// in total, or until none arrived for quiet, and returns how many arrived.
func waitDeliveries(ctx context.Context, clients []*benchClient, phase int, want int64, quiet time.Duration) int64 {
	total := func() int64 {
		var n int64
		for _, c := range clients {
			n += c.count[phase].Load()
		}
		return n
	}
	prev, since := total(), time.Now()
	for {
		n := total()
		if n >= want || ctx.Err() != nil {
			return n
		}
		if n != prev {
			prev, since = n, time.Now()
		} else if time.Since(since) > quiet {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lastArrival(clients []*benchClient, phase int) int64 {
	var last int64
	for _, c := range clients {
		last = max(last, c.last[phase].Load())
	}
	return last
}

func allStats(ctx context.Context, insts []*instance) ([]statsReply, error) {
	out := make([]statsReply, len(insts))
	for i, in := range insts {
		if err := getJSON(ctx, in.url("/bench/stats"), &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func cpuDelta(a, b []statsReply) int64 {
	var d int64
	for i := range a {
		d += b[i].CPUMicros - a[i].CPUMicros
	}
	return d
}

// writesDelta sums the write system calls of the instances between two
// snapshots, or returns -1 when an instance does not report them.
func writesDelta(a, b []statsReply) int64 {
	var d int64
	for i := range a {
		if a[i].WriteCalls < 0 || b[i].WriteCalls < 0 {
			return -1
		}
		d += b[i].WriteCalls - a[i].WriteCalls
	}
	return d
}

// redisCPU is the CPU time of our private redis-server, or -1.
func redisCPU(ctx context.Context, cfg *config, adapter string) int64 {
	if cfg.RedisCPU == nil || adapter == "memory" {
		return -1
	}
	return cfg.RedisCPU(ctx)
}

// clockOffset estimates the instance's wall clock minus ours, from the
// fastest of a few round trips.
func clockOffset(ctx context.Context, in *instance) (int64, error) {
	best, offset := int64(math.MaxInt64), int64(0)
	for range 7 {
		t0 := time.Now().UnixNano()
		var st statsReply
		if err := getJSON(ctx, in.url("/bench/stats"), &st); err != nil {
			return 0, err
		}
		t1 := time.Now().UnixNano()
		if rtt := t1 - t0; rtt < best {
			best, offset = rtt, st.NowNanos-(t0+t1)/2
		}
	}
	return offset, nil
}

func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("timed out after %v waiting until %s", timeout, what), lastErr)
		}
		if err := ctxSleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// quantile of sorted values, nearest rank.
func quantile(sorted []int64, q float64) int64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}
