package aelocal

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/appengine/v2/runtime"
)

// backgroundApp is an app whose handlers are http.DefaultServeMux, where
// the runtime package registered /_ah/background, behind s's Middleware,
// as appengine.Main would serve them.
func backgroundApp(t *testing.T) *Server {
	t.Helper()
	var mu sync.Mutex
	var h http.Handler
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		handler := h
		mu.Unlock()
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(app.Close)
	s, err := NewServerOptions(&Options{AppURL: app.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mu.Lock()
	h = s.Middleware(http.DefaultServeMux)
	mu.Unlock()
	return s
}

func TestRunInBackground(t *testing.T) {
	s := backgroundApp(t)
	ctx := middlewareContext(t, s)
	done := make(chan error, 1)
	err := runtime.RunInBackground(ctx, func(c context.Context) {
		// The function runs in a request of its own, whose calls aelocal
		// serves as any other.
		done <- memcache.Set(c, &memcache.Item{Key: "from-background", Value: []byte("ran")})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if item, ok := s.MemcacheItem("", "from-background"); !ok || string(item.Value) != "ran" {
		t.Fatalf("the background function's write: %+v %v", item, ok)
	}
}

func TestRunInBackgroundLimit(t *testing.T) {
	s := backgroundApp(t)
	ctx := middlewareContext(t, s)
	release := make(chan struct{})
	started := make(chan struct{}, maxBackgroundRequests)
	for i := 0; i < maxBackgroundRequests; i++ {
		if err := runtime.RunInBackground(ctx, func(context.Context) {
			started <- struct{}{}
			<-release
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < maxBackgroundRequests; i++ {
		<-started
	}
	err := runtime.RunInBackground(ctx, func(context.Context) {})
	if err == nil || !strings.Contains(err.Error(), "LIMIT_REACHED") {
		t.Fatalf("one past the limit: %v, want LIMIT_REACHED", err)
	}
	close(release)
}

func TestRunInBackgroundWithoutAppURL(t *testing.T) {
	s := newTestServer(t)
	err := runtime.RunInBackground(middlewareContext(t, s), func(context.Context) {})
	if err == nil || !strings.Contains(err.Error(), "-app_url") {
		t.Fatalf("without an app URL: %v, want an error that names -app_url", err)
	}
}

func TestSystemStats(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		st, err := runtime.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.CPU.Total != 0 || st.RAM.Current != 0 {
			t.Fatalf("stats: %+v, want the stub's empty answer", st)
		}
	})
}
