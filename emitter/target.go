package emitter

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/d38ad898/redisadapter/internal/wire"
)

// What every emitter shares, whatever the transport: the sockets it targets
// and the checks of an event before it is sent.

// target is the namespace, rooms, exceptions and flags an emitter addresses.
// Its methods return a new target and never modify the receiver's slices
// (they are clipped, so appending reallocates).
type target struct {
	nsp    string
	rooms  []string    // distinct, in the order they were added
	except []string    // distinct, in the order they were added
	flags  []wire.Flag // in the order they were first set, as a JavaScript object keeps them
}

func (t target) clip() target {
	t.rooms = slices.Clip(t.rooms)
	t.except = slices.Clip(t.except)
	t.flags = slices.Clip(t.flags)
	return t
}

// of targets namespace nsp; a leading "/" is added when it lacks one.
func (t target) of(nsp string) target {
	if !strings.HasPrefix(nsp, "/") {
		nsp = "/" + nsp
	}
	t = t.clip()
	t.nsp = nsp
	return t
}

func (t target) to(rooms []string) target {
	t = t.clip()
	t.rooms = addDistinct(t.rooms, rooms)
	return t
}

func (t target) exclude(rooms []string) target {
	t = t.clip()
	t.except = addDistinct(t.except, rooms)
	return t
}

func (t target) withFlag(name string, value bool) target {
	t = t.clip()
	for i, f := range t.flags {
		if f.Name == name {
			t.flags = slices.Clone(t.flags)
			t.flags[i].Value = value
			return t
		}
	}
	t.flags = append(t.flags, wire.Flag{Name: name, Value: value})
	return t
}

// targetOpts is the opts object of a join, leave or disconnect request.
func (t target) targetOpts() wire.Opts {
	return wire.Opts{Rooms: t.rooms, Except: t.except}
}

// broadcastOpts is the opts object of a broadcast in the cluster protocol,
// with the flags that were set.
func (t target) broadcastOpts() wire.Opts {
	o := t.targetOpts()
	for _, f := range t.flags {
		switch f.Name {
		case "volatile":
			o.Flags.Volatile = f.Value
		case "compress":
			c := f.Value
			o.Flags.Compress = &c
		}
	}
	return o
}

// addDistinct appends to dst the elements of add that it does not hold yet,
// keeping the order of first appearance.
func addDistinct(dst, add []string) []string {
	for _, r := range add {
		if !slices.Contains(dst, r) {
			dst = append(dst, r)
		}
	}
	return dst
}

// eventData checks an event for Emit and returns its packet data, the event
// name followed by the normalized arguments.
func eventData(ev string, args []any) ([]any, error) {
	if reservedEvents[ev] {
		return nil, fmt.Errorf("%w: %q", ErrReservedEvent, ev)
	}
	if hasAck(args) {
		return nil, ErrAckNotSupported
	}
	data, err := wire.NormalizeArgs(args)
	if err != nil {
		return nil, fmt.Errorf("emitter: %q: %w", ev, err)
	}
	return append([]any{ev}, data...), nil
}

// serverSideArgs checks the arguments of ServerSideEmit and returns them
// normalized.
func serverSideArgs(args []any) ([]any, error) {
	if len(args) == 0 {
		return nil, ErrNoEventName
	}
	if _, ok := args[0].(string); !ok {
		return nil, ErrNoEventName
	}
	if hasAck(args) {
		return nil, ErrAckNotSupported
	}
	data, err := wire.NormalizeArgs(args)
	if err != nil {
		return nil, fmt.Errorf("emitter: %w", err)
	}
	return data, nil
}

// hasAck reports whether the last argument is a function, which Socket.IO
// takes as an acknowledgement callback.
func hasAck(args []any) bool {
	if len(args) == 0 || args[len(args)-1] == nil {
		return false
	}
	return reflect.TypeOf(args[len(args)-1]).Kind() == reflect.Func
}
