package aelocal

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/appengine/v2/taskqueue"
)

// tqTaskDeadline is how long a push task's request may take, as in
// production for tasks of automatically scaled services.
const tqTaskDeadline = 10 * time.Minute

// tqSourceIP is the address push task requests come from in production.
const tqSourceIP = "0.1.0.2"

// Headers App Engine sets on a push task's request; a task's own headers of
// these names are dropped, as production does.
var tqReservedHeaders = map[string]bool{
	"X-Appengine-Queuename":            true,
	"X-Appengine-Taskname":             true,
	"X-Appengine-Taskretrycount":       true,
	"X-Appengine-Taskexecutioncount":   true,
	"X-Appengine-Tasketa":              true,
	"X-Appengine-Taskpreviousresponse": true,
	"X-Appengine-Taskretryreason":      true,
	"X-Appengine-Failfast":             true,
	"X-Appengine-Development-Payload":  true,
	"Content-Length":                   true,
	"Host":                             true,
}

// Tasks returns the tasks waiting in a queue ("" is the default queue), in
// the order they would run: by ETA, then in the order they were added. A
// leased pull task's ETA is the end of its lease. Tasks returns nil for a
// queue that does not exist. The tasks are copies: changing them changes
// nothing on the server.
func (s *Server) Tasks(queue string) []*taskqueue.Task {
	if queue == "" {
		queue = tqDefaultQueue
	}
	tq := s.taskqueue
	tq.mu.Lock()
	defer tq.mu.Unlock()
	q := tq.queues[queue]
	if q == nil {
		return nil
	}
	out := make([]*taskqueue.Task, 0, len(q.tasks))
	for _, t := range q.sorted() {
		out = append(out, t.export())
	}
	return out
}

// export converts a task to the client's type.
func (t *tqTask) export() *taskqueue.Task {
	out := &taskqueue.Task{
		Path:       t.url,
		Payload:    bytes.Clone(t.body),
		Method:     t.method,
		Name:       t.name,
		ETA:        t.eta(),
		RetryCount: t.retryCount,
		Tag:        t.tag,
	}
	if len(t.headers) > 0 {
		out.Header = make(http.Header)
		for _, h := range t.headers {
			out.Header.Add(h.key, h.value)
		}
	}
	if r := t.retry; r != nil {
		out.RetryOptions = &taskqueue.RetryOptions{
			MinBackoff:            time.Duration(r.minBackoff * float64(time.Second)),
			MaxBackoff:            time.Duration(r.maxBackoff * float64(time.Second)),
			MaxDoublings:          r.maxDoublings,
			ApplyZeroMaxDoublings: r.maxDoublings == 0,
		}
		if r.hasLimit {
			out.RetryOptions.RetryLimit = r.limit
		}
		if r.hasAge {
			out.RetryOptions.AgeLimit = time.Duration(r.ageSec) * time.Second
		}
	}
	return out
}

// RunTasks sends each push task of a queue ("" is the default queue) that
// is due by the server's clock (see FastForward) to h, as App Engine would:
// with the task's method, URL, headers and payload, App Engine's task
// headers (X-AppEngine-QueueName, X-AppEngine-TaskName,
// X-AppEngine-TaskRetryCount, X-AppEngine-TaskExecutionCount,
// X-AppEngine-TaskETA, X-AppEngine-TaskPreviousResponse on a retry) and a
// context on which appengine.NewContext works, whose API calls s serves.
//
// A task answered with a 2xx status is deleted. Any other status keeps it
// for a retry after the backoff of its retry options (or its queue's), or
// deletes it once its retry and age limits are both spent. RunTasks returns
// how many tasks ran. Tasks that become due while it runs, retries
// included, wait for the next call, so a handler that queues more work
// cannot keep RunTasks from returning.
//
// Queue rates do not apply: a test runs as many tasks as are due. The
// error is for a queue that does not exist or is a pull queue.
func (s *Server) RunTasks(queue string, h http.Handler) (int, error) {
	if queue == "" {
		queue = tqDefaultQueue
	}
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	q := tq.queues[queue]
	if q == nil {
		tq.mu.Unlock()
		return 0, fmt.Errorf("aelocal: RunTasks: queue %q does not exist", queue)
	}
	if q.pull {
		tq.mu.Unlock()
		return 0, fmt.Errorf("aelocal: RunTasks: queue %q is a pull queue; lease its tasks", queue)
	}
	var batch []taskRun
	for _, t := range q.sorted() {
		if t.etaUsec > now.UnixMicro() {
			break
		}
		if !t.running {
			batch = append(batch, tq.startLocked(q, t, now))
		}
	}
	tq.mu.Unlock()

	mw := s.Middleware(h)
	for _, run := range batch {
		req, err := run.request(context.Background(), "http://"+s.appHost())
		status := http.StatusBadRequest
		if err == nil {
			rec := httptest.NewRecorder()
			mw.ServeHTTP(rec, req)
			status = rec.Code
		}
		tq.finish(run, status)
	}
	return len(batch), nil
}

// taskRun is one execution of a task: a snapshot of what the request needs,
// taken under the lock, so the request is built without it.
type taskRun struct {
	q       *tqQueue
	t       *tqTask
	method  string
	url     string
	body    []byte
	header  http.Header
	started time.Time
}

// startLocked marks t as running and snapshots its request.
func (tq *taskqueueService) startLocked(q *tqQueue, t *tqTask, now time.Time) taskRun {
	t.running = true
	if t.firstTry.IsZero() {
		t.firstTry = now
	}
	q.inFlight++
	h := make(http.Header)
	for _, kv := range t.headers {
		if k := http.CanonicalHeaderKey(kv.key); !tqReservedHeaders[k] {
			h.Add(k, kv.value)
		}
	}
	h.Set("X-AppEngine-QueueName", q.name)
	h.Set("X-AppEngine-TaskName", t.name)
	h.Set("X-AppEngine-TaskRetryCount", strconv.Itoa(int(t.retryCount)))
	h.Set("X-AppEngine-TaskExecutionCount", strconv.Itoa(int(t.execCount)))
	// Seconds with microseconds, as the SDK's Python and Java development
	// servers send it. (taskqueue.ParseRequestHeaders reads only whole
	// seconds and so reports no ETA for it.)
	h.Set("X-AppEngine-TaskETA", strconv.FormatFloat(float64(t.etaUsec)/1e6, 'f', 6, 64))
	if t.lastStatus != 0 {
		h.Set("X-AppEngine-TaskPreviousResponse", strconv.Itoa(t.lastStatus))
	}
	// Task requests come from this address in production; appengine's
	// middleware makes it the request's RemoteAddr.
	h.Set("X-AppEngine-User-IP", tqSourceIP)
	if len(t.body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/octet-stream")
	}
	return taskRun{q: q, t: t, method: t.method, url: t.url, body: t.body, header: h, started: now}
}

// request builds the HTTP request of a run, for the app at base.
func (r taskRun) request(ctx context.Context, base string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, r.method, strings.TrimSuffix(base, "/")+r.url, bytes.NewReader(r.body))
	if err != nil {
		return nil, err
	}
	req.Header = r.header.Clone()
	req.RequestURI = r.url
	req.RemoteAddr = tqSourceIP + ":0"
	return req, nil
}

// finish records the outcome of a run: a 2xx status deletes the task, any
// other schedules its retry or, past its limits, deletes it.
func (tq *taskqueueService) finish(run taskRun, status int) {
	now := tq.now()
	tq.mu.Lock()
	defer tq.notify()
	defer tq.mu.Unlock()
	q, t := run.q, run.t
	q.inFlight--
	q.noteRun(now)
	t.running = false
	if q.tasks[t.name] != t {
		return // deleted or purged while it ran
	}
	if status >= 200 && status < 300 {
		q.remove(t, now, true)
		return
	}
	t.execCount++
	t.lastStatus = status
	r := tq.retryOf(q, t)
	if !r.canRetry(t.retryCount+1, now.Sub(t.firstTry)) {
		q.remove(t, now, true)
		return
	}
	t.retryCount++
	t.etaUsec = now.Add(r.backoff(t.retryCount)).UnixMicro()
}

// dispatcher sends due push tasks to the app at AppURL, at each queue's
// rate, as dev_appserver did.
type dispatcher struct {
	base   *url.URL
	client *http.Client
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop has returned
	runs   sync.WaitGroup
}

// startDispatcher starts sending tasks to the app at base.
func (s *Server) startDispatcher(base *url.URL) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &dispatcher{
		base: base,
		client: &http.Client{
			Transport: newAppTransport(),
			Timeout:   tqTaskDeadline,
			// A redirect is an answer like any other non-2xx one.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	s.taskqueue.disp = d
	go s.dispatchLoop(d)
}

// stopDispatcher stops the loop and waits for the requests under way.
func (s *Server) stopDispatcher() {
	d := s.taskqueue.disp
	if d == nil {
		return
	}
	d.cancel()
	<-d.done
	d.runs.Wait()
	d.client.CloseIdleConnections()
}

// newAppTransport makes a transport for requests to the app, of the
// dispatcher or the front end alone, so that Close can close its idle
// connections (and their goroutines) instead of leaving them in
// http.DefaultTransport.
func newAppTransport() *http.Transport {
	return http.DefaultTransport.(*http.Transport).Clone()
}

func (s *Server) dispatchLoop(d *dispatcher) {
	defer close(d.done)
	tq := s.taskqueue
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		runs, wait := tq.claimDue(tq.now())
		for _, run := range runs {
			d.runs.Add(1)
			go func() {
				defer d.runs.Done()
				tq.finish(run, d.send(run))
			}()
		}
		timer.Reset(wait)
		select {
		case <-d.ctx.Done():
			return
		case <-tq.wake:
		case <-timer.C:
		}
	}
}

// claimDue starts the push tasks that are due and that their queues' token
// buckets and concurrency limits allow, and says how long to wait before
// looking again.
func (tq *taskqueueService) claimDue(now time.Time) ([]taskRun, time.Duration) {
	tq.mu.Lock()
	defer tq.mu.Unlock()
	wait := time.Hour
	nowUsec := now.UnixMicro()
	var runs []taskRun
	for _, q := range tq.queues {
		if q.pull || q.rate <= 0 {
			continue // a rate of 0 pauses a queue
		}
		q.refill(now)
		for _, t := range q.sorted() {
			if t.running {
				continue
			}
			if t.etaUsec > nowUsec {
				wait = min(wait, time.Duration(t.etaUsec-nowUsec)*time.Microsecond)
				break
			}
			if q.maxConcurrent > 0 && q.inFlight >= q.maxConcurrent {
				break // finish wakes the loop
			}
			if q.tokens < 1 {
				wait = min(wait, secondsDuration((1-q.tokens)/q.rate))
				break
			}
			q.tokens--
			runs = append(runs, tq.startLocked(q, t, now))
		}
	}
	return runs, max(wait, time.Millisecond)
}

// refill adds the tokens the queue's rate earned since the last refill.
func (q *tqQueue) refill(now time.Time) {
	if !q.refilledAt.IsZero() && now.After(q.refilledAt) {
		q.tokens += now.Sub(q.refilledAt).Seconds() * q.rate
	}
	q.refilledAt = now
	// A bucket of size 0 still lets one task through at the queue's rate.
	q.tokens = min(q.tokens, float64(max(q.bucketSize, 1)))
}

// send makes a run's request to the app and returns the status; 0 when no
// answer came, which counts as a failure.
func (d *dispatcher) send(run taskRun) int {
	status, _, err := run.send(d.ctx, d.client, d.base.String(), 0)
	if err != nil {
		return 0
	}
	return status
}

// send makes the run's request to the app at base with client and returns
// the status of the answer and up to keep bytes of its body, or 0 and why
// no answer came.
func (r taskRun) send(ctx context.Context, client *http.Client, base string, keep int) (int, []byte, error) {
	req, err := r.request(ctx, base)
	if err != nil {
		return 0, nil, err
	}
	req.RequestURI = ""
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, int64(keep)))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, body, nil
}
