package redisadapter

import (
	"fmt"
	"testing"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
)

// TestBurstArrivesCompleteAndInOrder sends a fast burst of room broadcasts
// from two servers to many WebSocket clients with the server's default engine
// options, and checks every client gets every message, in each sender's order.
//
// engine.io v2.5.0's WebSocket transport writes only the first of several
// queued packets carrying a pre-encoded frame; the server's in-memory adapter
// attaches one to every broadcast, so the same burst through it loses most
// messages. The adapter must not.
func TestBurstArrivesCompleteAndInOrder(t *testing.T) {
	const perServer = 25 // clients per server
	const messages = 300 // messages per sender
	c := newCluster(t, 2, nil)
	var clients []*sioclient.Client
	for i := range c.nodes {
		for j := 0; j < perServer; j++ {
			cl, s := c.connect(i, "/")
			s.Join("burst")
			clients = append(clients, cl)
		}
	}
	for i := 0; i < messages; i++ {
		c.nodes[0].io.To("burst").Emit("b", 0, i, "payload of a chat message")
		c.nodes[1].io.To("burst").Emit("b", 1, i, "payload of a chat message")
	}
	for k, cl := range clients {
		evs := waitEvents(t, cl, "b", 2*messages)
		if len(evs) != 2*messages {
			t.Fatalf("client %d received %d messages, want %d", k, len(evs), 2*messages)
		}
		next := [2]float64{}
		for _, ev := range evs {
			from := int(ev.Args[0].(float64))
			if got := ev.Args[1].(float64); got != next[from] {
				t.Fatalf("client %d: from server %d got message %v, want %v (lost or out of order)", k, from, got, next[from])
			}
			next[from]++
		}
		if fmt.Sprint(next) != fmt.Sprint([2]float64{messages, messages}) {
			t.Fatalf("client %d: counts %v", k, next)
		}
	}
}
