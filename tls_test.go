package redisadapter

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// These tests run the adapter over TLS against a redis-server whose
// certificate is signed by a private CA generated at test time. The server
// has no plain-text port (--port 0), and certificate verification stays on in
// every client.

// tlsBroadcastCrosses connects one client to each of the two servers of c and
// checks that a broadcast emitted on server 0 reaches the client of server 1,
// and that both Builders are connected.
func tlsBroadcastCrosses(t *testing.T, c *cluster, event string) {
	t.Helper()
	_, _ = c.connect(0, "/")
	cl1, _ := c.connect(1, "/")
	c.nodes[0].io.Emit(event, "over tls")
	evs := waitEvents(t, cl1, event, 1)
	if got := evs[0].Args; len(got) != 1 || got[0] != "over tls" {
		t.Fatalf("client of server 1 got %v, want [over tls]", got)
	}
	for i, nd := range c.nodes {
		if st := nd.b.State(); st != StateConnected {
			t.Fatalf("server %d: state %v, want connected", i, st)
		}
	}
}

// TestTLSClusterWithPrivateCA: two servers, each with its own go-redis
// client verifying the server certificate against the private CA
// (TLSConfig{RootCAs, ServerName}), form a cluster: a broadcast crosses
// instances.
func TestTLSClusterWithPrivateCA(t *testing.T) {
	verifyNoLeaks(t)
	pki := newTestPKI(t)
	srv := startTLSRedis(t, pki)
	r := &testRedis{opts: &redis.Options{
		Addr:      srv.Addr(),
		TLSConfig: &tls.Config{RootCAs: pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
	}}
	c := newClusterOn(t, r, 2, nil)
	tlsBroadcastCrosses(t, c, "tls-options")
}

// TestTLSParseURL: the documented way, redis.ParseURL("rediss://…") and the
// private CA set on the parsed options' TLSConfig, forms a cluster. ParseURL
// sets ServerName to the URL's host (here an IP address, which the server
// certificate carries as a SAN).
func TestTLSParseURL(t *testing.T) {
	verifyNoLeaks(t)
	pki := newTestPKI(t)
	srv := startTLSRedis(t, pki)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig == nil {
		t.Fatalf("ParseURL(%q) returned no TLSConfig", srv.URL())
	}
	if opts.TLSConfig.InsecureSkipVerify {
		t.Fatal("ParseURL turned certificate verification off")
	}
	opts.TLSConfig.RootCAs = pki.pool
	c := newClusterOn(t, &testRedis{opts: opts}, 2, nil)
	tlsBroadcastCrosses(t, c, "tls-url")
}

// TestTLSUntrustedCertificateDegrades: a client that does not trust the
// private CA (system roots, or another CA) cannot connect: the adapter goes
// degraded with a certificate error, never connected, and the server keeps
// delivering to its own clients. This proves the other TLS tests really
// verify the certificate.
func TestTLSUntrustedCertificateDegrades(t *testing.T) {
	pki := newTestPKI(t)
	srv := startTLSRedis(t, pki)
	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
	}{
		{"system roots", nil},
		{"another CA", foreignCAPool(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			verifyNoLeaks(t)
			rdb := redis.NewClient(&redis.Options{
				Addr:       srv.Addr(),
				TLSConfig:  &tls.Config{RootCAs: tc.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12},
				MaxRetries: -1,
			})
			t.Cleanup(func() { _ = rdb.Close() })
			var mu sync.Mutex
			var errs []error
			var connected bool
			b := New(rdb, &Options{Key: uniqueKey(t), OnStateChange: func(_, to State, err error) {
				mu.Lock()
				defer mu.Unlock()
				if to == StateConnected {
					connected = true
				}
				if err != nil {
					errs = append(errs, err)
				}
			}})
			t.Cleanup(func() { _ = b.Close() })
			io, cl := singleServer(t, b)
			t.Cleanup(func() { io.Close(nil) })

			waitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
			waitFor(t, "a state change carrying the certificate error", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(errs) > 0
			})
			mu.Lock()
			err := errs[0]
			wasConnected := connected
			mu.Unlock()
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) && !strings.Contains(err.Error(), "certificate signed by unknown authority") {
				t.Fatalf("degraded with %v, want a certificate verification error", err)
			}
			t.Logf("degraded as expected: %v", err)

			io.Emit("local", "still served")
			waitEvents(t, cl, "local", 1)
			if wasConnected || b.State() == StateConnected {
				t.Fatal("the adapter reported connected through an unverified TLS link")
			}
			if st := b.Stats(); st.Published != 0 {
				t.Fatalf("published %d frames through an unverified TLS link", st.Published)
			}
		})
	}
}
