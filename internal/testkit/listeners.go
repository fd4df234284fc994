package testkit

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
)

// SilentListener returns the address of a loopback listener that accepts
// every TCP connection, reads and discards what it receives, and never
// writes a byte: a server that is up but never answers (a dial succeeds, a
// command times out). It and its connections are closed at the end of the
// test.
func SilentListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("silent listener: %v", err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = c.Close()
				return
			}
			conns[c] = struct{}{}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		closed = true
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// HangingDialer is a dialer for redis.Options.Dialer whose dials never
// complete: Dial blocks until its context is done, or until the end of the
// test. It stands for a network that drops connection attempts without the
// kernel's help (HangingDialAddr needs Linux), and shows what a custom
// dialer that ignores DialTimeout does: only the context bounds it.
type HangingDialer struct {
	ctx    context.Context // done at the end of the test
	cancel context.CancelFunc
}

// NewHangingDialer returns a HangingDialer whose pending dials are released
// (with an error) at the end of the test, so that no goroutine stays behind.
func NewHangingDialer(t testing.TB) *HangingDialer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &HangingDialer{ctx: ctx, cancel: cancel}
}

// Dial blocks until ctx is done (returning ctx.Err()) or the test ends
// (returning net.ErrClosed); it never returns a connection. Its signature is
// that of redis.Options.Dialer.
func (h *HangingDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	select {
	case <-ctx.Done():
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	case <-h.ctx.Done():
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.ErrClosed}
	}
}
