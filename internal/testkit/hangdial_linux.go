package testkit

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// HangingDialAddr returns a loopback address where a TCP connect never
// completes: the SYN goes unanswered, and a dial ends only by its own
// timeout or context (as with a firewall that drops packets).
//
// How: a socket listens on 127.0.0.1 with a backlog of 0 and never accepts.
// Linux queues backlog+1 = 1 completed connection; HangingDialAddr fills the
// queue with its own connections, after which the kernel drops every SYN to
// the port (the listen-overflow path; net.ipv4.tcp_abort_on_overflow is 0 by
// default, otherwise it would answer with a reset) and the client keeps
// retransmitting its SYN. HangingDialAddr checks that a dial really hangs
// for 100ms before it returns, and fails the test otherwise. The socket and
// its connections are closed at the end of the test; a dial still hanging
// then gets a reset at its next SYN retransmission.
func HangingDialAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("hanging dial socket: %v", err)
	}
	var fillers []net.Conn
	t.Cleanup(func() {
		_ = syscall.Close(fd)
		for _, c := range fillers {
			_ = c.Close()
		}
	})
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("hanging dial bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("hanging dial listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("hanging dial getsockname: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue; the first dial that times out proves the port
	// hangs.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			fillers = append(fillers, c)
			if i >= 16 {
				t.Fatalf("connects to %s keep completing: the kernel does not drop SYNs on listen overflow here", addr)
			}
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return addr
		}
		t.Fatalf("connect to the hanging address %s failed at once: %v (net.ipv4.tcp_abort_on_overflow set?)", addr, err)
	}
}
