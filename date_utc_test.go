package redisadapter

import (
	"encoding/hex"
	"testing"
	"time"
)

// TestDecodeDateIsUTC: a Node Date (msgpack timestamp) decodes to a UTC
// time.Time whatever the local zone, so that the clients of every Go server
// receive the same text for it as the sender's own clients.
func TestDecodeDateIsUTC(t *testing.T) {
	// Node: io.emit("d", new Date(Date.UTC(2000, 5, 13))), uid zsEYvl.
	frame, _ := hex.DecodeString("93a67a734559766c83a47479706502a46461746192a164d6ff39457980a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380")
	f, err := decodeBroadcast(frame)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := f.Packet.Data.([]any)[1].(time.Time)
	if !ok || !d.Equal(time.Date(2000, 6, 13, 0, 0, 0, 0, time.UTC)) || d.Location() != time.UTC {
		t.Fatalf("decoded %#v, want 2000-06-13 00:00:00 UTC", f.Packet.Data)
	}
}
