package emitter_test

import (
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/d38ad898/redisadapter/emitter"
)

// A background job tells the users in the room "lobby", whichever server they
// are connected to, that a report is ready.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()

	em := emitter.New(rdb, nil) // the servers' Key, namespace "/"
	err := em.To("lobby").Emit("chat message", map[string]any{
		"name": "system",
		"text": "The monthly report is ready.",
	})
	if err != nil {
		log.Printf("notify lobby: %v", err)
	}

	// Other namespaces, several rooms, exceptions and cluster commands.
	admin := em.Of("/admin")
	_ = admin.To("ops", "oncall").Except("muted").Volatile().Emit("alert", "disk full")
	_ = admin.In("ops").SocketsJoin("incident-42")
	_ = em.In("banned").DisconnectSockets(true)
	_ = em.ServerSideEmit("cache:invalidate", "users")
}
