package testkit

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
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// PKI is a private certificate authority and one server certificate (for
// localhost and 127.0.0.1) signed by it, generated at test time: no key is
// ever committed. The PEM files live in a t.TempDir().
type PKI struct {
	// Pool holds the CA only.
	Pool *x509.CertPool
	// CAFile, CertFile and KeyFile are the PEM files of the CA certificate,
	// the server certificate and the server's private key.
	CAFile, CertFile, KeyFile string
}

// NewPKI generates a CA and a server certificate signed by it, valid for a
// day.
func NewPKI(t testing.TB) *PKI {
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
	p := &PKI{
		Pool:     x509.NewCertPool(),
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "redis.crt"),
		KeyFile:  filepath.Join(dir, "redis.key"),
	}
	p.Pool.AddCert(caCert)
	writePEM(t, p.CAFile, "CERTIFICATE", caDER)
	writePEM(t, p.CertFile, "CERTIFICATE", srvDER)
	writePEM(t, p.KeyFile, "PRIVATE KEY", keyDER)
	return p
}

// ClientConfig returns a verifying TLS client configuration that trusts the
// CA only, for server name localhost.
func (p *PKI) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// ForeignCAPool returns a pool holding a freshly generated CA that signed
// nothing the test servers use.
func ForeignCAPool(t testing.TB) *x509.CertPool {
	t.Helper()
	_, cert, _ := newCA(t, "some other CA")
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
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

// TLSRedis is a redis-server that listens on a TLS port only (the plain-text
// port is disabled), with the server certificate of a PKI.
type TLSRedis struct {
	proc *RedisProc
	pki  *PKI
}

// StartTLSRedis starts redis-server with TLS on a free loopback port, the
// plain-text port disabled, and client certificates not required; it waits
// until the server answers PING over a verified TLS connection. It fails the
// test with redis-server's own words when the binary was built without TLS
// support. The server is killed at the end of the test.
func StartTLSRedis(t testing.TB, pki *PKI) *TLSRedis {
	t.Helper()
	port, dir := FreePort(t), t.TempDir()
	args := []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", pki.CertFile, "--tls-key-file", pki.KeyFile, "--tls-ca-cert-file", pki.CAFile,
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "notice"}
	p := &TLSRedis{proc: newRawProc(t, port, dir, args), pki: pki}
	p.proc.ready = func() bool { return tlsPing(p.Addr(), pki) }
	p.proc.Start()
	return p
}

// Addr returns the TLS endpoint, 127.0.0.1:port.
func (p *TLSRedis) Addr() string { return p.proc.Addr() }

// URL returns a rediss:// URL of the server's database 0.
func (p *TLSRedis) URL() string { return fmt.Sprintf("rediss://%s/0", p.Addr()) }

// Options returns client options for the server that verify its
// certificate against the PKI's CA (PKI.ClientConfig).
func (p *TLSRedis) Options() *redis.Options {
	return &redis.Options{Addr: p.Addr(), TLSConfig: p.pki.ClientConfig()}
}

// Client returns a new verifying TLS client of the server, closed at the end
// of the test.
func (p *TLSRedis) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(p.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill sends SIGKILL to the server and waits for it to exit.
func (p *TLSRedis) Kill() { p.proc.Kill() }

// Logs returns the server's log.
func (p *TLSRedis) Logs() string { return p.proc.Logs() }

// tlsPing sends PING over a verified TLS connection.
func tlsPing(addr string, pki *PKI) bool {
	d := &net.Dialer{Timeout: 500 * time.Millisecond}
	c, err := tls.DialWithDialer(d, "tcp", addr, pki.ClientConfig())
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
