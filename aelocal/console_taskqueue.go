package aelocal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// The task queues page: every queue with its settings and figures; a
// queue's tasks in the order they would run, in pages; one task with its
// headers and payload; and buttons that run a push task now, delete a
// task, or purge a queue.
//
// "Run now" sends the task to the app at Options.AppURL at once, the way
// the dispatcher does (same request, same headers), whatever its ETA, its
// queue's rate or a pause, and waits for the answer so that the page can
// show it: a 2xx answer deletes the task, any other schedules its retry,
// as for a run by the dispatcher. Without an AppURL there is nowhere to
// send it, and the page says so.

// errNoAppURL is why a task cannot be run from the console.
var errNoAppURL = errors.New("the app's URL is not set (-app_url, or Options.AppURL), so there is nowhere to send a task: start aelocal with -app_url http://127.0.0.1:8080, or run tasks in a test with Server.RunTasks")

// tasksPerPage is the default size of a page of tasks, one of the sizes
// taskPageSizes lets a person pick.
const tasksPerPage = 50

var taskPageSizes = []int{20, 50, 100, 500}

// taskRunOutcome is what a "Run now" from the console did.
type taskRunOutcome struct {
	Task       string
	At         time.Time
	Duration   time.Duration
	Status     string // "200 OK"; "" when no answer came
	OK         bool   // a 2xx answer
	Err        string // why no answer came
	Body       string // the start of the app's answer
	Deleted    bool   // the task is gone: it succeeded, or its retries ran out
	RetryCount int32  // otherwise its retry count and when it runs again
	NextETA    time.Time
}

type taskqueuesPage struct {
	Queues []queueStatus
	Tasks  int
	AppURL string
	Now    time.Time
}

type queuePage struct {
	Queue     queueStatus
	Tasks     []taskView
	Offset, N int
	PageSizes []int
	AppURL    string
	Now       time.Time
	LastRun   *taskRunOutcome
}

// Prev is the offset of the previous page, -1 on the first.
func (p *queuePage) Prev() int {
	if p.Offset == 0 {
		return -1
	}
	return max(0, p.Offset-p.N)
}

// End is the 1-based number of the last task shown.
func (p *queuePage) End() int { return p.Offset + len(p.Tasks) }

// taskRef is what a task's forms on a listing post: the task, and the
// page to come back to.
type taskRef struct {
	Queue, Task string
	Offset, N   int
}

// Ref is the taskRef of task name on this page.
func (p *queuePage) Ref(name string) taskRef { return taskRef{p.Queue.Name, name, p.Offset, p.N} }

// More reports whether tasks follow this page.
func (p *queuePage) More() bool { return p.End() < p.Queue.Tasks }

// Query is the URL of this queue's listing at offset.
func (p *queuePage) Query(offset int) string {
	return "/taskqueues/queue?" + queueQuery(p.Queue.Name, offset, p.N).Encode()
}

// queueQuery is the query of a queue's listing.
func queueQuery(queue string, offset, n int) url.Values {
	q := url.Values{"name": {queue}}
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	}
	if n != tasksPerPage && slices.Contains(taskPageSizes, n) {
		q.Set("n", strconv.Itoa(n))
	}
	return q
}

type taskPage struct {
	Queue  queueStatus
	Task   taskView
	Body   string
	Hex    bool
	AppURL string
	Now    time.Time
}

func (c *console) taskqueueRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /taskqueues", c.serveTaskqueues)
	mux.HandleFunc("GET /taskqueues/queue", c.serveQueue)
	mux.HandleFunc("GET /taskqueues/task", c.serveTask)
	c.post(mux, "/taskqueues/run", c.postTaskRun)
	c.post(mux, "/taskqueues/delete", c.postTaskDelete)
	c.post(mux, "/taskqueues/purge", c.postQueuePurge)
}

func (c *console) serveTaskqueues(w http.ResponseWriter, r *http.Request) {
	d := &taskqueuesPage{Queues: c.s.queueStatuses(), AppURL: c.appURL, Now: c.s.Now()}
	for _, q := range d.Queues {
		d.Tasks += q.Tasks
	}
	c.render(w, r, http.StatusOK, "taskqueues", &consolePage{Title: "Task queues", Section: "Task queues", Data: d})
}

func (c *console) serveQueue(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &queuePage{N: tasksPerPage, PageSizes: taskPageSizes, AppURL: c.appURL, Now: c.s.Now()}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && slices.Contains(taskPageSizes, n) {
		d.N = n
	}
	if off, err := strconv.Atoi(q.Get("offset")); err == nil && off > 0 {
		d.Offset = off
	}
	var err error
	if d.Queue, d.Tasks, err = c.s.queueTasks(q.Get("name"), d.Offset, d.N); err != nil {
		c.fail(w, r, http.StatusNotFound, err)
		return
	}
	c.mu.Lock()
	if run, ok := c.taskRuns[d.Queue.Name]; ok {
		d.LastRun = &run
	}
	c.mu.Unlock()
	c.render(w, r, http.StatusOK, "queue", &consolePage{Title: "Queue " + d.Queue.Name, Section: "Task queues", Data: d})
}

func (c *console) serveTask(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st, t, err := c.s.queueTask(q.Get("queue"), q.Get("name"))
	if err != nil {
		c.fail(w, r, http.StatusNotFound, err)
		return
	}
	d := &taskPage{Queue: st, Task: t, AppURL: c.appURL, Now: c.s.Now()}
	d.Body, d.Hex = showBytes(t.Body)
	c.render(w, r, http.StatusOK, "task", &consolePage{Title: "Task " + t.Name, Section: "Task queues", Data: d})
}

// backToQueue answers a task form with a redirect to the page of the
// queue's listing the form was on, saying what was done.
func backToQueue(w http.ResponseWriter, r *http.Request, flash string) {
	off, _ := strconv.Atoi(r.PostForm.Get("offset"))
	n, _ := strconv.Atoi(r.PostForm.Get("n"))
	redirect(w, r, "/taskqueues/queue", queueQuery(r.PostForm.Get("queue"), off, n), flash)
}

func (c *console) postTaskRun(w http.ResponseWriter, r *http.Request) {
	if c.appURL == "" {
		c.fail(w, r, http.StatusBadRequest, errNoAppURL)
		return
	}
	queue, name := r.PostForm.Get("queue"), r.PostForm.Get("task")
	run, err := c.s.claimTask(queue, name)
	if err != nil {
		c.fail(w, r, http.StatusConflict, err)
		return
	}
	out := taskRunOutcome{Task: name, At: time.Now()}
	ctx, cancel := context.WithTimeout(r.Context(), tqTaskDeadline)
	status, body, err := run.send(ctx, appClient, c.appURL, answerExcerpt+1)
	cancel()
	out.Duration = time.Since(out.At)
	c.s.taskqueue.finish(run, status)
	if err != nil {
		out.Err = err.Error()
	} else {
		out.Status, out.OK = strconv.Itoa(status)+" "+http.StatusText(status), status/100 == 2
		out.Body = bodyExcerpt(body, answerExcerpt)
	}
	if _, t, err := c.s.queueTask(queue, name); err != nil {
		out.Deleted = true
	} else {
		out.RetryCount, out.NextETA = t.RetryCount, t.ETA
	}
	c.mu.Lock()
	c.taskRuns[queue] = out
	c.mu.Unlock()
	backToQueue(w, r, "taskran")
}

func (c *console) postTaskDelete(w http.ResponseWriter, r *http.Request) {
	if err := c.s.deleteTask(r.PostForm.Get("queue"), r.PostForm.Get("task")); err != nil {
		c.fail(w, r, http.StatusNotFound, err)
		return
	}
	backToQueue(w, r, "taskdeleted")
}

func (c *console) postQueuePurge(w http.ResponseWriter, r *http.Request) {
	queue := r.PostForm.Get("queue")
	if err := c.s.flushQueue(queue); err != nil {
		c.fail(w, r, http.StatusNotFound, err)
		return
	}
	redirect(w, r, "/taskqueues/queue", queueQuery(queue, 0, 0), "purged")
}
