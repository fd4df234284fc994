package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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
	for _, want := range []string{"sharded/classic", "Redis CPU µs per message", "frames received by instance 1"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	t.Logf("\n%s", table.String())
}

// TestManySmoke runs a tiny -many comparison (3 instances on a private
// redis-server, pattern and room subscriptions, 24 clients in 12 rooms held
// by one instance each) and checks that neither loses anything and that
// with room subscriptions an instance receives only the frames of its rooms.
func TestManySmoke(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	var log syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("benchmark log:\n%s", log.String())
		}
	}()
	cfg := &config{
		Instances: 3, Clients: 24, Rooms: 12, Holders: 1, Payload: 64, Blast: 120, Rate: 50, Duration: time.Second,
		Runs: 1, Quiet: time.Second, Log: &log, Many: true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := runMany(ctx, cfg, "classic,rooms", "false")
	if err != nil {
		t.Fatal(err)
	}
	classic, rooms := rep.Medians[cfgClassic], rep.Medians[cfgRoomsSub]
	for name, med := range map[string]map[string]float64{cfgClassic: classic, cfgRoomsSub: rooms} {
		for _, k := range []string{"rooms_loss", "rooms_rate_loss"} {
			if v, ok := med[k]; !ok || v != 0 {
				t.Errorf("%s %s = %v (present %v), want 0", name, k, v, ok)
			}
		}
		for _, k := range []string{"rooms_deliveries_per_s", "rooms_cpu_us_per_delivery", "rooms_redis_cpu_us_per_msg", "rooms_rate_remote_p50_ms"} {
			if med[k] <= 0 {
				t.Errorf("%s %s = %v, want > 0", name, k, med[k])
			}
		}
	}
	if got := classic["rooms_received_per_msg_inst1"]; got < 1 {
		t.Errorf("classic: instance 1 received %v frames per message, want 1", got)
	}
	if got := rooms["rooms_received_per_msg_inst1"]; got > 0.5 {
		t.Errorf("rooms: instance 1 received %v frames per message, want about 1/3", got)
	}
	var table bytes.Buffer
	printRoomsTable(&table, rep, cfg)
	for _, want := range []string{"rooms/classic", "frames received per message, mean", "remote latency p99"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	t.Logf("\n%s", table.String())
}

// TestLinkProxy checks the soak's proxy: it forwards, holds everything while
// frozen, and delivers it on thaw.
func TestLinkProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	px, err := startProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	c, err := net.Dial("tcp", px.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(msg string, within time.Duration) error {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echo %q, want %q", buf, msg)
		}
		return nil
	}
	if err := echo("hello", 2*time.Second); err != nil {
		t.Fatalf("before freeze: %v", err)
	}
	px.Freeze()
	if err := echo("frozen", 300*time.Millisecond); err == nil {
		t.Fatal("the proxy forwarded while frozen")
	}
	px.Thaw()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, len("frozen"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "frozen" {
		t.Fatalf("after thaw: %q, %v; want the held bytes", buf, err)
	}
	if err := echo("again", 2*time.Second); err != nil {
		t.Fatalf("after thaw: %v", err)
	}
}

// TestSoakSmoke runs a 25-second soak with a Redis kill and a frozen link
// and checks that nothing is lost while Redis is up, nothing locally, and
// nothing twice.
func TestSoakSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	var log syncBuffer
	cfg := &config{
		Soak: 25 * time.Second, SoakKillEvery: 6 * time.Second, SoakFreezeEvery: 11 * time.Second, SoakFreezeFor: 3 * time.Second,
		SoakDown: 500 * time.Millisecond, SoakReport: 10 * time.Second, SoakRate: 10, SoakClients: 2, SoakAdapter: "redis", Log: &log,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// runSoak prints to stdout; its JSON is what is checked.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, r); close(copied) }()
	err = runSoak(ctx, cfg, true)
	os.Stdout = stdout
	w.Close()
	<-copied
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	var rep struct {
		Rows   []soakRow   `json:"rows"`
		Faults []soakEvent `json:"faults"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("soak JSON: %v\n%s", err, out.String())
	}
	if len(rep.Faults) < 2 {
		t.Errorf("%d faults, want a kill and a freeze at least: %+v", len(rep.Faults), rep.Faults)
	}
	last := rep.Rows[len(rep.Rows)-soakInstances:]
	for _, row := range last {
		if row.LostWhileUp != 0 || row.LostLocal != 0 || row.Duplicates != 0 || row.Delivered == 0 {
			t.Errorf("instance %d: %+v, want nothing lost while up or locally, no duplicates", row.Instance, row)
		}
	}
}
