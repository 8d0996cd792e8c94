package aelocal

import (
	"fmt"
	"sort"
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
}

// queueStatuses describes every queue, sorted by name.
func (s *Server) queueStatuses() []queueStatus {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	out := make([]queueStatus, 0, len(tq.queues))
	for _, q := range tq.queues {
		st := queueStatus{
			Name: q.name, Pull: q.pull, Rate: q.rateString, BucketSize: q.bucketSize,
			MaxConcurrent: q.maxConcurrent, Tasks: len(q.tasks), InFlight: q.inFlight,
			RanLastMinute: q.runsSince(now.Add(-time.Minute)), RanLastHour: q.runsSince(now.Add(-time.Hour)),
		}
		if o := q.oldestUsec(); o >= 0 {
			st.OldestETA = time.UnixMicro(o)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// runTaskNow makes a task due at once, as the console's "Run now" did: the
// dispatcher sends it to the app if the server has an AppURL, RunTasks
// otherwise.
func (s *Server) runTaskNow(queue, name string) error {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	t, err := tq.consoleTaskLocked(queue, name)
	if err == nil {
		t.etaUsec = now.UnixMicro()
	}
	tq.mu.Unlock()
	tq.notify()
	return err
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
		return fmt.Errorf("aelocal: no queue %q", queue)
	}
	for _, t := range q.tasks {
		q.remove(t, time.Time{}, false)
	}
	clear(q.tombstones)
	return nil
}

func (tq *taskqueueService) consoleTaskLocked(queue, name string) (*tqTask, error) {
	q := tq.queues[queue]
	if q == nil {
		return nil, fmt.Errorf("aelocal: no queue %q", queue)
	}
	t := q.tasks[name]
	if t == nil {
		return nil, fmt.Errorf("aelocal: no task %q in queue %q", name, queue)
	}
	return t, nil
}
