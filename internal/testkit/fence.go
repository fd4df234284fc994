package testkit

import (
	"fmt"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/zishang520/socket.io/v2/socket"
)

// fenceRetry is how long a fence waits for its markers before it emits the
// missing ones again. Markers are lost when a server is degraded, and also
// by engine.io/v2 v2.5.0 itself: its WebSocket transport writes only the
// first pre-encoded frame of a batch (websocket.send returns instead of
// continuing), so broadcasts emitted back to back can miss a client.
const fenceRetry = 250 * time.Millisecond

// Fence makes every live server broadcast a "fence" event (its index and a
// fresh token) to every client of nsp, and waits until each client in cls
// has the fence of every server. The frames of one server arrive in order
// on an ordered deployment, so everything a server published before its
// fence has then been delivered. On an unordered deployment (a Redis
// Cluster), a room's channel can live on another master than the
// namespace's, so Fence also fences every room of the clients' sockets
// (their own-id rooms included): each server emits a "room-fence" marker
// (token, index, room) to each room, and each client waits for the markers
// of all its rooms. Markers that did not arrive (a degraded server) are
// emitted again every 250ms, until WaitTimeout.
func (c *Cluster) Fence(nsp string, cls ...*sioclient.Client) {
	c.T.Helper()
	token := UniqueKey(c.T)
	live := c.Live()
	has := func(cl *sioclient.Client, i int) bool {
		for _, ev := range cl.Received("fence") {
			if len(ev.Args) == 2 && ev.Args[0] == float64(i) && ev.Args[1] == token {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(WaitTimeout)
	for {
		var missing []int
		for _, nd := range live {
			for _, cl := range cls {
				if !has(cl, nd.Index) {
					missing = append(missing, nd.Index)
					break
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			c.T.Fatalf("fence on %s: servers %v never reached every client", nsp, missing)
		}
		for _, i := range missing {
			c.Ns(i, nsp).Emit("fence", i, token)
		}
		waitUntil(fenceRetry, func() bool {
			for _, i := range missing {
				for _, cl := range cls {
					if !has(cl, i) {
						return false
					}
				}
			}
			return true
		})
	}
	if !c.Env.Ordered {
		c.roomFence(nsp, token, live, cls)
	}
}

// roomFence completes Fence on an unordered deployment: frames to a room are
// ordered only with frames to the same room.
func (c *Cluster) roomFence(nsp, token string, live []*Node, cls []*sioclient.Client) {
	c.T.Helper()
	want := map[*sioclient.Client][]socket.Room{}
	for _, cl := range cls {
		var s *socket.Socket
		for _, nd := range live {
			if so, ok := nd.Ns(nsp).Sockets().Load(socket.SocketId(cl.ID())); ok {
				s = so
			}
		}
		if s == nil {
			c.T.Fatalf("room fence on %s: no server holds client %s", nsp, cl.ID())
		}
		want[cl] = append(want[cl], s.Rooms().Keys()...)
	}
	got := func(cl *sioclient.Client, i int, r socket.Room) bool {
		for _, ev := range cl.Received("room-fence") {
			if len(ev.Args) == 3 && ev.Args[0] == token && ev.Args[1] == float64(i) && ev.Args[2] == string(r) {
				return true
			}
		}
		return false
	}
	// missing returns, per server, the rooms whose marker some client lacks.
	missing := func() map[int]map[socket.Room]bool {
		out := map[int]map[socket.Room]bool{}
		for cl, rs := range want {
			for _, r := range rs {
				for _, nd := range live {
					if !got(cl, nd.Index, r) {
						if out[nd.Index] == nil {
							out[nd.Index] = map[socket.Room]bool{}
						}
						out[nd.Index][r] = true
					}
				}
			}
		}
		return out
	}
	deadline := time.Now().Add(WaitTimeout)
	for {
		m := missing()
		if len(m) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.T.Fatalf("room fence on %s: markers %s never arrived", nsp, describeMissing(m))
		}
		for i, rs := range m {
			for r := range rs {
				c.Ns(i, nsp).To(r).Emit("room-fence", token, i, string(r))
			}
		}
		waitUntil(fenceRetry, func() bool { return len(missing()) == 0 })
	}
}

func describeMissing(m map[int]map[socket.Room]bool) string {
	out := ""
	for i, rs := range m {
		var rooms []socket.Room
		for r := range rs {
			rooms = append(rooms, r)
		}
		out += fmt.Sprintf("[server %d: rooms %v]", i, rooms)
	}
	return out
}

// waitUntil polls cond until it holds or d passes, and reports whether it
// held.
func waitUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(pollInterval) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
