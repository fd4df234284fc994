package redisadapter

import (
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
)

// addOffset appends the stream entry id of a received broadcast to its data,
// when connection state recovery needs it (see streams.go).
func (a *Adapter) addOffset(pkt *parser.Packet, o *wire.Opts, id string) {
	if id == "" || !a.b.recovery {
		return
	}
	if recoverable(pkt, o) {
		if data, ok := pkt.Data.([]any); ok {
			pkt.Data = append(data[:len(data):len(data)], id)
		}
	}
}

// recoverable reports whether a client missing pkt gets it back on
// recovery: an event without acknowledgement id, not volatile.
func recoverable(pkt *parser.Packet, o *wire.Opts) bool {
	return pkt.Type == parser.EVENT && pkt.Id == nil && !o.Flags.Volatile
}
