package main

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zishang520/socket.io/v2/socket"
)

// The -serve side of the room subscription cost (-roomcost) and of the soak
// (-soak).

// join makes the first local socket join req.Count rooms, req.PerCall per
// Socket.Join call, from req.Workers goroutines, and answers when every call
// has returned (each waits for its subscriptions, up to JoinTimeout).
func (s *server) join(req joinRequest) (joinReply, error) {
	var rep joinReply
	if req.Count <= 0 {
		return rep, errors.New("count must be positive")
	}
	var sock *socket.Socket
	s.nsp.Sockets().Range(func(_ socket.SocketId, so *socket.Socket) bool {
		sock = so
		return false
	})
	if sock == nil {
		return rep, errors.New("no local socket to join rooms with")
	}
	per, workers := max(req.PerCall, 1), max(req.Workers, 1)
	calls := make(chan []socket.Room, workers)
	var wg sync.WaitGroup
	rep.StartNanos = time.Now().UnixNano()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rooms := range calls {
				sock.Join(rooms...)
			}
		}()
	}
	for i := 0; i < req.Count; i += per {
		rooms := make([]socket.Room, 0, per)
		for j := i; j < min(i+per, req.Count); j++ {
			rooms = append(rooms, socket.Room(req.Prefix+strconv.Itoa(j)))
		}
		calls <- rooms
	}
	close(calls)
	wg.Wait()
	rep.EndNanos = time.Now().UnixNano()
	return rep, nil
}

// soak starts the soak emitter in the background: req.Rate messages per
// second to req.Room for req.DurationMS, each emit(event, seq, unixNanos,
// sender, pad), on a fixed schedule (a late tick sends what is due at once).
func (s *server) soak(req soakRequest) (soakReply, error) {
	if req.Rate <= 0 || req.DurationMS <= 0 {
		return soakReply{}, errors.New("soak needs rate > 0 and duration_ms > 0")
	}
	s.soakMu.Lock()
	defer s.soakMu.Unlock()
	if s.soakOn {
		return soakReply{}, errors.New("a soak emitter is already running")
	}
	s.soakOn = true
	interval := time.Second / time.Duration(req.Rate)
	start := time.Now().Add(10 * time.Millisecond)
	n := int(time.Duration(req.DurationMS) * time.Millisecond / interval)
	room, pad := socket.Room(req.Room), strings.Repeat("x", max(req.Payload, 0))
	go func() {
		defer func() {
			s.soakMu.Lock()
			s.soakOn = false
			s.soakMu.Unlock()
		}()
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			s.io.To(room).Emit(req.Event, i, time.Now().UnixNano(), req.Sender, pad)
			s.soakSent.Add(1)
		}
	}()
	return soakReply{StartNanos: start.UnixNano(), IntervalNanos: int64(interval)}, nil
}
