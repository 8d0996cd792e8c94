package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

type item struct{ V string }

// start runs the command's server on a free port until the test ends or
// stop is called, and returns an App Engine context that reaches it over
// the HTTP bridge.
func start(t *testing.T, dsPath string) (ctx context.Context, stop func()) {
	t.Helper()
	runCtx, cancel := context.WithCancel(context.Background())
	up := make(chan *aelocal.Server, 1)
	done := make(chan error, 1)
	go func() {
		c := config{addr: "127.0.0.1:0", datastorePath: dsPath, memcacheLimit: aelocal.DefaultMemcacheLimit}
		done <- run(runCtx, c, func(s *aelocal.Server) { up <- s })
	}()
	var srv *aelocal.Server
	select {
	case srv = <-up:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	host, port := srv.Addr()
	t.Setenv("API_HOST", host)
	t.Setenv("API_PORT", port)
	appengine.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx = appengine.NewContext(r)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(stop)
	return ctx, stop
}

func TestDatastorePathKeepsDataAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "datastore.gob")

	ctx, stop := start(t, path)
	key := datastore.NewKey(ctx, "Thing", "one", 0, nil)
	if _, err := datastore.Put(ctx, key, &item{"kept"}); err != nil {
		t.Fatal(err)
	}
	stop()

	ctx, _ = start(t, path)
	var got item
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "Thing", "one", 0, nil), &got); err != nil {
		t.Fatal(err)
	}
	if got.V != "kept" {
		t.Fatalf("got %q", got.V)
	}
}

func TestWithoutDatastorePathNothingIsKept(t *testing.T) {
	ctx, stop := start(t, "")
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Thing", "one", 0, nil), &item{"gone"}); err != nil {
		t.Fatal(err)
	}
	stop()
	ctx, _ = start(t, "")
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "Thing", "one", 0, nil), &item{}); err != datastore.ErrNoSuchEntity {
		t.Fatalf("got %v, want ErrNoSuchEntity", err)
	}
}
