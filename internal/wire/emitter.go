package wire

// EmitterUID tags the messages of emitters (@socket.io/redis-emitter and the
// streams emitter): never a server's uid, so that every server handles them.
const EmitterUID = "emitter"

// Flag is a broadcast flag an emitter user set, kept in the order it was
// first set (a JavaScript object keeps its keys in that order).
type Flag struct {
	Name  string
	Value bool
}

// AppendEmitterBroadcast appends the broadcast frame of
// @socket.io/redis-emitter 5.x:
// ["emitter", {type: 2, data, nsp}, {rooms, flags, except}] (the opts keys in
// the emitter's order, which differs from the adapter's). data must be
// normalized.
func AppendEmitterBroadcast(dst []byte, nsp string, data []any, rooms, except []string, flags []Flag) ([]byte, error) {
	w := Writer{B: dst, SortKeys: true}
	w.ArrayLen(3)
	w.String(EmitterUID)
	if err := writePacket(&w, &Packet{Type: PacketEvent, Data: data, Nsp: nsp}, true); err != nil {
		return dst, err
	}
	w.MapLen(3)
	w.String("rooms")
	w.Strings(rooms)
	w.String("flags")
	w.MapLen(len(flags))
	for _, f := range flags {
		w.String(f.Name)
		w.Bool(f.Value)
	}
	w.String("except")
	w.Strings(except)
	return w.B, nil
}
