package aelocal

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/appengine/v2/taskqueue"
)

// testQueueYAML declares a fast push queue, a pull queue and a push queue
// with retry parameters of its own.
const testQueueYAML = `
queue:
- name: fast
  rate: 100/s
  bucket_size: 10
- name: pull
  mode: pull
- name: careful
  rate: 1/s
  retry_parameters:
    task_retry_limit: 1
    min_backoff_seconds: 10
- name: hourly
  rate: 1/h
  bucket_size: 1
`

// serverWithQueues starts a server with testQueueYAML (and more options).
func serverWithQueues(t testing.TB, o *Options) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "queue.yaml")
	if err := os.WriteFile(path, []byte(testQueueYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if o == nil {
		o = &Options{}
	}
	o.QueueYAML = path
	s, err := NewServerOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// bothPathsQueues is bothPaths with the queues of testQueueYAML.
func bothPathsQueues(t *testing.T, f func(t *testing.T, s *Server, ctx context.Context)) {
	t.Run("middleware", func(t *testing.T) {
		s := serverWithQueues(t, nil)
		f(t, s, middlewareContext(t, s))
	})
	t.Run("bridge", func(t *testing.T) {
		s := serverWithQueues(t, nil)
		f(t, s, bridgeContext(t, s))
	})
}

func taskNames(ts []*taskqueue.Task) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

func wantNames(t *testing.T, s *Server, queue string, want ...string) {
	t.Helper()
	if got := taskNames(s.Tasks(queue)); !reflect.DeepEqual(got, want) {
		t.Fatalf("queue %q holds %q, want %q", queue, got, want)
	}
}

func TestTaskqueueAdd(t *testing.T) {
	bothPathsQueues(t, func(t *testing.T, s *Server, ctx context.Context) {
		h := http.Header{"Content-Type": {"text/plain"}, "X-Custom": {"a", "b"}}
		task, err := taskqueue.Add(ctx, &taskqueue.Task{Path: "/work?x=1", Payload: []byte("payload"), Header: h}, "")
		if err != nil {
			t.Fatal(err)
		}
		if task.Name != "task1" || task.Method != "POST" {
			t.Fatalf("Add returned %+v, want the chosen name task1 and method POST", task)
		}
		post := taskqueue.NewPOSTTask("/form", url.Values{"k": {"v"}})
		if _, err := taskqueue.Add(ctx, post, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "get-1", Method: "GET"}, "fast"); err != nil {
			t.Fatal(err)
		}

		got := s.Tasks("")
		if len(got) != 2 {
			t.Fatalf("default queue holds %d tasks, want 2", len(got))
		}
		first := got[0]
		if first.Name != "task1" || first.Path != "/work?x=1" || string(first.Payload) != "payload" || first.Method != "POST" {
			t.Fatalf("first task is %+v", first)
		}
		if !reflect.DeepEqual(first.Header["X-Custom"], []string{"a", "b"}) || first.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("headers are %v", first.Header)
		}
		if d := time.Since(first.ETA); d < -time.Second || d > time.Minute {
			t.Fatalf("ETA %v is not about now", first.ETA)
		}
		if string(got[1].Payload) != "k=v" {
			t.Fatalf("second task payload %q", got[1].Payload)
		}
		wantNames(t, s, "fast", "get-1")
		if get := s.Tasks("fast")[0]; get.Path != "/_ah/queue/fast" || get.Method != "GET" {
			t.Fatalf("a task without a path goes to /_ah/queue/QUEUE: %+v", get)
		}
		if s.Tasks("nosuch") != nil {
			t.Fatal("Tasks of a queue that does not exist is not nil")
		}
		// The returned tasks are copies.
		got[0].Payload[0] = 'X'
		if string(s.Tasks("")[0].Payload) != "payload" {
			t.Fatal("changing a returned task changed the server's")
		}
	})
}

func TestTaskqueueNamedTasks(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		named := &taskqueue.Task{Name: "once", Path: "/once"}
		if _, err := taskqueue.Add(ctx, named, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := taskqueue.Add(ctx, named, ""); err != taskqueue.ErrTaskAlreadyAdded {
			t.Fatalf("second add of a named task: %v, want ErrTaskAlreadyAdded", err)
		}
		if err := taskqueue.Delete(ctx, named, ""); err != nil {
			t.Fatal(err)
		}
		// The name stays tombstoned after the task is gone.
		if _, err := taskqueue.Add(ctx, named, ""); err != taskqueue.ErrTaskAlreadyAdded {
			t.Fatalf("add of a tombstoned name: %v, want ErrTaskAlreadyAdded", err)
		}
		wantAPIError(t, taskqueue.Delete(ctx, named, ""), "TOMBSTONED_TASK", "")
		wantAPIError(t, taskqueue.Delete(ctx, &taskqueue.Task{Name: "never"}, ""), "UNKNOWN_TASK", "")
		wantAPIError(t, taskqueue.Delete(ctx, named, "nosuch"), "UNKNOWN_QUEUE", "")

		// Production frees a name nine days after its task went.
		s.FastForward(8 * 24 * time.Hour)
		if _, err := taskqueue.Add(ctx, named, ""); err != taskqueue.ErrTaskAlreadyAdded {
			t.Fatalf("after 8 days: %v, want ErrTaskAlreadyAdded", err)
		}
		s.FastForward(24 * time.Hour)
		if _, err := taskqueue.Add(ctx, named, ""); err != nil {
			t.Fatalf("after 9 days: %v", err)
		}

		// Names are per queue; a chosen name never collides with one the
		// app picked.
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "task1"}, ""); err != nil {
			t.Fatal(err)
		}
		got, err := taskqueue.Add(ctx, &taskqueue.Task{}, "")
		if err != nil || got.Name == "task1" {
			t.Fatalf("chosen name %q, %v", got.Name, err)
		}
	})
}

func TestTaskqueueAddMulti(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		out, err := taskqueue.AddMulti(ctx, []*taskqueue.Task{{Name: "a"}, {}, {Delay: time.Minute}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Name != "a" || out[1].Name == "" || out[2].Name == "" || out[1].Name == out[2].Name {
			t.Fatalf("names %q", taskNames(out))
		}
		// A name already taken fails only its own task.
		out, err = taskqueue.AddMulti(ctx, []*taskqueue.Task{{Name: "a"}, {Name: "b"}}, "")
		var me appengine.MultiError
		if !errors.As(err, &me) || me[0] != taskqueue.ErrTaskAlreadyAdded || me[1] != nil {
			t.Fatalf("got %v, want ErrTaskAlreadyAdded for the first task only", err)
		}
		if out[1].Name != "b" {
			t.Fatalf("names %q", taskNames(out))
		}
		n := len(s.Tasks(""))

		// A task that fails validation fails the batch: nothing is added.
		_, err = taskqueue.AddMulti(ctx, []*taskqueue.Task{{Name: "c"}, {Name: "c"}, {}}, "")
		if !errors.As(err, &me) || !strings.Contains(me[0].Error(), "SKIPPED") ||
			!strings.Contains(me[1].Error(), "DUPLICATE_TASK_NAME") || !strings.Contains(me[2].Error(), "SKIPPED") {
			t.Fatalf("got %v, want DUPLICATE_TASK_NAME and SKIPPED", err)
		}
		_, err = taskqueue.AddMulti(ctx, []*taskqueue.Task{{}, {Name: "bad name"}}, "")
		if !errors.As(err, &me) || !strings.Contains(me[1].Error(), "INVALID_TASK_NAME") {
			t.Fatalf("got %v, want INVALID_TASK_NAME", err)
		}
		if len(s.Tasks("")) != n {
			t.Fatal("a failed batch added tasks")
		}

		many := make([]*taskqueue.Task, 101)
		for i := range many {
			many[i] = &taskqueue.Task{}
		}
		_, err = taskqueue.AddMulti(ctx, many, "")
		wantAPIError(t, err, "TOO_MANY_TASKS", "the limit is 100")
		if _, err := taskqueue.AddMulti(ctx, many[:100], ""); err != nil {
			t.Fatal(err)
		}
		if out, err := taskqueue.AddMulti(ctx, nil, ""); err != nil || len(out) != 0 {
			t.Fatalf("empty AddMulti: %v, %v", out, err)
		}
	})
}

func TestTaskqueueValidation(t *testing.T) {
	bothPathsQueues(t, func(t *testing.T, s *Server, ctx context.Context) {
		add := func(task *taskqueue.Task, queue string) error {
			_, err := taskqueue.Add(ctx, task, queue)
			return err
		}
		wantAPIError(t, add(&taskqueue.Task{Name: "no spaces"}, ""), "INVALID_TASK_NAME", "no spaces")
		wantAPIError(t, add(&taskqueue.Task{Name: strings.Repeat("n", 501)}, ""), "INVALID_TASK_NAME", "")
		wantAPIError(t, add(&taskqueue.Task{}, "nosuch"), "UNKNOWN_QUEUE", `queue "nosuch" does not exist`)
		wantAPIError(t, add(&taskqueue.Task{}, "bad_queue"), "INVALID_QUEUE_NAME", "")
		wantAPIError(t, add(&taskqueue.Task{Delay: 31 * 24 * time.Hour}, ""), "INVALID_ETA", "30 days")
		if err := add(&taskqueue.Task{Delay: 29 * 24 * time.Hour}, ""); err != nil {
			t.Fatal(err)
		}
		wantAPIError(t, add(&taskqueue.Task{Path: "relative"}, ""), "INVALID_URL", "")
		wantAPIError(t, add(&taskqueue.Task{Path: "/" + strings.Repeat("p", 2083)}, ""), "INVALID_URL", "")
		wantAPIError(t, add(&taskqueue.Task{Payload: make([]byte, 101<<10)}, ""), "TASK_TOO_LARGE", "push task")
		if err := add(&taskqueue.Task{Method: "PULL", Payload: make([]byte, 900<<10)}, "pull"); err != nil {
			t.Fatalf("a 900 KiB pull task: %v", err)
		}
		wantAPIError(t, add(&taskqueue.Task{Method: "PULL", Payload: make([]byte, 1<<20)}, "pull"), "TASK_TOO_LARGE", "pull task")
		wantAPIError(t, add(&taskqueue.Task{Method: "PULL"}, ""), "INVALID_QUEUE_MODE", "push queue")
		wantAPIError(t, add(&taskqueue.Task{}, "pull"), "INVALID_QUEUE_MODE", "pull queue")
		wantAPIError(t, add(&taskqueue.Task{Method: "PULL", Tag: strings.Repeat("t", 501)}, "pull"), "INVALID_TAG", "")
		bad := &taskqueue.RetryOptions{MinBackoff: time.Minute, MaxBackoff: time.Second}
		wantAPIError(t, add(&taskqueue.Task{RetryOptions: bad}, ""), "INVALID_RETRY_PARAMETERS", "")
		if len(s.Tasks("")) != 1 || len(s.Tasks("pull")) != 1 {
			t.Fatal("refused tasks were added")
		}
	})
}

func TestTaskqueueRunTasks(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		type seen struct {
			method, uri, body, remote string
			header                    http.Header
		}
		var mu sync.Mutex
		var runs []seen
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := appengine.NewContext(r)
			b, _ := io.ReadAll(r.Body)
			// The handler's context reaches this server.
			memcache.Set(c, &memcache.Item{Key: "ran", Value: []byte(r.URL.Path)})
			mu.Lock()
			runs = append(runs, seen{r.Method, r.RequestURI, string(b), r.RemoteAddr, r.Header.Clone()})
			mu.Unlock()
		})

		eta := s.Now().Add(-time.Second).Round(time.Microsecond)
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "now", Path: "/a?q=1", Payload: []byte("one"), ETA: eta,
			Header: http.Header{"X-Custom": {"c"}, "X-Appengine-Queuename": {"forged"}}}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "later", Path: "/b", Delay: time.Hour}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "get", Method: "GET", Path: "/c", ETA: eta.Add(time.Millisecond)}, ""); err != nil {
			t.Fatal(err)
		}

		n, err := s.RunTasks("", h)
		if err != nil || n != 2 {
			t.Fatalf("RunTasks ran %d, %v; want the 2 due tasks", n, err)
		}
		wantNames(t, s, "", "later")
		first := runs[0]
		if first.method != "POST" || first.uri != "/a?q=1" || first.body != "one" {
			t.Fatalf("first run %+v", first)
		}
		hd := first.header
		for k, v := range map[string]string{
			"X-Appengine-Queuename":          "default",
			"X-Appengine-Taskname":           "now",
			"X-Appengine-Taskretrycount":     "0",
			"X-Appengine-Taskexecutioncount": "0",
			"X-Appengine-Tasketa":            strconv.FormatFloat(float64(eta.UnixMicro())/1e6, 'f', 6, 64),
			"X-Custom":                       "c",
			"Content-Type":                   "application/octet-stream",
		} {
			if got := hd.Get(k); got != v {
				t.Errorf("header %s = %q, want %q", k, got, v)
			}
		}
		if hd.Get("X-Appengine-Taskpreviousresponse") != "" {
			t.Error("a first run has a previous response")
		}
		if !strings.HasPrefix(first.remote, tqSourceIP+":") {
			t.Errorf("RemoteAddr %q, want the task queue's %s", first.remote, tqSourceIP)
		}
		if rh := taskqueue.ParseRequestHeaders(hd); rh.QueueName != "default" || rh.TaskName != "now" {
			t.Errorf("ParseRequestHeaders: %+v", rh)
		}
		if runs[1].method != "GET" || runs[1].uri != "/c" {
			t.Fatalf("second run %+v", runs[1])
		}
		if it, err := memcache.Get(ctx, "ran"); err != nil || string(it.Value) != "/c" {
			t.Fatalf("the handler's memcache write: %v %v", it, err)
		}

		if n, _ := s.RunTasks("", h); n != 0 {
			t.Fatalf("ran %d tasks that are not due", n)
		}
		s.FastForward(time.Hour)
		if n, _ := s.RunTasks("", h); n != 1 {
			t.Fatalf("ran %d after the ETA, want 1", n)
		}
		wantNames(t, s, "")

		if _, err := s.RunTasks("nosuch", h); err == nil {
			t.Fatal("RunTasks of a queue that does not exist did not fail")
		}
	})
}

func TestTaskqueueRunTasksNamespace(t *testing.T) {
	s := newTestServer(t)
	ctx, err := appengine.Namespace(middlewareContext(t, s), "tenant")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := taskqueue.Add(ctx, &taskqueue.Task{Path: "/ns"}, ""); err != nil {
		t.Fatal(err)
	}
	var key *datastore.Key
	s.RunTasks("", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key = datastore.NewKey(appengine.NewContext(r), "K", "k", 0, nil)
	}))
	if key == nil || key.Namespace() != "tenant" {
		t.Fatalf("the task ran in namespace %q, want the adder's", key.Namespace())
	}
}

func TestTaskqueueRetry(t *testing.T) {
	bothPathsQueues(t, func(t *testing.T, s *Server, ctx context.Context) {
		var headers []http.Header
		status := http.StatusInternalServerError
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			headers = append(headers, r.Header.Clone())
			w.WriteHeader(status)
		})
		opts := &taskqueue.RetryOptions{RetryLimit: 2, MinBackoff: 2 * time.Second, MaxBackoff: time.Minute}
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "flaky", RetryOptions: opts}, ""); err != nil {
			t.Fatal(err)
		}
		// Backoffs are checked to the millisecond: only FastForward may
		// move the clock from here (the task's ETA, set by the client, is
		// already past).
		stopClock(s)
		start := s.Now()
		if n, _ := s.RunTasks("", h); n != 1 {
			t.Fatal("the task did not run")
		}
		got := s.Tasks("")
		if len(got) != 1 || got[0].RetryCount != 1 {
			t.Fatalf("after a failure the queue holds %+v, want the task with RetryCount 1", got)
		}
		// The first retry waits MinBackoff, the next twice that.
		if wait := got[0].ETA.Sub(start); wait < 2*time.Second || wait > 3*time.Second {
			t.Fatalf("first backoff %v, want 2s", wait)
		}
		if n, _ := s.RunTasks("", h); n != 0 {
			t.Fatal("a retry ran before its backoff passed")
		}
		s.FastForward(2 * time.Second)
		s.RunTasks("", h)
		got = s.Tasks("")
		if wait := got[0].ETA.Sub(s.Now()); wait < 3900*time.Millisecond || wait > 4*time.Second {
			t.Fatalf("second backoff %v, want 4s", wait)
		}
		last := headers[len(headers)-1]
		if last.Get("X-Appengine-Taskretrycount") != "1" || last.Get("X-Appengine-Taskexecutioncount") != "1" ||
			last.Get("X-Appengine-Taskpreviousresponse") != "500" {
			t.Fatalf("retry headers %v", last)
		}
		// RetryLimit 2: the third failure is the last.
		s.FastForward(4 * time.Second)
		s.RunTasks("", h)
		wantNames(t, s, "")
		if len(headers) != 3 {
			t.Fatalf("ran %d times, want 3", len(headers))
		}
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "flaky"}, ""); err != taskqueue.ErrTaskAlreadyAdded {
			t.Fatalf("the name of a task that failed for good: %v, want it tombstoned", err)
		}

		// A queue's retry parameters apply to its tasks without their own.
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "q"}, "careful"); err != nil {
			t.Fatal(err)
		}
		s.RunTasks("careful", h)
		if got := s.Tasks("careful"); len(got) != 1 || got[0].ETA.Sub(s.Now()) < 9*time.Second {
			t.Fatalf("careful queue holds %+v, want a retry 10s away", got)
		}
		s.FastForward(10 * time.Second)
		s.RunTasks("careful", h)
		wantNames(t, s, "careful")

		// A 2xx ends a task.
		status = http.StatusNoContent
		taskqueue.Add(ctx, &taskqueue.Task{Name: "ok"}, "")
		s.RunTasks("", h)
		wantNames(t, s, "")
	})
}

func TestTaskqueueRetryAgeLimit(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	fail := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	opts := &taskqueue.RetryOptions{RetryLimit: 1, AgeLimit: time.Hour, MinBackoff: time.Minute, MaxBackoff: time.Minute}
	taskqueue.Add(ctx, &taskqueue.Task{Name: "aged", RetryOptions: opts}, "")
	// Both limits must be spent: past the retry limit it still retries
	// within the age limit.
	for i := 0; i < 5; i++ {
		s.RunTasks("", fail)
		s.FastForward(time.Minute)
	}
	if got := s.Tasks(""); len(got) != 1 || got[0].RetryCount != 5 {
		t.Fatalf("queue holds %+v, want the task after 5 tries", got)
	}
	s.FastForward(time.Hour)
	s.RunTasks("", fail)
	wantNames(t, s, "")
}

func TestTaskqueueBackoff(t *testing.T) {
	r := &tqRetry{minBackoff: 1, maxBackoff: 100, maxDoublings: 2}
	var got []time.Duration
	for n := int32(1); n <= 6; n++ {
		got = append(got, r.backoff(n))
	}
	// Doubling for two retries, then linear steps of 4s, capped at 100s.
	want := []time.Duration{1, 2, 4, 8, 12, 16}
	for i := range want {
		want[i] *= time.Second
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("backoffs %v, want %v", got, want)
	}
	if d := r.backoff(100); d != 100*time.Second {
		t.Fatalf("backoff 100 = %v, want the 100s cap", d)
	}
	// A cap of centuries is valid; the wait saturates rather than
	// overflowing into a retry at once.
	long := &tqRetry{minBackoff: 1e10, maxBackoff: 1e12, maxDoublings: 16}
	if d := long.backoff(20); d < 290*365*24*time.Hour {
		t.Fatalf("backoff of a century-long cap = %v, want the longest Duration", d)
	}
}

func TestSecondsDuration(t *testing.T) {
	for _, tc := range []struct {
		sec  float64
		want time.Duration
	}{
		{1.5, 1500 * time.Millisecond},
		{0, 0},
		{-3, 0},
		{math.NaN(), 0},
		{1e12, time.Duration(math.MaxInt64)},
		{math.Inf(1), time.Duration(math.MaxInt64)},
	} {
		if got := secondsDuration(tc.sec); got != tc.want {
			t.Errorf("secondsDuration(%v) = %v, want %v", tc.sec, got, tc.want)
		}
	}
}

func TestTaskqueuePurgeAndStats(t *testing.T) {
	bothPathsQueues(t, func(t *testing.T, s *Server, ctx context.Context) {
		first := s.Now().Add(-time.Minute).Round(time.Microsecond)
		taskqueue.Add(ctx, &taskqueue.Task{Name: "a", ETA: first}, "")
		taskqueue.Add(ctx, &taskqueue.Task{Name: "b"}, "")
		taskqueue.Add(ctx, &taskqueue.Task{Name: "c", Delay: time.Hour}, "")
		s.RunTasks("", http.NotFoundHandler()) // two runs, both fail
		st, err := taskqueue.QueueStats(ctx, []string{"", "fast", "nosuch"})
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Tasks != 3 || st[0].Executed1Minute != 2 || st[0].EnforcedRate != 5 || st[0].InFlight != 0 {
			t.Fatalf("default queue stats %+v", st[0])
		}
		if st[1].Tasks != 0 || !st[1].OldestETA.IsZero() || st[1].EnforcedRate != 100 {
			t.Fatalf("fast queue stats %+v", st[1])
		}
		if st[2].Tasks != 0 || !st[2].OldestETA.IsZero() {
			t.Fatalf("missing queue stats %+v", st[2])
		}

		if err := taskqueue.Purge(ctx, ""); err != nil {
			t.Fatal(err)
		}
		wantNames(t, s, "")
		if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "c"}, ""); err != taskqueue.ErrTaskAlreadyAdded {
			t.Fatalf("a purged task's name: %v, want it tombstoned", err)
		}
		wantAPIError(t, taskqueue.Purge(ctx, "nosuch"), "UNKNOWN_QUEUE", "")
	})
}

func TestTaskqueuePull(t *testing.T) {
	bothPathsQueues(t, func(t *testing.T, s *Server, ctx context.Context) {
		for i, tag := range []string{"a", "b", "a", ""} {
			task := &taskqueue.Task{Name: "p" + strconv.Itoa(i), Method: "PULL", Tag: tag, Payload: []byte("job" + tag)}
			task.ETA = s.Now().Add(time.Duration(i-10) * time.Second)
			if _, err := taskqueue.Add(ctx, task, "pull"); err != nil {
				t.Fatal(err)
			}
		}
		taskqueue.Add(ctx, &taskqueue.Task{Name: "future", Method: "PULL", Delay: time.Hour}, "pull")

		// Without a tag, LeaseByTag leases the oldest task's tag.
		got, err := taskqueue.LeaseByTag(ctx, 10, "pull", 60, "")
		if err != nil {
			t.Fatal(err)
		}
		if names := taskNames(got); !reflect.DeepEqual(names, []string{"p0", "p2"}) {
			t.Fatalf("leased %q, want the two tasks tagged a", names)
		}
		if got[0].Tag != "a" || string(got[0].Payload) != "joba" || got[0].RetryCount != 1 || got[0].Method != "PULL" {
			t.Fatalf("leased task %+v", got[0])
		}
		if d := got[0].ETA.Sub(s.Now()); d < 59*time.Second || d > 60*time.Second {
			t.Fatalf("lease ends in %v, want 60s", d)
		}
		got, err = taskqueue.LeaseByTag(ctx, 10, "pull", 60, "b")
		if err != nil || !reflect.DeepEqual(taskNames(got), []string{"p1"}) {
			t.Fatalf("LeaseByTag b: %q, %v", taskNames(got), err)
		}
		// Leased tasks are not leased again until their lease ends.
		got, err = taskqueue.Lease(ctx, 10, "pull", 30)
		if err != nil || !reflect.DeepEqual(taskNames(got), []string{"p3"}) {
			t.Fatalf("Lease: %q, %v", taskNames(got), err)
		}

		// ModifyLease extends a lease its holder proves with the ETA.
		p3 := got[0]
		if err := taskqueue.ModifyLease(ctx, p3, "pull", 120); err != nil {
			t.Fatal(err)
		}
		if d := p3.ETA.Sub(s.Now()); d < 119*time.Second || d > 120*time.Second {
			t.Fatalf("modified lease ends in %v, want 120s", d)
		}
		stale := *p3
		stale.ETA = stale.ETA.Add(-time.Second)
		wantAPIError(t, taskqueue.ModifyLease(ctx, &stale, "pull", 10), "TASK_LEASE_EXPIRED", "")
		wantAPIError(t, taskqueue.ModifyLease(ctx, &taskqueue.Task{Name: "nosuch"}, "pull", 10), "UNKNOWN_TASK", "")
		// Giving the lease up makes the task available at once.
		if err := taskqueue.ModifyLease(ctx, p3, "pull", 0); err != nil {
			t.Fatal(err)
		}
		got, _ = taskqueue.Lease(ctx, 10, "pull", 30)
		if !reflect.DeepEqual(taskNames(got), []string{"p3"}) || got[0].RetryCount != 2 {
			t.Fatalf("after giving up the lease: %+v", got)
		}
		s.FastForward(31 * time.Second)
		wantAPIError(t, taskqueue.ModifyLease(ctx, got[0], "pull", 10), "TASK_LEASE_EXPIRED", "")

		if err := taskqueue.Delete(ctx, got[0], "pull"); err != nil {
			t.Fatal(err)
		}
		wantAPIError(t, taskqueue.ModifyLease(ctx, got[0], "pull", 10), "TOMBSTONED_TASK", "")

		_, err = taskqueue.Lease(ctx, 10, "", 60)
		wantAPIError(t, err, "INVALID_QUEUE_MODE", "push queue")
		_, err = taskqueue.Lease(ctx, 0, "pull", 60)
		wantAPIError(t, err, "INVALID_REQUEST", "max tasks")
		_, err = taskqueue.Lease(ctx, 1001, "pull", 60)
		wantAPIError(t, err, "INVALID_REQUEST", "max tasks")
		_, err = taskqueue.Lease(ctx, 1, "pull", 7*24*3600+1)
		wantAPIError(t, err, "INVALID_REQUEST", "lease time")
		_, err = taskqueue.Lease(ctx, 1, "nosuch", 60)
		wantAPIError(t, err, "UNKNOWN_QUEUE", "")
		if _, err := s.RunTasks("pull", http.NotFoundHandler()); err == nil {
			t.Fatal("RunTasks of a pull queue did not fail")
		}
	})
}

func TestTaskqueuePullRetryLimit(t *testing.T) {
	s := serverWithQueues(t, nil)
	ctx := middlewareContext(t, s)
	opts := &taskqueue.RetryOptions{RetryLimit: 2}
	taskqueue.Add(ctx, &taskqueue.Task{Name: "x", Method: "PULL", RetryOptions: opts}, "pull")
	for i := 1; i <= 2; i++ {
		got, err := taskqueue.Lease(ctx, 1, "pull", 10)
		if err != nil || len(got) != 1 {
			t.Fatalf("lease %d: %v %v", i, got, err)
		}
		s.FastForward(11 * time.Second)
	}
	// A task leased as often as its retry limit allows is deleted.
	if got, err := taskqueue.Lease(ctx, 1, "pull", 10); err != nil || len(got) != 0 {
		t.Fatalf("third lease: %v %v", got, err)
	}
	wantNames(t, s, "pull")
}

// Transactional tasks travel with the transaction, which appengine/v2
// attaches only on the bridge.
func TestTaskqueueTransactional(t *testing.T) {
	s := newTestServer(t)
	ctx := bridgeContext(t, s)
	key := datastore.NewKey(ctx, "K", "k", 0, nil)
	type ent struct{ N int }

	err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
		if _, err := datastore.Put(tc, key, &ent{1}); err != nil {
			return err
		}
		if _, err := taskqueue.Add(tc, &taskqueue.Task{Path: "/committed"}, ""); err != nil {
			return err
		}
		if len(s.Tasks("")) != 0 {
			t.Error("a transactional task was added before the commit")
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Tasks(""); len(got) != 1 || got[0].Path != "/committed" {
		t.Fatalf("after the commit the queue holds %+v", got)
	}

	errRollback := errors.New("roll back")
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		taskqueue.Add(tc, &taskqueue.Task{Path: "/rolled-back"}, "")
		return errRollback
	}, nil)
	if err != errRollback || len(s.Tasks("")) != 1 {
		t.Fatalf("rollback: %v, queue %+v", err, s.Tasks(""))
	}

	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		tasks := make([]*taskqueue.Task, 6)
		for i := range tasks {
			tasks[i] = &taskqueue.Task{}
		}
		_, err := taskqueue.AddMulti(tc, tasks, "")
		return err
	}, nil)
	wantAPIError(t, err, "API error 10001", "maximum allowed: 5")
}

func TestQueueYAML(t *testing.T) {
	qs, err := parseQueueYAML([]byte(`
total_storage_limit: 120M
queue:
- name: default
  rate: 20/m
- name: slow
  rate: 1.5/h
  bucket_size: 2
  max_concurrent_requests: 3
  target: worker
  retry_parameters:
    task_retry_limit: 7
    task_age_limit: 2d
    min_backoff_seconds: 0.5
    max_doublings: 3
- name: paused
  rate: 0
- name: worklist
  mode: pull
  acl:
  - user_email: a@example.com
`))
	if err != nil {
		t.Fatal(err)
	}
	byName := make(map[string]*tqQueue)
	for _, q := range qs {
		byName[q.name] = q
	}
	if q := byName["default"]; q.rate != 20.0/60 || q.bucketSize != 5 {
		t.Fatalf("default %+v", q)
	}
	slow := byName["slow"]
	if slow.rate != 1.5/3600 || slow.bucketSize != 2 || slow.maxConcurrent != 3 || slow.target != "worker" {
		t.Fatalf("slow %+v", slow)
	}
	if r := slow.retry; !r.hasLimit || r.limit != 7 || !r.hasAge || r.ageSec != 2*86400 || r.minBackoff != 0.5 || r.maxBackoff != 3600 || r.maxDoublings != 3 {
		t.Fatalf("slow retry %+v", slow.retry)
	}
	if byName["paused"].rate != 0 || !byName["worklist"].pull {
		t.Fatal("paused or pull queue misread")
	}

	for _, bad := range []string{
		"queue:\n- name: a_b\n",
		"queue:\n- name: a\n- name: a\n",
		"queue:\n- name: a\n  rate: 5/x\n",
		"queue:\n- name: a\n  mode: fifo\n",
		"queue:\n- name: a\n  rat: 5/s\n",
		"queue:\n- name: a\n  retry_parameters:\n    task_age_limit: 2w\n",
		"queue:\n- name: a\n  retry_parameters:\n    min_backoff_seconds: 10\n    max_backoff_seconds: 1\n",
		"queue:\n- name: a\n  retry_parameters:\n    task_retry_limit: -1\n",
		"queue: [",
	} {
		if _, err := parseQueueYAML([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if qs, err := parseQueueYAML(nil); err != nil || len(qs) != 0 {
		t.Fatalf("empty file: %v %v", qs, err)
	}

	// The server starts with the file's queues and a default queue.
	path := filepath.Join(t.TempDir(), "queue.yaml")
	os.WriteFile(path, []byte("queue:\n- name: only\n  rate: 1/s\n"), 0o644)
	s, err := NewServerOptions(&Options{QueueYAML: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Tasks("only") == nil || s.Tasks("default") == nil {
		t.Fatal("queues of queue.yaml or the default queue missing")
	}
	os.WriteFile(path, []byte("queue:\n- name: bad_name\n"), 0o644)
	if _, err := NewServerOptions(&Options{QueueYAML: path}); err == nil || !strings.Contains(err.Error(), "bad_name") {
		t.Fatalf("a bad queue.yaml: %v", err)
	}
	if _, err := NewServerOptions(&Options{QueueYAML: filepath.Join(t.TempDir(), "missing.yaml")}); err == nil {
		t.Fatal("a missing queue.yaml did not fail")
	}
}
