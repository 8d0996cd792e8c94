package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/taskqueue"
)

type item struct{ V string }

// start runs the command's server on a free port until the test ends or
// stop is called, and returns an App Engine context that reaches it over
// the HTTP bridge.
func start(t *testing.T, dsPath string) (ctx context.Context, stop func()) {
	t.Helper()
	return startOptions(t, aelocal.Options{Addr: "127.0.0.1:0"}, dsPath)
}

// startOptions is start with the server's options.
func startOptions(t *testing.T, opts aelocal.Options, dsPath string) (ctx context.Context, stop func()) {
	t.Helper()
	runCtx, cancel := context.WithCancel(context.Background())
	up := make(chan *aelocal.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, opts, dsPath, func(s *aelocal.Server) { up <- s })
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

func TestQueueYAMLAndAppURL(t *testing.T) {
	got := make(chan *http.Request, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r }))
	defer app.Close()
	queueYAML := filepath.Join(t.TempDir(), "queue.yaml")
	if err := os.WriteFile(queueYAML, []byte("queue:\n- name: mail\n  rate: 10/s\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, _ := startOptions(t, aelocal.Options{Addr: "127.0.0.1:0", QueueYAML: queueYAML, AppURL: app.URL}, "")
	if _, err := taskqueue.Add(ctx, &taskqueue.Task{Path: "/send"}, "mail"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.URL.Path != "/send" || r.Header.Get("X-AppEngine-QueueName") != "mail" {
			t.Fatalf("the app got %s with %v", r.URL, r.Header)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the task never reached the app")
	}

	bad := filepath.Join(t.TempDir(), "queue.yaml")
	os.WriteFile(bad, []byte("queue:\n- name: no_underscores\n"), 0o644)
	if err := run(context.Background(), aelocal.Options{Addr: "127.0.0.1:0", QueueYAML: bad}, "", nil); err == nil {
		t.Fatal("a bad queue.yaml did not stop the command")
	}
}

func TestConsoleWithCronYAML(t *testing.T) {
	yaml := filepath.Join(t.TempDir(), "cron.yaml")
	if err := os.WriteFile(yaml, []byte("cron:\n- description: nightly purge\n  url: /purge\n  schedule: every 24 hours\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up := make(chan *aelocal.Server, 1)
	done := make(chan error, 1)
	o := aelocal.Options{Addr: "127.0.0.1:0", MemcacheLimit: aelocal.DefaultMemcacheLimit, CronYAML: yaml, AppURL: "http://127.0.0.1:8080"}
	go func() { done <- run(ctx, o, "", func(s *aelocal.Server) { up <- s }) }()
	var srv *aelocal.Server
	select {
	case srv = <-up:
	case err := <-done:
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL() + "/cron")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "nightly purge") || !strings.Contains(string(body), "http://127.0.0.1:8080") {
		t.Fatalf("GET /cron: %d\n%s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A cron.yaml that cannot be read stops the command at once.
	o.CronYAML = filepath.Join(t.TempDir(), "missing.yaml")
	if err := run(context.Background(), o, "", nil); err == nil || !strings.Contains(err.Error(), "cron.yaml") {
		t.Fatalf("run with a missing cron.yaml: %v", err)
	}
}
