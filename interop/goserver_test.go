//go:build interop

package interop

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/d38ad898/redisadapter"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// goServer is a Go Socket.IO server with the adapter under test, in this
// process. It answers the same control API as server.js (POST /control/<action>,
// JSON in and out), so that the tests drive Go and Node servers alike.
type goServer struct {
	name    string
	nsps    []string
	io      *socket.Server
	builder *redisadapter.Builder
	rdb     redis.UniversalClient
	http    *httptest.Server

	mu          sync.Mutex
	ready       map[string]bool         // nsp+" "+socket id: the connection handler ran
	listeners   map[string]*listener    // nsp+" "+event
	connections map[string][]connection // by namespace, in order
}

// listener records the server-side events of one name and answers their acks.
type listener struct {
	hasReply bool
	reply    any
	events   []serverEvent
}

type serverEvent struct {
	Args []any `json:"args"`
	Ack  bool  `json:"ack"`
}

// connection is what the connection handler saw of a socket (as the
// "connections" action of streams-server.js reports it).
type connection struct {
	ID        string   `json:"id"`
	Recovered bool     `json:"recovered"`
	Rooms     []string `json:"rooms"`
	Data      any      `json:"data"`
}

// startGoServer starts a Go server of e's cluster: the namespaces of e, the
// adapter of e's spec on a Redis client named <key>-<name> (so that CLIENT
// LIST tells its connections), connect timeout 1s.
func startGoServer(name string, e *env) *goServer {
	g := &goServer{
		name:        name,
		nsps:        e.namespaces,
		ready:       map[string]bool{},
		listeners:   map[string]*listener{},
		connections: map[string][]connection{},
	}
	if len(e.clusterAddrs) > 0 {
		g.rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: e.clusterAddrs, ClientName: e.key + "-" + name})
	} else {
		g.rdb = redis.NewClient(&redis.Options{Addr: e.redisAddr, ClientName: e.key + "-" + name})
	}
	g.builder = e.spec.goAdapter(g.rdb, e.key)
	opts := socket.DefaultServerOptions()
	opts.SetConnectTimeout(time.Second)
	if e.spec.goRecovery {
		// Node's defaults (socket.io fills them in the same way).
		csr := &socket.ConnectionStateRecovery{}
		csr.SetMaxDisconnectionDuration(2 * 60 * 1000)
		csr.SetSkipMiddlewares(true)
		opts.SetConnectionStateRecovery(csr)
	}
	opts.SetAdapter(g.builder)
	g.io = socket.NewServer(nil, opts)
	for _, nsp := range g.nsps {
		g.io.Of(nsp, nil).On("connection", func(args ...any) {
			s := args[0].(*socket.Socket)
			g.mu.Lock()
			g.ready[nsp+" "+string(s.Id())] = true
			g.connections[nsp] = append(g.connections[nsp], connection{
				ID: string(s.Id()), Recovered: s.Recovered(), Rooms: roomStrings(s.Rooms()), Data: toWire(s.Data()),
			})
			g.mu.Unlock()
			s.On("disconnect", func(...any) {
				g.mu.Lock()
				delete(g.ready, nsp+" "+string(s.Id()))
				g.mu.Unlock()
			})
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", g.io.ServeHandler(nil))
	mux.HandleFunc("/control/", g.control)
	g.http = httptest.NewServer(mux)
	return g
}

// close stops the server, then its adapter, then its Redis client.
func (g *goServer) close() {
	done := make(chan struct{})
	g.io.Close(func(error) { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	g.http.Close()
	_ = g.builder.Close()
	_ = g.rdb.Close()
}

// controlRequest is the union of the fields of every control action.
type controlRequest struct {
	Nsp      string          `json:"nsp"`
	Event    string          `json:"event"`
	Args     []any           `json:"args"`
	In       []any           `json:"in"`
	Except   []any           `json:"except"`
	Local    bool            `json:"local"`
	Timeout  *float64        `json:"timeout"` // ms
	Rooms    []any           `json:"rooms"`
	Close    bool            `json:"close"`
	Ack      bool            `json:"ack"`
	ID       string          `json:"id"`
	Data     any             `json:"data"`
	Reply    json.RawMessage `json:"reply"`
	Volatile bool            `json:"volatile"`
}

func (g *goServer) control(w http.ResponseWriter, r *http.Request) {
	var req controlRequest
	body, err := io.ReadAll(r.Body)
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	var out any
	if err == nil {
		out, err = g.do(strings.TrimPrefix(r.URL.Path, "/control/"), &req)
	}
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	if out == nil {
		out = map[string]any{}
	}
	if err := json.NewEncoder(w).Encode(out); err != nil {
		panic(fmt.Sprintf("%s: encoding the answer %#v: %v", g.name, out, err))
	}
}

// callbackTimeout bounds how long the control API waits for a callback of
// the server (acks, fetchSockets).
const callbackTimeout = 15 * time.Second

func (g *goServer) nsp(req *controlRequest) (socket.Namespace, error) {
	name := req.Nsp
	if name == "" {
		name = "/"
	}
	for _, n := range g.nsps {
		if n == name {
			return g.io.Of(name, nil), nil
		}
	}
	return nil, fmt.Errorf("unknown namespace %q", name)
}

func (g *goServer) operator(req *controlRequest) (*socket.BroadcastOperator, error) {
	n, err := g.nsp(req)
	if err != nil {
		return nil, err
	}
	op := n.To(rooms(req.In)...).Except(rooms(req.Except)...)
	if req.Local {
		op = op.Local()
	}
	if req.Volatile {
		op = op.Volatile()
	}
	return op, nil
}

func (g *goServer) localSocket(req *controlRequest) (*socket.Socket, error) {
	n, err := g.nsp(req)
	if err != nil {
		return nil, err
	}
	s, ok := n.Sockets().Load(socket.SocketId(req.ID))
	if !ok {
		return nil, fmt.Errorf("no local socket %s in %s", req.ID, n.Name())
	}
	return s, nil
}

func rooms(v []any) []socket.Room {
	out := make([]socket.Room, 0, len(v))
	for _, r := range v {
		out = append(out, socket.Room(fmt.Sprint(r)))
	}
	return out
}

func roomStrings(s interface{ Keys() []socket.Room }) []string {
	out := []string{}
	for _, r := range s.Keys() {
		out = append(out, string(r))
	}
	return out
}

func errString(err error) any {
	if err == nil {
		return nil
	}
	return err.Error()
}

// wait waits for a callback's result.
func wait[T any](ch <-chan T, what string) (T, error) {
	select {
	case v := <-ch:
		return v, nil
	case <-time.After(callbackTimeout):
		var zero T
		return zero, fmt.Errorf("%s: callback not called within %v", what, callbackTimeout)
	}
}

type ackResult struct {
	args []any
	err  error
}

func (g *goServer) do(action string, req *controlRequest) (any, error) {
	switch action {
	case "ping":
		return map[string]any{"name": g.name}, nil

	case "emit":
		op, err := g.operator(req)
		if err != nil {
			return nil, err
		}
		args := fromWire(req.Args).([]any)
		if req.Timeout == nil {
			return nil, op.Emit(req.Event, args...)
		}
		ch := make(chan ackResult, 1)
		err = op.Timeout(time.Duration(*req.Timeout*float64(time.Millisecond))).Emit(req.Event,
			append(args, socket.Ack(func(acks []any, err error) { ch <- ackResult{acks, err} }))...)
		if err != nil {
			return nil, err
		}
		r, err := wait(ch, "emit with ack")
		if err != nil {
			return nil, err
		}
		return map[string]any{"err": errString(r.err), "acks": toWire(nonNil(r.args))}, nil

	case "fetchSockets":
		op, err := g.operator(req)
		if err != nil {
			return nil, err
		}
		type fetched struct {
			sockets []*socket.RemoteSocket
			err     error
		}
		ch := make(chan fetched, 1)
		op.FetchSockets()(func(s []*socket.RemoteSocket, err error) { ch <- fetched{s, err} })
		r, err := wait(ch, "fetchSockets")
		if err != nil {
			return nil, err
		}
		list := []any{}
		for _, s := range r.sockets {
			list = append(list, map[string]any{
				"id":        string(s.Id()),
				"handshake": s.Handshake(),
				"rooms":     roomStrings(s.Rooms()),
				"data":      toWire(s.Data()),
			})
		}
		return map[string]any{"err": errString(r.err), "sockets": list}, nil

	case "socketsJoin", "socketsLeave", "disconnectSockets":
		op, err := g.operator(req)
		if err != nil {
			return nil, err
		}
		switch action {
		case "socketsJoin":
			op.SocketsJoin(rooms(req.Rooms)...)
		case "socketsLeave":
			op.SocketsLeave(rooms(req.Rooms)...)
		default:
			op.DisconnectSockets(req.Close)
		}
		return nil, nil

	case "serverSideEmit":
		n, err := g.nsp(req)
		if err != nil {
			return nil, err
		}
		args := fromWire(req.Args).([]any)
		if !req.Ack {
			return nil, n.ServerSideEmit(req.Event, args...)
		}
		ch := make(chan ackResult, 1)
		if err := n.ServerSideEmit(req.Event, append(args, socket.Ack(func(r []any, err error) { ch <- ackResult{r, err} }))...); err != nil {
			return nil, err
		}
		r, err := wait(ch, "serverSideEmit with ack")
		if err != nil {
			return nil, err
		}
		return map[string]any{"err": errString(r.err), "responses": toWire(nonNil(r.args))}, nil

	case "serverCount":
		n, err := g.nsp(req)
		if err != nil {
			return nil, err
		}
		return map[string]any{"count": n.Adapter().ServerCount()}, nil

	case "allRooms":
		n, err := g.nsp(req)
		if err != nil {
			return nil, err
		}
		a, ok := n.Adapter().(*redisadapter.Adapter)
		if !ok {
			return nil, fmt.Errorf("the adapter of %s is a %T", n.Name(), n.Adapter())
		}
		ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
		defer cancel()
		list, err := a.AllRooms(ctx)
		rooms := []string{}
		for _, r := range list {
			rooms = append(rooms, string(r))
		}
		return map[string]any{"err": errString(err), "rooms": rooms}, nil

	case "join", "leave":
		s, err := g.localSocket(req)
		if err != nil {
			return nil, err
		}
		if action == "join" {
			s.Join(rooms(req.Rooms)...)
		} else {
			for _, r := range rooms(req.Rooms) {
				s.Leave(r)
			}
		}
		return nil, nil

	case "setData":
		s, err := g.localSocket(req)
		if err != nil {
			return nil, err
		}
		s.SetData(fromWire(req.Data))
		return nil, nil

	case "listen":
		n, err := g.nsp(req)
		if err != nil {
			return nil, err
		}
		key := n.Name() + " " + req.Event
		g.mu.Lock()
		l := g.listeners[key]
		fresh := l == nil
		if fresh {
			l = &listener{}
			g.listeners[key] = l
		}
		l.hasReply = req.Reply != nil
		l.reply = nil
		if l.hasReply {
			var v any
			if err := json.Unmarshal(req.Reply, &v); err != nil {
				g.mu.Unlock()
				return nil, err
			}
			l.reply = fromWire(v)
		}
		g.mu.Unlock()
		if fresh {
			n.On(req.Event, func(args ...any) {
				var ack socket.Ack
				if len(args) > 0 {
					ack, _ = args[len(args)-1].(socket.Ack)
					if ack != nil {
						args = args[:len(args)-1]
					}
				}
				g.mu.Lock()
				l.events = append(l.events, serverEvent{Args: toWire(nonNil(args)).([]any), Ack: ack != nil})
				hasReply, reply := l.hasReply, l.reply
				g.mu.Unlock()
				if ack != nil && hasReply {
					ack([]any{reply}, nil)
				}
			})
		}
		return nil, nil

	case "serverEvents":
		n, err := g.nsp(req)
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		events := []serverEvent{}
		if l := g.listeners[n.Name()+" "+req.Event]; l != nil {
			events = append(events, l.events...)
		}
		return map[string]any{"events": events}, nil

	case "localSockets":
		n, err := g.nsp(req)
		if err != nil {
			return nil, err
		}
		list := []any{}
		g.mu.Lock()
		defer g.mu.Unlock()
		n.Sockets().Range(func(id socket.SocketId, s *socket.Socket) bool {
			if g.ready[n.Name()+" "+string(id)] {
				list = append(list, map[string]any{"id": string(id), "rooms": roomStrings(s.Rooms()), "data": toWire(s.Data()), "recovered": s.Recovered()})
			}
			return true
		})
		return map[string]any{"sockets": list}, nil

	case "connections":
		n, err := g.nsp(req)
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		return map[string]any{"connections": append([]connection{}, g.connections[n.Name()]...)}, nil
	}
	return nil, errors.New("unknown action " + action)
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

// fromWire turns the JSON of the control API into Go values: {"$binary": b64}
// becomes []byte, {"$date": iso} a time.Time.
func fromWire(v any) any {
	switch t := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = fromWire(e)
		}
		return out
	case map[string]any:
		if b64, ok := t["$binary"].(string); ok && len(t) == 1 {
			b, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				panic(err)
			}
			return b
		}
		if iso, ok := t["$date"].(string); ok && len(t) == 1 {
			d, err := time.Parse(time.RFC3339Nano, iso)
			if err != nil {
				panic(err)
			}
			return d
		}
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = fromWire(e)
		}
		return out
	}
	return v
}

// toWire is the inverse of fromWire, for answers: binary values, whatever
// their Go type, become {"$binary": b64}.
func toWire(v any) any {
	switch t := v.(type) {
	case []byte:
		return map[string]any{"$binary": base64.StdEncoding.EncodeToString(t)}
	case interface{ Bytes() []byte }:
		return map[string]any{"$binary": base64.StdEncoding.EncodeToString(t.Bytes())}
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = toWire(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = toWire(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = toWire(e)
		}
		return out
	}
	return v
}
