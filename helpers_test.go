package gaesession

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

// testEnv is an aelocal server plus what the store tests observe: its RPC
// counts, the store's log lines, and a clock shared by the store and the
// server.
type testEnv struct {
	t    testing.TB
	srv  *aelocal.Server
	logs *logCapture
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	srv, err := aelocal.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, srv: srv}
	t.Cleanup(func() {
		WaitForAsyncSaves(context.Background())
		srv.Close()
	})
	return e
}

// logCapture records the package's log lines.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

// captureLogs records the package's log lines for the rest of the test.
// Tests that call it must not run in parallel: the hook is process-wide.
func captureLogs(t testing.TB) *logCapture {
	l := &logCapture{}
	hook := func(level int, msg string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, levelNames[level]+" "+msg)
	}
	prev := logHook.Swap(&hook)
	t.Cleanup(func() { logHook.Store(prev) })
	return l
}

// with returns the captured lines that contain every one of words; all of
// them without words.
func (l *logCapture) with(words ...string) []string {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range l.lines {
		for _, w := range words {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

func (e *testEnv) captureLogs()                    { e.logs = captureLogs(e.t) }
func (e *testEnv) logged(words ...string) []string { return e.logs.with(words...) }
func (e *testEnv) allLogs() []string               { return e.logs.with() }

// ctx returns an App Engine context whose calls the server answers.
func (e *testEnv) ctx() context.Context {
	return appengine.NewContext(e.srv.NewRequest("GET", "/", nil))
}

// request runs f with a store of its own and closes the store, as one
// HTTP request of an app would.
func (e *testEnv) request(o *MemcacheStoreOptions, f func(st session.Store)) {
	st := NewMemcacheStoreOptions(e.ctx(), o)
	defer st.Close()
	f(st)
}

// newSession adds a new session with attribute "n" = 1 in a request of its
// own and returns its ID.
func (e *testEnv) newSession(o *MemcacheStoreOptions, timeout time.Duration) string {
	var id string
	e.request(o, func(st session.Store) {
		sess := session.NewSessionOptions(&session.SessOptions{
			CAttrs:  map[string]interface{}{"user": "gopher"},
			Attrs:   map[string]interface{}{"n": 1},
			Timeout: timeout,
		})
		st.Add(sess)
		id = sess.ID()
	})
	WaitForAsyncSaves(context.Background())
	return id
}

// rpcs returns the RPC counts since the last call and resets them.
func (e *testEnv) rpcs() map[string]int64 {
	s := e.srv.Stats()
	e.srv.ResetStats()
	return s
}

// total adds up the counts of the methods of one service ("" for all).
func total(stats map[string]int64, service string) int64 {
	var n int64
	for k, v := range stats {
		if service == "" || strings.HasPrefix(k, service+".") {
			n += v
		}
	}
	return n
}

// fakeClock replaces the store's clock and moves aelocal's with it, so
// expiry can be tested without waiting. Tests using it must not be
// parallel.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
	srv *aelocal.Server
}

func (e *testEnv) fakeClock() *fakeClock {
	c := &fakeClock{now: time.Now(), srv: e.srv}
	prev := timeNow
	timeNow = c.Now
	e.t.Cleanup(func() { timeNow = prev })
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	c.srv.FastForward(d)
}

// decodeGob decodes a stored value the way the original package does.
func decodeGob(b []byte) (session.Session, error) {
	sess := session.NewSession()
	err := memcache.Gob.Unmarshal(b, sess)
	return sess, err
}

// between tells whether t lies within [lo, hi], give or take the whole
// second that Memcache rounds expirations to. Tests take lo and hi from a
// clock before and after the call under test, so that how much real time
// the call took does not matter.
func between(t, lo, hi time.Time) bool {
	return !t.Before(lo.Add(-time.Second)) && !t.After(hi.Add(time.Second))
}
