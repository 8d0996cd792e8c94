package aelocal

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"
)

// What the local console shows of task queues and does to them, as
// dev_appserver's admin console did. None of it is an App Engine API.

// queueStatus describes a queue for the console.
type queueStatus struct {
	Name          string
	Pull          bool
	Rate          string // as queue.yaml gives it, "" for a pull queue
	BucketSize    int
	MaxConcurrent int // 0: no limit
	Tasks         int
	OldestETA     time.Time // zero when empty
	InFlight      int
	RanLastMinute int
	RanLastHour   int
	Retry         tqRetry // the queue's retry parameters, or the defaults
}

// queueStatuses describes every queue, sorted by name.
func (s *Server) queueStatuses() []queueStatus {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	out := make([]queueStatus, 0, len(tq.queues))
	for _, q := range tq.queues {
		out = append(out, q.status(now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// status describes q; the caller holds the service's lock.
func (q *tqQueue) status(now time.Time) queueStatus {
	st := queueStatus{
		Name: q.name, Pull: q.pull, Rate: q.rateString, BucketSize: q.bucketSize,
		MaxConcurrent: q.maxConcurrent, Tasks: len(q.tasks), InFlight: q.inFlight,
		RanLastMinute: q.runsSince(now.Add(-time.Minute)), RanLastHour: q.runsSince(now.Add(-time.Hour)),
		Retry: *defaultRetry(),
	}
	if q.retry != nil {
		st.Retry = *q.retry
	}
	if o := q.oldestUsec(); o >= 0 {
		st.OldestETA = time.UnixMicro(o)
	}
	return st
}

// taskView is a task as the console shows it: a copy, taken under the
// lock.
type taskView struct {
	Name        string
	ETA         time.Time // a leased pull task's: the end of its lease
	Created     time.Time
	Method, URL string // Method is PULL for a pull task, which has no URL
	RetryCount  int32  // a pull task's: how often it was leased
	ExecCount   int32
	LastStatus  int // HTTP status of the previous run, 0 if none
	Running     bool
	Leased      bool // a pull task whose lease has not run out
	Tag         string
	HasTag      bool
	Size        int // payload bytes
	OwnRetry    bool
	Retry       tqRetry // the parameters that govern the task
	Headers     []headerView
	Body        []byte // only from queueTask
}

// headerView is a header of a push task.
type headerView struct{ Key, Value string }

func (tq *taskqueueService) viewLocked(q *tqQueue, t *tqTask, now time.Time, body bool) taskView {
	v := taskView{
		Name: t.name, ETA: t.eta(), Created: t.created, Method: t.method, URL: t.url,
		RetryCount: t.retryCount, ExecCount: t.execCount, LastStatus: t.lastStatus, Running: t.running,
		Tag: t.tag, HasTag: t.hasTag, Size: len(t.body), OwnRetry: t.retry != nil, Retry: *tq.retryOf(q, t),
	}
	for _, h := range t.headers {
		v.Headers = append(v.Headers, headerView{h.key, h.value})
	}
	// A pull task's retry count is the number of its leases, and a lease
	// moves its ETA to the lease's end; while that is ahead, it is leased.
	v.Leased = q.pull && t.retryCount > 0 && t.etaUsec > now.UnixMicro()
	if body {
		v.Body = bytes.Clone(t.body)
	}
	return v
}

// queueTasks returns a queue's status and the tasks at positions
// [offset, offset+n) of the order they would run in.
func (s *Server) queueTasks(queue string, offset, n int) (queueStatus, []taskView, error) {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	q := tq.queues[queue]
	if q == nil {
		return queueStatus{}, nil, fmt.Errorf("no queue %q", queue)
	}
	st := q.status(now)
	if offset >= len(q.tasks) || n <= 0 {
		return st, nil, nil
	}
	sorted := q.sorted()
	page := sorted[offset:min(offset+n, len(sorted))]
	out := make([]taskView, len(page))
	for i, t := range page {
		out[i] = tq.viewLocked(q, t, now, false)
	}
	return st, out, nil
}

// queueTask returns one task of a queue with its payload.
func (s *Server) queueTask(queue, name string) (queueStatus, taskView, error) {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	t, err := tq.consoleTaskLocked(queue, name)
	if err != nil {
		return queueStatus{}, taskView{}, err
	}
	q := tq.queues[queue]
	return q.status(now), tq.viewLocked(q, t, now, true), nil
}

// claimTask starts a push task at once, whatever its ETA, its queue's
// rate or a pause, for the console's "Run now"; the caller sends the run
// to the app and hands the answer to finish, as the dispatcher does.
func (s *Server) claimTask(queue, name string) (taskRun, error) {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	t, err := tq.consoleTaskLocked(queue, name)
	if err != nil {
		return taskRun{}, err
	}
	q := tq.queues[queue]
	switch {
	case q.pull:
		return taskRun{}, fmt.Errorf("%q is a pull queue: its tasks are leased by workers, not sent to the app", queue)
	case t.running:
		return taskRun{}, fmt.Errorf("task %q is being sent to the app right now", name)
	}
	return tq.startLocked(q, t, now), nil
}

// deleteTask deletes a task without tombstoning its name, as the console
// did: a developer may add it again at once.
func (s *Server) deleteTask(queue, name string) error {
	tq := s.taskqueue
	tq.mu.Lock()
	defer tq.mu.Unlock()
	t, err := tq.consoleTaskLocked(queue, name)
	if err != nil {
		return err
	}
	tq.queues[queue].remove(t, time.Time{}, false)
	return nil
}

// flushQueue deletes every task of a queue and forgets its tombstones.
func (s *Server) flushQueue(queue string) error {
	tq := s.taskqueue
	tq.mu.Lock()
	defer tq.mu.Unlock()
	q := tq.queues[queue]
	if q == nil {
		return fmt.Errorf("no queue %q", queue)
	}
	clear(q.tasks)
	clear(q.tombstones)
	return nil
}

func (tq *taskqueueService) consoleTaskLocked(queue, name string) (*tqTask, error) {
	q := tq.queues[queue]
	if q == nil {
		return nil, fmt.Errorf("no queue %q", queue)
	}
	t := q.tasks[name]
	if t == nil {
		return nil, fmt.Errorf("no task %q in queue %q (run, deleted or purged since the page was loaded)", name, queue)
	}
	return t, nil
}

// String describes retry parameters for a person: "up to 5 retries for at
// least 1h0m0s; backoff from 0.1 s to 3600 s, doubling 16 times".
func (r tqRetry) String() string {
	var b strings.Builder
	switch {
	case r.hasLimit && r.hasAge:
		fmt.Fprintf(&b, "until both %d retries and %v have passed", r.limit, time.Duration(r.ageSec)*time.Second)
	case r.hasLimit:
		fmt.Fprintf(&b, "up to %d retries", r.limit)
	case r.hasAge:
		fmt.Fprintf(&b, "retried for %v", time.Duration(r.ageSec)*time.Second)
	default:
		b.WriteString("retried without limit")
	}
	fmt.Fprintf(&b, "; backoff from %v s to %v s, doubling %d times", r.minBackoff, r.maxBackoff, r.maxDoublings)
	return b.String()
}
