package wire

import (
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
)

// Sessions of connection state recovery, as @socket.io/redis-streams-adapter
// 0.3.x keeps them: SET <prefix><pid> base64(msgpack({sid, pid, rooms,
// data})) PX <maxDisconnectionDuration>, fetched and deleted at once on
// reconnection.

// Session is a disconnected socket's state.
type Session struct {
	SID   string
	PID   string
	Rooms []string
	Data  any
}

// AppendSession appends the base64 of s's MessagePack form, with Node's key
// order. s.Data must be normalized.
func AppendSession(dst []byte, s *Session) ([]byte, error) {
	w := Writer{SortKeys: true}
	w.MapLen(4)
	w.String("sid")
	w.String(s.SID)
	w.String("pid")
	w.String(s.PID)
	w.String("rooms")
	w.Strings(s.Rooms)
	w.String("data")
	if err := w.Value(s.Data); err != nil {
		return dst, err
	}
	return base64.StdEncoding.AppendEncode(dst, w.B), nil
}

// DecodeSession decodes a persisted session.
func DecodeSession(v string) (*Session, error) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, shapeErr("session is not base64: %v", err)
	}
	if len(b) == 0 {
		return nil, ErrEmpty
	}
	r := msgpackReader{newReader(BytesString(b))}
	s := &Session{}
	err = r.object(func(k string) error {
		var err error
		switch k {
		case "sid":
			s.SID, err = optString(r)
		case "pid":
			s.PID, err = optString(r)
		case "rooms":
			s.Rooms, err = r.rooms()
		case "data":
			s.Data, err = r.any()
		default:
			err = r.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.SID == "" {
		return nil, shapeErr("session without sid")
	}
	return s, r.done()
}

var offsetRE = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// ValidOffset reports whether offset is a stream entry id (ms-seq), the
// only offsets a restore accepts.
func ValidOffset(offset string) bool { return offsetRE.MatchString(offset) }

// NextOffset returns the smallest entry id after offset, for XRANGE before
// Redis 6.2's exclusive ranges.
func NextOffset(offset string) string {
	ms, seq, _ := strings.Cut(offset, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return offset
	}
	return ms + "-" + strconv.FormatUint(n+1, 10)
}
