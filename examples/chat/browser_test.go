//go:build browser

// The browser test drives the chat page in a real headless Chromium. It needs
// Node.js, the npm packages of interop/ and Chromium, so it is only built with
// the browser tag:
//
//	apt-get install -y chromium nodejs npm
//	(cd interop && npm ci)
//	go test -tags browser -run Browser -v ./examples/chat/
//
// CHROMIUM_PATH names another Chromium than /usr/bin/chromium.

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// defaultChromium is Debian's Chromium, from `apt-get install chromium`.
const defaultChromium = "/usr/bin/chromium"

// TestBrowserChat starts a two-instance cluster whose pages load the
// Socket.IO browser client from interop/node_modules, then runs
// interop/browser-test.js, which opens each instance's page in headless
// Chromium and checks that a message typed on one page shows up on the other,
// in both directions.
func TestBrowserChat(t *testing.T) {
	runBrowserTest(t, config{Instances: 2})
}

// TestBrowserChatRecovery does the same with -adapter streams (connection
// state recovery, on the embedded miniredis), then runs the script's
// --recovery case: the page on instance 0 drops its connection, the page on
// instance 1 sends three messages meanwhile, and the first page reconnects
// and shows them, marked recovered.
func TestBrowserChatRecovery(t *testing.T) {
	runBrowserTest(t, config{Instances: 2, Adapter: adapterStreams}, "--recovery")
}

// runBrowserTest starts the chat cluster of cfg and runs
// interop/browser-test.js with args and the URLs of its first two instances.
func runBrowserTest(t *testing.T, cfg config, args ...string) {
	root := repoRoot(t)
	interop := filepath.Join(root, "interop")
	script := filepath.Join(interop, "browser-test.js")
	clientJS := filepath.Join(interop, "node_modules", "socket.io-client", "dist", "socket.io.min.js")

	// Missing tools are a failure, not a skip: whoever runs -tags browser
	// asked for this test.
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found in PATH (%v): install Node.js 18 or later (apt-get install -y nodejs npm), then run npm ci in interop/", err)
	}
	for _, f := range []string{
		clientJS,
		filepath.Join(interop, "node_modules", "puppeteer-core", "package.json"),
	} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: the npm packages of interop/ are missing; run npm ci in interop/ (cd %s && npm ci)", err, interop)
		}
	}
	chromium := os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = defaultChromium
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%v: install chromium (apt-get update && apt-get install -y chromium), or set CHROMIUM_PATH", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg.ClientJS = clientJS
	urls := startCluster(t, ctx, cfg)

	// The script has its own 45 s deadline, and kills the browser when it
	// passes. This one is a backstop: SIGINT makes puppeteer kill the
	// browser before node exits; SIGKILL follows 10 s later.
	runCtx, stop := context.WithTimeout(ctx, 60*time.Second)
	defer stop()
	cmd := exec.CommandContext(runCtx, node, append(append([]string{script}, args...), urls[0], urls[1])...)
	cmd.Dir = root
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	// The browser profile goes under TMPDIR; pointing that at a test
	// directory means nothing is left behind even if node is killed.
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir(), "CHROMIUM_PATH="+chromium, "BROWSER_TEST_TIMEOUT_MS=45000")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out

	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start).Round(time.Millisecond)
	if err != nil {
		why := err.Error()
		if errors.Is(runCtx.Err(), context.DeadlineExceeded) {
			why = "it did not finish within 60s and was stopped (" + why + ")"
		}
		t.Fatalf("node %s %s %s failed after %s: %s\n--- output ---\n%s",
			filepath.Base(script), urls[0], urls[1], elapsed, why, strings.TrimRight(out.String(), "\n"))
	}
	t.Logf("browser check passed in %s:\n%s", elapsed, strings.TrimRight(out.String(), "\n"))
}

// repoRoot returns the root of the repository: the closest directory above
// the test's working directory (examples/chat) that holds go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod found above the working directory")
		}
		dir = parent
	}
}
