// Command bench measures a Socket.IO cluster built with redisadapter against a
// real Redis, next to a single Go server with socket.io's in-memory adapter
// (the ceiling) and, when Node.js is available, a cluster of Node servers with
// the official @socket.io/redis-adapter.
//
//	go run ./examples/bench                  # defaults: 2 instances, 200 clients, 3 rounds
//	go run ./examples/bench -json > out.json # machine-readable results
//
// Every server instance is a separate process: Go instances are this binary
// re-executed in a hidden -serve mode, Node instances run
// interop/bench-server.js. The clients live in the benchmark process. See
// README.md in this directory for what each figure means.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	if os.Getenv(serveEnv) == "1" || (len(os.Args) > 1 && (os.Args[1] == "-serve" || os.Args[1] == "--serve")) {
		if err := serveMain(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench -serve:", err)
			os.Exit(1)
		}
		return
	}
	cfg := config{Log: os.Stderr}
	flag.StringVar(&cfg.RedisURL, "redis", "", "Redis URL (default: a private redis-server on a free loopback port if the binary is in PATH, else $REDIS_URL)")
	flag.IntVar(&cfg.Instances, "instances", 2, "server instances of each cluster")
	flag.IntVar(&cfg.Clients, "clients", 200, "clients, split evenly over the instances")
	flag.IntVar(&cfg.Payload, "payload", 100, "padding bytes per message")
	flag.IntVar(&cfg.Blast, "blast", 5000, "messages of the blast")
	flag.IntVar(&cfg.Pub, "pub", 20000, "messages of the publish-path workload")
	flag.IntVar(&cfg.Rate, "rate", 200, "messages per second of the fixed-rate workload")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "duration of the fixed-rate workload")
	flag.IntVar(&cfg.Runs, "runs", 3, "rounds; each runs every configuration once, alternating")
	nodeFlag := flag.String("node", "auto", "compare with Node servers: auto (when node and interop/node_modules exist), true, false")
	only := flag.String("only", "", "comma-separated subset of configurations: "+strings.Join(allConfigs, ","))
	asJSON := flag.Bool("json", false, "print machine-readable results on stdout (the table goes to stderr)")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write CPU profiles of the Go instances during the first round's workloads to <prefix>-<config>-<phase>-<i>.pprof")
	flag.DurationVar(&cfg.Quiet, "quiet", 2*time.Second, "a workload ends when every message arrived or none arrived for this long")
	flag.BoolVar(&cfg.Cluster, "cluster", false, "instead of the default benchmark, compare classic, room subscriptions and sharded pub/sub on a private 3-master Redis Cluster with many rooms")
	flag.BoolVar(&cfg.Many, "many", false, "instead of the default benchmark, compare pattern, room subscriptions, sharded and Node's classic adapter with 12 instances and many rooms on a private standalone Redis")
	configsFlag := flag.String("configs", "", "with -cluster or -many: comma-separated configurations among classic, rooms, sharded, node (-many only) (default: all)")
	adapterFlag := flag.String("adapter", "", "with -cluster: the same as -configs (classic, rooms, sharded; both = classic,sharded)")
	flag.IntVar(&cfg.Rooms, "rooms", 100, "with -cluster or -many: rooms (-many: default 240)")
	flag.IntVar(&cfg.Holders, "holders", 1, "with -cluster or -many: instances holding each room (-many: default 2)")
	flag.StringVar(&cfg.ShardedMode, "sharded-mode", "dynamic", "with -cluster or -many: subscription mode of the sharded adapter: static, dynamic or dynamic-private")
	roomCost := flag.String("roomcost", "", "instead of the default benchmark, measure the cost of room subscriptions: one instance joins each comma-separated count of distinct rooms (e.g. 10000,50000)")
	flag.IntVar(&cfg.JoinPerCall, "join-per-call", 1, "with -roomcost: rooms per Socket.Join call")
	flag.IntVar(&cfg.JoinWorkers, "join-workers", 64, "with -roomcost: goroutines calling Socket.Join at once")
	flag.DurationVar(&cfg.Soak, "soak", 0, "instead of the default benchmark, run the soak for this long (e.g. 20m): 4 instances, steady traffic, Redis killed and restarted, link frozen")
	flag.DurationVar(&cfg.SoakKillEvery, "soak-kill-every", 2*time.Minute, "with -soak: kill and restart redis-server this often (0: never)")
	flag.DurationVar(&cfg.SoakFreezeEvery, "soak-freeze-every", 5*time.Minute, "with -soak: freeze the link to Redis this often (0: never)")
	flag.DurationVar(&cfg.SoakFreezeFor, "soak-freeze-for", 10*time.Second, "with -soak: how long a freeze lasts")
	flag.DurationVar(&cfg.SoakDown, "soak-down", time.Second, "with -soak: how long redis-server stays down when killed")
	flag.DurationVar(&cfg.SoakReport, "soak-report", time.Minute, "with -soak: interval of the report rows")
	flag.IntVar(&cfg.SoakRate, "soak-rate", 20, "with -soak: messages per second sent by each instance")
	flag.IntVar(&cfg.SoakClients, "soak-clients", 5, "with -soak: clients per instance")
	flag.StringVar(&cfg.SoakAdapter, "soak-adapter", "redis", "with -soak: the instances' adapter: redis (classic), rooms, sharded or streams")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *adapterFlag != "" && *configsFlag == "" {
		*configsFlag = *adapterFlag
	}
	modes := 0
	for _, on := range []bool{cfg.Cluster, cfg.Many, *roomCost != "", cfg.Soak > 0} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		fmt.Fprintln(os.Stderr, "bench: -cluster, -many, -roomcost and -soak are separate benchmarks: pick one")
		os.Exit(2)
	}
	if cfg.Many {
		// The seed's setting: 12 instances, many rooms, each on a few.
		for name, v := range map[string]int{"instances": 12, "rooms": 240, "clients": 480, "holders": 2} {
			if !set[name] {
				*map[string]*int{"instances": &cfg.Instances, "rooms": &cfg.Rooms, "clients": &cfg.Clients, "holders": &cfg.Holders}[name] = v
			}
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *roomCost != "" {
		if err := runRoomCost(ctx, &cfg, *roomCost, *asJSON); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if cfg.Soak > 0 {
		if err := runSoak(ctx, &cfg, *asJSON); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if cfg.Cluster || cfg.Many {
		var rep *report
		var err error
		if cfg.Many {
			rep, err = runMany(ctx, &cfg, *configsFlag, *nodeFlag)
		} else {
			rep, err = runCluster(ctx, &cfg, *configsFlag)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		out := io.Writer(os.Stdout)
		if *asJSON {
			out = os.Stderr
		}
		printRoomsTable(out, rep, &cfg)
		if *asJSON {
			if err := printJSON(os.Stdout, rep); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				os.Exit(1)
			}
		}
		return
	}
	if *configsFlag != "" {
		fmt.Fprintln(os.Stderr, "bench: -configs and -adapter need -cluster or -many (use -only in the default benchmark)")
		os.Exit(2)
	}
	rep, err := run(ctx, &cfg, *nodeFlag, *only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if *asJSON {
		printTable(os.Stderr, rep, cfg.Configs) // for the human watching
		if err := printJSON(os.Stdout, rep); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	printTable(os.Stdout, rep, cfg.Configs)
}

// run prepares Redis and the list of configurations, runs the rounds and
// returns the report.
func run(ctx context.Context, cfg *config, nodeFlag, only string) (*report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	switch {
	case cfg.Instances < 2:
		return nil, errors.New("-instances must be at least 2")
	case cfg.Clients < 1, cfg.Blast < 1, cfg.Pub < 1, cfg.Rate < 1, cfg.Runs < 1, cfg.Payload < 0:
		return nil, errors.New("-clients, -blast, -pub, -rate and -runs must be positive, -payload not negative")
	case cfg.Duration < 10*time.Millisecond:
		return nil, errors.New("-duration is too short")
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 2 * time.Second
	}
	var notes []string

	// Which configurations.
	if len(cfg.Configs) == 0 {
		if only != "" {
			for _, c := range strings.Split(only, ",") {
				c = strings.TrimSpace(c)
				if _, ok := configTitles[c]; !ok {
					return nil, fmt.Errorf("-only: unknown configuration %q", c)
				}
				cfg.Configs = append(cfg.Configs, c)
			}
		} else {
			cfg.Configs = []string{cfgGoRedis, cfgGoRooms, cfgGoStreams, cfgGoMemory}
			switch nodeFlag {
			case "auto", "true", "false":
			default:
				return nil, fmt.Errorf("-node must be auto, true or false, not %q", nodeFlag)
			}
			if nodeFlag != "false" {
				cfg.InteropDir = findInterop()
				node, err := nodeAvailable(cfg.InteropDir)
				switch {
				case err == nil:
					cfg.NodeExe = node
					cfg.Configs = append(cfg.Configs, cfgNodeRedis, cfgNodeStreams)
				case nodeFlag == "true":
					return nil, fmt.Errorf("-node=true: %w", err)
				default:
					notes = append(notes, "Node comparison skipped: "+err.Error())
				}
			}
		}
	}
	for _, c := range cfg.Configs {
		if impl, _ := configImpl(c); impl == "node" && cfg.NodeExe == "" {
			cfg.InteropDir = findInterop()
			node, err := nodeAvailable(cfg.InteropDir)
			if err != nil {
				return nil, err
			}
			cfg.NodeExe = node
		}
	}

	// Which Redis.
	redisDesc := ""
	if cfg.RedisURL == "" {
		if path, err := exec.LookPath("redis-server"); err == nil {
			p, u, err := startRedisServer(path, cfg.Log)
			if err != nil {
				return nil, err
			}
			defer p.stop()
			cfg.RedisURL = u
			ro, _ := redis.ParseURL(u)
			rdb := redis.NewClient(ro)
			defer rdb.Close()
			cfg.RedisCPU = func(ctx context.Context) int64 { return redisInfoCPU(ctx, rdb) }
			redisDesc = "private redis-server " + p.addr()
		} else if u := os.Getenv("REDIS_URL"); u != "" {
			cfg.RedisURL = u
		} else {
			return nil, errors.New("no Redis: install redis-server, set REDIS_URL or pass -redis")
		}
	}
	if redisDesc == "" {
		redisDesc = redactURL(cfg.RedisURL)
	}
	fmt.Fprintf(cfg.Log, "Redis: %s; configurations: %s\n", redisDesc, strings.Join(cfg.Configs, ", "))

	rep := &report{
		Settings: map[string]any{
			"instances": cfg.Instances, "clients": cfg.Clients, "payload": cfg.Payload, "blast": cfg.Blast, "pub": cfg.Pub,
			"rate": cfg.Rate, "duration": cfg.Duration.String(), "runs": cfg.Runs, "redis": redisDesc,
			"configs": cfg.Configs,
		},
		Notes: notes,
	}
	load0 := loadAvg()
	for round := 1; round <= cfg.Runs; round++ {
		for _, c := range cfg.Configs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res, err := runConfig(ctx, cfg, c, round)
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
	rep.Ratios = ratios(rep.Medians)
	return rep, nil
}

// runMany checks the flags of the -many comparison and runs it.
func runMany(ctx context.Context, cfg *config, configs, nodeFlag string) (*report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	switch {
	case cfg.Instances < 2:
		return nil, errors.New("-instances must be at least 2")
	case cfg.Clients < 1, cfg.Blast < 1, cfg.Runs < 1, cfg.Rooms < 1, cfg.Payload < 0:
		return nil, errors.New("-clients, -blast, -rooms and -runs must be positive, -payload not negative")
	case cfg.RedisURL != "":
		return nil, errors.New("-many starts its own redis-server: -redis does not apply")
	}
	switch nodeFlag {
	case "auto", "true", "false":
	default:
		return nil, fmt.Errorf("-node must be auto, true or false, not %q", nodeFlag)
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 2 * time.Second
	}
	return runManyComparison(ctx, cfg, configs, nodeFlag)
}

// runCluster checks the flags of the -cluster comparison and runs it.
func runCluster(ctx context.Context, cfg *config, adapterFlag string) (*report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	switch {
	case cfg.Instances < 2:
		return nil, errors.New("-instances must be at least 2")
	case cfg.Clients < 1, cfg.Blast < 1, cfg.Runs < 1, cfg.Rooms < 1, cfg.Payload < 0:
		return nil, errors.New("-clients, -blast, -rooms and -runs must be positive, -payload not negative")
	case cfg.RedisURL != "":
		return nil, errors.New("-cluster starts its own Redis Cluster: -redis does not apply")
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 2 * time.Second
	}
	return runClusterComparison(ctx, cfg, adapterFlag)
}

// redisInfoCPU returns used_cpu_sys + used_cpu_user of INFO CPU, in µs, or
// -1.
func redisInfoCPU(ctx context.Context, rdb *redis.Client) int64 {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return -1
	}
	var total float64
	found := 0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			total += f
			found++
		}
	}
	if found != 2 {
		return -1
	}
	return int64(total * 1e6)
}

// loadAvg returns the first three fields of /proc/loadavg, or "".
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// redactURL hides the password of a Redis URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
