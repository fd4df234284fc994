package redisadapter

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testPKI is a private certificate authority and one server certificate
// (for localhost and 127.0.0.1) signed by it, generated at test time: no key
// is ever committed. The PEM files live in a t.TempDir().
type testPKI struct {
	pool     *x509.CertPool // holds the CA only
	caFile   string
	certFile string
	keyFile  string
}

// newTestPKI generates a CA and a server certificate signed by it.
func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert, caDER := newCA(t, "redisadapter test CA")

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{
		pool:     x509.NewCertPool(),
		caFile:   filepath.Join(dir, "ca.crt"),
		certFile: filepath.Join(dir, "redis.crt"),
		keyFile:  filepath.Join(dir, "redis.key"),
	}
	p.pool.AddCert(caCert)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	writePEM(t, p.certFile, "CERTIFICATE", srvDER)
	writePEM(t, p.keyFile, "PRIVATE KEY", keyDER)
	return p
}

// newCA returns a self-signed CA key and certificate.
func newCA(t testing.TB, name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

// foreignCAPool returns a pool holding a freshly generated CA that signed
// nothing the test servers use.
func foreignCAPool(t testing.TB) *x509.CertPool {
	t.Helper()
	_, cert, _ := newCA(t, "some other CA")
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsRedis is a redis-server that listens on a TLS port only (--port 0).
// redisProc cannot be reused as is: its readiness check speaks plain text.
type tlsRedis struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startTLSRedis starts redis-server with TLS on a free loopback port, the
// plain-text port disabled, and client certificates not required. It fails
// the test with redis-server's own words when the binary was built without
// TLS support.
func startTLSRedis(t testing.TB, pki *testPKI) *tlsRedis {
	t.Helper()
	requireRedisServer(t)
	p := &tlsRedis{port: freePort(t), dir: t.TempDir(), done: make(chan struct{})}
	args := []string{"--port", "0", "--tls-port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--tls-cert-file", pki.certFile, "--tls-key-file", pki.keyFile, "--tls-ca-cert-file", pki.caFile,
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", p.dir,
		"--daemonize", "no", "--loglevel", "notice"}
	logPath := filepath.Join(p.dir, "redis.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command("redis-server", args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(waitTimeout)
	for !p.ping(pki) {
		select {
		case <-p.done:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("redis-server exited at start; a build without TLS support rejects the --tls-* options. "+
				"`redis-server --version`: %s; log:\n%s", redisVersion(), out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("redis-server with TLS never answered PING over TLS; log: %s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// redisVersion returns the first line of `redis-server --version`.
func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").CombinedOutput()
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(out))
}

// ping sends PING over a verified TLS connection.
func (p *tlsRedis) ping(pki *testPKI) bool {
	d := &net.Dialer{Timeout: 500 * time.Millisecond}
	c, err := tls.DialWithDialer(d, "tcp", p.Addr(), &tls.Config{RootCAs: pki.pool, ServerName: "localhost"})
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Addr returns the TLS endpoint, host:port.
func (p *tlsRedis) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// URL returns a rediss:// URL for the server.
func (p *tlsRedis) URL() string { return fmt.Sprintf("rediss://%s/0", p.Addr()) }

func (p *tlsRedis) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}
