package main

// The control protocol spoken by every server instance, Go (-serve mode) and
// Node (interop/bench-server.js) alike. It is plain HTTP + JSON on the same
// port as Socket.IO:
//
//	GET  /bench/stats    -> statsReply
//	POST /bench/emit     emitRequest -> emitReply (answered when the emission is over)
//	POST /bench/profile  {"action":"start","path":"..."} | {"action":"stop"} (Go only; 404 on Node)
//
// A server prints one line "LISTENING <port>" on stdout once it accepts
// connections. Clients join the room named by the "room" field of their
// Socket.IO CONNECT auth payload.
//
// Every emitted event carries the arguments (seq, unixNanos, pad): its
// sequence number, the server's wall clock when it was emitted, in Unix
// nanoseconds, and a padding string of -payload bytes.

// statsReply is the answer to GET /bench/stats.
type statsReply struct {
	Impl         string           `json:"impl"`                    // "go" or "node"
	Adapter      string           `json:"adapter"`                 // "redis", "sharded" or "memory"
	PID          int              `json:"pid"`                     // process id
	CPUMicros    int64            `json:"cpu_us"`                  // user+system CPU time of the process so far
	MaxRSSKB     int64            `json:"max_rss_kb"`              // peak resident set size so far
	WriteCalls   int64            `json:"write_syscalls"`          // write-type system calls so far (syscw of /proc/self/io), -1 if unknown
	NowNanos     int64            `json:"now_ns"`                  // the server's wall clock, Unix nanoseconds
	Rooms        map[string]int   `json:"rooms"`                   // local sockets of the rooms asked for (?rooms=a,b)
	ServerCount  int64            `json:"server_count"`            // the adapter's serverCount()
	AdapterStats map[string]int64 `json:"adapter_stats,omitempty"` // Go redis and sharded modes: the builder's counters
}

// emitRequest is the body of POST /bench/emit.
type emitRequest struct {
	Mode string `json:"mode"` // "blast": Count messages as fast as possible; "rate": Rate msg/s for DurationMS
	Room string `json:"room"` // target room
	// Rooms, when set in blast mode, replaces Room: message i goes to
	// Rooms[i % len(Rooms)].
	Rooms      []string `json:"rooms,omitempty"`
	Event      string   `json:"event"` // event name
	Count      int      `json:"count"`
	Rate       int      `json:"rate"`
	DurationMS int      `json:"duration_ms"`
	Payload    int      `json:"payload"` // padding bytes per message
	// WaitPublished makes the server wait, after the emit loop, until Redis
	// has acknowledged every PUBLISH of the emission, and report when.
	WaitPublished bool `json:"wait_published"`
}

// emitReply is the answer to POST /bench/emit.
type emitReply struct {
	Emitted    int   `json:"emitted"`
	StartNanos int64 `json:"start_ns"`   // wall clock before the first emit
	EndNanos   int64 `json:"end_ns"`     // wall clock after the last emit returned
	DrainNanos int64 `json:"drained_ns"` // with WaitPublished: when Redis had acknowledged every PUBLISH (0 if unknown)
	MaxLagNs   int64 `json:"max_lag_ns"` // rate mode: the worst delay of an emit behind its schedule
}
