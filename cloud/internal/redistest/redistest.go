// Package redistest runs the Redis servers the cloud module's tests talk
// to: a real redis-server (Debian's package, which .ci/run installs) on a
// loopback port, and a TCP proxy in front of any server that adds latency
// or stops answering, so that the tests inject delays and timeouts in the
// network, not in a mock.
package redistest

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

// startupLimit bounds how long a redis-server may take to answer its first
// PING. It is no timing assertion: a server that misses it is broken.
const startupLimit = 20 * time.Second

// Binary returns the path of redis-server. Without it the test is skipped,
// except in CI (CI set), which installs it (.ci/run), so that there the
// Redis tests always run: as the browser tests treat a missing Chromium.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server not found: install the Debian package redis-server (.ci/run does) to run the tests against a real Redis"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// Start starts a redis-server of its own for the test, on a free loopback
// port, with no persistence and its files in a temporary directory, and
// stops it when the test ends. It returns the server's address.
func Start(t testing.TB) string {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	// Another process may take the free port between the probe and the
	// server's bind: then try another port.
	for range 3 {
		addr, err := start(t, bin)
		if err == nil {
			return addr
		}
		lastErr = err
	}
	t.Fatalf("redistest: redis-server did not start: %v", lastErr)
	return ""
}

func start(t testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", logPath)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(startupLimit):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startupLimit)
	for {
		if err := ping(addr); err == nil {
			break
		} else if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("no PONG from %s: %v; log: %s", addr, err, tail(logPath))
		}
		select {
		case err := <-exited:
			exited <- err
			stop()
			return "", fmt.Errorf("redis-server exited: %v; log: %s", err, tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Cleanup(stop)
	return addr, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ping sends PING in the inline protocol and waits for +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("answered %q", line)
	}
	return nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
