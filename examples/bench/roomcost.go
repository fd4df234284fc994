package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// The room subscription cost (-roomcost): one Go instance on a private
// redis-server; one socket joins N distinct rooms (Socket.Join from
// -join-workers goroutines, -join-per-call rooms per call) and the benchmark
// measures the time until Redis has every subscription (INFO stats
// pubsub_channels, or pubsubshard_channels for the sharded transport, up by
// N), the joins that stopped waiting after JoinTimeout (Stats.JoinWaitExpired),
// and Redis's used_memory and the instance's RSS before and after.

// roomCostRow is one measurement of -roomcost.
type roomCostRow struct {
	Config            string  `json:"config"`
	Rooms             int     `json:"rooms"`
	ConfirmSeconds    float64 `json:"confirm_s"`           // join start → Redis counts every channel
	ConfirmUsPerRoom  float64 `json:"confirm_us_per_room"` // the same per room
	JoinCallsSeconds  float64 `json:"join_calls_s"`        // join start → the last Socket.Join returned
	JoinWaitExpired   int64   `json:"join_wait_expired"`   // joins that stopped waiting after JoinTimeout
	RedisMemBytes     int64   `json:"redis_used_memory_delta"`
	RedisBytesPerRoom float64 `json:"redis_bytes_per_room"`
	RedisCPUUsPerRoom float64 `json:"redis_cpu_us_per_room"`
	ServerRSSDeltaKB  int64   `json:"server_rss_delta_kb"`
	ServerBytesPerRm  float64 `json:"server_rss_bytes_per_room"`
	ServerCPUUsPerRm  float64 `json:"server_cpu_us_per_room"`
}

// runRoomCost runs -roomcost for each count of list, with the room
// subscriptions of the classic transport and the sharded transport's
// dynamic mode.
func runRoomCost(ctx context.Context, cfg *config, list string, asJSON bool) error {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	var counts []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-roomcost wants comma-separated positive counts, such as 10000,50000: %q", f)
		}
		counts = append(counts, n)
	}
	if cfg.RedisURL != "" {
		return errors.New("-roomcost starts its own redis-server (it measures its memory): -redis does not apply")
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("-roomcost needs redis-server in PATH: %w", err)
	}
	p, u, err := startRedisServer(path, cfg.Log)
	if err != nil {
		return err
	}
	defer p.stop()
	ro, _ := redis.ParseURL(u)
	rdb := redis.NewClient(ro)
	defer rdb.Close()
	exe := cfg.ServerExe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	var rows []roomCostRow
	for _, n := range counts {
		for _, c := range []string{cfgRoomsSub, cfgSharded} {
			row, err := roomCostOnce(ctx, cfg, exe, u, rdb, c, n)
			if err != nil {
				return fmt.Errorf("%s, %d rooms: %w", c, n, err)
			}
			rows = append(rows, row)
		}
	}
	out := io.Writer(os.Stdout)
	if asJSON {
		out = os.Stderr
	}
	fmt.Fprintf(out, "\nRoom subscription cost: one instance, one socket joins N distinct rooms (%d rooms per Socket.Join call, %d calls at once); private redis-server %s.\n", max(cfg.JoinPerCall, 1), max(cfg.JoinWorkers, 1), p.addr())
	fmt.Fprintln(out, "  rooms   = redisadapter.New + RoomSubscriptions (SUBSCRIBE); sharded = redisadapter.NewSharded, dynamic (SSUBSCRIBE)")
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\trooms\tuntil Redis has all, s\tµs per room\tjoin calls, s\tjoin waits expired\tRedis used_memory Δ MB\tRedis bytes/room\tRedis CPU µs/room\tserver RSS Δ MB\tserver bytes/room\tserver CPU µs/room\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.1f\t%.3f\t%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.0f\t%.2f\t\n", r.Config, r.Rooms, r.ConfirmSeconds, r.ConfirmUsPerRoom,
			r.JoinCallsSeconds, r.JoinWaitExpired, float64(r.RedisMemBytes)/(1<<20), r.RedisBytesPerRoom, r.RedisCPUUsPerRoom,
			float64(r.ServerRSSDeltaKB)/1024, r.ServerBytesPerRm, r.ServerCPUUsPerRm)
	}
	tw.Flush()
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"settings": map[string]any{"counts": counts, "join_per_call": cfg.JoinPerCall, "join_workers": cfg.JoinWorkers, "redis": p.addr()}, "rows": rows})
	}
	return nil
}

// roomCostOnce measures one configuration and count on a fresh instance.
func roomCostOnce(ctx context.Context, cfg *config, exe, redisURL string, rdb *redis.Client, name string, n int) (row roomCostRow, err error) {
	row = roomCostRow{Config: name, Rooms: n}
	adapter := "rooms"
	field := "pubsub_channels"
	if name == cfgSharded {
		adapter, field = "sharded", "pubsubshard_channels"
	}
	key := fmt.Sprintf("roomcost-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	p, err := startServerProc("roomcost-"+name, exe, []string{"-serve", "-adapter", adapter, "-redis", redisURL, "-key", key, "-sharded-mode", "dynamic"},
		[]string{serveEnv + "=1"}, "", cfg.Log)
	if err != nil {
		return row, err
	}
	defer p.stop()
	in := &instance{proc: p, impl: "go"}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	c, err := dialClient(dctx, p.addr(), "roomcost-home", 0)
	cancel()
	if err != nil {
		return row, err
	}
	defer c.Close()
	// Settle: the client's own rooms are subscribed.
	if err := ctxSleep(ctx, 500*time.Millisecond); err != nil {
		return row, err
	}
	var st0 statsReply
	if err := getJSON(ctx, in.url("/bench/stats?nocount=1"), &st0); err != nil {
		return row, err
	}
	ch0, err := redisInfoInt(ctx, rdb, "stats", field)
	if err != nil {
		return row, err
	}
	mem0, err := redisInfoInt(ctx, rdb, "memory", "used_memory")
	if err != nil {
		return row, err
	}
	cpu0 := redisInfoCPU(ctx, rdb)
	if cfg.CPUProfile != "" {
		path := fmt.Sprintf("%s-roomcost-%s-%d.pprof", cfg.CPUProfile, name, n)
		if err := postJSON(ctx, in.url("/bench/profile"), map[string]string{"action": "start", "path": path}, nil); err != nil {
			return row, err
		}
		defer func() { _ = postJSON(ctx, in.url("/bench/profile"), map[string]string{"action": "stop"}, nil) }()
		fmt.Fprintf(cfg.Log, "roomcost %s: CPU profile of the joins in %s\n", name, path)
	}
	fmt.Fprintf(cfg.Log, "roomcost %s: joining %d rooms\n", name, n)
	start := time.Now()
	joined := make(chan error, 1)
	var jr joinReply
	go func() {
		joined <- postJSON(ctx, in.url("/bench/join"), joinRequest{Prefix: "r-", Count: n, PerCall: cfg.JoinPerCall, Workers: cfg.JoinWorkers}, &jr)
	}()
	deadline := start.Add(5 * time.Minute)
	for {
		ch, err := redisInfoInt(ctx, rdb, "stats", field)
		if err != nil {
			return row, err
		}
		if ch-ch0 >= int64(n) {
			row.ConfirmSeconds = time.Since(start).Seconds()
			break
		}
		if time.Now().After(deadline) {
			return row, fmt.Errorf("after 5 minutes Redis counts %d of the %d new channels", ch-ch0, n)
		}
		if err := ctxSleep(ctx, 5*time.Millisecond); err != nil {
			return row, err
		}
	}
	if err := <-joined; err != nil {
		return row, err
	}
	row.JoinCallsSeconds = float64(jr.EndNanos-jr.StartNanos) / 1e9
	row.ConfirmUsPerRoom = row.ConfirmSeconds * 1e6 / float64(n)
	mem1, err := redisInfoInt(ctx, rdb, "memory", "used_memory")
	if err != nil {
		return row, err
	}
	cpu1 := redisInfoCPU(ctx, rdb)
	var st1 statsReply
	if err := getJSON(ctx, in.url("/bench/stats?nocount=1"), &st1); err != nil {
		return row, err
	}
	row.RedisMemBytes = mem1 - mem0
	row.RedisBytesPerRoom = float64(mem1-mem0) / float64(n)
	if cpu0 >= 0 && cpu1 >= 0 {
		row.RedisCPUUsPerRoom = float64(cpu1-cpu0) / float64(n)
	}
	row.ServerRSSDeltaKB = st1.RSSKB - st0.RSSKB
	row.ServerBytesPerRm = float64(st1.RSSKB-st0.RSSKB) * 1024 / float64(n)
	row.ServerCPUUsPerRm = float64(st1.CPUMicros-st0.CPUMicros) / float64(n)
	row.JoinWaitExpired = st1.AdapterStats["join_wait_expired"] - st0.AdapterStats["join_wait_expired"]
	fmt.Fprintf(cfg.Log, "roomcost %s: %d rooms subscribed in %.3fs, Redis +%d bytes\n", name, n, row.ConfirmSeconds, row.RedisMemBytes)
	return row, nil
}

// redisInfoInt returns an integer field of an INFO section.
func redisInfoInt(ctx context.Context, rdb *redis.Client, section, field string) (int64, error) {
	info, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO %s has no %s", section, field)
}
