package testkit

import (
	"context"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a target address, which a
// test controls to inject network faults between a client and a server
// (typically go-redis and Redis): Freeze stops forwarding while every
// connection stays open, Thaw resumes it, Cut resets every current
// connection. Its methods are safe for concurrent use. The proxy, its
// connections and its goroutines are closed at the end of the test.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu     sync.Mutex
	frozen bool
	thawed chan struct{} // closed while not frozen
	conns  map[*proxyConn]struct{}
	closed bool
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	client net.Conn
	ctx    context.Context // done when the pair is closed
	cancel context.CancelFunc

	mu     sync.Mutex
	server net.Conn // nil until dialed
}

// NewProxy starts a proxy on a free loopback port that forwards every
// connection to target.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	thawed := make(chan struct{})
	close(thawed)
	p := &Proxy{target: target, ln: ln, thawed: thawed, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address, which clients dial instead of the
// target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Freeze stops forwarding in both directions. Every connection stays open
// and new connections are still accepted (the kernel completes their
// handshake), but the proxy forwards nothing and does not even connect new
// ones to the target: to a client, the server is frozen. What the peers send
// meanwhile is held (one chunk in the proxy, the rest in the kernel's socket
// buffers, which then fill up and block the sender, as with a frozen
// server), not dropped. A write to a peer already under way when Freeze is
// called completes.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen = true
		p.thawed = make(chan struct{})
	}
}

// Thaw resumes forwarding: the data held since Freeze flows, in order, and
// connections accepted while frozen are connected to the target.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thawed)
	}
}

// Frozen reports whether the proxy is frozen.
func (p *Proxy) Frozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

// Cut closes every current connection, on both sides: the client and the
// target see the connection closed, as when a network path is reset. New
// connections are accepted and forwarded as before (unless frozen).
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Conns returns the number of client connections open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines. It is idempotent, and runs at the end of the test.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		pc := &proxyConn{client: c, ctx: ctx, cancel: cancel}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pc.close()
			return
		}
		p.conns[pc] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(pc)
	}
}

// serve connects pc to the target once the proxy is thawed, then forwards
// both directions until either side closes or the pair is cut.
func (p *Proxy) serve(pc *proxyConn) {
	defer p.wg.Done()
	defer func() {
		pc.close()
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
	}()
	if !p.waitThawed(pc) {
		return
	}
	var d net.Dialer
	s, err := d.DialContext(pc.ctx, "tcp", p.target)
	if err != nil {
		return
	}
	pc.mu.Lock()
	if pc.ctx.Err() != nil {
		pc.mu.Unlock()
		_ = s.Close()
		return
	}
	pc.server = s
	pc.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pump(pc, s, pc.client)
	}()
	p.pump(pc, pc.client, s)
	<-done
}

// pump copies src to dst, holding each chunk while the proxy is frozen. It
// closes the pair when either side fails or ends.
func (p *Proxy) pump(pc *proxyConn, dst, src net.Conn) {
	defer pc.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitThawed(pc) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitThawed waits until the proxy is not frozen; it returns false when the
// pair was closed first.
func (p *Proxy) waitThawed(pc *proxyConn) bool {
	for {
		p.mu.Lock()
		ch, frozen := p.thawed, p.frozen
		p.mu.Unlock()
		if !frozen {
			return pc.ctx.Err() == nil
		}
		select {
		case <-ch:
		case <-pc.ctx.Done():
			return false
		}
	}
}

func (pc *proxyConn) close() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.cancel()
	_ = pc.client.Close()
	if pc.server != nil {
		_ = pc.server.Close()
	}
}
