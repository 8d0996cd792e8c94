// Package proctest holds what the tests that run programs as processes
// share: cmd/aelocal's process tests, the store's pressure test, the
// end-to-end test and the README-following test. It is imported by tests
// only.
package proctest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
)

// LockedBuffer collects a process's output: the process's copying
// goroutine writes it while the test reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BridgeContext returns an App Engine context made by the real
// appengine.Middleware, whose calls go over HTTP to the API server on
// 127.0.0.1:port, as an app run beside cmd/aelocal makes them. It sets
// API_HOST, API_PORT and, unless set, GAE_APPLICATION (the client builds
// keys with that ID) for the rest of the test, so the test must not be
// parallel: the environment is process-wide.
func BridgeContext(t testing.TB, port string) context.Context {
	t.Helper()
	if os.Getenv("GAE_APPLICATION") == "" {
		t.Setenv("GAE_APPLICATION", aelocal.DefaultAppID)
	}
	t.Setenv("API_HOST", "127.0.0.1")
	t.Setenv("API_PORT", port)
	var ctx context.Context
	appengine.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx = appengine.NewContext(r)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	return ctx
}
