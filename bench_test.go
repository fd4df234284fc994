package redisadapter

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// The hot paths, measured: publish (Broadcast to a room held by another
// server, through the publisher to Redis), receive (a raw frame to the write
// into a local client's engine) and the drop of frames for rooms not held.
// miniredis by default, the real Redis of REDIS_URL when set (the sharded
// mode needs it).

// chatData is a typical chat payload of about 100 bytes.
var chatData = []any{"chat message", map[string]any{"name": "ada", "text": "the quick brown fox jumps over the lazy dog, twice over"}}

// benchRedis returns a client factory for the benchmark's Redis.
func benchRedis(b *testing.B, needsReal bool) func() redis.UniversalClient {
	if needsReal && os.Getenv("REDIS_URL") == "" {
		b.Skip("needs a real Redis 7: set REDIS_URL")
	}
	r := testkit.NewRedis(b)
	return func() redis.UniversalClient { return r.Client(b) }
}

func benchModes() []testkit.Mode {
	return []testkit.Mode{modeClassic(), modeRooms(), modeSharded(SubscriptionModeDynamic), modeStreams()}
}

// BenchmarkBroadcastRemoteRoom is the caller's cost of Broadcast to a room
// whose only member is on another server; published/s counts the frames the
// publisher wrote to Redis during the run.
func BenchmarkBroadcastRemoteRoom(b *testing.B) {
	for _, m := range benchModes() {
		b.Run(m.Name, func(b *testing.B) {
			client := benchRedis(b, m.NeedsRealRedis)
			key := testkit.UniqueKey(b)
			sender := testkit.NewNode(b, m.New(client(), key))
			receiver := testkit.NewNode(b, m.New(client(), key))
			broadcastBench(b, sender, receiver, 1)
		})
	}
}

// broadcastBench runs b.N broadcasts from sender, round-robin over rooms
// rooms that one socket of receiver holds, until the publisher has written
// them all.
func broadcastBench(b *testing.B, sender, receiver *testkit.Node, rooms int) {
	_, s := receiver.Connect(b, "/")
	opts := make([]*socket.BroadcastOptions, rooms)
	for i := range opts {
		r := socket.Room("remote-room-" + strconv.Itoa(i))
		s.Join(r)
		opts[i] = &socket.BroadcastOptions{Rooms: types.NewSet(r)}
	}
	bs := sender.B.(*Builder)
	testkit.WaitFor(b, "two servers", func() bool { return sender.Ns("/").Adapter().ServerCount() == 2 })
	a := sender.Ns("/").Adapter().(*Adapter)
	before := bs.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Broadcast(&parser.Packet{Type: parser.EVENT, Data: chatData}, opts[i%rooms])
	}
	testkit.WaitFor(b, "queue drained", func() bool { return bs.Stats().QueueLength == 0 })
	b.StopTimer()
	after := bs.Stats()
	b.ReportMetric(float64(after.Published-before.Published)/b.Elapsed().Seconds(), "published/s")
	b.ReportMetric(float64(after.PublishDropped-before.PublishDropped), "dropped")
}

// receiveBench runs Builder.receive on in for b.N frames.
func receiveBench(b *testing.B, m testkit.Mode, frame func(a *Adapter) *inbound, join string) {
	client := benchRedis(b, m.NeedsRealRedis)
	nd := testkit.NewNode(b, m.New(client(), testkit.UniqueKey(b)))
	if join != "" {
		_, s := nd.Connect(b, "/")
		s.Join(socket.Room(join))
	}
	bd := nd.B.(*Builder)
	in := frame(nd.Ns("/").Adapter().(*Adapter))
	b.SetBytes(int64(len(in.payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := *in
		bd.receive(&c)
	}
}

// classicFrame is another server's broadcast of chatData to room.
func classicFrame(b *testing.B, a *Adapter, room string) *inbound {
	buf, err := wire.AppendClassicBroadcast(nil, "other-server", &wire.Packet{Type: wire.PacketEvent, Data: chatData, Nsp: "/"}, &wire.Opts{Rooms: []string{room}})
	if err != nil {
		b.Fatal(err)
	}
	return &inbound{nsp: "/", kind: kindBroadcast, channel: a.ch.Room(room), payload: string(buf)}
}

// BenchmarkReceiveToLocalDelivery is the receive path of one frame to one
// local client: room check, decode, uid check and local delivery.
func BenchmarkReceiveToLocalDelivery(b *testing.B) {
	b.Run("classic", func(b *testing.B) {
		receiveBench(b, modeClassic(), func(a *Adapter) *inbound { return classicFrame(b, a, "lobby") }, "lobby")
	})
	b.Run("cluster-json", func(b *testing.B) {
		receiveBench(b, modeSharded(SubscriptionModeDynamic), func(a *Adapter) *inbound {
			m := &wire.Message{Type: wire.TypeBroadcast, UID: "other-server", Nsp: "/",
				Packet: wire.Packet{Type: wire.PacketEvent, Data: chatData}, Opts: wire.Opts{Rooms: []string{"lobby"}}}
			buf, err := wire.AppendCluster(nil, m, wire.FormatSharded)
			if err != nil {
				b.Fatal(err)
			}
			return &inbound{nsp: "/", kind: kindMessage, room: "lobby", payload: string(buf)}
		}, "lobby")
	})
}

// BenchmarkReceiveUnknownRoom is the drop of a frame for a room this server
// does not hold: no decoding happens.
func BenchmarkReceiveUnknownRoom(b *testing.B) {
	receiveBench(b, modeClassic(), func(a *Adapter) *inbound { return classicFrame(b, a, "room1") }, "")
}

// BenchmarkServerCount is one NUMSUB round trip (classic).
func BenchmarkServerCount(b *testing.B) {
	client := benchRedis(b, false)
	nd := testkit.NewNode(b, modeClassic().New(client(), testkit.UniqueKey(b)))
	bd := nd.B.(*Builder)
	testkit.WaitFor(b, "connected", func() bool { return bd.State() == StateConnected })
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := bd.serverCount(context.Background(), "/"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBroadcastRemoteRoomCluster is BenchmarkBroadcastRemoteRoom on a
// 3-master Redis Cluster, round-robin over 120 rooms held by the other
// server (the rooms' channels spread over the masters in sharded mode).
// Run it with -cpuprofile to see the publisher's share as well.
func BenchmarkBroadcastRemoteRoomCluster(b *testing.B) {
	env := testkit.ClusterEnv(b, 3)
	for _, m := range []testkit.Mode{modeClassic(), modeSharded(SubscriptionModeDynamic)} {
		b.Run(m.Name, func(b *testing.B) {
			key := testkit.UniqueKey(b)
			sender := testkit.NewNode(b, m.New(env.Client(b), key))
			receiver := testkit.NewNode(b, m.New(env.Client(b), key))
			broadcastBench(b, sender, receiver, 120)
		})
	}
}
