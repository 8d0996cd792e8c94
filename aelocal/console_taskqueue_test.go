package aelocal

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2/taskqueue"
)

// taskApp is an app that answers task requests with the status their path
// asks for (/status/500) and records them.
type taskApp struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (a *taskApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.reqs = append(a.reqs, r.Clone(r.Context()))
	a.mu.Unlock()
	if code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/")); err == nil {
		w.WriteHeader(code)
		if code == http.StatusInternalServerError {
			w.Write([]byte("database <down>"))
		}
	}
}

func (a *taskApp) requests() []*http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*http.Request(nil), a.reqs...)
}

func TestConsoleTaskQueues(t *testing.T) {
	app := &taskApp{}
	appSrv := httptest.NewServer(app)
	defer appSrv.Close()
	s := serverWithQueues(t, &Options{AppURL: appSrv.URL})
	ctx := middlewareContext(t, s)
	add := func(task *taskqueue.Task, queue string) {
		t.Helper()
		if _, err := taskqueue.Add(ctx, task, queue); err != nil {
			t.Fatal(err)
		}
	}
	// Due in an hour, so that only the console runs them.
	add(&taskqueue.Task{Name: "ok", Path: "/status/200", Delay: time.Hour, Header: http.Header{"X-Mine": {"<b>mine</b>"}}, Payload: []byte("<script>x</script>")}, "")
	add(&taskqueue.Task{Name: "fails", Path: "/status/500", Delay: 2 * time.Hour, Method: "PUT"}, "")
	add(&taskqueue.Task{Name: "binary", Path: "/status/200", Delay: 3 * time.Hour, Payload: []byte{0, 1, 0xfe}}, "")
	add(&taskqueue.Task{Name: "w1", Method: "PULL", Tag: "red", Payload: []byte("work")}, "pull")
	add(&taskqueue.Task{Name: "w2", Method: "PULL"}, "pull")
	if _, err := taskqueue.Lease(ctx, 1, "pull", 600); err != nil {
		t.Fatal(err)
	}
	// From here the clock stands still: a failed run's retry is due 0.1 s
	// later, and on a loaded machine the dispatcher would run it again while
	// the test goes on, reordering the queue the test checks.
	stopClock(s)

	// The list of queues.
	_, page := getPage(t, s, "/taskqueues")
	mustContain(t, page, "5 tasks waiting in 5 queues", `href="/taskqueues/queue?name=default">default</a>`,
		"push, 5/s, bucket 5", "push, 1/h, bucket 1", "<td data-label=\"Mode\">pull</td>", "Push tasks are sent to <code>"+appSrv.URL)

	// A push queue: its tasks in the order they would run.
	_, page = getPage(t, s, "/taskqueues/queue?name=default")
	mustContain(t, page, "Tasks 1–3 of 3, in the order they would run.", `id="queue-tasks">3<`,
		`<td data-label="Method">PUT</td>`, "<code>/status/500</code>", "(in 1h0m0s)", "retried without limit; backoff from 0.1 s to 3600 s, doubling 16 times")
	if i, j, k := strings.Index(page, ">ok<"), strings.Index(page, ">fails<"), strings.Index(page, ">binary<"); !(0 < i && i < j && j < k) {
		t.Fatalf("tasks out of order (%d, %d, %d):\n%s", i, j, k, page)
	}
	mustContain(t, page, `aria-label="run ok now"`, `aria-label="delete binary"`)

	// A pull queue: lease state and tags, and nothing to run.
	_, page = getPage(t, s, "/taskqueues/queue?name=pull")
	mustContain(t, page, "in the order they would be leased", "leased until", "available", "<code>red</code>", "<em>none</em>")
	if strings.Contains(page, "Run now") || strings.Contains(page, "No app URL") {
		t.Fatalf("a pull queue offers a run:\n%s", page)
	}

	// One task: headers and payload, shown as text.
	_, page = getPage(t, s, "/taskqueues/task?queue=default&name=ok")
	mustContain(t, page, "X-Mine", "&lt;b&gt;mine&lt;/b&gt;", "&lt;script&gt;x&lt;/script&gt;", "18 bytes.")
	_, page = getPage(t, s, "/taskqueues/task?queue=default&name=binary")
	mustContain(t, page, "3 bytes, binary, in hex.", "00 01 fe")
	if code, page := getPage(t, s, "/taskqueues/task?queue=default&name=nosuch"); code != http.StatusNotFound || !strings.Contains(page, "no task") {
		t.Fatalf("a missing task: %d\n%s", code, page)
	}

	post := func(action string, form url.Values) *http.Response {
		t.Helper()
		form.Set("csrf", s.console.token(action))
		return postForm(t, s, action, form, nil)
	}
	// Run now: a success deletes the task, and the page says what the app
	// answered.
	resp := post("/taskqueues/run", url.Values{"queue": {"default"}, "task": {"ok"}, "offset": {"0"}, "n": {"20"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/taskqueues/queue?done=taskran&n=20&name=default" {
		t.Fatalf("run now: %d to %q", resp.StatusCode, loc)
	}
	reqs := app.requests()
	if len(reqs) != 1 || reqs[0].URL.Path != "/status/200" || reqs[0].Header.Get("X-AppEngine-QueueName") != "default" ||
		reqs[0].Header.Get("X-AppEngine-TaskName") != "ok" || reqs[0].Header.Get("X-Mine") != "<b>mine</b>" || reqs[0].Method != "POST" {
		t.Fatalf("the app got %v", reqs)
	}
	wantNames(t, s, "", "fails", "binary")
	_, page = getPage(t, s, "/taskqueues/queue?name=default&done=taskran")
	mustContain(t, page, "Task run; the app", "Task <code>ok</code> at", `<span class="ok">200 OK</span>`, "The task is deleted.",
		`<p class="note" id="last-run-body">The app's answer had no body.</p>`)

	// A failure schedules the retry, as a run of the dispatcher would.
	post("/taskqueues/run", url.Values{"queue": {"default"}, "task": {"fails"}})
	_, page = getPage(t, s, "/taskqueues/queue?name=default")
	mustContain(t, page, `<span class="bad">500 Internal Server Error</span>`, "It stays in the queue: retry 1, due", "(last 500)",
		`<pre class="text" id="last-run-body">database &lt;down&gt;</pre>`)
	if ts := s.Tasks(""); len(ts) != 2 || ts[0].Name != "fails" || ts[0].RetryCount != 1 || time.Until(ts[0].ETA) > time.Minute {
		t.Fatalf("after a failed run the queue holds %+v", ts)
	}
	if app.requests()[1].Method != "PUT" {
		t.Fatal("the task's method was not kept")
	}

	// Not a push task, or gone: refused, clearly.
	if resp := post("/taskqueues/run", url.Values{"queue": {"pull"}, "task": {"w1"}}); resp.StatusCode != http.StatusConflict {
		t.Fatalf("running a pull task: %d", resp.StatusCode)
	}
	if resp := post("/taskqueues/run", url.Values{"queue": {"default"}, "task": {"ok"}}); resp.StatusCode != http.StatusConflict {
		t.Fatalf("running a task that is gone: %d", resp.StatusCode)
	}

	// Delete one, back to the page it was on; purge a queue.
	resp = post("/taskqueues/delete", url.Values{"queue": {"default"}, "task": {"binary"}, "offset": {"0"}, "n": {"50"}})
	if loc := resp.Header.Get("Location"); loc != "/taskqueues/queue?done=taskdeleted&name=default" {
		t.Fatalf("delete: %d to %q", resp.StatusCode, loc)
	}
	wantNames(t, s, "", "fails")
	// Deleted from the console, the name may be used again at once.
	add(&taskqueue.Task{Name: "binary", Delay: time.Hour}, "")
	resp = post("/taskqueues/purge", url.Values{"queue": {"pull"}})
	if loc := resp.Header.Get("Location"); loc != "/taskqueues/queue?done=purged&name=pull" {
		t.Fatalf("purge: %d to %q", resp.StatusCode, loc)
	}
	wantNames(t, s, "pull")
	_, page = getPage(t, s, "/taskqueues/queue?name=pull&done=purged")
	mustContain(t, page, "Queue purged", "No tasks.")
	if resp := post("/taskqueues/purge", url.Values{"queue": {"nosuch"}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("purging a queue that does not exist: %d", resp.StatusCode)
	}
	if code, _ := getPage(t, s, "/taskqueues/queue?name=nosuch"); code != http.StatusNotFound {
		t.Fatalf("a queue that does not exist: %d", code)
	}

	// No answer from the app: the task stays for its retry.
	appSrv.Close()
	post("/taskqueues/run", url.Values{"queue": {"default"}, "task": {"binary"}})
	_, page = getPage(t, s, "/taskqueues/queue?name=default")
	// The error itself varies (a refused dial, or a kept-alive connection
	// the closed server dropped), so only its presence is checked.
	mustContain(t, page, `<span class="bad">no answer</span>`, "It stays in the queue: retry 1")

	// Forms from elsewhere, and GETs, change nothing.
	for _, action := range []string{"/taskqueues/run", "/taskqueues/delete", "/taskqueues/purge"} {
		form := url.Values{"queue": {"default"}, "task": {"fails"}}
		if resp := postForm(t, s, action, form, nil); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s without a token: %d", action, resp.StatusCode)
		}
		form.Set("csrf", s.console.token(action))
		if resp := postForm(t, s, action, form, http.Header{"Origin": {"http://evil.example"}}); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s from another origin: %d", action, resp.StatusCode)
		}
		if code, _ := getPage(t, s, action+"?"+form.Encode()); code != http.StatusMethodNotAllowed {
			t.Fatalf("GET %s: %d", action, code)
		}
	}
	wantNames(t, s, "", "fails", "binary")
}

func TestConsoleTaskQueueWithoutAppURL(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	if _, err := taskqueue.Add(ctx, &taskqueue.Task{Name: "t1", Path: "/work"}, ""); err != nil {
		t.Fatal(err)
	}
	_, page := getPage(t, s, "/taskqueues")
	mustContain(t, page, "No app URL is set")
	_, page = getPage(t, s, "/taskqueues/queue?name=default")
	mustContain(t, page, `id="no-app-url"`, "tasks cannot be run from here", `aria-label="delete t1"`)
	if strings.Contains(page, "Run now") {
		t.Fatal("the page offers to run a task with nowhere to send it")
	}
	_, page = getPage(t, s, "/taskqueues/task?queue=default&name=t1")
	mustContain(t, page, "this task cannot be run from here")
	resp := postForm(t, s, "/taskqueues/run", url.Values{"csrf": {s.console.token("/taskqueues/run")}, "queue": {"default"}, "task": {"t1"}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("run without an app URL: %d", resp.StatusCode)
	}
	// The task is still there for RunTasks.
	if n, err := s.RunTasks("", http.NotFoundHandler()); n != 1 || err != nil {
		t.Fatalf("RunTasks: %d, %v", n, err)
	}
}

func TestConsoleTaskQueuePages(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	const n = 230
	for lo := 0; lo < n; lo += 100 {
		var batch []*taskqueue.Task
		for i := lo; i < min(lo+100, n); i++ {
			batch = append(batch, &taskqueue.Task{Name: "t" + strconv.Itoa(i), Delay: time.Duration(i) * time.Minute})
		}
		if _, err := taskqueue.AddMulti(ctx, batch, ""); err != nil {
			t.Fatal(err)
		}
	}
	_, page := getPage(t, s, "/taskqueues/queue?name=default")
	mustContain(t, page, "Tasks 1–50 of 230", ">t0<", ">t49<")
	if strings.Contains(page, ">t50<") {
		t.Fatal("the first page goes on past 50 tasks")
	}
	next := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(page)
	if next == nil {
		t.Fatal("no link to the next page")
	}
	_, page = getPage(t, s, html.UnescapeString(next[1]))
	mustContain(t, page, "Tasks 51–100 of 230", ">t50<", "« First", "rel=\"prev\"")
	_, page = getPage(t, s, "/taskqueues/queue?name=default&n=100&offset=200")
	mustContain(t, page, "Tasks 201–230 of 230", ">t229<")
	if strings.Contains(page, `rel="next"`) {
		t.Fatal("the last page links to a next one")
	}
	_, page = getPage(t, s, "/taskqueues/queue?name=default&offset=5000")
	mustContain(t, page, "No tasks on this page (230 in all).")
	// A page size it does not offer is the default.
	_, page = getPage(t, s, "/taskqueues/queue?name=default&n=100000")
	mustContain(t, page, "Tasks 1–50 of 230")
}
