package aelocal

// Pull queues: workers lease tasks and extend or give up their leases; they
// delete the tasks they finished with Delete, as for push tasks.

// pullQueueLocked finds the pull queue a lease RPC names.
func (tq *taskqueueService) pullQueueLocked(name string) (*tqQueue, error) {
	q, err := tq.queueLocked(name)
	if err != nil {
		return nil, err
	}
	if !q.pull {
		return nil, errorf(tqInvalidQueueMode, "queue %q is a push queue: only pull queues lease tasks", name)
	}
	return q, nil
}

// tqQueryAndOwnTasks leases tasks of a pull queue: Lease and LeaseByTag.
func tqQueryAndOwnTasks(s *Server, in, out pmsg) error {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	q, err := tq.pullQueueLocked(in.Str("queue_name"))
	if err != nil {
		return err
	}
	lease, err := leaseSeconds(in)
	if err != nil {
		return err
	}
	maxTasks := in.Int("max_tasks")
	if maxTasks <= 0 || maxTasks > tqMaxTasksPerLease {
		return errorf(tqInvalidRequest, "max tasks %d is out of range: 1 to %d", maxTasks, tqMaxTasksPerLease)
	}
	if in.Has("tag") && !in.Bool("group_by_tag") {
		return errorf(tqInvalidRequest, "a tag was given, but not group_by_tag")
	}
	nowUsec := now.UnixMicro()
	var due []*tqTask
	for _, t := range q.sorted() {
		if t.etaUsec > nowUsec {
			break
		}
		due = append(due, t)
	}
	if in.Bool("group_by_tag") && len(due) > 0 {
		// Without a tag, lease the tag of the oldest task; a task without
		// a tag groups with the other untagged ones.
		tag, hasTag := in.Str("tag"), in.Str("tag") != ""
		if !hasTag {
			tag, hasTag = due[0].tag, due[0].hasTag
		}
		kept := due[:0]
		for _, t := range due {
			if t.hasTag == hasTag && t.tag == tag {
				kept = append(kept, t)
			}
		}
		due = kept
	}
	leaseUsec := int64(lease * 1e6)
	n := int64(0)
	for _, t := range due {
		if n == maxTasks {
			break
		}
		if !tq.retryOf(q, t).canRetry(t.retryCount+1, 0) {
			// Leased as often as its retry limit allows: gone for good.
			q.remove(t, now, true)
			continue
		}
		t.retryCount++
		t.execCount++
		t.etaUsec = nowUsec + leaseUsec
		n++
		r := out.AppendMsg("task")
		r.Set("task_name", t.name)
		r.Set("eta_usec", t.etaUsec)
		r.Set("retry_count", t.retryCount)
		r.Set("body", t.body)
		if t.hasTag {
			r.Set("tag", t.tag)
		}
	}
	return nil
}

// tqModifyTaskLease extends or gives up the lease of a pull task. The
// caller proves it holds the lease with the ETA it was given.
func tqModifyTaskLease(s *Server, in, out pmsg) error {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	q, err := tq.pullQueueLocked(in.Str("queue_name"))
	if err != nil {
		return err
	}
	lease, err := leaseSeconds(in)
	if err != nil {
		return err
	}
	name := in.Str("task_name")
	t := q.tasks[name]
	if t == nil {
		if q.nameState(name, now) == tqTombstonedTask {
			return errorf(tqTombstonedTask, "task %q was deleted", name)
		}
		return errorf(tqUnknownTask, "no task %q in queue %q", name, q.name)
	}
	nowUsec := now.UnixMicro()
	if t.etaUsec != in.Int("eta_usec") || t.etaUsec < nowUsec {
		return errorf(tqTaskLeaseExpired, "the lease of task %q has expired or is held by someone else", name)
	}
	t.etaUsec = nowUsec + int64(lease*1e6)
	out.Set("updated_eta_usec", t.etaUsec)
	return nil
}

// leaseSeconds reads and checks the lease time of a request: production
// allows up to a week.
func leaseSeconds(in pmsg) (float64, error) {
	lease := in.Float("lease_seconds")
	if !(lease >= 0 && lease <= tqMaxLeaseSeconds) {
		return 0, errorf(tqInvalidRequest, "lease time %v s is out of range: 0 to %d", lease, tqMaxLeaseSeconds)
	}
	return lease, nil
}
