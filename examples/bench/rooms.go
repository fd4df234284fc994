package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The "many rooms" comparison (-cluster): classic pub/sub (redisadapter.New)
// against sharded pub/sub (redisadapter.NewSharded) on a private Redis
// Cluster. Each room has members on one instance only; instance 0 emits
// round-robin over all rooms.

// The configurations of the -cluster comparison.
const (
	cfgClassic = "classic" // redisadapter.New on a *redis.ClusterClient
	cfgSharded = "sharded" // redisadapter.NewSharded on a *redis.ClusterClient
)

var clusterConfigTitles = map[string]string{
	cfgClassic: "redisadapter.New (PUBLISH, every node and server gets every frame)",
	cfgSharded: "redisadapter.NewSharded (SPUBLISH, one channel per room)",
}

// roomsMetrics lists the figures of the -cluster comparison, in report order.
// The per-instance figures are added by roomsMetricList.
var roomsMetrics = []metric{
	{"rooms_deliveries_per_s", "deliveries/s (first emit → last delivery)", 0},
	{"rooms_loss", "lost deliveries", 0},
	{"rooms_loss_pct", "lost deliveries %", 2},
	{"rooms_seconds", "first emit → last delivery, s", 3},
	{"rooms_emit_per_s", "emit loop on instance 0, msgs/s", 0},
	{"rooms_cpu_us_per_delivery", "server CPU µs per delivery (all instances)", 2},
	{"rooms_redis_cpu_us_per_msg", "Redis Cluster CPU µs per message (all nodes)", 2},
	{"rooms_client_cpu_us_per_delivery", "bench clients' CPU µs per delivery", 2},
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

// runClusterComparison starts a private Redis Cluster and runs the many-rooms
// workload on each of cfg.Configs (classic, sharded), cfg.Runs rounds.
func runClusterComparison(ctx context.Context, cfg *config, adapterFlag string) (*report, error) {
	switch {
	case cfg.Rooms < cfg.Instances:
		return nil, fmt.Errorf("-rooms must be at least -instances (%d): every instance holds rooms", cfg.Instances)
	case cfg.Clients < cfg.Rooms:
		return nil, fmt.Errorf("-clients (%d) must be at least -rooms (%d): every room has a member", cfg.Clients, cfg.Rooms)
	}
	switch adapterFlag {
	case "", "both":
		cfg.Configs = []string{cfgClassic, cfgSharded}
	case cfgClassic, cfgSharded:
		cfg.Configs = []string{adapterFlag}
	default:
		return nil, fmt.Errorf("-adapter must be classic, sharded or both, not %q", adapterFlag)
	}
	if cfg.ShardedMode == "" {
		cfg.ShardedMode = "dynamic"
	}
	rc, err := startRedisCluster(ctx, 3, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer rc.stop()
	desc := "private Redis Cluster of 3 masters " + strings.Join(rc.addrs(), ",")
	fmt.Fprintf(cfg.Log, "Redis: %s; configurations: %s\n", desc, strings.Join(cfg.Configs, ", "))
	rep := &report{
		Settings: map[string]any{
			"workload": "rooms", "instances": cfg.Instances, "clients": cfg.Clients, "rooms": cfg.Rooms, "payload": cfg.Payload,
			"blast": cfg.Blast, "runs": cfg.Runs, "redis": desc, "sharded_mode": cfg.ShardedMode, "configs": cfg.Configs,
		},
	}
	load0 := loadAvg()
	for round := 1; round <= cfg.Runs; round++ {
		for _, c := range cfg.Configs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res, err := runRooms(ctx, cfg, c, round, rc)
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
	if s, c := rep.Medians[cfgSharded], rep.Medians[cfgClassic]; s != nil && c != nil {
		r := map[string]float64{}
		for k, v := range s {
			if strings.Contains(k, "loss") {
				continue
			}
			if cv, ok := c[k]; ok && cv != 0 {
				r[k] = v / cv
			}
		}
		rep.Ratios[cfgSharded+"/"+cfgClassic] = r
	}
	return rep, nil
}

// roomName is the name of room r of the many-rooms workload.
func roomName(r int) string { return fmt.Sprintf("room-%04d", r) }

// runRooms runs the many-rooms workload once on one configuration.
func runRooms(ctx context.Context, cfg *config, name string, round int, rc *redisCluster) (res *result, err error) {
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Log, "round %d %-10s "+format+"\n", append([]any{round, name}, args...)...)
	}
	res = &result{Config: name, Round: round, Metrics: map[string]float64{}}
	m := res.Metrics
	n := cfg.Instances
	adapter := "redis"
	if name == cfgSharded {
		adapter = "sharded"
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
	for i := range n {
		p, err := startServerProc(fmt.Sprintf("%s-%d", name, i), exe,
			[]string{"-serve", "-adapter", adapter, "-cluster", strings.Join(rc.addrs(), ","), "-key", key, "-sharded-mode", cfg.ShardedMode},
			[]string{serveEnv + "=1"}, "", cfg.Log)
		if err != nil {
			return nil, err
		}
		insts = append(insts, &instance{proc: p, impl: "go"})
	}
	if err := waitUntil(ctx, 20*time.Second, "every instance sees the cluster", func() (bool, error) {
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

	// Rooms: room r belongs to instance r mod n. Client i connects to
	// instance i mod n and joins, round-robin, one of that instance's rooms.
	roomsOf := make([][]string, n)
	allRooms := make([]string, cfg.Rooms)
	for r := range cfg.Rooms {
		allRooms[r] = roomName(r)
		roomsOf[r%n] = append(roomsOf[r%n], allRooms[r])
	}
	place := func(i int) (int, string) {
		inst := i % n
		return inst, roomsOf[inst][(i/n)%len(roomsOf[inst])]
	}
	size := map[string]int{}
	for i := range cfg.Clients {
		_, room := place(i)
		size[room]++
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
			for r, room := range allRooms {
				want := 0
				if r%n == i {
					want = size[room]
				}
				if st.Rooms[room] != want {
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
	redis0, self0, host0, wall0 := rc.cpu(ctx), processCPU(), hostBusyCPU(), time.Now()
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
	// Let the subscribers' counters settle: a frame for a room without a
	// local member may be read after the last delivery.
	if err := ctxSleep(ctx, 200*time.Millisecond); err != nil {
		return nil, err
	}
	stats1, err := allStats(ctx, insts)
	if err != nil {
		return nil, err
	}
	redis1, self1, host1 := rc.cpu(ctx), processCPU(), hostBusyCPU()
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
	for i := range insts {
		if stats0[i].AdapterStats == nil || stats1[i].AdapterStats == nil {
			continue
		}
		d := stats1[i].AdapterStats["received"] - stats0[i].AdapterStats["received"]
		m[fmt.Sprintf("rooms_received_inst%d", i)] = float64(d)
		if blast.Emitted > 0 {
			m[fmt.Sprintf("rooms_received_per_msg_inst%d", i)] = float64(d) / float64(blast.Emitted)
		}
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

// printRoomsTable writes the medians of the -cluster comparison, with the
// sharded/classic ratios.
func printRoomsTable(w io.Writer, rep *report, cfg *config) {
	configs := cfg.Configs
	fmt.Fprintf(w, "\nMany rooms on a Redis Cluster: medians of %d round(s). Settings:", len(rep.Rounds)/max(len(configs), 1))
	for _, k := range []string{"instances", "clients", "rooms", "payload", "blast", "sharded_mode", "redis"} {
		fmt.Fprintf(w, " %s=%v", k, rep.Settings[k])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Each room has members on one instance only; instance 0 emits -blast messages round-robin over all rooms.\n")
	for _, c := range configs {
		fmt.Fprintf(w, "  %-8s = %s\n", c, clusterConfigTitles[c])
	}
	fmt.Fprintln(w)
	both := slices.Contains(configs, cfgClassic) && slices.Contains(configs, cfgSharded)
	list := roomsMetricList(cfg.Instances)
	width := 0
	for _, m := range list {
		width = max(width, len([]rune(m.label)))
	}
	pad := func(s string) string { return s + strings.Repeat(" ", width-len([]rune(s))) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := append([]string{pad("metric")}, configs...)
	if both {
		header = append(header, "sharded/classic")
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
		if both {
			row = append(row, fmtRatio(rep.Ratios[cfgSharded+"/"+cfgClassic], m.key))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}
