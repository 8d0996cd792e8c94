package aelocal

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Application error codes of the taskqueue service
// (TaskQueueServiceError.ErrorCode).
const (
	tqOK                     = 0
	tqUnknownQueue           = 1
	tqInvalidTaskName        = 5
	tqInvalidQueueName       = 6
	tqInvalidURL             = 7
	tqTaskTooLarge           = 4
	tqTaskAlreadyExists      = 10
	tqTombstonedTask         = 11
	tqInvalidETA             = 12
	tqInvalidRequest         = 13
	tqUnknownTask            = 14
	tqDuplicateTaskName      = 16
	tqSkipped                = 17
	tqTooManyTasks           = 18
	tqInvalidRetryParameters = 20
	tqInvalidQueueMode       = 21
	tqTaskLeaseExpired       = 25
	tqInvalidTag             = 27
	tqDatastoreError         = 10000 // plus the datastore's own code
)

// Limits of the production service. The Python SDK's client enforces most
// of them before it sends a request and its stub does not; the Go client
// checks none, so production answers the errors below and so does aelocal.
const (
	tqMaxTasksPerAdd     = 100
	tqMaxTasksPerLease   = 1000
	tqMaxLeaseSeconds    = 7 * 24 * 3600
	tqMaxPushTaskBytes   = 100 << 10
	tqMaxPullTaskBytes   = 1 << 20
	tqMaxURLLength       = 2083
	tqMaxTagLength       = 500
	tqMaxETA             = 30 * 24 * time.Hour
	tqMaxTxTasks         = 5 // transactional tasks per datastore transaction
	tqTombstoneLifetime  = 9 * 24 * time.Hour
	tqMinPrune           = 1024 // tombstones a queue holds before it looks for expired ones
	tqDefaultQueue       = "default"
	tqDefaultRate        = 5.0 // tasks a second
	tqDefaultRateString  = "5/s"
	tqDefaultBucketSize  = 5
	tqDefaultMinBackoff  = 0.1  // seconds
	tqDefaultMaxBackoff  = 3600 // seconds
	tqDefaultMaxDoubling = 16
)

var (
	tqQueueNameRE = regexp.MustCompile(`^[a-zA-Z0-9-]{1,100}$`)
	tqTaskNameRE  = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,500}$`)
)

// Request methods of TaskQueueAddRequest.RequestMethod.
var tqMethodNames = map[int64]string{1: "GET", 2: "POST", 3: "HEAD", 4: "PUT", 5: "DELETE"}

const tqModePull = 1 // TaskQueueMode.PULL

// tqRetry is a task's or a queue's retry parameters. Unset fields take the
// defaults of TaskQueueRetryParameters.
type tqRetry struct {
	hasLimit, hasAge bool
	limit            int32
	ageSec           int64
	minBackoff       float64 // seconds
	maxBackoff       float64 // seconds
	maxDoublings     int32
}

func defaultRetry() *tqRetry {
	return &tqRetry{minBackoff: tqDefaultMinBackoff, maxBackoff: tqDefaultMaxBackoff, maxDoublings: tqDefaultMaxDoubling}
}

// retryFromProto reads a TaskQueueRetryParameters message.
func retryFromProto(p pmsg) *tqRetry {
	r := &tqRetry{
		hasLimit:     p.Has("retry_limit"),
		limit:        int32(p.Int("retry_limit")),
		hasAge:       p.Has("age_limit_sec"),
		ageSec:       p.Int("age_limit_sec"),
		minBackoff:   p.Float("min_backoff_sec"),
		maxBackoff:   p.Float("max_backoff_sec"),
		maxDoublings: int32(p.Int("max_doublings")),
	}
	return r
}

func (r *tqRetry) valid() bool {
	return r.limit >= 0 && r.ageSec >= 0 && r.minBackoff >= 0 && r.maxBackoff >= 0 &&
		r.minBackoff <= r.maxBackoff && r.maxDoublings >= 0 &&
		!math.IsNaN(r.minBackoff) && !math.IsNaN(r.maxBackoff)
}

// canRetry reports whether a task may have its retry number n (1 for the
// first retry) after age since its first try. With both limits set, both
// must be exceeded before the task fails for good, as production documents.
func (r *tqRetry) canRetry(n int32, age time.Duration) bool {
	withinCount := r.limit >= n
	withinAge := time.Duration(r.ageSec)*time.Second >= age
	switch {
	case r.hasLimit && r.hasAge:
		return withinCount || withinAge
	case r.hasLimit:
		return withinCount
	case r.hasAge:
		return withinAge
	}
	return true
}

// backoff is the wait before retry number n: min_backoff doubled for each
// of the first max_doublings retries, then growing linearly, capped at
// max_backoff.
func (r *tqRetry) backoff(n int32) time.Duration {
	exp := min(n-1, r.maxDoublings)
	if exp < 0 {
		exp = 0
	}
	steps := n - exp
	sec := r.minBackoff * math.Pow(2, float64(min(exp, 1023)))
	if steps > 1 {
		sec *= float64(steps)
	}
	sec = min(sec, r.maxBackoff)
	return secondsDuration(sec)
}

// secondsDuration converts seconds to a Duration, saturating instead of
// overflowing: queue.yaml and retry options may name absurd but valid
// values (a max backoff of centuries, a rate of one task a year), and an
// overflowed Duration would turn a long wait into none.
func secondsDuration(sec float64) time.Duration {
	const maxSec = float64(math.MaxInt64 / int64(time.Second))
	switch {
	case sec != sec || sec <= 0: // NaN, or nothing to wait
		return 0
	case sec >= maxSec:
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(sec * float64(time.Second))
}

// tqHeader is one header of a push task, in the order the app gave them.
type tqHeader struct{ key, value string }

// tqTask is a task waiting in a queue.
type tqTask struct {
	name       string
	chosen     bool   // the service chose the name
	seq        uint64 // order of insertion: breaks ties between equal ETAs
	etaUsec    int64  // when it may run or be leased; a leased pull task's lease end
	created    time.Time
	method     string // GET, POST, HEAD, PUT, DELETE, or PULL
	url        string
	headers    []tqHeader
	body       []byte
	tag        string
	hasTag     bool
	retry      *tqRetry // nil: the queue's
	retryCount int32
	execCount  int32
	firstTry   time.Time // zero until the first run
	lastStatus int       // HTTP status of the previous run, 0 if none
	running    bool      // being sent to the app now
}

func (t *tqTask) eta() time.Time { return time.UnixMicro(t.etaUsec) }

// tqQueue is one queue: its configuration and its tasks.
type tqQueue struct {
	name          string
	pull          bool
	rate          float64 // push tasks a second; 0 pauses the queue
	rateString    string
	bucketSize    int
	maxConcurrent int // 0: no limit
	retry         *tqRetry
	target        string

	tasks      map[string]*tqTask
	tombstones map[string]time.Time // names deleted or run, and when
	pruneAt    int                  // prune expired tombstones at this many

	// dispatcher state
	tokens     float64
	refilledAt time.Time
	inFlight   int
	runs       []time.Time // when tasks ran, the last hour of them
}

func newQueue(name string) *tqQueue {
	return &tqQueue{
		name:       name,
		rate:       tqDefaultRate,
		rateString: tqDefaultRateString,
		bucketSize: tqDefaultBucketSize,
		tasks:      make(map[string]*tqTask),
		tombstones: make(map[string]time.Time),
		pruneAt:    tqMinPrune,
		tokens:     tqDefaultBucketSize,
	}
}

// sorted returns the queue's tasks in the order they would run.
func (q *tqQueue) sorted() []*tqTask {
	out := make([]*tqTask, 0, len(q.tasks))
	for _, t := range q.tasks {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *tqTask) int {
		if c := cmp.Compare(a.etaUsec, b.etaUsec); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return out
}

// nameState says whether a name is free in the queue, taken by a waiting
// task, or tombstoned by one deleted or run in the last nine days.
func (q *tqQueue) nameState(name string, now time.Time) int32 {
	if _, ok := q.tasks[name]; ok {
		return tqTaskAlreadyExists
	}
	if at, ok := q.tombstones[name]; ok {
		if now.Sub(at) < tqTombstoneLifetime {
			return tqTombstonedTask
		}
		delete(q.tombstones, name)
	}
	return tqOK
}

// remove takes a task out of the queue. A tombstone keeps the name an app
// gave a task from being used again for nine days, as production does; the
// stub keeps names forever, which would make a test that moves the clock
// on see a refusal production would not give. Names the service chose are
// never chosen again, so they need no tombstone.
func (q *tqQueue) remove(t *tqTask, now time.Time, tombstone bool) {
	delete(q.tasks, t.name)
	if !tombstone || t.chosen {
		return
	}
	q.tombstones[t.name] = now
	if len(q.tombstones) >= q.pruneAt {
		for name, at := range q.tombstones {
			if now.Sub(at) >= tqTombstoneLifetime {
				delete(q.tombstones, name)
			}
		}
		q.pruneAt = max(2*len(q.tombstones), tqMinPrune)
	}
}

func (q *tqQueue) oldestUsec() int64 {
	oldest := int64(-1)
	for _, t := range q.tasks {
		if oldest < 0 || t.etaUsec < oldest {
			oldest = t.etaUsec
		}
	}
	return oldest
}

// noteRun records an execution for the queue's statistics.
func (q *tqQueue) noteRun(now time.Time) {
	cut := 0
	for cut < len(q.runs) && now.Sub(q.runs[cut]) > time.Hour {
		cut++
	}
	q.runs = append(q.runs[cut:], now)
}

func (q *tqQueue) runsSince(t time.Time) int {
	n := 0
	for _, r := range q.runs {
		if !r.Before(t) {
			n++
		}
	}
	return n
}

// taskqueueService implements the "taskqueue" service.
type taskqueueService struct {
	now func() time.Time

	mu     sync.Mutex
	queues map[string]*tqQueue
	nextID int64 // for chosen task names
	seq    uint64

	wake chan struct{} // nudges the dispatcher; buffered, one slot
	disp *dispatcher   // nil unless the server has an AppURL
}

func newTaskqueueService(now func() time.Time) *taskqueueService {
	return &taskqueueService{
		now:    now,
		queues: map[string]*tqQueue{tqDefaultQueue: newQueue(tqDefaultQueue)},
		wake:   make(chan struct{}, 1),
	}
}

// setQueues replaces the queue configuration by the queues of a queue.yaml.
func (tq *taskqueueService) setQueues(qs []*tqQueue) {
	tq.mu.Lock()
	defer tq.mu.Unlock()
	tq.queues = make(map[string]*tqQueue)
	for _, q := range qs {
		tq.queues[q.name] = q
	}
	if tq.queues[tqDefaultQueue] == nil {
		tq.queues[tqDefaultQueue] = newQueue(tqDefaultQueue)
	}
}

// notify wakes the dispatcher, if any, to look at the queues again.
func (tq *taskqueueService) notify() {
	select {
	case tq.wake <- struct{}{}:
	default:
	}
}

// queueLocked finds the queue an RPC names.
func (tq *taskqueueService) queueLocked(name string) (*tqQueue, error) {
	if name == "" {
		return nil, errorf(tqInvalidQueueName, "the queue name is empty")
	}
	q := tq.queues[name]
	if q == nil {
		return nil, errorf(tqUnknownQueue, "queue %q does not exist: declare it in queue.yaml", name)
	}
	return q, nil
}

// chooseNameLocked picks a name for an unnamed task: "task1", "task2", ...
// as the SDK stub does, skipping names an app gave its own tasks.
func (tq *taskqueueService) chooseNameLocked(q *tqQueue, now time.Time, taken map[string]bool) string {
	for {
		tq.nextID++
		name := "task" + strconv.FormatInt(tq.nextID, 10)
		if q.nameState(name, now) == tqOK && !taken[name] {
			return name
		}
	}
}

func init() {
	const p = "appengine.v2."
	register("taskqueue", "Add", p+"TaskQueueAddRequest", p+"TaskQueueAddResponse", tqAdd)
	register("taskqueue", "BulkAdd", p+"TaskQueueBulkAddRequest", p+"TaskQueueBulkAddResponse", tqBulkAdd)
	register("taskqueue", "Delete", p+"TaskQueueDeleteRequest", p+"TaskQueueDeleteResponse", tqDelete)
	register("taskqueue", "PurgeQueue", p+"TaskQueuePurgeQueueRequest", p+"TaskQueuePurgeQueueResponse", tqPurgeQueue)
	register("taskqueue", "FetchQueueStats", p+"TaskQueueFetchQueueStatsRequest", p+"TaskQueueFetchQueueStatsResponse", tqFetchQueueStats)
	register("taskqueue", "QueryAndOwnTasks", p+"TaskQueueQueryAndOwnTasksRequest", p+"TaskQueueQueryAndOwnTasksResponse", tqQueryAndOwnTasks)
	register("taskqueue", "ModifyTaskLease", p+"TaskQueueModifyTaskLeaseRequest", p+"TaskQueueModifyTaskLeaseResponse", tqModifyTaskLease)
}

// tqAdd adds one task: BulkAdd of one, with the task's result as the
// call's error.
func tqAdd(s *Server, in, out pmsg) error {
	bulk, _ := newMsg("appengine.v2.TaskQueueBulkAddRequest")
	bulk.AppendMsg("add_request").CopyFrom(in)
	res, _ := newMsg("appengine.v2.TaskQueueBulkAddResponse")
	if err := tqBulkAdd(s, bulk, res); err != nil {
		return err
	}
	r := res.Msgs("taskresult")[0]
	if code := r.Int("result"); code != tqOK {
		return errorf(int32(code), "%s", tqAddErrorDetail(int32(code), in))
	}
	if r.Has("chosen_task_name") {
		out.Set("chosen_task_name", r.Bytes("chosen_task_name"))
	}
	return nil
}

// tqAddErrorDetail explains a refused task. The Go client reports only the
// code for AddMulti, so the text matters for Add.
func tqAddErrorDetail(code int32, req pmsg) string {
	name := req.Str("task_name")
	switch code {
	case tqTaskAlreadyExists:
		return fmt.Sprintf("a task named %q is already in queue %q", name, req.Str("queue_name"))
	case tqTombstonedTask:
		return fmt.Sprintf("a task named %q was in queue %q in the last nine days; its name cannot be used again yet", name, req.Str("queue_name"))
	case tqInvalidTaskName:
		return fmt.Sprintf("invalid task name %q: it must match %s", name, tqTaskNameRE)
	case tqInvalidQueueName:
		return fmt.Sprintf("invalid queue name %q: it must match %s", req.Str("queue_name"), tqQueueNameRE)
	case tqUnknownQueue:
		return fmt.Sprintf("queue %q does not exist: declare it in queue.yaml", req.Str("queue_name"))
	case tqInvalidETA:
		return "the ETA is negative or more than 30 days ahead"
	case tqInvalidURL:
		return fmt.Sprintf("invalid task URL %q: it must be a path starting with / of at most %d bytes", req.Str("url"), tqMaxURLLength)
	case tqInvalidTag:
		return fmt.Sprintf("the tag is longer than %d bytes", tqMaxTagLength)
	case tqInvalidRequest:
		return "the method of a push task must be GET, POST, HEAD, PUT or DELETE"
	case tqInvalidRetryParameters:
		return "invalid retry parameters: no value may be negative and the minimum backoff may not exceed the maximum"
	case tqTaskTooLarge:
		if req.Int("mode") == tqModePull {
			return fmt.Sprintf("the task is larger than %d bytes, the limit of a pull task", tqMaxPullTaskBytes)
		}
		return fmt.Sprintf("the task is larger than %d bytes, the limit of a push task", tqMaxPushTaskBytes)
	}
	return ""
}

// validateAddLocked checks one add request as production would.
func (tq *taskqueueService) validateAddLocked(req pmsg, now time.Time) int32 {
	qname := req.Str("queue_name")
	if !tqQueueNameRE.MatchString(qname) {
		return tqInvalidQueueName
	}
	if tq.queues[qname] == nil {
		return tqUnknownQueue
	}
	if name := req.Str("task_name"); name != "" && !tqTaskNameRE.MatchString(name) {
		return tqInvalidTaskName
	}
	eta := req.Int("eta_usec")
	if eta < 0 || eta > now.Add(tqMaxETA).UnixMicro() {
		return tqInvalidETA
	}
	pull := req.Int("mode") == tqModePull
	if !pull {
		u := req.Str("url")
		if !strings.HasPrefix(u, "/") || len(u) > tqMaxURLLength {
			return tqInvalidURL
		}
		if _, ok := tqMethodNames[req.Int("method")]; !ok {
			return tqInvalidRequest
		}
	}
	if len(req.Bytes("tag")) > tqMaxTagLength {
		return tqInvalidTag
	}
	if req.Has("retry_parameters") && !retryFromProto(req.Msg("retry_parameters")).valid() {
		return tqInvalidRetryParameters
	}
	limit := tqMaxPushTaskBytes
	if pull {
		limit = tqMaxPullTaskBytes
	}
	if req.Size() > limit {
		return tqTaskTooLarge
	}
	return tqOK
}

// tqBulkAdd adds up to 100 tasks. A task that fails validation fails the
// whole batch: it gets its error and the others SKIPPED, and nothing is
// added. Tasks that pass are added one by one, so a name already taken
// fails only its own task.
func tqBulkAdd(s *Server, in, out pmsg) error {
	tq := s.taskqueue
	reqs := in.Msgs("add_request")
	if len(reqs) == 0 {
		return nil
	}
	if len(reqs) > tqMaxTasksPerAdd {
		return errorf(tqTooManyTasks, "%d tasks in one call; the limit is %d", len(reqs), tqMaxTasksPerAdd)
	}
	now := tq.now()

	tq.mu.Lock()
	results := make([]int32, len(reqs))
	failed := false
	names := make(map[string]bool)
	for i, r := range reqs {
		results[i] = tq.validateAddLocked(r, now)
		if name := r.Str("task_name"); results[i] == tqOK && name != "" {
			// Two tasks of one batch may not share a name.
			if names[name] {
				results[i] = tqDuplicateTaskName
			}
			names[name] = true
		}
		failed = failed || results[i] != tqOK
	}
	if failed {
		tq.mu.Unlock()
		for _, code := range results {
			if code == tqOK {
				code = tqSkipped
			}
			out.AppendMsg("taskresult").Set("result", code)
		}
		return nil
	}
	for _, r := range reqs {
		q := tq.queues[r.Str("queue_name")]
		if q.pull != (r.Int("mode") == tqModePull) {
			tq.mu.Unlock()
			if q.pull {
				return errorf(tqInvalidQueueMode, "queue %q is a pull queue: add tasks with Method PULL", q.name)
			}
			return errorf(tqInvalidQueueMode, "queue %q is a push queue: a PULL task cannot be added to it", q.name)
		}
	}
	chosen := make([]string, len(reqs))
	for i, r := range reqs {
		if r.Str("task_name") == "" {
			q := tq.queues[r.Str("queue_name")]
			chosen[i] = tq.chooseNameLocked(q, now, names)
			names[chosen[i]] = true
		}
	}
	tq.mu.Unlock()

	if reqs[0].Has("transaction") {
		return tq.addTransactional(s, reqs, chosen, out)
	}

	tq.mu.Lock()
	for i, r := range reqs {
		code := tq.insertLocked(r, chosen[i], now)
		tr := out.AppendMsg("taskresult")
		tr.Set("result", code)
		if chosen[i] != "" {
			tr.Set("chosen_task_name", chosen[i])
		}
	}
	tq.mu.Unlock()
	tq.notify()
	return nil
}

// addTransactional attaches the tasks to their datastore transaction: they
// are added when it commits and dropped if it does not. Errors of the
// transaction come back as DATASTORE_ERROR plus the datastore's code.
func (tq *taskqueueService) addTransactional(s *Server, reqs []pmsg, chosen []string, out pmsg) error {
	handle := reqs[0].Msg("transaction").Uint("handle")
	for _, r := range reqs[1:] {
		if !r.Has("transaction") || r.Msg("transaction").Uint("handle") != handle {
			return errorf(tqDatastoreError+dsBadRequest, "cannot add tasks to different transactions in one call")
		}
	}
	pending := make([]pmsg, len(reqs))
	for i, r := range reqs {
		pending[i] = r.Clone()
		pending[i].Clear("transaction")
	}
	apply := func() {
		now := tq.now()
		tq.mu.Lock()
		for i, r := range pending {
			// A name taken since the task was attached loses: the
			// transaction has committed and cannot fail any more.
			tq.insertLocked(r, chosen[i], now)
		}
		tq.mu.Unlock()
		tq.notify()
	}
	if err := s.datastore.addTxAction(reqs[0].Msg("transaction"), len(reqs), apply); err != nil {
		if se, ok := err.(*serviceError); ok {
			return errorf(tqDatastoreError+se.code, "%s", se.detail)
		}
		return err
	}
	for i := range reqs {
		tr := out.AppendMsg("taskresult")
		tr.Set("result", tqOK)
		if chosen[i] != "" {
			tr.Set("chosen_task_name", chosen[i])
		}
	}
	return nil
}

// insertLocked adds a validated task to its queue.
func (tq *taskqueueService) insertLocked(r pmsg, chosen string, now time.Time) int32 {
	q := tq.queues[r.Str("queue_name")]
	if q == nil {
		return tqUnknownQueue
	}
	name := r.Str("task_name")
	if name == "" {
		name = chosen
	} else if code := q.nameState(name, now); code != tqOK {
		return code
	}
	tq.seq++
	t := &tqTask{
		name:    name,
		chosen:  name == chosen,
		seq:     tq.seq,
		etaUsec: r.Int("eta_usec"),
		created: now,
		body:    r.Bytes("body"),
	}
	if r.Int("mode") == tqModePull {
		t.method = "PULL"
	} else {
		t.method = tqMethodNames[r.Int("method")]
		t.url = r.Str("url")
		for _, h := range r.Msgs("header") {
			t.headers = append(t.headers, tqHeader{h.Str("key"), h.Str("value")})
		}
	}
	if r.Has("tag") {
		t.tag, t.hasTag = r.Str("tag"), true
	}
	if r.Has("retry_parameters") {
		t.retry = retryFromProto(r.Msg("retry_parameters"))
	}
	q.tasks[name] = t
	return tqOK
}

func tqDelete(s *Server, in, out pmsg) error {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	q := tq.queues[in.Str("queue_name")]
	for _, name := range in.BytesList("task_name") {
		out.Append("result", tq.deleteLocked(q, string(name), now))
	}
	return nil
}

func (tq *taskqueueService) deleteLocked(q *tqQueue, name string, now time.Time) int32 {
	if q == nil {
		return tqUnknownQueue
	}
	t := q.tasks[name]
	if t == nil {
		if q.nameState(name, now) == tqTombstonedTask {
			return tqTombstonedTask
		}
		return tqUnknownTask
	}
	q.remove(t, now, true)
	return tqOK
}

// tqPurgeQueue empties a queue. The names of the purged tasks stay
// tombstoned, as in the stub.
func tqPurgeQueue(s *Server, in, out pmsg) error {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	q, err := tq.queueLocked(in.Str("queue_name"))
	if err != nil {
		return err
	}
	for _, t := range q.tasks {
		q.remove(t, now, true)
	}
	return nil
}

// tqFetchQueueStats reports each queue's tasks and oldest ETA, and real
// figures where the stub makes random ones up: tasks run in the last minute
// and hour, tasks in flight, and the queue's rate. A queue that does not
// exist reports no tasks, as in the stub.
func tqFetchQueueStats(s *Server, in, out pmsg) error {
	tq := s.taskqueue
	now := tq.now()
	tq.mu.Lock()
	defer tq.mu.Unlock()
	for _, name := range in.BytesList("queue_name") {
		st := out.AppendMsg("queuestats")
		q := tq.queues[string(name)]
		if q == nil {
			st.Set("num_tasks", 0)
			st.Set("oldest_eta_usec", int64(-1))
			continue
		}
		st.Set("num_tasks", len(q.tasks))
		st.Set("oldest_eta_usec", q.oldestUsec())
		si := st.Mutable("scanner_info")
		si.Set("executed_last_minute", q.runsSince(now.Add(-time.Minute)))
		si.Set("executed_last_hour", q.runsSince(now.Add(-time.Hour)))
		si.Set("sampling_duration_seconds", 3600.0)
		si.Set("requests_in_flight", q.inFlight)
		si.Set("enforced_rate", q.rate)
	}
	return nil
}

// retryOf returns the retry parameters that govern t: its own, or its
// queue's, or the defaults.
func (tq *taskqueueService) retryOf(q *tqQueue, t *tqTask) *tqRetry {
	switch {
	case t.retry != nil:
		return t.retry
	case q.retry != nil:
		return q.retry
	}
	return defaultRetry()
}

// addTxAction attaches n tasks to the transaction t names: apply runs when
// the transaction commits. Production allows five transactional tasks a
// transaction and none in a read-only one.
func (d *datastoreService) addTxAction(t pmsg, n int, apply func()) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	tx, _, err := d.txLocked(t)
	if err != nil {
		return err
	}
	if tx.readOnly {
		return badRequest("cannot add tasks in a read-only transaction")
	}
	if tx.nTasks+n > tqMaxTxTasks {
		return badRequest("Too many messages, maximum allowed: %d", tqMaxTxTasks)
	}
	tx.nTasks += n
	tx.actions = append(tx.actions, apply)
	return nil
}
