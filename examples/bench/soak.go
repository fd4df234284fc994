package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The soak (-soak): 4 Go instances with -soak-clients clients each, all in
// room "soak"; every instance emits -soak-rate msg/s to the room, each
// message numbered per sender. The instances reach their own redis-server
// through a TCP proxy (proxy.go). redis-server is killed (SIGKILL) and
// restarted every -soak-kill-every, and the link frozen for -soak-freeze-for
// every -soak-freeze-every. Every -soak-report, and at the end, one row per
// instance: RSS, goroutines, adapter state, messages delivered to its
// clients, lost (split: sent during a fault, or while Redis was up) and
// delivered twice.

// soakInstances is the number of instances of the soak.
const soakInstances = 4

// soakGrace is how old a message must be before it counts as lost.
const soakGrace = 3 * time.Second

// soakFaultMargin widens each fault window on both sides when lost
// messages are classified: a frame queued just before a kill dies with it.
const soakFaultMargin = time.Second

// soakEvent is one fault of the soak.
type soakEvent struct {
	Kind      string    `json:"kind"` // "kill" or "freeze"
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`       // redis-server answering again, or the link thawed
	Recovered time.Time `json:"recovered"` // every instance's adapter connected again (zero if not seen)
}

// soakRow is one row of the soak report: one instance at one time.
type soakRow struct {
	ElapsedS    float64 `json:"elapsed_s"`
	Instance    int     `json:"instance"`
	RSSMB       float64 `json:"rss_mb"`
	Goroutines  int     `json:"goroutines"`
	State       string  `json:"state"`
	Sent        int64   `json:"sent"`          // messages this instance emitted
	Delivered   int64   `json:"delivered"`     // distinct messages its clients received (all senders)
	Expected    int64   `json:"expected"`      // messages its clients should have received, old enough to count
	LostInFault int64   `json:"lost_in_fault"` // lost, sent during a fault window (± 1s)
	LostWhileUp int64   `json:"lost_while_up"` // lost, sent while Redis was up and linked
	LostLocal   int64   `json:"lost_local"`    // lost, sent by the client's own instance (local delivery: never expected)
	Duplicates  int64   `json:"duplicates"`    // deliveries of a message a client already had
	Reconnects  int64   `json:"reconnects"`    // the adapter's Stats().Reconnects
	SkippedDegr int64   `json:"skipped_degraded"`
	PublishErrs int64   `json:"publish_errors"`
}

// soakRedis is the soak's own redis-server, on a fixed port so that it can
// be restarted behind the proxy.
type soakRedis struct {
	path, dir string
	port      int
	logw      io.Writer
	p         *proc
}

func (r *soakRedis) start() error {
	cmd := exec.Command(r.path, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", filepath.Join(r.dir, "redis.log"))
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	p := &proc{name: "soak-redis", cmd: cmd, port: r.port, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	r.p = p
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited at start (see %s)", filepath.Join(r.dir, "redis.log"))
		default:
		}
		if redisPing(p.addr()) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("redis-server did not answer PING within 10s")
}

// kill kills redis-server at once (SIGKILL) and waits for it to exit.
func (r *soakRedis) kill() {
	if r.p == nil {
		return
	}
	_ = r.p.cmd.Process.Signal(syscall.SIGKILL)
	<-r.p.done
	r.p = nil
}

// runSoak runs the soak and prints its report.
func runSoak(ctx context.Context, cfg *config, asJSON bool) error {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	switch {
	case cfg.RedisURL != "":
		return errors.New("-soak kills and restarts its own redis-server: -redis does not apply")
	case cfg.SoakRate < 1 || cfg.SoakClients < 1:
		return errors.New("-soak-rate and -soak-clients must be positive")
	case cfg.SoakReport <= 0 || cfg.SoakFreezeFor <= 0 || cfg.SoakDown < 0:
		return errors.New("-soak-report and -soak-freeze-for must be positive, -soak-down not negative")
	}
	switch cfg.SoakAdapter {
	case "redis", "rooms", "sharded", "streams":
	default:
		return fmt.Errorf("-soak-adapter must be redis, rooms, sharded or streams, not %q", cfg.SoakAdapter)
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("-soak needs redis-server in PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "redisadapter-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return err
	}
	rs := &soakRedis{path: path, dir: dir, port: port, logw: cfg.Log}
	if err := rs.start(); err != nil {
		return err
	}
	defer rs.kill()
	px, err := startProxy(rs.p.addr())
	if err != nil {
		return err
	}
	defer px.Close()
	out := io.Writer(os.Stdout)
	if asJSON {
		out = os.Stderr
	}
	fmt.Fprintf(out, "Soak: %v, %d instances (-adapter %s), %d clients each, %d msg/s per instance; redis-server 127.0.0.1:%d behind the proxy %s; kill every %v (down %v), freeze every %v for %v.\n",
		cfg.Soak, soakInstances, cfg.SoakAdapter, cfg.SoakClients, cfg.SoakRate, port, px.addr(), cfg.SoakKillEvery, cfg.SoakDown, cfg.SoakFreezeEvery, cfg.SoakFreezeFor)

	// Instances and clients.
	exe := cfg.ServerExe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	key := fmt.Sprintf("soak-%d", os.Getpid())
	insts := make([]*instance, 0, soakInstances)
	defer func() {
		for _, in := range insts {
			in.proc.stop()
		}
	}()
	for i := range soakInstances {
		p, err := startServerProc(fmt.Sprintf("soak-%d", i), exe,
			[]string{"-serve", "-adapter", cfg.SoakAdapter, "-redis", "redis://" + px.addr() + "/0", "-key", key, "-log-disconnects"},
			[]string{serveEnv + "=1"}, "", cfg.Log)
		if err != nil {
			return err
		}
		insts = append(insts, &instance{proc: p, impl: "go"})
	}
	if err := waitUntil(ctx, 30*time.Second, "every instance sees the cluster", func() (bool, error) {
		for _, in := range insts {
			var st statsReply
			if err := getJSON(ctx, in.url("/bench/stats"), &st); err != nil {
				return false, err
			}
			if st.ServerCount < soakInstances {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return err
	}
	clients := make([]*benchClient, soakInstances*cfg.SoakClients)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := connectClientsTo(ctx, insts, clients, func(i int) (int, string) { return i % soakInstances, "soak" }); err != nil {
		return err
	}
	if err := waitUntil(ctx, 30*time.Second, "warm-up messages reach every client", func() (bool, error) {
		for _, in := range insts {
			if err := postJSON(ctx, in.url("/bench/emit"), emitRequest{Mode: "blast", Room: "soak", Event: phaseEvents[phaseWarm], Count: 1}, nil); err != nil {
				return false, err
			}
		}
		if err := ctxSleep(ctx, 100*time.Millisecond); err != nil {
			return false, err
		}
		for _, c := range clients {
			if c.count[phaseWarm].Load() < soakInstances {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return err
	}

	// The emitters.
	t0 := time.Now()
	senders := make([]soakReply, soakInstances)
	for i, in := range insts {
		if err := postJSON(ctx, in.url("/bench/soak"), soakRequest{Room: "soak", Event: phaseEvents[phaseSoak], Rate: cfg.SoakRate, DurationMS: cfg.Soak.Milliseconds(), Sender: i, Payload: 64}, &senders[i]); err != nil {
			return err
		}
	}

	// The faults, on their own goroutine.
	var evMu sync.Mutex
	var events []soakEvent
	fctx, stopFaults := context.WithCancel(ctx)
	var fwg sync.WaitGroup
	fwg.Add(1)
	go func() {
		defer fwg.Done()
		soakFaults(fctx, cfg, rs, px, insts, t0, func(ev soakEvent) {
			// Called at the start of a fault (End zero: ongoing), then
			// again with the same Start when it is over.
			evMu.Lock()
			defer evMu.Unlock()
			if n := len(events); n > 0 && events[n-1].Start.Equal(ev.Start) {
				events[n-1] = ev
				return
			}
			events = append(events, ev)
		}, out)
	}()
	defer func() { stopFaults(); fwg.Wait() }()

	// The report.
	var rows []soakRow
	const rowFmt = "%8s %8s %7s %10s %10s %7s %10s %10s %13s %13s %10s %10s %10s\n"
	fmt.Fprintf(out, rowFmt, "elapsed", "instance", "RSS MB", "goroutines", "state", "sent", "delivered", "expected", "lost in fault", "lost while up", "lost local", "duplicates", "reconnects")
	report := func(final bool) error {
		evMu.Lock()
		evs := slices.Clone(events)
		evMu.Unlock()
		now := time.Now()
		rs, err := soakRows(ctx, insts, clients, senders, evs, now, final)
		if err != nil {
			return err
		}
		for _, r := range rs {
			r.ElapsedS = now.Sub(t0).Seconds()
			rows = append(rows, r)
			fmt.Fprintf(out, rowFmt, now.Sub(t0).Round(time.Second), strconv.Itoa(r.Instance), fmt.Sprintf("%.1f", r.RSSMB), strconv.Itoa(r.Goroutines), r.State,
				fmt.Sprint(r.Sent), fmt.Sprint(r.Delivered), fmt.Sprint(r.Expected), fmt.Sprint(r.LostInFault), fmt.Sprint(r.LostWhileUp),
				fmt.Sprint(r.LostLocal), fmt.Sprint(r.Duplicates), fmt.Sprint(r.Reconnects))
		}
		return nil
	}
	if err := report(false); err != nil {
		return err
	}
	tick := time.NewTicker(cfg.SoakReport)
	defer tick.Stop()
	end := time.NewTimer(time.Until(t0.Add(cfg.Soak)))
	defer end.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := report(false); err != nil {
				return err
			}
		case <-end.C:
			break loop
		}
	}
	stopFaults()
	fwg.Wait()
	px.Thaw()
	// Let the last messages arrive, and let every adapter reconnect after a
	// fault that ended with the soak.
	_ = waitUntil(ctx, 30*time.Second, "every instance connected", func() (bool, error) {
		for _, in := range insts {
			var st statsReply
			if err := getJSON(ctx, in.url("/bench/stats?nocount=1"), &st); err != nil {
				return false, err
			}
			if st.State != "connected" {
				return false, nil
			}
		}
		return true, nil
	})
	if err := ctxSleep(ctx, soakGrace); err != nil {
		return err
	}
	if err := report(true); err != nil {
		return err
	}
	for _, c := range clients {
		if err := c.Err(); err != nil {
			fmt.Fprintf(out, "note: a client of instance %d lost its connection: %v\n", c.inst, err)
		}
	}
	evMu.Lock()
	evs := slices.Clone(events)
	evMu.Unlock()
	fmt.Fprintln(out, "\nFaults:")
	for _, ev := range evs {
		rec := "not seen"
		if !ev.Recovered.IsZero() {
			rec = fmt.Sprintf("%.1fs after it ended", ev.Recovered.Sub(ev.End).Seconds())
		}
		fmt.Fprintf(out, "  %7s at %6.1fs, for %.1fs; every adapter connected again %s\n", ev.Kind, ev.Start.Sub(t0).Seconds(), ev.End.Sub(ev.Start).Seconds(), rec)
	}
	summary := soakSummary(rows)
	for _, s := range summary {
		fmt.Fprintln(out, s)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"settings": map[string]any{
				"duration": cfg.Soak.String(), "instances": soakInstances, "adapter": cfg.SoakAdapter, "clients_per_instance": cfg.SoakClients,
				"rate_per_instance": cfg.SoakRate, "kill_every": cfg.SoakKillEvery.String(), "redis_down": cfg.SoakDown.String(),
				"freeze_every": cfg.SoakFreezeEvery.String(), "freeze_for": cfg.SoakFreezeFor.String(), "report_every": cfg.SoakReport.String(),
			},
			"rows": rows, "faults": evs, "summary": summary,
		})
	}
	return nil
}

// soakFaults kills and freezes on schedule until ctx is done, and reports
// each fault once every adapter is connected again (or 30s later).
func soakFaults(ctx context.Context, cfg *config, rs *soakRedis, px *linkProxy, insts []*instance, t0 time.Time, record func(soakEvent), out io.Writer) {
	nextKill, nextFreeze := time.Time{}, time.Time{}
	if cfg.SoakKillEvery > 0 {
		nextKill = t0.Add(cfg.SoakKillEvery)
	}
	if cfg.SoakFreezeEvery > 0 {
		nextFreeze = t0.Add(cfg.SoakFreezeEvery)
	}
	for {
		next, kind := nextKill, "kill"
		if next.IsZero() || (!nextFreeze.IsZero() && nextFreeze.Before(next)) {
			next, kind = nextFreeze, "freeze"
		}
		// No fault that would not end (and be recovered from) before the
		// soak does.
		if next.IsZero() || next.After(t0.Add(cfg.Soak-cfg.SoakFreezeFor-cfg.SoakDown-5*time.Second)) {
			<-ctx.Done()
			return
		}
		if ctxSleep(ctx, time.Until(next)) != nil {
			return
		}
		ev := soakEvent{Kind: kind, Start: time.Now()}
		record(ev)
		if kind == "kill" {
			nextKill = nextKill.Add(cfg.SoakKillEvery)
			rs.kill()
			_ = ctxSleep(ctx, cfg.SoakDown)
			if err := rs.start(); err != nil {
				fmt.Fprintf(out, "soak: restarting redis-server: %v\n", err)
				return
			}
		} else {
			nextFreeze = nextFreeze.Add(cfg.SoakFreezeEvery)
			px.Freeze()
			_ = ctxSleep(ctx, cfg.SoakFreezeFor)
			px.Thaw()
		}
		ev.End = time.Now()
		// Recovered: every adapter reports connected, after having left it
		// (a fault shorter than its detection leaves it connected).
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			ok := true
			for _, in := range insts {
				var st statsReply
				if err := getJSON(ctx, in.url("/bench/stats?nocount=1"), &st); err != nil || st.State != "connected" {
					ok = false
					break
				}
			}
			if ok {
				ev.Recovered = time.Now()
				break
			}
			_ = ctxSleep(ctx, 100*time.Millisecond)
		}
		fmt.Fprintf(cfg.Log, "soak: %s at %.1fs for %.1fs, recovered %v\n", kind, ev.Start.Sub(t0).Seconds(), ev.End.Sub(ev.Start).Seconds(), !ev.Recovered.IsZero())
		record(ev)
	}
}

// soakRows computes one row per instance. A message counts once it is
// soakGrace old (every message, when final); it is lost for a client that
// never got it, during a fault if it was due within a fault window widened
// by soakFaultMargin, or while Redis was up otherwise.
func soakRows(ctx context.Context, insts []*instance, clients []*benchClient, senders []soakReply, evs []soakEvent, now time.Time, final bool) ([]soakRow, error) {
	rows := make([]soakRow, len(insts))
	sent := make([]int64, len(insts))
	for i, in := range insts {
		var st statsReply
		if err := getJSON(ctx, in.url("/bench/stats?nocount=1"), &st); err != nil {
			return nil, err
		}
		sent[i] = st.SoakSent
		rows[i] = soakRow{Instance: i, RSSMB: float64(st.RSSKB) / 1024, Goroutines: st.Goroutines, State: st.State, Sent: st.SoakSent,
			Reconnects: st.AdapterStats["reconnects"], SkippedDegr: st.AdapterStats["skipped_degraded"], PublishErrs: st.AdapterStats["publish_errors"]}
	}
	inFault := func(due time.Time) bool {
		for _, ev := range evs {
			end := ev.Recovered
			switch {
			case ev.End.IsZero(): // still going on
				end = now
			case end.IsZero(): // not recovered within 30s
				end = ev.End.Add(30 * time.Second)
			}
			if !due.Before(ev.Start.Add(-soakFaultMargin)) && !due.After(end.Add(soakFaultMargin)) {
				return true
			}
		}
		return false
	}
	cutoff := now.Add(-soakGrace)
	for s, sr := range senders {
		start, iv := time.Unix(0, sr.StartNanos), time.Duration(sr.IntervalNanos)
		n := sent[s]
		if !final && iv > 0 {
			n = min(n, int64(cutoff.Sub(start)/iv)+1)
		}
		for _, c := range clients {
			r := &rows[c.inst]
			c.mu.Lock()
			var seen *soakSeen
			if s < len(c.soak) {
				seen = &c.soak[s]
			}
			for seq := int64(0); seq < n; seq++ {
				r.Expected++
				if seen != nil && seen.has(seq) {
					r.Delivered++
					continue
				}
				if s == c.inst {
					r.LostLocal++
				}
				if inFault(start.Add(time.Duration(seq) * iv)) {
					r.LostInFault++
				} else {
					r.LostWhileUp++
				}
			}
			if seen != nil {
				r.Duplicates += seen.dups
			}
			c.mu.Unlock()
		}
	}
	return rows, nil
}

// soakSummary states, per instance, how RSS and goroutines moved from the
// first row to the last, and the totals of the last rows.
func soakSummary(rows []soakRow) []string {
	first, last := map[int]soakRow{}, map[int]soakRow{}
	for _, r := range rows {
		if _, ok := first[r.Instance]; !ok {
			first[r.Instance] = r
		}
		last[r.Instance] = r
	}
	var out []string
	var lostUp, lostFault, lostLocal, dups, expected int64
	for i := range soakInstances {
		f, l := first[i], last[i]
		out = append(out, fmt.Sprintf("instance %d: RSS %.1f → %.1f MB, goroutines %d → %d", i, f.RSSMB, l.RSSMB, f.Goroutines, l.Goroutines))
		lostUp += l.LostWhileUp
		lostFault += l.LostInFault
		lostLocal += l.LostLocal
		dups += l.Duplicates
		expected += l.Expected
	}
	out = append(out, fmt.Sprintf("total: %d deliveries expected, %d lost while Redis was up, %d lost during faults (pub/sub is at-most-once), %d of them local, %d delivered twice",
		expected, lostUp, lostFault, lostLocal, dups))
	return out
}
