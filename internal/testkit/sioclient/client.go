// Package sioclient is a minimal, test-only Socket.IO client.
//
// It speaks the Socket.IO v5 protocol on top of Engine.IO v4, using the
// WebSocket transport only (no HTTP long-polling, no upgrade dance). One
// Client owns exactly one WebSocket connection and is connected to exactly
// one namespace; multiplexing several namespaces over one connection is not
// supported.
//
// The package exists to drive a real Socket.IO server from tests: every
// received event is recorded so that tests can wait for it with a deadline
// (Next, WaitFor) or inspect a snapshot of it (Received).
//
// JSON payloads are decoded with plain encoding/json, so JSON numbers arrive
// as float64, JSON objects as map[string]any and JSON arrays as []any. Binary
// attachments arrive as []byte, wherever they were placed in the arguments.
package sioclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Reasons reported by DisconnectReason.
const (
	// ReasonServerDisconnect is reported when the server sent a Socket.IO
	// DISCONNECT packet for the namespace of the client.
	ReasonServerDisconnect = "io server disconnect"
	// ReasonClientDisconnect is reported when the client was closed locally
	// with Close before any other disconnection happened.
	ReasonClientDisconnect = "io client disconnect"
	// ReasonTransportClose is reported when the underlying connection was
	// closed or failed (including an Engine.IO CLOSE packet).
	ReasonTransportClose = "transport close"
)

// pongDelay is how long the client waits before answering a ping.
const pongDelay = 5 * time.Millisecond

// writeTimeout bounds every write to the WebSocket connection.
const writeTimeout = 10 * time.Second

// probeNamespace is the namespace used by the readiness probe (see Dial). It
// is expected not to exist on the server.
const probeNamespace = "/sioclient-readiness-probe"

// defaultPostConnectDelay is the default for WithPostConnectDelay.
const defaultPostConnectDelay = 10 * time.Millisecond

// Readiness probe resend interval bounds.
const (
	probeMinInterval = 5 * time.Millisecond
	probeMaxInterval = 100 * time.Millisecond
)

// ErrDisconnected is returned (wrapped) by the methods that wait for the
// server once the client is disconnected.
var ErrDisconnected = errors.New("sioclient: disconnected")

// Socket.IO packet types.
const (
	sioConnect      = '0'
	sioDisconnect   = '1'
	sioEvent        = '2'
	sioAck          = '3'
	sioConnectError = '4'
	sioBinaryEvent  = '5'
	sioBinaryAck    = '6'
)

// Engine.IO packet types.
const (
	eioOpen    = '0'
	eioClose   = '1'
	eioPing    = '2'
	eioPong    = '3'
	eioMessage = '4'
	eioUpgrade = '5'
	eioNoop    = '6'
)

// Event is an event received from the server.
type Event struct {
	// Name is the event name (the first element of the packet array).
	Name string
	// Args holds the remaining elements, decoded with encoding/json (numbers
	// are float64) and with binary placeholders replaced by []byte values.
	Args []any
	// Binary is true when the event was received as a BINARY_EVENT packet.
	Binary bool
	// AckID is the acknowledgement id requested by the server, or nil when
	// the server did not ask for an acknowledgement.
	AckID *uint64
}

// AckHandler computes the arguments of the acknowledgement sent back to the
// server for an event that requested one. Returning a []byte value anywhere in
// the result makes the reply a BINARY_ACK.
type AckHandler func(args []any) []any

// Option configures Dial.
type Option func(*options)

type options struct {
	auth             any
	header           http.Header
	dialer           *websocket.Dialer
	postConnectDelay time.Duration
	session          *session
}

// session is what a client sends to recover its previous session.
type session struct{ pid, offset string }

// WithSession makes the CONNECT packet carry the private session id pid and
// the last offset of a previous connection, as socket.io-client does when it
// reconnects with connection state recovery: {"pid": pid, "offset": offset}
// merged with the auth payload (WithAuth), whose keys win. An empty offset is
// left out, as socket.io-client leaves out an undefined one. Client.Recovered
// tells whether the server recovered the session. See Client.Reconnect.
func WithSession(pid, offset string) Option {
	return func(o *options) { o.session = &session{pid: pid, offset: offset} }
}

// WithAuth sets the auth payload sent with the Socket.IO CONNECT packet. The
// value must marshal to a JSON object (for example a map[string]any).
func WithAuth(auth any) Option {
	return func(o *options) { o.auth = auth }
}

// WithHeader sets extra HTTP headers sent with the WebSocket handshake.
func WithHeader(h http.Header) Option {
	return func(o *options) { o.header = h.Clone() }
}

// WithPostConnectDelay sets how long after the CONNECT reply the first EVENT
// or ACK packet may be written (Emit and EmitWithAck wait for the remainder of
// the delay; the default is 10ms, 0 disables it).
//
// The socket.io/v2 Go server sends the CONNECT reply before it registers the
// new socket on the connection; a packet for the namespace that arrives in
// between makes the server close the whole connection ("invalid state"). No
// packet tells the client when the registration is done, hence this delay. It
// does not cover the application's "connection" handler: listeners that this
// handler registers on the server-side socket may still miss events emitted
// right after Dial, so tests should wait for the server-side connection
// before emitting.
func WithPostConnectDelay(d time.Duration) Option {
	return func(o *options) { o.postConnectDelay = max(d, 0) }
}

// WithDialer replaces the default WebSocket dialer.
func WithDialer(d *websocket.Dialer) Option {
	return func(o *options) { o.dialer = d }
}

// pendingBinary is a BINARY_EVENT or BINARY_ACK whose attachments are still
// being received.
type pendingBinary struct {
	pkt  *packet
	bufs [][]byte
}

// packet is a decoded Socket.IO packet (before attachment reconstruction).
type packet struct {
	typ         byte
	attachments int
	nsp         string
	id          *uint64
	data        any
}

type ackResult struct {
	args []any
}

// Client is a Socket.IO client connected to one namespace over one WebSocket.
// All methods are safe for concurrent use.
type Client struct {
	conn             *websocket.Conn
	nsp              string
	auth             any
	session          *session
	postConnectDelay time.Duration

	// writeMu serializes writes to conn (a binary packet and its
	// attachments are written under one critical section).
	writeMu   sync.Mutex
	closeOnce sync.Once

	// opened is closed by the reader goroutine once the Engine.IO open packet
	// arrived, probed once the first readiness probe reply arrived and
	// connected once the CONNECT reply arrived; connectErr is set before done
	// is closed if the CONNECT failed.
	opened    chan struct{}
	probed    chan struct{}
	connected chan struct{}
	// done is closed when the reader goroutine exited.
	done chan struct{}
	// disconnected is closed once the client is disconnected.
	disconnected chan struct{}

	mu          sync.Mutex
	id          string
	engineID    string
	connectErr  error
	reason      string
	events      []Event
	cursor      int
	changed     chan struct{}
	writableAt  time.Time // see WithPostConnectDelay
	ackHandlers map[string]AckHandler
	nextAckID   uint64
	pendingAcks map[uint64]chan ackResult
	errs        []error
	// Connection state recovery: the private session id of the CONNECT
	// reply, the last offset (see LastOffset) and whether the session sent
	// with WithSession was recovered.
	pid        string
	lastOffset string
	recovered  bool

	// Owned by the reader goroutine.
	partial *pendingBinary
	state   int
	// early holds the events received before the CONNECT reply (the
	// packets a recovered session missed), recorded once it arrives.
	early []*packet
}

// Reader states.
const (
	stateWaitOpen = iota
	stateProbing
	stateWaitConnect
	stateConnected
)

// Dial connects to the Socket.IO server at baseURL (for example
// "http://127.0.0.1:8080") over ws://HOST/socket.io/?EIO=4&transport=websocket,
// joins the namespace nsp ("/" when empty) and waits for the server to accept
// it. It returns an error if the namespace is refused (CONNECT_ERROR) or if ctx
// is done before the connection is established.
//
// The socket.io/v2 Go server sends the Engine.IO open packet before it starts
// listening for Socket.IO packets on the new connection, so a CONNECT sent
// right after the open packet is occasionally dropped and never answered.
// Dial therefore first sends CONNECT packets for the (normally non-existent)
// namespace "/sioclient-readiness-probe" until the server answers one of
// them, which has no side effect on the server besides a CONNECT_ERROR reply
// (or, if a dynamic namespace accepts the name, a connection that is left
// immediately), and only then sends the real CONNECT.
func Dial(ctx context.Context, baseURL string, nsp string, opts ...Option) (*Client, error) {
	o := options{dialer: websocket.DefaultDialer, postConnectDelay: defaultPostConnectDelay}
	for _, opt := range opts {
		opt(&o)
	}
	if nsp == "" {
		nsp = "/"
	}
	if !strings.HasPrefix(nsp, "/") {
		nsp = "/" + nsp
	}
	if nsp == probeNamespace {
		return nil, fmt.Errorf("sioclient: namespace %q is reserved for the readiness probe", nsp)
	}
	wsURL, err := websocketURL(baseURL)
	if err != nil {
		return nil, err
	}
	conn, resp, err := o.dialer.DialContext(ctx, wsURL, o.header)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("sioclient: dial %s: %w", wsURL, err)
	}
	c := &Client{
		conn:             conn,
		nsp:              nsp,
		auth:             o.auth,
		session:          o.session,
		postConnectDelay: o.postConnectDelay,
		opened:           make(chan struct{}),
		probed:           make(chan struct{}),
		connected:        make(chan struct{}),
		done:             make(chan struct{}),
		disconnected:     make(chan struct{}),
		changed:          make(chan struct{}),
		ackHandlers:      make(map[string]AckHandler),
		pendingAcks:      make(map[uint64]chan ackResult),
	}
	go c.readLoop()

	if err := c.probe(ctx); err != nil {
		c.closeConn()
		<-c.done
		return nil, err
	}

	select {
	case <-c.connected:
		return c, nil
	case <-c.done:
		select {
		case <-c.connected:
			// Connected, then immediately disconnected: the caller will see it
			// through Disconnected and DisconnectReason.
			return c, nil
		default:
		}
		c.closeConn()
		c.mu.Lock()
		err := c.connectErr
		reason := c.reason
		c.mu.Unlock()
		if err == nil {
			err = fmt.Errorf("sioclient: connection closed before namespace %q was joined (%s)", nsp, reason)
		}
		return nil, err
	case <-ctx.Done():
		c.closeConn()
		<-c.done
		return nil, fmt.Errorf("sioclient: joining namespace %q: %w", nsp, ctx.Err())
	}
}

// probe sends readiness probes until the server answers one (see Dial). It
// returns nil as soon as the probing phase is over, including when the reader
// goroutine stopped (Dial then reports why).
func (c *Client) probe(ctx context.Context) error {
	select {
	case <-c.opened:
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sioclient: waiting for the Engine.IO open packet: %w", ctx.Err())
	}
	interval := probeMinInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		if err := c.writeText(eioMessage, string(sioConnect)+probeNamespace+","); err != nil {
			return fmt.Errorf("sioclient: sending readiness probe: %w", err)
		}
		select {
		case <-c.probed:
			return nil
		case <-c.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("sioclient: waiting for the server to answer the readiness probe: %w", ctx.Err())
		case <-timer.C:
			interval = min(2*interval, probeMaxInterval)
			timer.Reset(interval)
		}
	}
}

// websocketURL turns an http(s) or ws(s) base URL into the Engine.IO
// WebSocket endpoint URL.
func websocketURL(baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("sioclient: invalid base URL %q: %w", baseURL, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("sioclient: unsupported URL scheme %q in %q", u.Scheme, baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/socket.io/"
	u.RawPath = ""
	u.RawQuery = "EIO=4&transport=websocket"
	u.Fragment = ""
	return u.String(), nil
}

// ID returns the Socket.IO socket id assigned by the server in its CONNECT
// reply (this is not the Engine.IO session id).
func (c *Client) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// EngineID returns the Engine.IO session id from the open packet.
func (c *Client) EngineID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.engineID
}

// PID returns the private session id of the CONNECT reply: set when the
// server has connection state recovery enabled, "" otherwise.
func (c *Client) PID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pid
}

// LastOffset returns the last offset received, with socket.io-client's rule:
// once the client has a session id (PID), the last argument of every event
// without acknowledgement becomes the last offset when it is a string (the
// event name when there are no arguments).
func (c *Client) LastOffset() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastOffset
}

// Recovered reports whether the server recovered the session sent with
// WithSession: its CONNECT reply carried the same private session id.
func (c *Client) Recovered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recovered
}

// Drop closes the underlying connection abruptly, without a DISCONNECT
// packet or a WebSocket close frame, as a network failure would: the server
// sees a transport close (a recoverable reason with connection state
// recovery). It waits for the reader goroutine; DisconnectReason is then
// "transport close". Reconnect dials again with the session.
func (c *Client) Drop() {
	c.markDisconnected(ReasonTransportClose)
	c.closeConn()
	<-c.done
}

// Reconnect opens a new client to baseURL (the same server or another) on
// the namespace of c, with the auth payload of c and its session (PID and
// LastOffset, see WithSession), as socket.io-client does when it reconnects;
// opts apply after those. c itself is left as it is (see Drop).
func (c *Client) Reconnect(ctx context.Context, baseURL string, opts ...Option) (*Client, error) {
	base := []Option{WithSession(c.PID(), c.LastOffset())}
	if c.auth != nil {
		base = append(base, WithAuth(c.auth))
	}
	return Dial(ctx, baseURL, c.nsp, append(base, opts...)...)
}

// Namespace returns the namespace the client is connected to.
func (c *Client) Namespace() string {
	return c.nsp
}

// OnAck registers the handler that answers events named eventName when the
// server requests an acknowledgement. Without a registered handler such
// events are recorded but never acknowledged. The handler runs on the reader
// goroutine: it may call Emit, but must not call EmitWithAck, Next, WaitFor or
// Close, and should return quickly.
func (c *Client) OnAck(eventName string, handler AckHandler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if handler == nil {
		delete(c.ackHandlers, eventName)
		return
	}
	c.ackHandlers[eventName] = handler
}

// Emit sends an event to the server. If any argument contains a []byte
// (directly or nested in []any or map[string]any values) the event is sent as
// a BINARY_EVENT with the bytes as attachments; []byte fields of other types
// (structs, typed maps) are marshaled by encoding/json as base64 strings.
func (c *Client) Emit(event string, args ...any) error {
	if c.isDisconnected() {
		return c.disconnectedErr()
	}
	return c.writePacket(sioEvent, nil, append([]any{event}, args...))
}

// EmitWithAck sends an event to the server requesting an acknowledgement and
// waits for it. It returns the acknowledgement arguments (decoded like event
// arguments), or an error if ctx is done or the client gets disconnected first.
func (c *Client) EmitWithAck(ctx context.Context, event string, args ...any) ([]any, error) {
	ch := make(chan ackResult, 1)
	c.mu.Lock()
	id := c.nextAckID
	c.nextAckID++
	c.pendingAcks[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pendingAcks, id)
		c.mu.Unlock()
	}()

	if c.isDisconnected() {
		return nil, c.disconnectedErr()
	}
	if err := c.writePacket(sioEvent, &id, append([]any{event}, args...)); err != nil {
		return nil, err
	}
	select {
	case res := <-ch:
		return res.args, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("sioclient: waiting for ack of %q: %w", event, ctx.Err())
	case <-c.disconnected:
		// An ack may have raced with the disconnection.
		select {
		case res := <-ch:
			return res.args, nil
		default:
		}
		return nil, c.disconnectedErr()
	}
}

// Next returns the oldest received event not yet returned by Next, waiting for
// one until ctx is done. Next, Received and WaitFor all observe the same
// recorded events; only Next consumes them (for Next only).
func (c *Client) Next(ctx context.Context) (Event, error) {
	for {
		c.mu.Lock()
		if c.cursor < len(c.events) {
			ev := c.events[c.cursor]
			c.cursor++
			c.mu.Unlock()
			return ev, nil
		}
		changed := c.changed
		c.mu.Unlock()

		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("sioclient: waiting for next event: %w", ctx.Err())
		case <-c.done:
			// The reader exited: no more events can arrive. Drain what is left.
			c.mu.Lock()
			more := c.cursor < len(c.events)
			c.mu.Unlock()
			if !more {
				return Event{}, c.disconnectedErr()
			}
		}
	}
}

// Received returns a snapshot of all events named name received so far, in
// arrival order.
func (c *Client) Received(name string) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.filterLocked(name)
}

// WaitFor waits until at least n events named name have been received and
// returns all of them (possibly more than n) in arrival order. It fails when
// ctx is done or when the client is disconnected before enough events arrived;
// the events received so far are returned along with the error.
func (c *Client) WaitFor(ctx context.Context, name string, n int) ([]Event, error) {
	for {
		c.mu.Lock()
		got := c.filterLocked(name)
		changed := c.changed
		c.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("sioclient: waiting for %d %q events (got %d): %w", n, name, len(got), ctx.Err())
		case <-c.done:
			c.mu.Lock()
			got = c.filterLocked(name)
			c.mu.Unlock()
			if len(got) >= n {
				return got, nil
			}
			return got, fmt.Errorf("sioclient: waiting for %d %q events (got %d): %w", n, name, len(got), c.disconnectedErr())
		}
	}
}

func (c *Client) filterLocked(name string) []Event {
	var out []Event
	for _, ev := range c.events {
		if ev.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// Errors returns the protocol errors recorded so far (malformed packets from
// the server, unexpected attachments, failed writes of acknowledgements...).
// Such errors never stop the client by themselves.
func (c *Client) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// Disconnected returns a channel that is closed once the client is
// disconnected, whether by a server DISCONNECT packet, by the connection
// closing or by Close.
func (c *Client) Disconnected() <-chan struct{} {
	return c.disconnected
}

// DisconnectReason returns why the client got disconnected:
// "io server disconnect" when the server sent a DISCONNECT packet,
// "io client disconnect" when Close was called first, and "transport close"
// when the connection closed or failed. It returns "" while connected.
func (c *Client) DisconnectReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Close sends a DISCONNECT packet (if still connected), closes the WebSocket
// connection and waits for the reader goroutine to exit. It is idempotent and
// always returns nil once the connection is gone.
func (c *Client) Close() error {
	if c.markDisconnected(ReasonClientDisconnect) {
		// Best effort: tell the server we are leaving, then close politely.
		_ = c.writeText(eioMessage, string(sioDisconnect)+c.nspPrefix())
		c.writeMu.Lock()
		_ = c.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(time.Second))
		c.writeMu.Unlock()
	}
	c.closeConn()
	<-c.done
	return nil
}

func (c *Client) closeConn() {
	c.closeOnce.Do(func() { _ = c.conn.Close() })
}

func (c *Client) isDisconnected() bool {
	select {
	case <-c.disconnected:
		return true
	default:
		return false
	}
}

func (c *Client) disconnectedErr() error {
	return fmt.Errorf("%w (%s)", ErrDisconnected, c.DisconnectReason())
}

// markDisconnected records the disconnection reason and closes the
// disconnected channel. It reports whether this call did it (the first reason
// wins).
func (c *Client) markDisconnected(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason != "" {
		return false
	}
	c.reason = reason
	close(c.disconnected)
	c.notifyLocked()
	return true
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) recordErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

// nspPrefix is the namespace part of an encoded packet ("" for "/").
func (c *Client) nspPrefix() string {
	if c.nsp == "/" {
		return ""
	}
	return c.nsp + ","
}

// writeText sends one Engine.IO packet as a text frame.
func (c *Client) writeText(eioType byte, payload string) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.conn.WriteMessage(websocket.TextMessage, append([]byte{eioType}, payload...))
}

// writePacket encodes and sends an EVENT or ACK packet (switching to the
// binary variant when data contains []byte) with its attachments, atomically
// with respect to other writes.
func (c *Client) writePacket(typ byte, id *uint64, data []any) error {
	var bufs [][]byte
	encoded := deconstruct(data, &bufs)
	body, err := json.Marshal(encoded)
	if err != nil {
		return fmt.Errorf("sioclient: encoding packet: %w", err)
	}
	var sb strings.Builder
	if len(bufs) > 0 {
		switch typ {
		case sioEvent:
			typ = sioBinaryEvent
		case sioAck:
			typ = sioBinaryAck
		}
		sb.WriteByte(typ)
		sb.WriteString(strconv.Itoa(len(bufs)))
		sb.WriteByte('-')
	} else {
		sb.WriteByte(typ)
	}
	sb.WriteString(c.nspPrefix())
	if id != nil {
		sb.WriteString(strconv.FormatUint(*id, 10))
	}
	sb.Write(body)

	c.mu.Lock()
	wait := time.Until(c.writableAt)
	c.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}

	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, append([]byte{eioMessage}, sb.String()...)); err != nil {
		return fmt.Errorf("sioclient: write: %w", err)
	}
	for _, b := range bufs {
		if err := c.conn.WriteMessage(websocket.BinaryMessage, b); err != nil {
			return fmt.Errorf("sioclient: write attachment: %w", err)
		}
	}
	return nil
}

// deconstruct replaces every []byte in v (recursively in []any and
// map[string]any) with a placeholder and collects the bytes in bufs.
func deconstruct(v any, bufs *[][]byte) any {
	switch t := v.(type) {
	case []byte:
		*bufs = append(*bufs, t)
		return map[string]any{"_placeholder": true, "num": len(*bufs) - 1}
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = deconstruct(e, bufs)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = deconstruct(e, bufs)
		}
		return out
	default:
		return v
	}
}

// reconstruct replaces placeholders in v with the matching attachment.
func reconstruct(v any, bufs [][]byte) (any, error) {
	switch t := v.(type) {
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			r, err := reconstruct(e, bufs)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		if ph, ok := t["_placeholder"].(bool); ok && ph {
			num, ok := t["num"].(float64)
			if !ok || num < 0 || num != float64(int(num)) || int(num) >= len(bufs) {
				return nil, fmt.Errorf("invalid attachment placeholder %v (have %d attachments)", t, len(bufs))
			}
			return bufs[int(num)], nil
		}
		out := make(map[string]any, len(t))
		for k, e := range t {
			r, err := reconstruct(e, bufs)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	default:
		return v, nil
	}
}

// readLoop is the single reader goroutine of the client.
func (c *Client) readLoop() {
	defer close(c.done)
	defer func() {
		// Whatever happened, nobody will answer pending acks any more.
		c.markDisconnected(ReasonTransportClose)
	}()
	for {
		mt, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		var stop bool
		switch mt {
		case websocket.TextMessage:
			stop = c.handleText(data)
		case websocket.BinaryMessage:
			c.handleBinary(data)
		}
		if stop {
			return
		}
	}
}

// handleText handles one Engine.IO text packet. It reports whether the reader
// must stop.
func (c *Client) handleText(data []byte) bool {
	if len(data) == 0 {
		c.recordErr(errors.New("sioclient: empty Engine.IO packet"))
		return false
	}
	payload := data[1:]
	switch data[0] {
	case eioOpen:
		var open struct {
			SID string `json:"sid"`
		}
		if err := json.Unmarshal(payload, &open); err != nil {
			c.recordErr(fmt.Errorf("sioclient: malformed Engine.IO open packet %q: %w", data, err))
		}
		if c.state != stateWaitOpen {
			c.recordErr(fmt.Errorf("sioclient: unexpected Engine.IO open packet %q", data))
			return false
		}
		c.mu.Lock()
		c.engineID = open.SID
		c.mu.Unlock()
		c.state = stateProbing
		close(c.opened)
	case eioPing:
		// Answered after a few milliseconds, off the read loop: engine.io
		// v2.5.0 writes its ping and only then arms the ping timeout
		// (engine/socket.go, schedulePing), so a pong arriving in between,
		// as it can on loopback, clears the old timer and the new one
		// closes the connection with "ping timeout" later.
		p := string(payload)
		time.AfterFunc(pongDelay, func() {
			if err := c.writeText(eioPong, p); err != nil && !c.isDisconnected() {
				c.recordErr(fmt.Errorf("sioclient: answering ping: %w", err))
			}
		})
	case eioClose:
		return true
	case eioPong, eioUpgrade, eioNoop:
		// Nothing to do.
	case eioMessage:
		if c.partial != nil {
			c.recordErr(fmt.Errorf("sioclient: text packet %q while waiting for %d more attachments", data,
				c.partial.pkt.attachments-len(c.partial.bufs)))
			c.partial = nil
		}
		pkt, err := decodePacket(payload)
		if err != nil {
			c.recordErr(err)
			if c.state == stateProbing || c.state == stateWaitConnect {
				c.failConnect(err)
				return true
			}
			return false
		}
		if pkt.attachments > 0 {
			c.partial = &pendingBinary{pkt: pkt}
			return false
		}
		return c.handlePacket(pkt, nil)
	default:
		c.recordErr(fmt.Errorf("sioclient: unknown Engine.IO packet %q", data))
	}
	return false
}

// handleBinary handles one binary frame (an attachment).
func (c *Client) handleBinary(data []byte) {
	if c.partial == nil {
		c.recordErr(fmt.Errorf("sioclient: unexpected binary frame of %d bytes", len(data)))
		return
	}
	c.partial.bufs = append(c.partial.bufs, data)
	if len(c.partial.bufs) < c.partial.pkt.attachments {
		return
	}
	p := c.partial
	c.partial = nil
	c.handlePacket(p.pkt, p.bufs)
}

// failConnect records a failed namespace connection.
func (c *Client) failConnect(err error) {
	c.mu.Lock()
	if c.connectErr == nil {
		c.connectErr = err
	}
	c.mu.Unlock()
}

// sendConnect sends the Socket.IO CONNECT packet for the namespace of the
// client. It reports whether the reader must stop.
func (c *Client) sendConnect() bool {
	msg := string(sioConnect) + c.nspPrefix()
	if auth := c.connectData(); auth != nil {
		b, err := json.Marshal(auth)
		if err != nil {
			c.failConnect(fmt.Errorf("sioclient: encoding auth payload: %w", err))
			return true
		}
		msg += string(b)
	}
	if err := c.writeText(eioMessage, msg); err != nil {
		c.failConnect(fmt.Errorf("sioclient: sending CONNECT: %w", err))
		return true
	}
	c.state = stateWaitConnect
	return false
}

// connectData is the payload of the CONNECT packet: the auth payload,
// merged into the session to recover when there is one (socket.io-client's
// Object.assign({pid, offset}, auth)).
func (c *Client) connectData() any {
	if c.session == nil {
		return c.auth
	}
	data := map[string]any{"pid": c.session.pid}
	if c.session.offset != "" {
		data["offset"] = c.session.offset
	}
	if c.auth != nil {
		b, err := json.Marshal(c.auth)
		if err != nil {
			return c.auth // reported by the caller's encoding
		}
		var auth map[string]any
		if err := json.Unmarshal(b, &auth); err != nil {
			return c.auth
		}
		for k, v := range auth {
			data[k] = v
		}
	}
	return data
}

// handleProbeReply handles a packet for the readiness probe namespace. It
// reports whether the reader must stop.
func (c *Client) handleProbeReply(pkt *packet) bool {
	if pkt.typ == sioConnect {
		// A dynamic namespace accepted the probe: leave it right away.
		if err := c.writeText(eioMessage, string(sioDisconnect)+probeNamespace+","); err != nil {
			c.recordErr(fmt.Errorf("sioclient: leaving the readiness probe namespace: %w", err))
		}
	}
	if c.state != stateProbing {
		return false // A late reply to a resent probe.
	}
	close(c.probed)
	return c.sendConnect()
}

// handlePacket processes a complete Socket.IO packet. It reports whether the
// reader must stop.
func (c *Client) handlePacket(pkt *packet, bufs [][]byte) bool {
	if pkt.nsp == probeNamespace {
		return c.handleProbeReply(pkt)
	}
	if pkt.nsp != c.nsp {
		c.recordErr(fmt.Errorf("sioclient: packet type %c for namespace %q on a client of namespace %q", pkt.typ, pkt.nsp, c.nsp))
		return false
	}
	if bufs != nil {
		data, err := reconstruct(pkt.data, bufs)
		if err != nil {
			c.recordErr(fmt.Errorf("sioclient: packet type %c: %w", pkt.typ, err))
			return false
		}
		pkt.data = data
	}

	if c.state == stateWaitConnect {
		switch pkt.typ {
		case sioConnect:
			var sid, pid string
			if m, ok := pkt.data.(map[string]any); ok {
				sid, _ = m["sid"].(string)
				pid, _ = m["pid"].(string)
			}
			if sid == "" {
				c.failConnect(fmt.Errorf("sioclient: CONNECT reply without sid: %v", pkt.data))
				return true
			}
			c.mu.Lock()
			c.id = sid
			c.pid = pid
			// socket.io-client: recovered = pid && _pid === pid.
			c.recovered = pid != "" && c.session != nil && c.session.pid == pid
			c.writableAt = time.Now().Add(c.postConnectDelay)
			c.mu.Unlock()
			c.state = stateConnected
			// The events that came before the reply (a recovered
			// session's missed packets) are recorded first, as
			// socket.io-client emits its receive buffer on connect.
			for _, early := range c.early {
				c.handleEvent(early)
			}
			c.early = nil
			close(c.connected)
		case sioConnectError:
			c.failConnect(fmt.Errorf("sioclient: namespace %q refused the connection: %s", c.nsp, connectErrorMessage(pkt.data)))
			return true
		case sioEvent, sioBinaryEvent:
			c.early = append(c.early, pkt)
		default:
			c.recordErr(fmt.Errorf("sioclient: packet type %c before CONNECT reply", pkt.typ))
		}
		return false
	}
	if c.state != stateConnected {
		c.recordErr(fmt.Errorf("sioclient: Socket.IO packet type %c before the CONNECT reply", pkt.typ))
		return false
	}

	switch pkt.typ {
	case sioDisconnect:
		if c.markDisconnected(ReasonServerDisconnect) {
			// One client is one namespace: nothing left to do on this
			// connection, so close it (like the JS client's Manager does).
			c.closeConn()
		}
		return true
	case sioEvent, sioBinaryEvent:
		c.handleEvent(pkt)
	case sioAck, sioBinaryAck:
		if pkt.id == nil {
			c.recordErr(errors.New("sioclient: ACK packet without id"))
			return false
		}
		args, ok := pkt.data.([]any)
		if !ok {
			c.recordErr(fmt.Errorf("sioclient: ACK payload is not an array: %v", pkt.data))
			return false
		}
		c.mu.Lock()
		ch := c.pendingAcks[*pkt.id]
		delete(c.pendingAcks, *pkt.id)
		c.mu.Unlock()
		if ch == nil {
			c.recordErr(fmt.Errorf("sioclient: ACK for unknown id %d", *pkt.id))
			return false
		}
		ch <- ackResult{args: args} // buffered, never blocks
	case sioConnect:
		c.recordErr(errors.New("sioclient: unexpected CONNECT packet after connection"))
	case sioConnectError:
		c.recordErr(fmt.Errorf("sioclient: unexpected CONNECT_ERROR after connection: %s", connectErrorMessage(pkt.data)))
	default:
		c.recordErr(fmt.Errorf("sioclient: unknown Socket.IO packet type %c", pkt.typ))
	}
	return false
}

// handleEvent records an EVENT or BINARY_EVENT packet and answers its
// acknowledgement when a handler is registered.
func (c *Client) handleEvent(pkt *packet) {
	arr, ok := pkt.data.([]any)
	if !ok || len(arr) == 0 {
		c.recordErr(fmt.Errorf("sioclient: event payload is not a non-empty array: %v", pkt.data))
		return
	}
	name, ok := arr[0].(string)
	if !ok {
		c.recordErr(fmt.Errorf("sioclient: event name is not a string: %v", arr[0]))
		return
	}
	ev := Event{Name: name, Args: arr[1:], Binary: pkt.typ == sioBinaryEvent, AckID: pkt.id}
	c.mu.Lock()
	c.events = append(c.events, ev)
	// socket.io-client's rule: with a session id, the last element of an
	// event's arguments (name included, an ack callback appended) is the
	// last offset when it is a string, offset or not.
	if last, ok := arr[len(arr)-1].(string); ok && c.pid != "" && pkt.id == nil {
		c.lastOffset = last
	}
	c.notifyLocked()
	handler := c.ackHandlers[name]
	c.mu.Unlock()
	if pkt.id != nil && handler != nil {
		reply := handler(append([]any(nil), ev.Args...))
		if reply == nil {
			reply = []any{}
		}
		if err := c.writePacket(sioAck, pkt.id, reply); err != nil {
			c.recordErr(fmt.Errorf("sioclient: answering ack %d of %q: %w", *pkt.id, name, err))
		}
	}
}

// connectErrorMessage extracts a readable message from a CONNECT_ERROR payload
// ({"message": ..., "data": ...} in protocol v5, a plain string in older ones).
func connectErrorMessage(data any) string {
	switch t := data.(type) {
	case map[string]any:
		msg, _ := t["message"].(string)
		if d, ok := t["data"]; ok && d != nil {
			return fmt.Sprintf("%s (data: %v)", msg, d)
		}
		if msg != "" {
			return msg
		}
	case string:
		return t
	}
	b, _ := json.Marshal(data)
	return string(b)
}

// decodePacket parses an encoded Socket.IO packet:
// <type>[<attachments>-][<nsp>,][<id>][<json payload>].
func decodePacket(s []byte) (*packet, error) {
	if len(s) == 0 {
		return nil, errors.New("sioclient: empty Socket.IO packet")
	}
	p := &packet{typ: s[0], nsp: "/"}
	if p.typ < sioConnect || p.typ > sioBinaryAck {
		return nil, fmt.Errorf("sioclient: unknown Socket.IO packet type in %q", s)
	}
	i := 1
	if p.typ == sioBinaryEvent || p.typ == sioBinaryAck {
		start := i
		for i < len(s) && s[i] != '-' {
			i++
		}
		if i >= len(s) {
			return nil, fmt.Errorf("sioclient: missing attachment count in %q", s)
		}
		n, err := strconv.Atoi(string(s[start:i]))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("sioclient: invalid attachment count in %q", s)
		}
		p.attachments = n
		i++ // skip '-'
	}
	if i < len(s) && s[i] == '/' {
		start := i
		for i < len(s) && s[i] != ',' {
			i++
		}
		p.nsp = string(s[start:i])
		if i < len(s) {
			i++ // skip ','
		}
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > start {
		id, err := strconv.ParseUint(string(s[start:i]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("sioclient: invalid ack id in %q: %w", s, err)
		}
		p.id = &id
	}
	if i < len(s) {
		if err := json.Unmarshal(s[i:], &p.data); err != nil {
			return nil, fmt.Errorf("sioclient: invalid JSON payload in %q: %w", s, err)
		}
	}
	return p, nil
}
