package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process of the benchmark: a server instance or a
// redis-server.
type proc struct {
	name string
	cmd  *exec.Cmd
	port int
	done chan struct{}
}

// startServerProc starts a server process that prints "LISTENING <port>" on
// stdout once it accepts connections, and waits for that line. Its stderr, and
// its stdout after that line, go to logw with a prefix.
func startServerProc(name, path string, args, env []string, dir string, logw io.Writer) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.SysProcAttr = procAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &prefixWriter{prefix: "[" + name + "] ", w: logw}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	portc := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			line := sc.Text()
			if !found {
				if rest, ok := strings.CutPrefix(line, "LISTENING "); ok {
					if port, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
						found = true
						portc <- port
						continue
					}
				}
			}
			fmt.Fprintf(logw, "[%s] %s\n", name, line)
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.port = <-portc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before listening (%v)", name, cmd.ProcessState)
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s did not print LISTENING within 30s", name)
	}
}

// addr is the loopback host:port the process listens on.
func (p *proc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// stop asks the process to stop (SIGTERM), and kills it after 3 seconds.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startRedisServer starts a private redis-server on a free loopback port,
// without persistence, and waits until it answers PING. extra are more
// command-line options.
func startRedisServer(path string, logw io.Writer, extra ...string) (*proc, string, error) {
	dir, err := os.MkdirTemp("", "redisadapter-bench-redis-")
	if err != nil {
		return nil, "", err
	}
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		// Its log goes to a file, named in the error if it does not start.
		logFile := filepath.Join(dir, "redis.log")
		cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", logFile)
		cmd.Args = append(cmd.Args, extra...)
		cmd.SysProcAttr = procAttr()
		cmd.Stdout = &prefixWriter{prefix: "[redis-server] ", w: logw}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			return nil, "", fmt.Errorf("start redis-server: %w", err)
		}
		p := &proc{name: "redis-server", cmd: cmd, port: port, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(p.done) }()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-p.done:
				deadline = time.Time{} // exited: the port was taken meanwhile; try another
				continue
			default:
			}
			if redisPing(p.addr()) {
				go func() { <-p.done; os.RemoveAll(dir) }()
				return p, "redis://" + p.addr() + "/0", nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.stop()
	}
	return nil, "", fmt.Errorf("redis-server did not start (see %s)", filepath.Join(dir, "redis.log"))
}

func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
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

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// findInterop returns the interop directory of the repository (the one that
// holds bench-server.js), searched from the working directory upwards, then
// from where this source file was compiled.
func findInterop() string {
	if dir, err := os.Getwd(); err == nil {
		if d := findInteropFrom(dir); d != "" {
			return d
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		return findInteropFrom(filepath.Dir(file))
	}
	return ""
}

func findInteropFrom(dir string) string {
	for {
		if raw, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(raw, []byte("module github.com/d38ad898/redisadapter\n")) {
			return filepath.Join(dir, "interop")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// nodeAvailable reports whether the Node comparison can run: node in PATH,
// and interop/node_modules and interop/bench-server.js present.
func nodeAvailable(interop string) (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("node is not in PATH")
	}
	if interop == "" {
		return "", errors.New("cannot find the repository's interop directory (run from inside the repository)")
	}
	for _, p := range []string{"node_modules/socket.io", "node_modules/@socket.io/redis-adapter", "node_modules/@socket.io/redis-streams-adapter", "node_modules/redis", "bench-server.js"} {
		if _, err := os.Stat(filepath.Join(interop, p)); err != nil {
			return "", fmt.Errorf("%s is missing (npm ci in %s)", filepath.Join(interop, p), interop)
		}
	}
	return node, nil
}

// prefixWriter writes each line it receives to w, prefixed.
type prefixWriter struct {
	prefix string
	w      io.Writer
	buf    []byte
}

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(pw.w, "%s%s\n", pw.prefix, pw.buf[:i])
		pw.buf = pw.buf[i+1:]
	}
	return len(b), nil
}

// ctxSleep sleeps for d or until ctx is done.
func ctxSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
