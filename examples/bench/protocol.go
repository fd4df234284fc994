package main

// The control protocol spoken by every server instance, Go (-serve mode) and
// Node (interop/bench-server.js) alike. It is plain HTTP + JSON on the same
// port as Socket.IO:
//
//	GET  /bench/stats    -> statsReply
//	POST /bench/emit     emitRequest -> emitReply (answered when the emission is over)
//	POST /bench/profile  {"action":"start","path":"..."} | {"action":"stop"} (Go only; 404 on Node)
//	POST /bench/join     joinRequest -> joinReply (Go only: the room subscription cost, -roomcost)
//	POST /bench/soak     soakRequest -> soakReply (Go only: starts the soak emitter, -soak)
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
	Adapter      string           `json:"adapter"`                 // "redis", "rooms", "sharded", "streams" or "memory"
	PID          int              `json:"pid"`                     // process id
	CPUMicros    int64            `json:"cpu_us"`                  // user+system CPU time of the process so far
	MaxRSSKB     int64            `json:"max_rss_kb"`              // peak resident set size so far
	RSSKB        int64            `json:"rss_kb,omitempty"`        // Go: current resident set size (VmRSS)
	Goroutines   int              `json:"goroutines,omitempty"`    // Go: runtime.NumGoroutine()
	State        string           `json:"state,omitempty"`         // Go: the adapter's State (connecting, connected, degraded, closed)
	SoakSent     int64            `json:"soak_sent,omitempty"`     // Go: messages sent by the soak emitter so far
	WriteCalls   int64            `json:"write_syscalls"`          // write-type system calls so far (syscw of /proc/self/io), -1 if unknown
	NowNanos     int64            `json:"now_ns"`                  // the server's wall clock, Unix nanoseconds
	Rooms        map[string]int   `json:"rooms"`                   // local sockets of the rooms asked for (?rooms=a,b)
	ServerCount  int64            `json:"server_count"`            // the adapter's serverCount()
	AdapterStats map[string]int64 `json:"adapter_stats,omitempty"` // Go: the builder's counters; Node classic: received
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

// joinRequest is the body of POST /bench/join: the first local socket joins
// Count rooms named Prefix0 … Prefix<Count-1>, PerCall rooms per
// Socket.Join call, from Workers goroutines at once.
type joinRequest struct {
	Prefix  string `json:"prefix"`
	Count   int    `json:"count"`
	PerCall int    `json:"per_call"`
	Workers int    `json:"workers"`
}

// joinReply is the answer to POST /bench/join, once every Join call returned
// (each waits for its subscriptions, up to the adapter's JoinTimeout).
type joinReply struct {
	StartNanos int64 `json:"start_ns"`
	EndNanos   int64 `json:"end_ns"`
}

// soakRequest is the body of POST /bench/soak: emit event Event to Room at
// Rate msg/s for DurationMS, in the background; every message is
// emit(event, seq, unixNanos, sender) with sender = Sender.
type soakRequest struct {
	Room       string `json:"room"`
	Event      string `json:"event"`
	Rate       int    `json:"rate"`
	DurationMS int64  `json:"duration_ms"`
	Sender     int    `json:"sender"`
	Payload    int    `json:"payload"`
}

// soakReply is the answer to POST /bench/soak: when message 0 is due;
// message i is due Interval nanoseconds later each.
type soakReply struct {
	StartNanos    int64 `json:"start_ns"`
	IntervalNanos int64 `json:"interval_ns"`
}
