package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// A lean Socket.IO v5 / Engine.IO v4 client over WebSocket only. It does not
// keep the messages it receives: per phase it counts them, remembers when the
// last one arrived and, for the fixed-rate phase, records each message's
// latency. It answers the server's pings and nothing else.

// Phases of a benchmark run, told apart by the event name of their messages.
const (
	phaseWarm = iota
	phaseBlast
	phaseRate
	phasePub
	phaseSoak // -soak: emit("s", seq, unixNanos, sender, pad)
	numPhases
)

// phaseEvents are the event names of the phases: one letter, so that the
// client recognizes them from a fixed position in the frame.
var phaseEvents = [numPhases]string{"w", "b", "r", "p", "s"}

// probeNamespace is a namespace no server has. The client sends CONNECT
// packets for it until one is answered, before its real CONNECT: the Go
// server sends the Engine.IO open packet before it listens for Socket.IO
// packets, and a CONNECT arriving in between is lost (see
// internal/testkit/sioclient).
const probeNamespace = "/bench-readiness-probe"

type benchClient struct {
	inst int // index of the server instance it is connected to
	conn *websocket.Conn
	wmu  sync.Mutex // serializes writes

	opened    chan struct{}
	probed    chan struct{}
	connected chan struct{}
	done      chan struct{} // closed when the read loop exits
	probeOnce sync.Once
	connOnce  sync.Once
	closing   atomic.Bool

	count [numPhases]atomic.Int64
	last  [numPhases]atomic.Int64 // arrival of the last message, Unix nanoseconds (client clock)
	bad   atomic.Int64            // frames it could not parse

	mu      sync.Mutex
	rateLat []int64    // phaseRate: arrival − emit timestamp, ns, uncorrected for clock offset
	err     error      // why the read loop ended, if not closed by us
	soak    []soakSeen // phaseSoak: per sender instance, what arrived
}

// soakSeen is what a client received from one sender during the soak: one
// bit per sequence number, and how many arrived a second time or more.
type soakSeen struct {
	bits []uint64
	dups int64
}

// see records seq and reports whether it had arrived before.
func (s *soakSeen) see(seq int64) bool {
	w, b := int(seq/64), uint(seq%64)
	for len(s.bits) <= w {
		s.bits = append(s.bits, 0)
	}
	if s.bits[w]&(1<<b) != 0 {
		s.dups++
		return true
	}
	s.bits[w] |= 1 << b
	return false
}

// has reports whether seq arrived.
func (s *soakSeen) has(seq int64) bool {
	w := int(seq / 64)
	return w < len(s.bits) && s.bits[w]&(1<<uint(seq%64)) != 0
}

var dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 16 << 10, WriteBufferSize: 4 << 10}

// dialClient connects to the server at hostPort, joins namespace "/" with the
// auth payload {"room": room}, and returns once the server accepted it.
func dialClient(ctx context.Context, hostPort, room string, inst int) (*benchClient, error) {
	u := "ws://" + hostPort + "/socket.io/?EIO=4&transport=websocket"
	conn, resp, err := dialer.DialContext(ctx, u, http.Header{})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	c := &benchClient{
		inst: inst, conn: conn,
		opened: make(chan struct{}), probed: make(chan struct{}),
		connected: make(chan struct{}), done: make(chan struct{}),
	}
	go c.readLoop()
	fail := func(err error) (*benchClient, error) {
		c.Close()
		return nil, err
	}
	select {
	case <-c.opened:
	case <-c.done:
		return fail(fmt.Errorf("connection closed before the open packet: %v", c.readErr()))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	interval := 5 * time.Millisecond
	for probing := true; probing; {
		if err := c.write("40" + probeNamespace + ","); err != nil {
			return fail(err)
		}
		t := time.NewTimer(interval)
		select {
		case <-c.probed:
			probing = false
		case <-t.C:
			interval = min(2*interval, 100*time.Millisecond)
		case <-c.done:
			t.Stop()
			return fail(fmt.Errorf("connection closed while probing: %v", c.readErr()))
		case <-ctx.Done():
			t.Stop()
			return fail(ctx.Err())
		}
		t.Stop()
	}
	if err := c.write(`40{"room":` + strconv.Quote(room) + `}`); err != nil {
		return fail(err)
	}
	select {
	case <-c.connected:
		return c, nil
	case <-c.done:
		return fail(fmt.Errorf("connection closed before CONNECT was answered: %v", c.readErr()))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// pongDelay is how long a client waits before answering a ping (see handle).
const pongDelay = 5 * time.Millisecond

func (c *benchClient) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.conn.WriteMessage(websocket.TextMessage, []byte(s))
}

// Close closes the connection and waits for the read loop to end.
func (c *benchClient) Close() {
	c.closing.Store(true)
	c.wmu.Lock()
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	_ = c.conn.Close()
	<-c.done
}

func (c *benchClient) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Err reports why the connection ended early, if it did.
func (c *benchClient) Err() error {
	select {
	case <-c.done:
		if c.closing.Load() {
			return nil
		}
		if err := c.readErr(); err != nil {
			return err
		}
		return errors.New("connection closed")
	default:
		return nil
	}
}

func (c *benchClient) readLoop() {
	defer close(c.done)
	var buf bytes.Buffer
	for {
		_, r, err := c.conn.NextReader()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		now := time.Now().UnixNano()
		c.handle(buf.Bytes(), now)
	}
}

func (c *benchClient) handle(frame []byte, now int64) {
	if len(frame) == 0 {
		c.bad.Add(1)
		return
	}
	switch frame[0] {
	case '0': // Engine.IO open
		select {
		case <-c.opened:
		default:
			close(c.opened)
		}
	case '2': // ping
		// Answered after a few milliseconds: engine.io v2.5.0 writes its ping
		// and only then arms the ping timeout (engine/socket.go,
		// schedulePing), so a pong that arrives in between, as it can on
		// loopback, clears the old timer and the new one closes the
		// connection with "ping timeout" 20s later. Never block the read
		// loop on a write.
		time.AfterFunc(pongDelay, func() { _ = c.write("3") })
	case '4': // message: a Socket.IO packet
		c.handlePacket(frame[1:], now)
	}
}

func (c *benchClient) handlePacket(p []byte, now int64) {
	if len(p) == 0 {
		c.bad.Add(1)
		return
	}
	typ, rest := p[0], p[1:]
	nsp := "/"
	if len(rest) > 0 && rest[0] == '/' {
		i := bytes.IndexByte(rest, ',')
		if i < 0 {
			nsp, rest = string(rest), nil
		} else {
			nsp, rest = string(rest[:i]), rest[i+1:]
		}
	}
	if nsp == probeNamespace {
		if typ == '0' { // accepted by a dynamic namespace: leave it
			go func() { _ = c.write("41" + probeNamespace + ",") }()
		}
		c.probeOnce.Do(func() { close(c.probed) })
		return
	}
	if nsp != "/" {
		return
	}
	switch typ {
	case '0':
		c.connOnce.Do(func() { close(c.connected) })
	case '2':
		c.handleEvent(rest, now)
	case '4':
		c.mu.Lock()
		c.err = fmt.Errorf("CONNECT refused: %s", rest)
		c.mu.Unlock()
		_ = c.conn.Close()
	}
}

// handleEvent parses ["e",seq,emitNanos,"pad"] and accounts for it.
func (c *benchClient) handleEvent(d []byte, now int64) {
	if len(d) < 6 || d[0] != '[' || d[1] != '"' || d[3] != '"' || d[4] != ',' {
		c.bad.Add(1)
		return
	}
	phase := -1
	for i, e := range phaseEvents {
		if d[2] == e[0] {
			phase = i
		}
	}
	if phase < 0 {
		c.bad.Add(1)
		return
	}
	seq, rest, ok := nextNumber(d[5:])
	if !ok {
		c.bad.Add(1)
		return
	}
	ts, rest, ok := nextNumber(rest)
	if !ok {
		c.bad.Add(1)
		return
	}
	if phase == phaseSoak {
		sender, _, ok := nextNumber(rest)
		if !ok || sender < 0 || sender > 1024 || seq < 0 || seq > 1<<30 {
			c.bad.Add(1)
			return
		}
		c.mu.Lock()
		for len(c.soak) <= int(sender) {
			c.soak = append(c.soak, soakSeen{})
		}
		c.soak[sender].see(seq)
		c.mu.Unlock()
	}
	c.count[phase].Add(1)
	c.last[phase].Store(now)
	if phase == phaseRate {
		c.mu.Lock()
		c.rateLat = append(c.rateLat, now-ts)
		c.mu.Unlock()
	}
}

// nextNumber parses the JSON number at the start of b, up to the next ',' or
// ']', and returns it (as an integer) and what follows the separator.
func nextNumber(b []byte) (int64, []byte, bool) {
	i := 0
	for i < len(b) && b[i] != ',' && b[i] != ']' {
		i++
	}
	if i == 0 || i == len(b) {
		return 0, nil, false
	}
	num := b[:i]
	var n int64
	integer := true
	for j, ch := range num {
		if ch >= '0' && ch <= '9' {
			n = n*10 + int64(ch-'0')
		} else if !(j == 0 && ch == '-') {
			integer = false
			break
		}
	}
	if !integer { // such as 1.7e+18, as some encoders write large numbers
		f, err := strconv.ParseFloat(string(num), 64)
		if err != nil {
			return 0, nil, false
		}
		n = int64(f)
	} else if num[0] == '-' {
		n = -n
	}
	return n, b[i+1:], true
}
