package redisadapter

import (
	"bufio"
	"fmt"
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

// redisProc is a redis-server process a test owns: started on a free loopback
// port, killed or restarted by the test, and stopped at its end. Tests never
// touch a Redis they did not start.
type redisProc struct {
	t    testing.TB
	port int
	args []string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// requireRedisServer returns the path of redis-server. Without it the test
// is skipped on a developer machine, and fails under CI (CI=true), where the
// binary is a required part.
func requireRedisServer(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is required in CI: %v", err)
		}
		t.Skip("redis-server not installed; these fault tests need a real server process")
	}
	return path
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRedis starts redis-server with extra config arguments (such as
// "--client-output-buffer-limit", "pubsub 1kb 0 0").
func startRedis(t testing.TB, extra ...string) *redisProc {
	t.Helper()
	requireRedisServer(t)
	p := &redisProc{t: t, port: freePort(t), dir: t.TempDir()}
	p.args = append([]string{"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", p.dir, "--daemonize", "no", "--loglevel", "warning"}, extra...)
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *redisProc) start() {
	p.t.Helper()
	p.cmd = exec.Command("redis-server", p.args...)
	logf, err := os.Create(filepath.Join(p.dir, fmt.Sprintf("redis-%d.log", time.Now().UnixNano())))
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start redis-server: %v", err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}(p.cmd, p.done)
	waitFor(p.t, "redis-server answers PING", func() bool { return p.ping() })
}

// ping sends PING over a raw connection.
func (p *redisProc) ping() bool {
	c, err := net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Addr returns host:port.
func (p *redisProc) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// URL returns a redis:// URL for the server.
func (p *redisProc) URL() string { return "redis://" + p.Addr() + "/0" }

// Kill sends SIGKILL and waits for the process to exit.
func (p *redisProc) Kill() {
	p.t.Helper()
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Restart starts the server again on the same port with the same arguments.
func (p *redisProc) Restart() {
	p.t.Helper()
	p.start()
}

func (p *redisProc) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}
