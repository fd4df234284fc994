package main

import (
	"net"
	"sync"
	"time"
)

// linkProxy is a TCP proxy on loopback between the soak's instances and
// their Redis. Freeze stops forwarding in both directions, on every
// connection, new ones included, without closing anything: to the
// instances, Redis looks alive but answers nothing, as behind a stalled
// network link. Thaw forwards again, starting with what was held back.
type linkProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	open   chan struct{} // closed while forwarding; replaced by Freeze
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// startProxy listens on a free loopback port and forwards to target.
func startProxy(target string) (*linkProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &linkProxy{ln: ln, target: target, open: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.open)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// addr is the host:port the instances connect to.
func (p *linkProxy) addr() string { return p.ln.Addr().String() }

// Freeze stops forwarding until Thaw.
func (p *linkProxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen = true
		p.open = make(chan struct{})
	}
}

// Thaw forwards again.
func (p *linkProxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.open)
	}
}

// gate returns a channel closed while the link forwards.
func (p *linkProxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// Close stops the proxy and closes every connection.
func (p *linkProxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	if p.frozen {
		p.frozen = false
		close(p.open)
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *linkProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *linkProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *linkProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			up, err := net.DialTimeout("tcp", p.target, time.Second)
			if err != nil {
				return // Redis is down: the instance sees its connection close
			}
			if !p.track(up) {
				return
			}
			defer p.untrack(up)
			done := make(chan struct{}, 2)
			go func() { p.pipe(up, c); done <- struct{}{} }()
			go func() { p.pipe(c, up); done <- struct{}{} }()
			<-done // one side ended: close both (the defers), which ends the other
		}()
	}
}

// pipe copies src to dst, holding each chunk while the link is frozen.
func (p *linkProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a closed connection
		}
	}
}
