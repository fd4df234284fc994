//go:build interop

package interop

import (
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
	for _, rooms := range []bool{false, true} {
		t.Run(classicModeName(rooms), func(t *testing.T) {
			e := startCluster(t, classicSpec(rooms, false))
			e.runTests(t, classicTests())
		})
	}
}

// classicTests are the tests of a classic cluster: the cluster operations
// and both emitters.
func classicTests() []suiteTest {
	return append(append([]suiteTest{}, clusterTests...),
		suiteTest{"NodeEmitter", testNodeEmitter},
		suiteTest{"GoEmitter", testGoEmitter},
	)
}

func classicModeName(rooms bool) string {
	if rooms {
		return "rooms"
	}
	return "pattern"
}

// classicSpec is the classic cluster with the Go servers in one subscription
// mode (room subscriptions or a pattern), on a redis-server or on a Redis
// Cluster.
func classicSpec(rooms, redisCluster bool) clusterSpec {
	suite := "classic (Go servers: " + classicModeName(rooms) + " subscriptions)"
	if redisCluster {
		suite += " on a Redis Cluster"
	}
	return clusterSpec{
		suite:        suite,
		redisCluster: redisCluster,
		goAdapter: func(rdb redis.UniversalClient, key string) *redisadapter.Builder {
			return redisadapter.New(rdb, &redisadapter.Options{Key: key, RequestsTimeout: requestsTimeout, RoomSubscriptions: rooms})
		},
		nodeScript: "server.js",
		nodeEnv: func(*env) []string {
			return []string{"REQUESTS_TIMEOUT=" + strconv.Itoa(int(requestsTimeout.Milliseconds()))}
		},
		ready: func(e *env) (bool, string) {
			if ok, detail := numSubReady(func(e *env, nsp string) string { return e.key + "-request#" + nsp + "#" }, false)(e); !ok {
				return ok, detail
			}
			if !rooms {
				return true, ""
			}
			// The Go servers also subscribe to each namespace's channel.
			for _, nsp := range e.namespaces {
				ch := e.key + "#" + nsp + "#"
				if n := e.numSub(ch); n != 2 {
					return false, fmt.Sprintf("%d servers subscribed to %s, want the 2 Go servers", n, ch)
				}
			}
			return true, ""
		},
	}
}
