package main

// Process-level tests: the command is built and run as a separate process,
// killed and signalled as a user's terminal or system would, and driven
// over the service bridge by the real appengine/v2 client.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/gaesession/v2/internal/proctest"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// Bounds on waiting; they only stop a test that would otherwise hang.
const (
	processStart = 60 * time.Second
	processExit  = 60 * time.Second
)

// proc is a running aelocal process.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	port string
	out  *proctest.LockedBuffer
	done chan struct{}
	err  error // valid once done is closed
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// launch starts aelocal with args on a free port, without waiting for it.
// The binary is devappserver_test.go's.
func launch(t *testing.T, args ...string) *proc {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("signals and kill -9 are Unix")
	}
	p := &proc{t: t, port: freePort(t), out: &proctest.LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(aelocalBinary(t), append([]string{"-addr", "127.0.0.1:" + p.port}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	dieWithTest(p.cmd)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of aelocal on port %s:\n%s", p.port, p.out.String())
		}
	})
	return p
}

// startProc starts aelocal and waits until its status page answers. A process
// that lost its port to another one in between is started again.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	for attempt := 0; ; attempt++ {
		p := launch(t, args...)
		err := p.waitReady()
		if err == nil {
			return p
		}
		if attempt == 2 || !strings.Contains(p.out.String(), "address already in use") {
			t.Fatalf("aelocal did not start: %v\n%s", err, p.out.String())
		}
	}
}

func (p *proc) waitReady() error {
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(processStart)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		resp, err := c.Get("http://127.0.0.1:" + p.port + "/")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte("aelocal")) {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("no answer")
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(processExit):
		p.t.Fatalf("aelocal did not exit; output:\n%s", p.out.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// waitOutput waits until the process has written s.
func (p *proc) waitOutput(s string) {
	p.t.Helper()
	deadline := time.Now().Add(processExit)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("aelocal never wrote %q; output:\n%s", s, p.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clientContext returns an App Engine context whose calls go to p over the
// bridge. The test must not be parallel: API_HOST and API_PORT are
// process-wide.
func clientContext(t *testing.T, p *proc) context.Context {
	t.Helper()
	return proctest.BridgeContext(t, p.port)
}

// blob is an entity with a long, unindexed value.
type blob struct {
	V string `datastore:",noindex"`
}

// model is what the writers of a test were told: the state of each key
// after its last acknowledged write, and the write of each writer that was
// in flight when the server went away, which may or may not have landed.
type model struct {
	mu       sync.Mutex
	state    map[string]string // key name -> value; "" means deleted
	inFlight map[int]string    // writer -> key name
	ranges   [][2]int64        // acknowledged AllocateIDs ranges [lo, hi)
	autoIDs  map[int64]string  // acknowledged automatic IDs -> value
	acks     int
}

func newModel() *model {
	return &model{state: make(map[string]string), inFlight: make(map[int]string), autoIDs: make(map[int64]string)}
}

func (m *model) setInFlight(g int, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inFlight[g] = name
}

func (m *model) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acks
}

// write runs writer g until stop is closed or the server stops answering.
// Its operations: puts that overwrite a few keys, deletes, puts with
// automatic IDs and AllocateIDs.
func (m *model) write(ctx context.Context, g int, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		name := fmt.Sprintf("w%d-%d", g, i%7)
		val := fmt.Sprintf("w%d-v%d", g, i)
		key := datastore.NewKey(ctx, "K", name, 0, nil)
		var err error
		switch {
		case i%11 == 10:
			val = ""
			m.setInFlight(g, name)
			err = datastore.Delete(ctx, key)
		case i%5 == 4:
			var k *datastore.Key
			k, err = datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Auto", nil), &item{val})
			if err == nil {
				m.mu.Lock()
				m.autoIDs[k.IntID()] = val
				m.acks++
				m.mu.Unlock()
			}
			continue
		case i%7 == 6:
			var lo, hi int64
			lo, hi, err = datastore.AllocateIDs(ctx, "Auto", nil, 10)
			if err == nil {
				m.mu.Lock()
				m.ranges = append(m.ranges, [2]int64{lo, hi})
				m.acks++
				m.mu.Unlock()
			}
			continue
		default:
			m.setInFlight(g, name)
			_, err = datastore.Put(ctx, key, &item{val})
		}
		if err != nil {
			return // the server went away; this write may or may not have landed
		}
		m.mu.Lock()
		m.state[name] = val
		delete(m.inFlight, g)
		m.acks++
		m.mu.Unlock()
	}
}

// check verifies that the datastore behind ctx holds every acknowledged
// write.
func (m *model) check(t *testing.T, ctx context.Context) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	inFlight := make(map[string]bool)
	for _, name := range m.inFlight {
		inFlight[name] = true
	}
	for name, want := range m.state {
		var got item
		err := datastore.Get(ctx, datastore.NewKey(ctx, "K", name, 0, nil), &got)
		switch {
		case inFlight[name]:
			// Either the acknowledged state or the write in flight.
		case want == "" && err != datastore.ErrNoSuchEntity:
			t.Errorf("%s: deleted (acknowledged), but Get says %+v, %v", name, got, err)
		case want != "" && (err != nil || got.V != want):
			t.Errorf("%s: acknowledged %q, got %+v, %v", name, want, got, err)
		}
	}
	for id, want := range m.autoIDs {
		var got item
		if err := datastore.Get(ctx, datastore.NewKey(ctx, "Auto", "", id, nil), &got); err != nil || got.V != want {
			t.Errorf("Auto %d: acknowledged %q, got %+v, %v", id, want, got, err)
		}
	}
	// IDs handed out before are not handed out again: neither the
	// sequential ones of AllocateIDs nor the scattered ones of puts.
	var maxHi int64
	for _, r := range m.ranges {
		maxHi = max(maxHi, r[1])
	}
	lo, _, err := datastore.AllocateIDs(ctx, "Auto", nil, 1)
	if err != nil || lo < maxHi {
		t.Errorf("after the restart AllocateIDs gave %d (%v); IDs below %d were handed out before", lo, err, maxHi)
	}
	k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Auto", nil), &item{"after"})
	if _, taken := m.autoIDs[k.IntID()]; err != nil || taken {
		t.Errorf("after the restart a put got ID %v (%v), handed out before", k, err)
	}
	if m.acks == 0 {
		t.Error("no write was acknowledged")
	}
}

// runWriters runs n writers against ctx until stop is closed and they
// have returned.
func runWriters(ctx context.Context, m *model, n int) (stop func()) {
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			m.write(ctx, g, ch)
		}(g)
	}
	return func() {
		close(ch)
		wg.Wait()
	}
}

func waitAcks(t *testing.T, m *model, n int) {
	t.Helper()
	deadline := time.Now().Add(processExit)
	for m.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged", m.count())
		}
		time.Sleep(time.Millisecond)
	}
}

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// writing starts aelocal with a datastore file and n writers, and returns
// once acks writes were acknowledged, the writers still running.
func writing(t *testing.T, n, acks int) (path string, p *proc, m *model, stop func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "ds.db")
	p = startProc(t, "-datastore_path", path)
	m = newModel()
	stop = runWriters(clientContext(t, p), m, n)
	waitAcks(t, m, acks)
	return path, p, m, stop
}

func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	path, p, m, stop := writing(t, 8, 500)
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL, while the writers write
		t.Fatal(err)
	}
	stop()
	p.wait()

	p = startProc(t, "-datastore_path", path)
	m.check(t, clientContext(t, p))
}

func TestSIGHUPLosesNoAcknowledgedWrite(t *testing.T) {
	path, p, m, stop := writing(t, 8, 300)
	p.signal(syscall.SIGHUP) // the terminal was closed
	if code := p.wait(); code != 0 {
		t.Fatalf("exit code %d after SIGHUP", code)
	}
	stop()
	if !strings.Contains(p.out.String(), "hangup: shutting down") {
		t.Fatalf("no graceful shutdown on SIGHUP:\n%s", p.out.String())
	}

	p = startProc(t, "-datastore_path", path)
	m.check(t, clientContext(t, p))
}

// The server answers nothing before the datastore file is loaded: neither
// a read that would find it empty, nor a write that the load would then
// undo, nor the status page.
func TestNothingIsServedBeforeTheDatastoreLoads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ds.db")
	const n = 5000 // enough to take a while to load
	func() {
		s, err := aelocal.NewServerOptions(&aelocal.Options{DatastorePath: path})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := appengine.NewContext(s.NewRequest("GET", "/", nil))
		keys := make([]*datastore.Key, 0, 500)
		vals := make([]blob, 0, 500)
		for i := 0; i < n; i++ {
			keys = append(keys, datastore.NewKey(ctx, "Loaded", fmt.Sprint(i), 0, nil))
			vals = append(vals, blob{strings.Repeat("x", 2000)})
			if len(keys) == cap(keys) {
				if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
					t.Fatal(err)
				}
				keys, vals = keys[:0], vals[:0]
			}
		}
	}()

	for attempt := 0; ; attempt++ {
		p := launch(t, "-datastore_path", path)
		ctx := clientContext(t, p)
		last := datastore.NewKey(ctx, "Loaded", fmt.Sprint(n-1), 0, nil)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var acked []string
		var early []string // what was answered before the load
		served := func(err error) bool {
			return err == nil || !strings.Contains(err.Error(), "connection refused")
		}
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i, reads, writes := 0, 0, 0; reads < 20 || writes < 20; i++ {
					select {
					case <-p.done:
						return
					default:
					}
					var x blob
					err := datastore.Get(ctx, last, &x)
					if err == datastore.ErrNoSuchEntity {
						mu.Lock()
						early = append(early, "a Get found nothing")
						mu.Unlock()
					}
					if served(err) {
						reads++
					}
					name := fmt.Sprintf("new-%d-%d", g, i)
					if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "New", name, 0, nil), &item{name}); err == nil {
						writes++
						mu.Lock()
						acked = append(acked, name)
						mu.Unlock()
					}
					if !served(err) {
						time.Sleep(time.Millisecond)
					}
				}
			}(g)
		}
		// The console, polled from the start, shows the loaded kind the
		// first time it answers.
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: processStart}
			for {
				resp, err := c.Get("http://127.0.0.1:" + p.port + "/")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got := -1
					if m := regexp.MustCompile(`(\d+) kinds? in the default namespace`).FindSubmatch(body); m != nil {
						got, _ = strconv.Atoi(string(m[1]))
					}
					if got < 1 {
						mu.Lock()
						early = append(early, "the console answered: "+string(body))
						mu.Unlock()
					}
					return
				}
				select {
				case <-p.done:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		wg.Wait()
		if p.exited() && attempt < 2 && strings.Contains(p.out.String(), "address already in use") {
			continue
		}
		if len(early) > 0 {
			t.Fatalf("answered before the datastore was loaded: %v", early[:min(len(early), 5)])
		}
		// Every acknowledged write is there, now and after a restart.
		for _, ctxOf := range []func() context.Context{
			func() context.Context { return ctx },
			func() context.Context {
				p.signal(syscall.SIGTERM)
				p.wait()
				return clientContext(t, startProc(t, "-datastore_path", path))
			},
		} {
			c := ctxOf()
			for _, name := range acked {
				var x item
				if err := datastore.Get(c, datastore.NewKey(c, "New", name, 0, nil), &x); err != nil || x.V != name {
					t.Fatalf("acknowledged write %s: %+v, %v", name, x, err)
				}
			}
			var x blob
			if err := datastore.Get(c, last, &x); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// After the first signal the server waits for calls in progress; a second
// signal ends it at once, and loses nothing.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	path, p, m, stop := writing(t, 2, 50)
	stop()

	// A call in progress that will not finish soon: its body is late. The
	// server's "100 Continue" shows that it is reading it.
	conn, err := net.Dial("tcp", "127.0.0.1:"+p.port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /rpc_http HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Google-RPC-Service-Endpoint: app-engine-apis\r\nX-Google-RPC-Service-Method: /VMRemoteAPI.CallRemoteAPI\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(processExit))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("the server did not start reading the call: %q, %v", line, err)
	}

	p.signal(os.Interrupt)
	p.waitOutput("interrupt: shutting down")
	p.signal(os.Interrupt)
	if code := p.wait(); code != 1 || !strings.Contains(p.out.String(), "interrupt again: exiting at once") {
		t.Fatalf("exit code %d after a second interrupt; output:\n%s", code, p.out.String())
	}

	p = startProc(t, "-datastore_path", path)
	m.check(t, clientContext(t, p))
}

// A kill while the datastore file is being rewritten (compacted) leaves a
// temporary file, which the next start removes; the file itself is intact.
func TestKillDuringCompaction(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ds.db")
	p := startProc(t, "-datastore_path", path)
	ctx := clientContext(t, p)
	big := strings.Repeat("b", 400<<10)
	var mu sync.Mutex
	acked := make(map[string]int)
	stopCh := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopCh:
					return
				default:
				}
				name := fmt.Sprintf("big-%d-%d", g, i%10)
				if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Big", name, 0, nil), &blob{fmt.Sprint(i) + big}); err != nil {
					return
				}
				mu.Lock()
				acked[name] = i
				mu.Unlock()
			}
		}(g)
	}
	deadline := time.Now().Add(2 * processExit)
	for len(tempFiles(t, dir)) == 0 {
		if time.Now().After(deadline) || p.exited() {
			close(stopCh)
			wg.Wait()
			t.Fatal("no compaction was seen in progress")
		}
	}
	p.cmd.Process.Kill()
	close(stopCh)
	wg.Wait()
	p.wait()
	left := tempFiles(t, dir)
	if len(left) == 0 {
		t.Fatal("the kill left no temporary file; the test did not kill a compaction")
	}

	// The restart removes it (and may start a compaction of its own).
	p = startProc(t, "-datastore_path", path)
	for _, name := range left {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temporary file %s left after the restart (%v)", name, err)
		}
	}
	ctx = clientContext(t, p)
	for name, i := range acked {
		var x blob
		err := datastore.Get(ctx, datastore.NewKey(ctx, "Big", name, 0, nil), &x)
		if err != nil || !strings.HasPrefix(x.V, fmt.Sprint(i)) || len(x.V) < len(big) {
			// The writer's next write (i+10) may have landed unacknowledged.
			if err != nil || !strings.HasPrefix(x.V, fmt.Sprint(i+10)) {
				t.Fatalf("%s: acknowledged write %d, got %.10q (%d bytes), %v", name, i, x.V, len(x.V), err)
			}
		}
	}
}
