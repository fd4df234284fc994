package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// metric describes one figure of the report.
type metric struct {
	key   string
	label string
	prec  int // decimals
}

// metrics lists the figures in report order.
var metrics = []metric{
	{"blast_deliveries_per_s", "blast: deliveries/s (first emit → last delivery)", 0},
	{"blast_loss", "blast: lost deliveries", 0},
	{"blast_loss_pct", "blast: lost deliveries %", 2},
	{"blast_seconds", "blast: first emit → last delivery, s", 3},
	{"blast_emit_per_s", "blast: emit loop on instance 0, msgs/s", 0},
	{"blast_cpu_us_per_delivery", "blast: server CPU µs per delivery (all instances)", 2},
	{"blast_write_syscalls_per_delivery", "blast: server write syscalls per delivery", 3},
	{"blast_redis_cpu_us_per_msg", "blast: redis-server CPU µs per message", 2},
	{"blast_client_cpu_us_per_delivery", "blast: bench clients' CPU µs per delivery", 2},
	{"rate_loss", "fixed rate: lost deliveries", 0},
	{"rate_loss_pct", "fixed rate: lost deliveries %", 2},
	{"rate_local_p50_ms", "fixed rate: local latency p50, ms", 3},
	{"rate_local_p99_ms", "fixed rate: local latency p99, ms", 3},
	{"rate_local_max_ms", "fixed rate: local latency max, ms", 3},
	{"rate_remote_p50_ms", "fixed rate: remote latency p50, ms", 3},
	{"rate_remote_p99_ms", "fixed rate: remote latency p99, ms", 3},
	{"rate_remote_max_ms", "fixed rate: remote latency max, ms", 3},
	{"rate_server_cpu_pct", "fixed rate: server CPU, % of one core (all instances)", 1},
	{"rate_max_emit_lag_ms", "fixed rate: worst emit delay behind schedule, ms", 2},
	{"pub_emit_per_s", "publish path: emit loop msgs/s", 0},
	{"pub_published_per_s", "publish path: msgs/s acknowledged by Redis", 0},
	{"pub_delivered_per_s", "publish path: msgs/s delivered to the remote client", 0},
	{"pub_server_cpu_us_per_msg", "publish path: server CPU µs per message (all instances)", 2},
	{"pub_sender_cpu_us_per_msg", "publish path: sender's CPU µs per message (instance 0)", 2},
	{"pub_receiver_cpu_us_per_msg", "publish path: receiver's CPU µs per message (last instance)", 2},
	{"pub_redis_cpu_us_per_msg", "publish path: redis-server CPU µs per message", 2},
	{"pub_loss", "publish path: lost messages", 0},
	{"peak_rss_mb_max", "peak RSS MB, largest instance", 1},
	{"peak_rss_mb_total", "peak RSS MB, all instances", 1},
	{"host_other_cpu_pct", "other programs' CPU on the host, % of all CPUs", 1},
}

// report is the machine-readable output of -json.
type report struct {
	Settings map[string]any                `json:"settings"`
	Rounds   []*result                     `json:"rounds"`
	Medians  map[string]map[string]float64 `json:"medians"`
	Ratios   map[string]map[string]float64 `json:"ratios"`
	Notes    []string                      `json:"notes,omitempty"`
}

// medians computes, per configuration, the median of every metric over the
// rounds that have it.
func medians(rounds []*result) map[string]map[string]float64 {
	vals := map[string]map[string][]float64{}
	for _, r := range rounds {
		if vals[r.Config] == nil {
			vals[r.Config] = map[string][]float64{}
		}
		for k, v := range r.Metrics {
			vals[r.Config][k] = append(vals[r.Config][k], v)
		}
	}
	out := map[string]map[string]float64{}
	for cfg, byKey := range vals {
		out[cfg] = map[string]float64{}
		for k, vs := range byKey {
			out[cfg][k] = median(vs)
		}
	}
	return out
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratioPairs are the ratios of the report: num's medians ÷ den's, shown in a
// column headed label.
var ratioPairs = []struct{ num, den, label string }{
	{cfgGoRedis, cfgGoMemory, "go/ceiling"},
	{cfgGoRedis, cfgNodeRedis, "go/node"},
	{cfgGoRooms, cfgGoRedis, "rooms/classic"},
	{cfgGoRooms, cfgNodeRedis, "rooms/node"},
	{cfgGoStreams, cfgGoRedis, "streams/classic"},
	{cfgGoStreams, cfgNodeStreams, "streams go/node"},
}

// ratios of the medians of the configurations of ratioPairs, by "num/den".
func ratios(med map[string]map[string]float64) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, p := range ratioPairs {
		g, o := med[p.num], med[p.den]
		if g == nil || o == nil {
			continue
		}
		name := p.num + "/" + p.den
		out[name] = map[string]float64{}
		for k, v := range g {
			if strings.Contains(k, "loss") {
				continue // a ratio of losses means nothing
			}
			if ov, ok := o[k]; ok && ov != 0 && !math.IsNaN(v/ov) {
				out[name][k] = v / ov
			}
		}
	}
	return out
}

// printTable writes the medians side by side, with the ratios.
func printTable(w io.Writer, rep *report, configs []string) {
	fmt.Fprintf(w, "\nMedians of %d round(s). Settings:", len(rep.Rounds)/max(len(configs), 1))
	for _, k := range []string{"instances", "clients", "payload", "blast", "pub", "rate", "duration", "redis"} {
		fmt.Fprintf(w, " %s=%v", k, rep.Settings[k])
	}
	fmt.Fprintln(w)
	for _, c := range configs {
		fmt.Fprintf(w, "  %-12s = %s\n", c, configTitles[c])
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := append([]string{"metric"}, configs...)
	var pairs []string // "num/den" of the ratio columns
	for _, p := range ratioPairs {
		if slices.Contains(configs, p.num) && slices.Contains(configs, p.den) {
			header = append(header, p.label)
			pairs = append(pairs, p.num+"/"+p.den)
		}
	}
	width := 0
	for _, m := range metrics {
		width = max(width, len([]rune(m.label)))
	}
	pad := func(s string) string { return s + strings.Repeat(" ", width-len([]rune(s))) }
	header[0] = pad(header[0])
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, m := range metrics {
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
		for _, p := range pairs {
			row = append(row, fmtRatio(rep.Ratios[p], m.key))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func fmtVal(m map[string]float64, key string, prec int) string {
	v, ok := m[key]
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func fmtRatio(m map[string]float64, key string) string {
	v, ok := m[key]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

func printJSON(w io.Writer, rep *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
