package aelocal

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2/delay"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/appengine/v2/taskqueue"
)

// delayed records its calls and fails the first call for each key, so the
// task is retried.
var delayed = struct {
	sync.Mutex
	calls   map[string]int
	headers []*taskqueue.RequestHeaders
}{calls: make(map[string]int)}

var delayedFunc = delay.MustRegister("aelocal-test-delayed", func(ctx context.Context, key string, n int) error {
	h, err := delay.RequestHeaders(ctx)
	if err != nil {
		return err
	}
	// The function's context reaches the server.
	if _, err := memcache.Increment(ctx, key, int64(n), 0); err != nil {
		return err
	}
	delayed.Lock()
	defer delayed.Unlock()
	delayed.calls[key]++
	delayed.headers = append(delayed.headers, h)
	if delayed.calls[key] == 1 {
		return errors.New("first call fails")
	}
	return nil
})

func TestDelayEndToEnd(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		key := t.Name()
		// The count is per key and outlives the test: start it again,
		// so that the test can run more than once (-count).
		delayed.Lock()
		delete(delayed.calls, key)
		delayed.Unlock()
		if err := delayedFunc.Call(ctx, key, 5); err != nil {
			t.Fatal(err)
		}
		tasks := s.Tasks("")
		if len(tasks) != 1 || tasks[0].Path != "/_ah/queue/go/delay" {
			t.Fatalf("queue holds %+v, want one delay task", tasks)
		}
		// delay.Func serves its tasks on http.DefaultServeMux.
		if n, err := s.RunTasks("", http.DefaultServeMux); n != 1 || err != nil {
			t.Fatalf("RunTasks: %d, %v", n, err)
		}
		if got := s.Tasks(""); len(got) != 1 || got[0].RetryCount != 1 {
			t.Fatalf("after the failed call the queue holds %+v, want the retry", got)
		}
		s.FastForward(time.Second)
		if n, _ := s.RunTasks("", http.DefaultServeMux); n != 1 {
			t.Fatal("the retry did not run")
		}
		wantNames(t, s, "")
		if it, err := memcache.Get(ctx, key); err != nil || string(it.Value) != "10" {
			t.Fatalf("the function's writes: %v, %v; want 10 after two calls", it, err)
		}
		delayed.Lock()
		defer delayed.Unlock()
		last := delayed.headers[len(delayed.headers)-1]
		if last.QueueName != "default" || last.TaskRetryCount != 1 || last.TaskPreviousResponse != 500 || last.TaskName == "" {
			t.Fatalf("request headers in the function: %+v", last)
		}
	})
}

// appRecorder is an app that records the task requests it gets and answers
// with status.
type appRecorder struct {
	mu     sync.Mutex
	status int
	got    chan *http.Request
}

func newApp(t *testing.T) (*appRecorder, *httptest.Server) {
	a := &appRecorder{status: http.StatusOK, got: make(chan *http.Request, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		a.mu.Lock()
		status := a.status
		a.mu.Unlock()
		a.got <- r
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return a, srv
}

func (a *appRecorder) next(t *testing.T) *http.Request {
	t.Helper()
	select {
	case r := <-a.got:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no task arrived at the app")
		return nil
	}
}

// waitFor polls cond, which the dispatcher makes true soon; a test
// asserts the outcome, never how long it took.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDispatchToApp(t *testing.T) {
	app, appSrv := newApp(t)
	s := serverWithQueues(t, &Options{AppURL: appSrv.URL + "/base"})
	ctx := middlewareContext(t, s)

	if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "pushed", Path: "/work?a=1", Payload: []byte("p")}, ""); err != nil {
		t.Fatal(err)
	}
	r := app.next(t)
	if r.Method != "POST" || r.URL.Path != "/base/work" || r.URL.RawQuery != "a=1" ||
		r.Header.Get("X-AppEngine-QueueName") != "default" || r.Header.Get("X-AppEngine-TaskName") != "pushed" {
		t.Fatalf("the app got %s %s %v", r.Method, r.URL, r.Header)
	}
	waitFor(t, "the task to be deleted", func() bool { return len(s.Tasks("")) == 0 })

	// A failure is retried after the backoff, by the server's clock.
	app.mu.Lock()
	app.status = http.StatusInternalServerError
	app.mu.Unlock()
	taskqueue.Add(ctx, &taskqueue.Task{Name: "failing", RetryOptions: &taskqueue.RetryOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour}}, "")
	app.next(t)
	waitFor(t, "the retry to be scheduled", func() bool {
		ts := s.Tasks("")
		return len(ts) == 1 && ts[0].RetryCount == 1
	})
	app.mu.Lock()
	app.status = http.StatusOK
	app.mu.Unlock()
	s.FastForward(time.Hour)
	r = app.next(t)
	if r.Header.Get("X-AppEngine-TaskRetryCount") != "1" || r.Header.Get("X-AppEngine-TaskPreviousResponse") != "500" {
		t.Fatalf("retry headers %v", r.Header)
	}
	waitFor(t, "the retried task to be deleted", func() bool { return len(s.Tasks("")) == 0 })

	// A queue of one task an hour with a bucket of one sends one task,
	// then the next when the hour has passed.
	taskqueue.AddMulti(ctx, []*taskqueue.Task{{Name: "h1"}, {Name: "h2"}}, "hourly")
	if got := app.next(t).Header.Get("X-AppEngine-TaskName"); got != "h1" {
		t.Fatalf("first hourly task %q", got)
	}
	waitFor(t, "h1 to be deleted", func() bool { return len(s.Tasks("hourly")) == 1 })
	wantNames(t, s, "hourly", "h2")
	s.FastForward(time.Hour)
	if got := app.next(t).Header.Get("X-AppEngine-TaskName"); got != "h2" {
		t.Fatalf("second hourly task %q", got)
	}

	// Pull tasks are never sent.
	taskqueue.Add(ctx, &taskqueue.Task{Name: "pulled", Method: "PULL"}, "pull")
	s.Close()
	wantNames(t, s, "pull", "pulled")
}

func TestDispatchUnreachableAppRetries(t *testing.T) {
	_, appSrv := newApp(t)
	appSrv.Close() // nothing listens there any more
	s := serverWithQueues(t, &Options{AppURL: appSrv.URL})
	ctx := middlewareContext(t, s)
	taskqueue.Add(ctx, &taskqueue.Task{Name: "lost", RetryOptions: &taskqueue.RetryOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour}}, "")
	waitFor(t, "the failed send to schedule a retry", func() bool {
		ts := s.Tasks("")
		return len(ts) == 1 && ts[0].RetryCount == 1
	})
}

func TestBadAppURL(t *testing.T) {
	for _, u := range []string{"localhost:8080", "ftp://x", "http://"} {
		if _, err := NewServerOptions(&Options{AppURL: u}); err == nil {
			t.Errorf("AppURL %q accepted", u)
		}
	}
}

func TestRunTasksPanickingHandler(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	taskqueue.Add(ctx, &taskqueue.Task{Name: "boom"}, "")
	n, err := s.RunTasks("", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	if n != 1 || err != nil {
		t.Fatalf("RunTasks: %d, %v", n, err)
	}
	// appengine's middleware turns the panic into a 500: a retry.
	if got := s.Tasks(""); len(got) != 1 || got[0].RetryCount != 1 {
		t.Fatalf("after a panic the queue holds %+v", got)
	}
}

func TestTaskqueueInjectedFailure(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	s.FailNext("taskqueue", "Add", 1)
	_, err := taskqueue.Add(ctx, &taskqueue.Task{}, "")
	wantAPIError(t, err, "TRANSIENT_ERROR", "injected")
}

func TestTaskqueueChosenNamesAndTombstonePruning(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	got, _ := taskqueue.Add(ctx, &taskqueue.Task{}, "")
	s.RunTasks("", ok)
	// A name the service chose is no app's: production would let an app
	// use it, so no tombstone keeps it.
	if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: got.Name}, ""); err != nil {
		t.Fatalf("naming a task %q after the service's: %v", got.Name, err)
	}

	q := s.taskqueue.queues["default"]
	tasks := make([]*taskqueue.Task, 100)
	for round := 0; round < 11; round++ {
		for i := range tasks {
			tasks[i] = &taskqueue.Task{Name: "r" + strconv.Itoa(round) + "-" + strconv.Itoa(i)}
		}
		if _, err := taskqueue.AddMulti(ctx, tasks, ""); err != nil {
			t.Fatal(err)
		}
		s.RunTasks("", ok)
		s.FastForward(24 * time.Hour)
	}
	s.taskqueue.mu.Lock()
	n := len(q.tombstones)
	s.taskqueue.mu.Unlock()
	// 1,101 names were tombstoned over 11 days; those older than nine
	// days went when the queue reached its pruning size.
	if n >= 1101 || n < 900 {
		t.Fatalf("%d tombstones kept", n)
	}
}
