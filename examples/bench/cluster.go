package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisCluster is a private Redis Cluster of masters only: cluster-enabled
// redis-server processes on loopback ports, joined with
// redis-cli --cluster create.
type redisCluster struct {
	nodes   []*proc
	clients []*redis.Client // one per node, for INFO CPU
}

// startRedisCluster starts masters cluster-enabled redis-servers, creates the
// cluster and waits until every node reports cluster_state:ok and sees the
// masters covering all 16384 slots.
func startRedisCluster(ctx context.Context, masters int, logw io.Writer) (rc *redisCluster, err error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("-cluster needs redis-server: %w", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("-cluster needs redis-cli: %w", err)
	}
	rc = &redisCluster{}
	defer func() {
		if err != nil {
			rc.stop()
			rc = nil
		}
	}()
	for range masters {
		// The cluster bus gets its own free port (cluster-port), so that
		// port+10000 never has to be free.
		busPort, err := freePort()
		if err != nil {
			return rc, err
		}
		p, _, err := startRedisServer(server, logw, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(busPort), "--cluster-node-timeout", "1000")
		if err != nil {
			return rc, err
		}
		rc.nodes = append(rc.nodes, p)
		rc.clients = append(rc.clients, redis.NewClient(&redis.Options{Addr: p.addr()}))
	}
	args := append([]string{"--cluster", "create"}, rc.addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(cctx, cli, args...).CombinedOutput(); err != nil {
		return rc, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	for _, c := range rc.clients {
		if err := waitUntil(ctx, 30*time.Second, "the Redis Cluster is healthy on "+c.Options().Addr, func() (bool, error) {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return false, err
			}
			slots, err := c.ClusterSlots(ctx).Result()
			if err != nil {
				return false, err
			}
			covered, owners := 0, map[string]bool{}
			for _, s := range slots {
				covered += s.End - s.Start + 1
				if len(s.Nodes) > 0 {
					owners[s.Nodes[0].Addr] = true
				}
			}
			return strings.Contains(info, "cluster_state:ok") && covered == 16384 && len(owners) == masters, nil
		}); err != nil {
			return rc, err
		}
	}
	return rc, nil
}

// addrs returns the host:port of every node.
func (rc *redisCluster) addrs() []string {
	out := make([]string, len(rc.nodes))
	for i, p := range rc.nodes {
		out[i] = p.addr()
	}
	return out
}

// cpu returns the CPU time (used_cpu_sys + used_cpu_user) of all nodes so
// far, µs, or -1.
func (rc *redisCluster) cpu(ctx context.Context) int64 {
	var total int64
	for _, c := range rc.clients {
		v := redisInfoCPU(ctx, c)
		if v < 0 {
			return -1
		}
		total += v
	}
	return total
}

// stop stops every node.
func (rc *redisCluster) stop() {
	if rc == nil {
		return
	}
	for _, c := range rc.clients {
		_ = c.Close()
	}
	var wg sync.WaitGroup
	for _, p := range rc.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}
