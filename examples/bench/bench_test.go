package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// TestMain lets the test binary act as a server instance: the benchmark
// re-executes its own binary with serveEnv=1.
func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		if err := serveMain(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench -serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// syncBuffer collects the benchmark's log, shown when the test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSmoke runs a tiny benchmark (2 Go instances on Redis with the classic,
// room-subscription and streams transports, and the in-memory ceiling, 10
// clients, 200 messages) and checks that no Go cluster loses anything and
// that the report holds every figure. It uses a private
// redis-server when one is installed, else $REDIS_URL, else an embedded
// miniredis.
func TestSmoke(t *testing.T) {
	var log syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("benchmark log:\n%s", log.String())
		}
	}()
	cfg := &config{
		Instances: 2, Clients: 10, Payload: 64, Blast: 200, Pub: 200, Rate: 100, Duration: time.Second, Runs: 1,
		Configs: []string{cfgGoRedis, cfgGoRooms, cfgGoStreams, cfgGoMemory}, Quiet: time.Second, Log: &log,
	}
	if path, err := exec.LookPath("redis-server"); err == nil {
		p, u, err := startRedisServer(path, &log)
		if err != nil {
			t.Fatal(err)
		}
		defer p.stop()
		cfg.RedisURL = u
	} else if u := os.Getenv("REDIS_URL"); u != "" {
		cfg.RedisURL = u // each configuration uses its own channel prefix
	} else {
		mr, err := miniredis.Run()
		if err != nil {
			t.Fatal(err)
		}
		defer mr.Close()
		cfg.RedisURL = "redis://" + mr.Addr() + "/0"
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := run(ctx, cfg, "false", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("benchmark took %v", time.Since(start).Round(time.Millisecond))

	goRedis := rep.Medians[cfgGoRedis]
	for _, c := range []string{cfgGoRedis, cfgGoRooms, cfgGoStreams} {
		for _, k := range []string{"blast_loss", "rate_loss", "pub_loss"} {
			if v, ok := rep.Medians[c][k]; !ok || v != 0 {
				t.Errorf("%s %s = %v (present %v), want 0", c, k, v, ok)
			}
		}
	}
	// Every figure of the report is there, except those that need a
	// private redis-server (its CPU time) or a second instance.
	for _, m := range metrics {
		if m.key == "blast_redis_cpu_us_per_msg" || m.key == "pub_redis_cpu_us_per_msg" || (m.key == "host_other_cpu_pct" && hostBusyCPU() < 0) ||
			(m.key == "blast_write_syscalls_per_delivery" && writeSyscalls() < 0) {
			continue
		}
		if _, ok := goRedis[m.key]; !ok {
			t.Errorf("go-redis: figure %s (%s) missing", m.key, m.label)
		}
		_, ok := rep.Medians[cfgGoMemory][m.key]
		single := strings.HasPrefix(m.key, "rate_remote_") || strings.HasPrefix(m.key, "pub_")
		if ok == single {
			t.Errorf("go-memory: figure %s present = %v, want %v", m.key, ok, !single)
		}
	}
	if _, ok := rep.Ratios[cfgGoRedis+"/"+cfgGoMemory]["blast_deliveries_per_s"]; !ok {
		t.Error("ratio go-redis/go-memory of blast_deliveries_per_s missing")
	}
	if goRedis["blast_deliveries_per_s"] <= 0 || goRedis["rate_remote_p50_ms"] <= 0 || goRedis["peak_rss_mb_max"] <= 0 {
		t.Errorf("implausible figures: %v", goRedis)
	}

	var table bytes.Buffer
	printTable(&table, rep, cfg.Configs)
	for _, want := range []string{"blast: deliveries/s", "remote latency p99", "publish path: emit loop msgs/s", "go/ceiling", "rooms/classic", "streams/classic", "peak RSS MB"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := printJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON output does not parse: %v", err)
	}
	if len(back.Rounds) != 4 || back.Medians[cfgGoRedis]["blast_deliveries_per_s"] == 0 {
		t.Errorf("JSON output incomplete: %s", js.String())
	}
	t.Logf("\n%s", table.String())
}

// TestClusterSmoke runs a tiny -cluster comparison (a private 3-master Redis
// Cluster, classic and sharded, 20 clients in 10 rooms, 200 messages) and
// checks that neither loses anything and that the sharded adapter's second
// instance reads only the frames of its own rooms. It needs redis-server and
// redis-cli.
func TestClusterSmoke(t *testing.T) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	var log syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("benchmark log:\n%s", log.String())
		}
	}()
	cfg := &config{
		Instances: 2, Clients: 20, Rooms: 10, Payload: 64, Blast: 200, Runs: 1, Quiet: time.Second, Log: &log, Cluster: true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := runCluster(ctx, cfg, "both")
	if err != nil {
		t.Fatal(err)
	}
	classic, sharded := rep.Medians[cfgClassic], rep.Medians[cfgSharded]
	for name, med := range map[string]map[string]float64{cfgClassic: classic, cfgSharded: sharded} {
		if v, ok := med["rooms_loss"]; !ok || v != 0 {
			t.Errorf("%s rooms_loss = %v (present %v), want 0", name, v, ok)
		}
		for _, k := range []string{"rooms_deliveries_per_s", "rooms_cpu_us_per_delivery", "rooms_redis_cpu_us_per_msg", "rooms_received_inst1"} {
			if med[k] <= 0 {
				t.Errorf("%s %s = %v, want > 0", name, k, med[k])
			}
		}
	}
	// Classic: instance 1 reads every frame; sharded: only those of its 5
	// rooms out of 10.
	if got := classic["rooms_received_inst1"]; got < float64(cfg.Blast) {
		t.Errorf("classic: instance 1 received %v frames, want at least %d", got, cfg.Blast)
	}
	if got := sharded["rooms_received_inst1"]; got >= float64(cfg.Blast) {
		t.Errorf("sharded: instance 1 received %v frames, want fewer than %d", got, cfg.Blast)
	}
	var table bytes.Buffer
	printRoomsTable(&table, rep, cfg)
	for _, want := range []string{"sharded/classic", "Redis Cluster CPU", "frames received by instance 1"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	t.Logf("\n%s", table.String())
}
