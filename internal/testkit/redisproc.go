package testkit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RequireRedisServer returns the path of redis-server. Without it the test
// is skipped on a developer machine, and fails under CI (CI=true), where the
// binary is a required part.
func RequireRedisServer(t testing.TB) string {
	t.Helper()
	return requireBinary(t, "redis-server")
}

// RequireRedisCli returns the path of redis-cli; without it the test is
// skipped, except under CI (CI=true), where it fails.
func RequireRedisCli(t testing.TB) string {
	t.Helper()
	return requireBinary(t, "redis-cli")
}

func requireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed; this test needs a real server process", name)
	}
	return path
}

// RedisVersion returns the first line of `redis-server --version`, or the
// error that running it gave.
func RedisVersion() string {
	out, err := exec.Command("redis-server", "--version").CombinedOutput()
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(string(out))
}

// RedisProc is a redis-server process a test owns: configured on a free
// loopback port, started, killed, frozen or restarted by the test, and
// killed at its end. Tests never stop a Redis they did not start. Its
// methods are safe for concurrent use, but Start, Restart, Kill and Stop are
// meant to be called from the test's goroutine.
type RedisProc struct {
	t     testing.TB
	port  int
	dir   string
	args  []string
	ready func() bool // readiness probe; plain-text PING by default

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  string        // path of the current log file
}

// NewRedisProc configures a redis-server on a free loopback port with extra
// configuration arguments (such as "--client-output-buffer-limit",
// "pubsub 1kb 0 0"), without starting it: the address is known before the
// server runs (a test of "Redis down at start" starts it later with Start).
// The process, once started, is killed at the end of the test.
func NewRedisProc(t testing.TB, extra ...string) *RedisProc {
	t.Helper()
	RequireRedisServer(t)
	p := &RedisProc{t: t, port: FreePort(t), dir: t.TempDir()}
	p.args = append([]string{"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", p.dir, "--daemonize", "no", "--loglevel", "notice"}, extra...)
	t.Cleanup(p.kill)
	return p
}

// newRawProc configures a redis-server with exactly args (for a sentinel,
// whose configuration file must come first, or a TLS-only server).
func newRawProc(t testing.TB, port int, dir string, args []string) *RedisProc {
	t.Helper()
	RequireRedisServer(t)
	p := &RedisProc{t: t, port: port, dir: dir, args: args}
	t.Cleanup(p.kill)
	return p
}

// StartRedis starts a redis-server on a free loopback port with extra
// configuration arguments and waits until it answers PING. It is killed at
// the end of the test.
func StartRedis(t testing.TB, extra ...string) *RedisProc {
	t.Helper()
	p := NewRedisProc(t, extra...)
	p.Start()
	return p
}

// Start starts the process and waits until it answers. It fails the test,
// with the server's log, when the process exits first or never answers.
func (p *RedisProc) Start() {
	p.t.Helper()
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		p.t.Fatalf("redis-server on %s is already running", p.Addr())
	}
	p.log = filepath.Join(p.dir, fmt.Sprintf("redis-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(p.log)
	if err != nil {
		p.mu.Unlock()
		p.t.Fatal(err)
	}
	cmd := exec.Command("redis-server", p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		_ = logf.Close()
		p.t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	ready := p.ready
	if ready == nil {
		ready = p.Ping
	}
	deadline := time.Now().Add(WaitTimeout)
	for !ready() {
		select {
		case <-done:
			p.mu.Lock()
			p.cmd = nil
			p.mu.Unlock()
			p.t.Fatalf("redis-server %v exited at start (%s); log:\n%s", p.args, RedisVersion(), p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("redis-server on %s never answered; log:\n%s", p.Addr(), p.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Restart starts the server again on the same port with the same
// arguments, killing it first if it still runs. Its data is not kept.
func (p *RedisProc) Restart() {
	p.t.Helper()
	p.kill()
	p.Start()
}

// Kill sends SIGKILL and waits for the process to exit: connections are
// reset at once, as when a machine dies. It does nothing when the server is
// not running.
func (p *RedisProc) Kill() { p.kill() }

func (p *RedisProc) kill() { p.signalAndWait(syscall.SIGKILL, 0) }

// Stop asks the server to shut down (SIGTERM), as an operator would, and
// waits for it to exit; after WaitTimeout it kills it.
func (p *RedisProc) Stop() { p.signalAndWait(syscall.SIGTERM, WaitTimeout) }

func (p *RedisProc) signalAndWait(sig syscall.Signal, patience time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if sig == syscall.SIGTERM {
		// A stopped (suspended) process handles SIGTERM only once resumed.
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	if patience > 0 {
		select {
		case <-done:
			return
		case <-time.After(patience):
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	<-done
}

// Suspend stops the process (SIGSTOP): the kernel still completes TCP
// handshakes and buffers what clients send, but nothing is read or answered
// until Resume. It is the most complete freeze: even the replies to
// commands already read wait.
func (p *RedisProc) Suspend() { p.signal(syscall.SIGSTOP) }

// Resume continues a process stopped by Suspend (SIGCONT).
func (p *RedisProc) Resume() { p.signal(syscall.SIGCONT) }

func (p *RedisProc) signal(sig syscall.Signal) {
	p.t.Helper()
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		p.t.Fatalf("redis-server on %s is not running", p.Addr())
	}
	if err := cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to redis-server: %v", sig, err)
	}
}

// Pause runs CLIENT PAUSE d ALL: for d, Redis accepts connections and
// commands but answers none of them; they all run when the pause ends.
func (p *RedisProc) Pause(t testing.TB, d time.Duration) {
	t.Helper()
	c := redis.NewClient(p.Options())
	defer c.Close()
	if err := c.Do(context.Background(), "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
}

// DebugSleep runs DEBUG SLEEP d in the background: the whole server stops
// for d, and commands sent meanwhile all run when it wakes up. The server
// must have been started with "--enable-debug-command", "yes" (Redis 7). The
// returned channel receives the command's result once the sleep is over.
func (p *RedisProc) DebugSleep(d time.Duration) <-chan error {
	res := make(chan error, 1)
	o := p.Options()
	o.ReadTimeout = d + WaitTimeout
	go func() {
		c := redis.NewClient(o)
		defer c.Close()
		res <- c.Do(context.Background(), "DEBUG", "SLEEP", d.Seconds()).Err()
	}()
	return res
}

// Ping sends PING over a new raw connection and reports whether PONG came
// back within half a second.
func (p *RedisProc) Ping() bool {
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

// Running reports whether the process was started and not killed or
// stopped since (a suspended process is running).
func (p *RedisProc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Pid returns the process id, or 0 when the server is not running.
func (p *RedisProc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Addr returns the server's address, 127.0.0.1:port.
func (p *RedisProc) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// Port returns the server's TCP port.
func (p *RedisProc) Port() int { return p.port }

// URL returns a redis:// URL of the server's database 0.
func (p *RedisProc) URL() string { return "redis://" + p.Addr() + "/0" }

// Dir returns the server's working directory, which holds its logs
// (redis-*.log).
func (p *RedisProc) Dir() string { return p.dir }

// Options returns client options for the server, which the caller may
// change before creating a client.
func (p *RedisProc) Options() *redis.Options { return &redis.Options{Addr: p.Addr()} }

// Client returns a new client of the server, closed at the end of the test.
func (p *RedisProc) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(p.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Logs returns the content of the current (or last) log file.
func (p *RedisProc) Logs() string {
	p.mu.Lock()
	path := p.log
	p.mu.Unlock()
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// DumpRedisLogs logs every redis-server log (redis-*.log) found in dirs, to
// tell why a server did not start or a failover did not happen. Call it
// before the t.TempDir() cleanups remove the directories.
func DumpRedisLogs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		logs, _ := filepath.Glob(filepath.Join(dir, "redis-*.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				t.Logf("---- %s\n%s", l, b)
			}
		}
	}
}
