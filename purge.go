package gaesession

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/icza/gaesession/v2/internal/tier"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// PurgeOptions configures the handler that PurgeExpiredSessFromDSFuncOptions
// returns. All fields are optional; the zero value of a field selects its
// default.
type PurgeOptions struct {
	// DSEntityName is the Datastore kind of session entities; default is
	// "sess_". It must match MemcacheStoreOptions.DSEntityName.
	DSEntityName string

	// Deadline is how long one request may spend purging; default is 8
	// minutes, which leaves room within the 10 minutes App Engine gives a
	// cron or task queue request. The handler does not start a new batch
	// once Deadline has passed since the request began, and then answers
	// {"completed":false}: the next run goes on where this one stopped.
	Deadline time.Duration

	// BatchSize is the number of keys fetched by one query and deleted by
	// one DeleteMulti; default and maximum is 500, the Datastore's limit for
	// one DeleteMulti. Values above 500 are lowered to 500.
	BatchSize int

	// SafetyMargin is how long before the deadline of the request's context
	// (if it has one) the handler stops starting new batches; default is 30
	// seconds, ample for one query and one DeleteMulti of 500 keys. A
	// negative value means no margin. It matters when the request's
	// context ends before Deadline does.
	SafetyMargin time.Duration

	// ExpiredFor is how long a session entity must have been expired
	// before the handler deletes it; default is 49 hours. A negative value
	// means no wait: every entity whose expiry has passed is deleted.
	//
	// The wait is what keeps a late save: a request that loaded a session
	// just before its deadline saves it after, and that put may land
	// between this handler's query, which found the expired entity, and its
	// delete. An entity expired for longer than ExpiredFor cannot meet such
	// a put, as long as ExpiredFor is at least twice the longest a request
	// may hold a session: its request deadline, plus AsyncSaveTimeout for
	// each asynchronous save still in flight when it ends. (Twice, because
	// concurrent requests' puts may land in either order, leaving the
	// Datastore with a deadline up to one request's length older than the
	// one another request loaded; purge.go argues it.) App Engine standard
	// lets a request run 10 minutes with automatic scaling and 24 hours
	// with basic or manual scaling: the default, 2 x (24h + 30s) rounded
	// up, covers both with the default AsyncSaveTimeout. An app whose
	// session requests all run on automatically scaled instances may lower
	// it to 21 minutes (2 x (10m + 30s)). Expired entities wait this long
	// in the Datastore, where they are never served: a store reads an
	// entity's expiry before its value. The store's own cleanup, which
	// deletes the expired entity a request happens to read, waits the
	// default ExpiredFor too.
	ExpiredFor time.Duration

	// CronOnly makes the handler serve only App Engine cron and task queue
	// requests: those carrying the header "X-Appengine-Cron: true" or a
	// non-empty "X-AppEngine-QueueName". Any other request is answered 403
	// Forbidden before anything is queried. App Engine removes these
	// headers from requests that come from outside, so they cannot be
	// forged. A person's browser is refused too, even an administrator's;
	// to run the purge by hand, use "Run now" on the cron job in the Cloud
	// console, which sends the cron header, or enqueue a task. Default is
	// false (anyone who knows the path may start a purge, as with the
	// original package), so that PurgeExpiredSessFromDSFunc stays a drop-in
	// replacement; new code should set it.
	CronOnly bool
}

// Defaults and limits of PurgeOptions.
const (
	defaultPurgeDeadline     = 8 * time.Minute
	maxPurgeBatch            = 500 // DeleteMulti's limit
	defaultPurgeSafetyMargin = 30 * time.Second

	// defaultExpiredFor is the default of PurgeOptions.ExpiredFor, and
	// how long the store waits before it deletes an expired entity it
	// read (loadDatastore): 2 x (24 hours, App Engine's longest request
	// deadline, + 30s, the default AsyncSaveTimeout), rounded up.
	defaultExpiredFor = 49 * time.Hour

	// purgeDeleteAttempts is how many times one batch's DeleteMulti is
	// sent when it fails with an error that another attempt may fix.
	purgeDeleteAttempts = 2
)

// purgeConfig is PurgeOptions with the defaults applied.
type purgeConfig struct {
	kind       string
	deadline   time.Duration
	batch      int
	margin     time.Duration
	expiredFor time.Duration
	cronOnly   bool
}

func newPurgeConfig(o *PurgeOptions) purgeConfig {
	if o == nil {
		o = &PurgeOptions{}
	}
	c := purgeConfig{
		kind:       o.DSEntityName,
		deadline:   o.Deadline,
		batch:      o.BatchSize,
		margin:     o.SafetyMargin,
		expiredFor: o.ExpiredFor,
		cronOnly:   o.CronOnly,
	}
	if c.kind == "" {
		c.kind = defaultDSEntityName
	}
	if c.deadline <= 0 {
		c.deadline = defaultPurgeDeadline
	}
	if c.batch <= 0 || c.batch > maxPurgeBatch {
		c.batch = maxPurgeBatch
	}
	switch {
	case c.margin == 0:
		c.margin = defaultPurgeSafetyMargin
	case c.margin < 0:
		c.margin = 0
	}
	switch {
	case c.expiredFor == 0:
		c.expiredFor = defaultExpiredFor
	case c.expiredFor < 0:
		c.expiredFor = 0
	}
	return c
}

// PurgeExpiredSessFromDSFunc returns a request handler that deletes expired
// sessions from the Datastore. dsEntityName is the Datastore kind of session
// entities; "" means the default, "sess_".
//
// Register the handler at a path and call it periodically from a cron job,
// for example every 30 minutes:
//
//	http.HandleFunc("/demo/purge", gaesession.PurgeExpiredSessFromDSFunc(""))
//
// The handler deletes the entities that had been expired for 49 hours when
// the request started (see PurgeOptions.ExpiredFor for why it waits), in
// batches of 500 keys, and stops starting batches after 8 minutes (cron
// requests may run for 10). It answers with JSON telling
// whether every expired session is gone:
//
//	{"completed":true,"deleted":1234,"failed":0}
//
// "completed" is false when time ran out or some deletes failed; the next
// run continues. A failing query is answered with status 500.
//
// For drop-in compatibility with the original package, this handler serves
// any request, so anyone who knows its path can start a purge. Prefer
// PurgeExpiredSessFromDSFuncOptions with PurgeOptions.CronOnly, which serves
// App Engine cron and task queue requests only, whether or not the runtime
// enforces "login: admin" from app.yaml.
func PurgeExpiredSessFromDSFunc(dsEntityName string) http.HandlerFunc {
	return PurgeExpiredSessFromDSFuncOptions(&PurgeOptions{DSEntityName: dsEntityName})
}

// PurgeExpiredSessFromDSFuncOptions returns a request handler that deletes
// expired sessions from the Datastore, configured by o; nil o means the
// defaults listed in PurgeOptions.
//
// Each run deletes the entities whose expiry ("exp") is more than
// ExpiredFor before the moment the request started: sessions saved during
// the run are never touched, nor are those saved by a request that loaded
// them just before their deadline and saved them after.
// It queries keys only, BatchSize at a time, each query going on from where
// the previous one ended, and deletes each batch with one DeleteMulti while
// it queries the next. It stops at the earliest of: no more expired
// entities, Deadline after the start, and SafetyMargin before the deadline
// of the request's context.
//
// The response (status 200, application/json) is
//
//	{"completed":true,"deleted":1234,"failed":0}
//
// where "deleted" counts the entities deleted by this run and "failed" the
// keys whose DeleteMulti failed (after one retry, if the error looked
// transient). "completed" is true only if the run reached the end of the
// expired entities and nothing failed; otherwise some expired sessions may
// remain and the next run will pick them up. A failing query ends the run
// at once with status 500 and the same JSON fields plus "error". The handler
// logs a summary with counts and duration; it never logs session IDs.
func PurgeExpiredSessFromDSFuncOptions(o *PurgeOptions) http.HandlerFunc {
	c := newPurgeConfig(o)
	return c.serveHTTP
}

// purgeResponse is the handler's JSON answer.
type purgeResponse struct {
	Completed bool   `json:"completed"`
	Deleted   int    `json:"deleted"`
	Failed    int    `json:"failed"`
	Error     string `json:"error,omitempty"`
}

// fromCronOrTaskQueue reports whether r carries a header that App Engine
// sets only on its own cron and task queue requests.
func fromCronOrTaskQueue(r *http.Request) bool {
	return r.Header.Get("X-Appengine-Cron") == "true" || r.Header.Get("X-Appengine-Queuename") != ""
}

func (c purgeConfig) serveHTTP(w http.ResponseWriter, r *http.Request) {
	servePurge(c, w, r, func(r *http.Request) (context.Context, tier.Purge[*datastore.Key]) {
		return appengine.NewContext(r), &datastorePurge{kind: c.kind}
	})
}

// servePurge serves one purge request over the purge tier that tierFor
// gives, with the context it gives: the bundled Datastore's (serveHTTP) or
// another's (the nested module's, through tier.NewPurgeHandler).
func servePurge[K any](c purgeConfig, w http.ResponseWriter, r *http.Request, tierFor func(r *http.Request) (context.Context, tier.Purge[K])) {
	ctx, pt := tierFor(r)
	l := &logger{ctx: ctx}
	if c.cronOnly && !fromCronOrTaskQueue(r) {
		l.logf(levelWarning, "purge of kind %q refused a request that came from neither App Engine cron nor a task queue", c.kind)
		http.Error(w, "Forbidden: this purge runs for App Engine cron and task queue requests only", http.StatusForbidden)
		return
	}

	start := time.Now()
	p := purge[K]{purgeConfig: c, ctx: ctx, log: l, tier: pt}
	res, err := p.run(start)
	elapsed := time.Since(start).Round(time.Millisecond)

	status := http.StatusOK
	if err != nil {
		l.logf(levelError, "purge of kind %q: querying expired sessions failed: %s", c.kind, redact(err))
		res.Error = "querying expired sessions failed"
		status = http.StatusInternalServerError
	}
	l.logf(levelInfo, "purge of kind %q: deleted %d expired sessions, %d failed; %d batches in %v; completed: %t (%s)",
		c.kind, res.Deleted, res.Failed, p.batches, elapsed, res.Completed, p.stop)

	body, _ := json.Marshal(res) // cannot fail: bools, ints and a string
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// purge is the state of one run, over the durable tier's key type K.
type purge[K any] struct {
	purgeConfig
	ctx  context.Context
	log  *logger
	tier tier.Purge[K]

	batches int    // batches queried that held keys
	stop    string // why the run ended, for the summary line
}

// deleteResult is the outcome of one batch's DeleteMulti.
type deleteResult struct {
	deleted, failed int
}

// run deletes batch after batch until no expired entity is left or time is
// up. It returns an error only if a query failed; the counts are valid
// either way.
func (p *purge[K]) run(start time.Time) (res purgeResponse, err error) {
	stopAt := start.Add(p.deadline)
	if d, ok := p.ctx.Deadline(); ok {
		if d = d.Add(-p.margin); d.Before(stopAt) {
			stopAt = d
		}
	}
	// The cutoff is fixed for the run, so a session written during the
	// run is never matched; see expiredBefore for why it lies expiredFor
	// before the start.
	p.tier.Start(expiredBefore(timeNow(), p.expiredFor), p.batch)

	// At most one DeleteMulti is in flight, overlapping the next query.
	var inflight chan deleteResult
	wait := func() {
		if inflight != nil {
			r := <-inflight
			res.Deleted += r.deleted
			res.Failed += r.failed
			inflight = nil
		}
	}
	defer wait()

	exhausted := false
	for !exhausted {
		if p.ctx.Err() != nil {
			p.stop = "request context ended"
			return res, nil
		}
		if !time.Now().Before(stopAt) {
			p.stop = "time is up"
			return res, nil
		}

		keys, err := p.tier.Next(p.ctx)
		if err != nil {
			p.stop = "query failed"
			return res, err
		}
		// A batch shorter than the limit is the last one.
		exhausted = len(keys) < p.batch
		if len(keys) == 0 {
			break
		}
		p.batches++
		wait()
		ch := make(chan deleteResult, 1)
		inflight = ch
		go func() { ch <- p.deleteBatch(keys, stopAt) }()
	}
	wait()
	p.stop = "no expired sessions left"
	if res.Failed > 0 {
		p.stop = "some deletes failed"
	}
	res.Completed = res.Failed == 0
	return res, nil
}

// expiredBefore is the cutoff of a delete of expired session entities
// made at now: only entities whose expiry ("exp") is before it are
// deleted. It lies expiredFor (M below) before now, so that no put lands
// between the read that found an entity expired (the purge's query, or
// loadDatastore's get) and the delete that follows, which would delete
// that put with it: a late save, by a request that loaded the session
// just before its deadline and saved it after.
//
// Let D be the longest a request holds a session: from its Get to the
// landing of its last put, asynchronous saves included. A request puts
// only a session it found live (or a new one, whose random ID no read
// before it can have found), and a copy's deadline is the access (a Get)
// it was written with plus the session's Timeout; a request's own puts
// carry its own access, made at most D before they land. Then M >= 2D
// closes the window. Say the read, at r, found a copy v whose deadline is
// before now - M, hence before r - 2D, and a put P lands after r. P's
// request made its Get after r - D and found a copy l live: l's deadline
// is after r - D, more than D after v's, so l is not v.
//   - If l's put landed before r, v's put landed after it (the Datastore
//     held v at r). v's access came at most D before v's put landed, so
//     less than D before l's put landed, which is no earlier than l's
//     access: v's deadline is less than D before l's. A contradiction.
//   - Else l's put had not landed at r: it lands later, made by a request
//     that ran at r too and made its Get after r - D, and the same holds
//     for it. Each step goes back to an earlier Get, so the chain ends, in
//     the first case; or in a put that failed (SaveError reported it),
//     which left the Datastore with an older copy than Memcache's: losing
//     the session is then that failure's doing, which M does not repair.
//
// Hence the 2D: concurrent requests' puts may land in either order, so
// the Datastore may hold a deadline up to D older than one another
// request saw. One put does not carry its own request's access:
// MergeConcurrentUpdates' settle step (settleDatastore) re-puts the newer
// version another request wrote to Memcache; it repeats until the
// Datastore holds Memcache's newest, which restores the first case's
// order, unless it gives up after three rounds lost to concurrent writes.
// defaultExpiredFor takes D from App Engine's longest request deadline;
// instances' clocks agree to well within its rounding up.
//
// A delete of entities that expired long ago costs no RPC more than one of
// entities that just did. The alternative, a transaction that reads each
// entity again before deleting it, would cost three RPCs more per batch
// and hold 500 sessions locked against the requests that use them.
func expiredBefore(now time.Time, expiredFor time.Duration) time.Time {
	return now.Add(-expiredFor)
}

// deleteBatch deletes keys with one DeleteMulti, sent a second time if the
// first attempt failed with an error that may be transient and there is
// still time. It logs failures without naming sessions.
func (p *purge[K]) deleteBatch(keys []K, stopAt time.Time) deleteResult {
	var err error
	for attempt := 1; attempt <= purgeDeleteAttempts; attempt++ {
		if err = p.tier.DeleteKeys(p.ctx, keys); err == nil {
			return deleteResult{deleted: len(keys)}
		}
		if attempt == purgeDeleteAttempts || !retryable(p.ctx, err) || !time.Now().Before(stopAt) {
			break
		}
		p.log.logf(levelWarning, "purge of kind %q: deleting a batch of %d expired sessions failed, retrying: %v",
			p.kind, len(keys), p.redactKeys(err, keys))
	}
	failed := len(keys)
	var me appengine.MultiError
	if errors.As(err, &me) && len(me) == len(keys) {
		failed = 0
		for _, e := range me {
			if e != nil {
				failed++
			}
		}
	}
	p.log.logf(levelError, "purge of kind %q: deleting %d of a batch of %d expired sessions failed: %v",
		p.kind, failed, len(keys), p.redactKeys(err, keys))
	return deleteResult{deleted: len(keys) - failed, failed: failed}
}

// redactKeys returns err's text with every session ID of keys replaced by
// its LogID (see redact).
func (p *purge[K]) redactKeys(err error, keys []K) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = p.tier.Name(k)
	}
	return redact(err, names...)
}
