package wire

import (
	"testing"
	"time"
)

// A Go time.Time in data written as JSON (stream entries without binary,
// classic requests) is the text Node's JSON.stringify writes for a Date,
// Date.prototype.toJSON: UTC with milliseconds, whatever the time's zone.
// The Node vector broadcast_date_json carries new Date("2024-01-02T03:04:05.678Z").
func TestJSONDateAsJavaScript(t *testing.T) {
	plus2 := time.FixedZone("UTC+02:00", 2*60*60)
	for _, c := range []struct {
		tm   time.Time
		want string
	}{
		{time.Date(2024, 1, 2, 5, 4, 5, 678e6, plus2), `{"packet":{"type":2,"data":["date","2024-01-02T03:04:05.678Z"]},"opts":{"rooms":[],"except":[],"flags":{}}}`},
		{time.Date(2000, 6, 13, 0, 0, 0, 0, time.UTC), `{"packet":{"type":2,"data":["date","2000-06-13T00:00:00.000Z"]},"opts":{"rooms":[],"except":[],"flags":{}}}`},
		{time.Date(2000, 6, 13, 0, 0, 0, 999999, time.UTC), `{"packet":{"type":2,"data":["date","2000-06-13T00:00:00.000Z"]},"opts":{"rooms":[],"except":[],"flags":{}}}`},
	} {
		m := &Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"date", c.tm}}}
		_, data, _, err := StreamFields(m, true)
		if err != nil || data != c.want {
			t.Errorf("%v: data %s (%v), want %s", c.tm, data, err, c.want)
		}
	}
}
