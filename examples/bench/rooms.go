package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// The "many rooms" workloads: -cluster (classic, room subscriptions and
// sharded pub/sub on a private Redis Cluster) and -many (the same and Node's
// classic adapter, 12 instances on one private standalone Redis 7). Each room
// has members on -holders instances (1 with -cluster); instance 0 emits
// round-robin over all rooms: a blast, then a fixed-rate stream for the
// latencies.

// The configurations of the many-rooms workloads.
const (
	cfgClassic  = "classic" // redisadapter.New: PUBLISH, PSUBSCRIBE per namespace
	cfgRoomsSub = "rooms"   // redisadapter.New with RoomSubscriptions: SUBSCRIBE per held room
	cfgSharded  = "sharded" // redisadapter.NewSharded: SPUBLISH/SSUBSCRIBE
	cfgNode     = "node"    // Node servers, @socket.io/redis-adapter (classic, PSUBSCRIBE)
)

var roomsConfigTitles = map[string]string{
	cfgClassic:  "redisadapter.New (PUBLISH; PSUBSCRIBE: every server gets every frame)",
	cfgRoomsSub: "redisadapter.New + RoomSubscriptions (SUBSCRIBE per held room)",
	cfgSharded:  "redisadapter.NewSharded (SPUBLISH, SSUBSCRIBE per room)",
	cfgNode:     "Node, @socket.io/redis-adapter 8 (PUBLISH; PSUBSCRIBE)",
}

// roomsEnv is the Redis a many-rooms workload runs on.
type roomsEnv struct {
	desc     string
	goArgs   []string                        // the -serve flags that name it: -redis URL or -cluster addrs
	redisURL string                          // for Node servers; empty on a Redis Cluster
	cpu      func(ctx context.Context) int64 // CPU time of every node so far, µs, or -1
}

// roomsMetrics lists the figures of the many-rooms workloads, in report
// order. The per-instance figures are added by roomsMetricList.
var roomsMetrics = []metric{
	{"rooms_deliveries_per_s", "deliveries/s (first emit → last delivery)", 0},
	{"rooms_loss", "lost deliveries", 0},
	{"rooms_loss_pct", "lost deliveries %", 2},
	{"rooms_seconds", "first emit → last delivery, s", 3},
	{"rooms_emit_per_s", "emit loop on instance 0, msgs/s", 0},
	{"rooms_sender_cpu_us_per_msg", "instance 0's CPU µs per message emitted (whole blast)", 2},
	{"rooms_cpu_us_per_delivery", "server CPU µs per delivery (all instances)", 2},
	{"rooms_redis_cpu_us_per_msg", "Redis CPU µs per message (all nodes)", 2},
	{"rooms_client_cpu_us_per_delivery", "bench clients' CPU µs per delivery", 2},
	{"rooms_received_per_msg_mean", "frames received per message, mean of instances 1..N-1", 3},
	{"rooms_received_per_msg_max", "frames received per message, max of instances 1..N-1", 3},
	{"rooms_rate_loss", "fixed rate: lost deliveries", 0},
	{"rooms_rate_remote_p50_ms", "fixed rate: remote latency p50, ms", 3},
	{"rooms_rate_remote_p99_ms", "fixed rate: remote latency p99, ms", 3},
	{"rooms_rate_server_cpu_pct", "fixed rate: server CPU, % of one core (all instances)", 1},
}

// roomsMetricList returns roomsMetrics and the per-instance figures.
func roomsMetricList(instances int) []metric {
	out := slices.Clone(roomsMetrics)
	for i := range instances {
		out = append(out,
			metric{fmt.Sprintf("rooms_received_inst%d", i), fmt.Sprintf("frames received by instance %d's subscriber", i), 0},
			metric{fmt.Sprintf("rooms_received_per_msg_inst%d", i), fmt.Sprintf("frames received by instance %d per message", i), 3},
		)
	}
	out = append(out,
		metric{"peak_rss_mb_max", "peak RSS MB, largest instance", 1},
		metric{"host_other_cpu_pct", "other programs' CPU on the host, % of all CPUs", 1},
	)
	return out
}

// roomsConfigs parses the -configs list of a many-rooms workload; def is
// the default.
func roomsConfigs(list string, def []string) ([]string, error) {
	if list == "" || list == "all" {
		return def, nil
	}
	if list == "both" { // the -adapter value of earlier versions
		return []string{cfgClassic, cfgSharded}, nil
	}
	var out []string
	for _, c := range strings.Split(list, ",") {
		c = strings.TrimSpace(c)
		if _, ok := roomsConfigTitles[c]; !ok {
			return nil, fmt.Errorf("unknown configuration %q (want classic, rooms, sharded or node)", c)
		}
		out = append(out, c)
	}
	return out, nil
}

// runClusterComparison starts a private Redis Cluster and runs the many-rooms
// workload on each of the configurations, cfg.Runs rounds.
func runClusterComparison(ctx context.Context, cfg *config, configs string) (*report, error) {
	var err error
	if cfg.Configs, err = roomsConfigs(configs, []string{cfgClassic, cfgRoomsSub, cfgSharded}); err != nil {
		return nil, err
	}
	if slices.Contains(cfg.Configs, cfgNode) {
		return nil, errors.New("-cluster: the node configuration runs with -many only (bench-server.js takes a standalone Redis)")
	}
	rc, err := startRedisCluster(ctx, 3, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer rc.stop()
	env := &roomsEnv{
		desc:   "private Redis Cluster of 3 masters " + strings.Join(rc.addrs(), ","),
		goArgs: []string{"-cluster", strings.Join(rc.addrs(), ",")},
		cpu:    rc.cpu,
	}
	return runRoomsRounds(ctx, cfg, env, "rooms")
}

// runManyComparison starts a private standalone redis-server and runs the
// many-rooms workload with Go and Node servers (-many).
func runManyComparison(ctx context.Context, cfg *config, configs, nodeFlag string) (*report, error) {
	var err error
	def := []string{cfgClassic, cfgRoomsSub, cfgSharded}
	var notes []string
	if nodeFlag != "false" {
		cfg.InteropDir = findInterop()
		node, err := nodeAvailable(cfg.InteropDir)
		switch {
		case err == nil:
			cfg.NodeExe = node
			def = append(def, cfgNode)
		case nodeFlag == "true" || slices.Contains(strings.Split(configs, ","), cfgNode):
			return nil, fmt.Errorf("the Node servers: %w", err)
		default:
			notes = append(notes, "Node comparison skipped: "+err.Error())
		}
	}
	if cfg.Configs, err = roomsConfigs(configs, def); err != nil {
		return nil, err
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("-many needs redis-server (Redis 7 or later) in PATH: %w", err)
	}
	p, u, err := startRedisServer(path, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	ro, _ := redis.ParseURL(u)
	rdb := redis.NewClient(ro)
	defer rdb.Close()
	env := &roomsEnv{
		desc:     "private redis-server " + p.addr(),
		goArgs:   []string{"-redis", u},
		redisURL: u,
		cpu:      func(ctx context.Context) int64 { return redisInfoCPU(ctx, rdb) },
	}
	rep, err := runRoomsRounds(ctx, cfg, env, "many")
	if rep != nil {
		rep.Notes = append(notes, rep.Notes...)
	}
	return rep, err
}

// runRoomsRounds runs cfg.Runs rounds of the many-rooms workload on every
// configuration of cfg.Configs, and returns the medians with the ratios of
// every configuration to classic.
func runRoomsRounds(ctx context.Context, cfg *config, env *roomsEnv, workload string) (*report, error) {
	cfg.Holders = max(cfg.Holders, 1)
	switch {
	case cfg.Holders < 1 || cfg.Holders > cfg.Instances:
		return nil, fmt.Errorf("-holders must be between 1 and -instances (%d)", cfg.Instances)
	case cfg.Rooms*cfg.Holders < cfg.Instances:
		return nil, fmt.Errorf("-rooms × -holders must be at least -instances (%d): every instance holds rooms", cfg.Instances)
	case cfg.Clients < cfg.Rooms*cfg.Holders:
		return nil, fmt.Errorf("-clients (%d) must be at least -rooms × -holders (%d): every holder of a room has a member", cfg.Clients, cfg.Rooms*cfg.Holders)
	}
	if cfg.ShardedMode == "" {
		cfg.ShardedMode = "dynamic"
	}
	fmt.Fprintf(cfg.Log, "Redis: %s; configurations: %s\n", env.desc, strings.Join(cfg.Configs, ", "))
	rep := &report{
		Settings: map[string]any{
			"workload": workload, "instances": cfg.Instances, "clients": cfg.Clients, "rooms": cfg.Rooms, "holders": cfg.Holders,
			"payload": cfg.Payload, "blast": cfg.Blast, "rate": cfg.Rate, "duration": cfg.Duration.String(), "runs": cfg.Runs,
			"redis": env.desc, "sharded_mode": cfg.ShardedMode, "configs": cfg.Configs,
		},
	}
	load0 := loadAvg()
	for round := 1; round <= cfg.Runs; round++ {
		for _, c := range cfg.Configs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res, err := runRooms(ctx, cfg, c, round, env)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round, c, err)
			}
			rep.Rounds = append(rep.Rounds, res)
			rep.Notes = append(rep.Notes, res.Notes...)
		}
	}
	if load0 != "" {
		rep.Notes = append(rep.Notes, fmt.Sprintf("load average (1/5/15 min) at start: %s, at end: %s, on %d CPUs", load0, loadAvg(), runtime.NumCPU()))
	}
	rep.Medians = medians(rep.Rounds)
	rep.Ratios = map[string]map[string]float64{}
	base := rep.Medians[cfgClassic]
	for _, c := range cfg.Configs {
		med := rep.Medians[c]
		if c == cfgClassic || med == nil || base == nil {
			continue
		}
		r := map[string]float64{}
		for k, v := range med {
			if strings.Contains(k, "loss") {
				continue
			}
			if cv, ok := base[k]; ok && cv != 0 {
				r[k] = v / cv
			}
		}
		rep.Ratios[c+"/"+cfgClassic] = r
	}
	return rep, nil
}

// roomName is the name of room r of the many-rooms workload.
func roomName(r int) string { return fmt.Sprintf("room-%04d", r) }

// runRooms runs the many-rooms workload once on one configuration.
func runRooms(ctx context.Context, cfg *config, name string, round int, env *roomsEnv) (res *result, err error) {
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "round %d %-10s "+format+"\n", append([]any{round, name}, args...)...)
	}
	res = &result{Config: name, Round: round, Metrics: map[string]float64{}}
	m := res.Metrics
	n := cfg.Instances
	impl, adapter := "go", "redis"
	switch name {
	case cfgRoomsSub:
		adapter = "rooms"
	case cfgSharded:
		adapter = "sharded"
	case cfgNode:
		impl = "node"
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
	exe := cfg.ServerExe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if impl == "node" && env.redisURL == "" {
		return nil, errors.New("the Node servers need a standalone Redis")
	}
	// Started a few at a time: 12 processes at once on a small machine
	// would only slow each other down.
	var mu sync.Mutex
	procs := make([]*proc, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var errs []error
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pname := fmt.Sprintf("%s-%d", name, i)
			var p *proc
			var err error
			if impl == "go" {
				p, err = startServerProc(pname, exe,
					append([]string{"-serve", "-adapter", adapter, "-key", key, "-sharded-mode", cfg.ShardedMode}, env.goArgs...),
					[]string{serveEnv + "=1"}, "", cfg.Log)
			} else {
				p, err = startServerProc(pname, cfg.NodeExe,
					[]string{filepath.Join(cfg.InteropDir, "bench-server.js"), "--port=0", "--redis-url=" + env.redisURL, "--key=" + key, "--name=" + pname, "--adapter=redis"},
					nil, cfg.InteropDir, cfg.Log)
			}
			mu.Lock()
			defer mu.Unlock()
			procs[i] = p
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	for _, p := range procs {
		if p != nil {
			insts = append(insts, &instance{proc: p, impl: impl})
		}
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if err := waitUntil(ctx, 30*time.Second, "every instance sees the cluster", func() (bool, error) {
		for _, in := range insts {
			var st statsReply
			if err := getJSON(ctx, in.url("/bench/stats"), &st); err != nil {
				return false, err
			}
			if st.ServerCount < int64(n) {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return nil, err
	}

	// Rooms: room r is held by instances r, r+1 … r+holders-1 (mod n).
	// Client i connects to instance i mod n and joins, round-robin, one of
	// the rooms that instance holds.
	holders := max(cfg.Holders, 1)
	roomsOf := make([][]string, n)
	allRooms := make([]string, cfg.Rooms)
	for r := range cfg.Rooms {
		allRooms[r] = roomName(r)
		for h := range holders {
			roomsOf[(r+h)%n] = append(roomsOf[(r+h)%n], allRooms[r])
		}
	}
	place := func(i int) (int, string) {
		inst := i % n
		return inst, roomsOf[inst][(i/n)%len(roomsOf[inst])]
	}
	size := map[string]int{}
	members := make([]map[string]int, n) // per instance, room -> local members
	for i := range members {
		members[i] = map[string]int{}
	}
	for i := range cfg.Clients {
		inst, room := place(i)
		size[room]++
		members[inst][room]++
	}
	for i, rooms := range roomsOf {
		for _, room := range rooms {
			if members[i][room] == 0 {
				return nil, fmt.Errorf("instance %d holds %d rooms but gets only about %d clients: raise -clients", i, len(rooms), cfg.Clients/n)
			}
		}
	}
	clients := make([]*benchClient, cfg.Clients)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			if c != nil {
				wg.Add(1)
				go func() { defer wg.Done(); c.Close() }()
			}
		}
		wg.Wait()
	}()
	if err := connectClientsTo(ctx, insts, clients, place); err != nil {
		return nil, err
	}
	q := "/bench/stats?rooms=" + strings.Join(allRooms, ",")
	if err := waitUntil(ctx, 20*time.Second, "every client joined its room", func() (bool, error) {
		for i, in := range insts {
			var st statsReply
			if err := getJSON(ctx, in.url(q), &st); err != nil {
				return false, err
			}
			for _, room := range allRooms {
				if st.Rooms[room] != members[i][room] {
					return false, nil
				}
			}
		}
		return true, nil
	}); err != nil {
		return nil, err
	}
	checkClients := func() error {
		for _, c := range clients {
			if err := c.Err(); err != nil {
				return fmt.Errorf("a client on instance %d lost its connection: %w", c.inst, err)
			}
		}
		return nil
	}
	offset, err := clockOffset(ctx, insts[0])
	if err != nil {
		return nil, err
	}

	// Warm-up: one message to every room until every client got one.
	logf("warming up %d instances, %d clients in %d rooms", n, len(clients), cfg.Rooms)
	if err := waitUntil(ctx, 20*time.Second, "warm-up messages reach every client", func() (bool, error) {
		if err := postJSON(ctx, insts[0].url("/bench/emit"), emitRequest{Mode: "blast", Rooms: allRooms, Event: phaseEvents[phaseWarm], Count: len(allRooms), Payload: cfg.Payload}, nil); err != nil {
			return false, err
		}
		if err := ctxSleep(ctx, 50*time.Millisecond); err != nil {
			return false, err
		}
		for _, c := range clients {
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

	// The blast over all rooms.
	stats0, err := allStats(ctx, insts)
	if err != nil {
		return nil, err
	}
	redis0, self0, host0, wall0 := env.cpu(ctx), processCPU(), hostBusyCPU(), time.Now()
	profiling := cfg.CPUProfile != "" && round == 1 && impl == "go"
	if profiling {
		if err := startProfiles(ctx, cfg, res, insts, "blast"); err != nil {
			return nil, err
		}
	}
	logf("blast: %d messages round-robin over %d rooms", cfg.Blast, cfg.Rooms)
	var blast emitReply
	if err := postJSON(ctx, insts[0].url("/bench/emit"), emitRequest{Mode: "blast", Rooms: allRooms, Event: phaseEvents[phaseBlast], Count: cfg.Blast, Payload: cfg.Payload}, &blast); err != nil {
		return nil, err
	}
	var expected int64
	for i := range blast.Emitted {
		expected += int64(size[allRooms[i%len(allRooms)]])
	}
	got := waitDeliveries(ctx, clients, phaseBlast, expected, cfg.Quiet)
	if profiling {
		if err := stopProfiles(ctx, insts); err != nil {
			return nil, err
		}
	}
	// Let the subscribers' counters settle: a frame for a room without a
	// local member may be read after the last delivery.
	if err := ctxSleep(ctx, 200*time.Millisecond); err != nil {
		return nil, err
	}
	stats1, err := allStats(ctx, insts)
	if err != nil {
		return nil, err
	}
	redis1, self1, host1 := env.cpu(ctx), processCPU(), hostBusyCPU()
	start := blast.StartNanos - offset
	last := lastArrival(clients, phaseBlast)
	m["rooms_loss"] = float64(expected - got)
	m["rooms_loss_pct"] = pct(expected-got, expected)
	if got > 0 && last > start {
		m["rooms_seconds"] = float64(last-start) / 1e9
		m["rooms_deliveries_per_s"] = float64(got) / (float64(last-start) / 1e9)
		m["rooms_cpu_us_per_delivery"] = float64(cpuDelta(stats0, stats1)) / float64(got)
		if self0 >= 0 && self1 >= 0 {
			m["rooms_client_cpu_us_per_delivery"] = float64(self1-self0) / float64(got)
		}
	}
	if blast.Emitted > 0 && redis0 >= 0 && redis1 >= 0 {
		m["rooms_redis_cpu_us_per_msg"] = float64(redis1-redis0) / float64(blast.Emitted)
	}
	if blast.EndNanos > blast.StartNanos {
		m["rooms_emit_per_s"] = float64(blast.Emitted) / (float64(blast.EndNanos-blast.StartNanos) / 1e9)
	}
	if blast.Emitted > 0 && stats0[0].CPUMicros >= 0 && stats1[0].CPUMicros >= 0 {
		// What the sender pays per message (emits, publishes, its own
		// frames and local deliveries), whatever share of the CPUs the
		// other instances leave it.
		m["rooms_sender_cpu_us_per_msg"] = float64(stats1[0].CPUMicros-stats0[0].CPUMicros) / float64(blast.Emitted)
	}
	var perMsg []float64
	for i := range insts {
		if stats0[i].AdapterStats == nil || stats1[i].AdapterStats == nil {
			continue
		}
		d := stats1[i].AdapterStats["received"] - stats0[i].AdapterStats["received"]
		m[fmt.Sprintf("rooms_received_inst%d", i)] = float64(d)
		if blast.Emitted > 0 {
			v := float64(d) / float64(blast.Emitted)
			m[fmt.Sprintf("rooms_received_per_msg_inst%d", i)] = v
			if i > 0 {
				perMsg = append(perMsg, v)
			}
		}
	}
	if len(perMsg) > 0 {
		var sum float64
		for _, v := range perMsg {
			sum += v
		}
		m["rooms_received_per_msg_mean"] = sum / float64(len(perMsg))
		m["rooms_received_per_msg_max"] = slices.Max(perMsg)
	}
	if host0 >= 0 && host1 >= 0 {
		ours := cpuDelta(stats0, stats1) + self1 - self0
		if redis0 >= 0 && redis1 >= 0 {
			ours += redis1 - redis0
		}
		wall := float64(time.Since(wall0).Microseconds()) * float64(runtime.NumCPU())
		m["host_other_cpu_pct"] = max(0, 100*float64(host1-host0-ours)/wall)
	}
	for _, st := range stats1 {
		m["peak_rss_mb_max"] = max(m["peak_rss_mb_max"], float64(st.MaxRSSKB)/1024)
	}
	logf("blast: %d/%d deliveries, %.0f/s; received by the instances: %s", got, expected, m["rooms_deliveries_per_s"], receivedSummary(m, n))
	if err := checkClients(); err != nil {
		return nil, err
	}

	// Fixed rate, round-robin over the rooms: the latencies.
	if cfg.Rate > 0 && cfg.Duration > 0 {
		logf("fixed rate: %d msg/s for %v over %d rooms", cfg.Rate, cfg.Duration, cfg.Rooms)
		rs0, err := allStats(ctx, insts)
		if err != nil {
			return nil, err
		}
		if profiling {
			if err := startProfiles(ctx, cfg, res, insts, "rate"); err != nil {
				return nil, err
			}
		}
		var rate emitReply
		if err := postJSON(ctx, insts[0].url("/bench/emit"), emitRequest{Mode: "rate", Rooms: allRooms, Event: phaseEvents[phaseRate], Rate: cfg.Rate, DurationMS: int(cfg.Duration / time.Millisecond), Payload: cfg.Payload}, &rate); err != nil {
			return nil, err
		}
		if profiling {
			if err := stopProfiles(ctx, insts); err != nil {
				return nil, err
			}
		}
		rs1, err := allStats(ctx, insts)
		if err != nil {
			return nil, err
		}
		var want int64
		for i := range rate.Emitted {
			want += int64(size[allRooms[i%len(allRooms)]])
		}
		got := waitDeliveries(ctx, clients, phaseRate, want, cfg.Quiet)
		m["rooms_rate_loss"] = float64(want - got)
		if wall := rate.EndNanos - rate.StartNanos; wall > 0 {
			m["rooms_rate_server_cpu_pct"] = 100 * float64(cpuDelta(rs0, rs1)) / (float64(wall) / 1e3)
		}
		var remote []int64
		for _, c := range clients {
			if c.inst == 0 {
				continue
			}
			c.mu.Lock()
			for _, l := range c.rateLat {
				remote = append(remote, l+offset)
			}
			c.mu.Unlock()
		}
		if len(remote) > 0 {
			slices.Sort(remote)
			m["rooms_rate_remote_p50_ms"] = float64(quantile(remote, 0.50)) / 1e6
			m["rooms_rate_remote_p99_ms"] = float64(quantile(remote, 0.99)) / 1e6
		}
		logf("fixed rate: %d/%d deliveries, remote p50 %.2fms", got, want, m["rooms_rate_remote_p50_ms"])
		if err := checkClients(); err != nil {
			return nil, err
		}
	}
	var bad int64
	for _, c := range clients {
		bad += c.bad.Load()
	}
	if bad > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d frames could not be parsed by the clients", bad))
	}
	return res, nil
}

func receivedSummary(m map[string]float64, n int) string {
	parts := make([]string, n)
	for i := range n {
		parts[i] = fmt.Sprintf("%.0f", m[fmt.Sprintf("rooms_received_inst%d", i)])
	}
	return strings.Join(parts, ", ")
}

// printRoomsTable writes the medians of a many-rooms workload, with the
// ratios of every configuration to classic.
func printRoomsTable(w io.Writer, rep *report, cfg *config) {
	configs := cfg.Configs
	title := "Many rooms on a Redis Cluster"
	if rep.Settings["workload"] == "many" {
		title = fmt.Sprintf("%d instances, many rooms, one standalone Redis", cfg.Instances)
	}
	fmt.Fprintf(w, "\n%s: medians of %d round(s). Settings:", title, len(rep.Rounds)/max(len(configs), 1))
	for _, k := range []string{"instances", "clients", "rooms", "holders", "payload", "blast", "rate", "duration", "sharded_mode", "redis"} {
		fmt.Fprintf(w, " %s=%v", k, rep.Settings[k])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Each room has members on %v instance(s); instance 0 emits -blast messages round-robin over all rooms, then -rate msg/s for -duration.\n", rep.Settings["holders"])
	for _, c := range configs {
		fmt.Fprintf(w, "  %-8s = %s\n", c, roomsConfigTitles[c])
	}
	fmt.Fprintln(w)
	var ratioCols []string
	for _, c := range configs {
		if c != cfgClassic && rep.Ratios[c+"/"+cfgClassic] != nil {
			ratioCols = append(ratioCols, c)
		}
	}
	list := roomsMetricList(cfg.Instances)
	width := 0
	for _, m := range list {
		width = max(width, len([]rune(m.label)))
	}
	pad := func(s string) string { return s + strings.Repeat(" ", width-len([]rune(s))) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := append([]string{pad("metric")}, configs...)
	for _, c := range ratioCols {
		header = append(header, c+"/classic")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, m := range list {
		present := false
		for _, c := range configs {
			if _, ok := rep.Medians[c][m.key]; ok {
				present = true
			}
		}
		if !present {
			continue
		}
		row := []string{pad(m.label)}
		for _, c := range configs {
			row = append(row, fmtVal(rep.Medians[c], m.key, m.prec))
		}
		for _, c := range ratioCols {
			row = append(row, fmtRatio(rep.Ratios[c+"/"+cfgClassic], m.key))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}
