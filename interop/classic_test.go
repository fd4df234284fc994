//go:build interop

package interop

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/d38ad898/redisadapter"
	"github.com/redis/go-redis/v9"
)

// clusterTests are the cluster operations every suite whose protocol has
// them runs from every server (broadcast_test.go, requests_test.go).
var clusterTests = []suiteTest{
	{"ServerCount", testServerCount},
	{"Broadcast", testBroadcast},
	{"BroadcastDate", testBroadcastDate},
	{"BroadcastNamespace", testBroadcastNamespace},
	{"BroadcastWithAck", testBroadcastWithAck},
	{"FetchSockets", testFetchSockets},
	{"SocketsJoinLeave", testSocketsJoinLeave},
	{"DisconnectSockets", testDisconnectSockets},
	{"ServerSideEmit", testServerSideEmit},
	{"AllRooms", testAllRooms},
}

// The classic suite: two Go servers on redisadapter.New and two Node servers
// on the official createAdapter (server.js), on a redis-server of their own,
// once per subscription mode of the Go servers: "pattern" (PSUBSCRIBE
// key#nsp#*, as Node) and "rooms" (Options.RoomSubscriptions: SUBSCRIBE
// key#nsp# and one channel per held room; same wire). The Node servers and
// both emitters are the same in both runs.
func TestClassic(t *testing.T) {
	for _, mode := range []struct {
		name  string
		rooms bool
	}{{"pattern", false}, {"rooms", true}} {
		t.Run(mode.name, func(t *testing.T) {
			e := startCluster(t, clusterSpec{
				suite: "classic (Go servers: " + mode.name + " subscriptions)",
				goAdapter: func(rdb *redis.Client, key string) *redisadapter.Builder {
					return redisadapter.New(rdb, &redisadapter.Options{Key: key, RequestsTimeout: requestsTimeout, RoomSubscriptions: mode.rooms})
				},
				nodeScript: "server.js",
				nodeEnv: func(*env) []string {
					return []string{"REQUESTS_TIMEOUT=" + strconv.Itoa(int(requestsTimeout.Milliseconds()))}
				},
				ready: func(e *env) (bool, string) {
					if ok, detail := numSubReady(func(e *env, nsp string) string { return e.key + "-request#" + nsp + "#" }, false)(e); !ok {
						return ok, detail
					}
					if !mode.rooms {
						return true, ""
					}
					// The Go servers also subscribe to each namespace's channel.
					for _, nsp := range e.namespaces {
						ch := e.key + "#" + nsp + "#"
						if m, err := e.rdb.PubSubNumSub(context.Background(), ch).Result(); err != nil || m[ch] != 2 {
							return false, fmt.Sprintf("%d servers subscribed to %s, want the 2 Go servers (%v)", m[ch], ch, err)
						}
					}
					return true, ""
				},
			})
			e.runTests(t, append(append([]suiteTest{}, clusterTests...),
				suiteTest{"NodeEmitter", testNodeEmitter},
				suiteTest{"GoEmitter", testGoEmitter},
			))
		})
	}
}
