package gaesession

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync"

	"testing"
	"time"

	gproto "github.com/golang/protobuf/proto"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2"
)

// faultWait bounds how long a store call may take under a fault. It is not
// a performance threshold: it only turns "never returns" into a failure.
const faultWait = 10 * time.Second

// faultDown makes a service fail every call for the rest of a test.
const faultDown = 1 << 30

// faultWithin runs f in a goroutine and fails the test if f panics or does
// not return within faultWait.
func faultWithin(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan any, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Sprintf("%v\n%s", p, debug.Stack())
				return
			}
			done <- nil
		}()
		f()
	}()
	select {
	case p := <-done:
		if p != nil {
			t.Fatalf("%s panicked: %v", what, p)
		}
	case <-time.After(faultWait):
		t.Fatalf("%s did not return within %v", what, faultWait)
	}
}

// faultRequest is e.request on a given context, bounded by faultWait, with
// Close included. f must not call t.FailNow (it runs in another goroutine):
// use assert, not require.
func faultRequest(t *testing.T, ctx context.Context, o *MemcacheStoreOptions, f func(st session.Store)) {
	t.Helper()
	faultWithin(t, "a request", func() {
		st := NewMemcacheStoreOptions(ctx, o)
		defer st.Close()
		f(st)
	})
	require.NoError(t, WaitForAsyncSaves(context.Background()))
}

// faultGet reads a session in a request of its own and reports where it
// came from.
func faultGet(t *testing.T, e *testEnv, o *MemcacheStoreOptions, id string) (session.Session, Origin) {
	t.Helper()
	var sess session.Session
	var origin Origin
	faultRequest(t, e.ctx(), o, func(st session.Store) {
		sess = st.Get(id)
		origin = SessionOrigin(st, id)
	})
	return sess, origin
}

// faultCase is one row of the fault matrix. Every row starts with a session
// "old" with attribute n = 1, saved in Memcache and in the Datastore, and
// runs its requests through the appengine/v2 client against aelocal. run
// returns the session IDs it used, which no log line may contain.
type faultCase struct {
	name    string
	opts    *MemcacheStoreOptions
	outcome string // for RELIABILITY.md
	run     func(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string
}

var faultAsync = &MemcacheStoreOptions{AsyncDatastoreSave: true}

var faultMatrix = []faultCase{
	{"memcache down", nil,
		"sessions come from the Datastore, changes and new sessions are saved there; the Memcache failures are logged",
		faultMemcacheDown},
	{"memcache down, async save", faultAsync, "same", faultMemcacheDown},
	{"datastore down", nil,
		"Memcache serves and stores sessions; failed Datastore reads and saves are logged",
		faultDatastoreDown},
	{"datastore down, async save", faultAsync, "same", faultDatastoreDown},
	{"both down", nil,
		"Get returns nil, the request completes, the app makes a new session that is not stored; every failure is logged",
		faultBothDown},
	{"datastore slower than the request deadline", nil,
		"store calls return once the request's deadline passes and the failures are logged; by default the Memcache write follows the put, so the change is lost",
		faultDatastoreSlow},
	{"memcache evicted mid-request", nil,
		"a changed session is written back on Close; an unchanged one is found in the Datastore next time",
		faultEvictedMidRequest},
	{"memcache evicted mid-request, merge", &MemcacheStoreOptions{MergeConcurrentUpdates: true}, "same", faultEvictedMidRequest},
	{"crash between memcache set and datastore put", nil,
		"until evicted Memcache serves the latest change; then the previous Datastore copy is what survives, and a new session is lost",
		faultCrashBeforePut},
	{"crash between memcache set and datastore put, async save", faultAsync, "same", faultCrashBeforePut},
	{"datastore down during Remove", nil,
		"the tombstone keeps the session out while it lives (Timeout + 1 minute, past the entity's deadline); only if Memcache evicts it sooner is the entity the delete missed found again",
		faultRemoveDatastoreDown},
	{"memcache refuses the tombstone during Remove", nil,
		"logged as \"logout incomplete\" and reported by SaveError; the Datastore entity is deleted, but Memcache's copy is served until evicted or idle for its Timeout",
		faultRemoveMemcacheDown},
}

func TestFaultMatrix(t *testing.T) {
	for _, tc := range faultMatrix {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			old := e.newSession(tc.opts, time.Hour)
			e.rpcs()
			ids := tc.run(t, e, tc.opts, old)
			for _, l := range e.allLogs() {
				for _, id := range append(ids, old) {
					assert.NotContains(t, l, id, "a log line names a session")
				}
			}
		})
	}
}

func faultMemcacheDown(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string {
	e.srv.FailNext("memcache", "", faultDown)
	var added string
	faultRequest(t, e.ctx(), o, func(st session.Store) {
		sess := st.Get(old)
		if assert.NotNil(t, sess) {
			assert.Equal(t, OriginDatastore, SessionOrigin(st, old))
			assert.Equal(t, 1, sess.Attr("n"))
			sess.SetAttr("n", 2)
		}
		sess = session.NewSessionOptions(&session.SessOptions{Attrs: map[string]interface{}{"n": 10}})
		st.Add(sess)
		added = sess.ID()
	})
	assert.Equal(t, int64(2), e.rpcs()["datastore_v3.Put"], "the change and the new session are put")

	faultRequest(t, e.ctx(), o, func(st session.Store) {
		sess := st.Get(old)
		if assert.NotNil(t, sess) {
			assert.Equal(t, OriginDatastore, SessionOrigin(st, old))
			assert.Equal(t, 2, sess.Attr("n"))
		}
		sess = st.Get(added)
		if assert.NotNil(t, sess) {
			assert.Equal(t, OriginDatastore, SessionOrigin(st, added))
			assert.Equal(t, 10, sess.Attr("n"))
		}
	})
	assert.Zero(t, e.rpcs()["datastore_v3.Put"], "unchanged sessions are not put again")
	assert.NotEmpty(t, e.logged("ERROR", LogID(old), "memcache get failed"))
	assert.NotEmpty(t, e.logged("ERROR", "saving", "to memcache failed"))
	assert.Empty(t, e.logged("datastore get failed"), "the Datastore worked")
	assert.Empty(t, e.logged("to the datastore failed"), "the Datastore worked")

	// Memcache comes back with the copy it held before the outage: it
	// serves that until the item is rewritten, evicted or expires. The
	// store cannot correct it without a Datastore read per request.
	e.srv.FailNext("memcache", "", 0)
	sess, origin := faultGet(t, e, o, old)
	require.NotNil(t, sess)
	assert.Equal(t, OriginMemcache, origin)
	assert.Equal(t, 1, sess.Attr("n"), "the pre-outage copy")
	e.srv.FlushMemcache()
	sess, _ = faultGet(t, e, o, old)
	require.NotNil(t, sess)
	assert.Equal(t, 2, sess.Attr("n"), "the Datastore kept the change made during the outage")
	return []string{added}
}

func faultDatastoreDown(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string {
	e.srv.FailNext("datastore_v3", "", faultDown)
	unknown := session.NewSession().ID()
	var added string
	faultRequest(t, e.ctx(), o, func(st session.Store) {
		sess := st.Get(old)
		if assert.NotNil(t, sess) {
			assert.Equal(t, OriginMemcache, SessionOrigin(st, old))
			sess.SetAttr("n", 2)
		}
		assert.Nil(t, st.Get(unknown))
		sess = session.NewSession()
		st.Add(sess)
		added = sess.ID()
	})
	faultRequest(t, e.ctx(), o, func(st session.Store) {
		sess := st.Get(old)
		if assert.NotNil(t, sess) {
			assert.Equal(t, OriginMemcache, SessionOrigin(st, old))
			assert.Equal(t, 2, sess.Attr("n"))
		}
		assert.NotNil(t, st.Get(added))
		assert.Equal(t, OriginMemcache, SessionOrigin(st, added))
	})
	assert.Len(t, e.logged("ERROR", LogID(old), "to the datastore failed"), 1, "%v", e.allLogs())
	assert.Len(t, e.logged("ERROR", LogID(added), "to the datastore failed"), 1, "%v", e.allLogs())
	assert.Len(t, e.logged("ERROR", LogID(unknown), "datastore get failed"), 1, "%v", e.allLogs())
	assert.Empty(t, e.logged("memcache"), "Memcache worked")
	return []string{unknown, added}
}

func faultBothDown(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string {
	e.srv.FailNext("memcache", "", faultDown)
	e.srv.FailNext("datastore_v3", "", faultDown)

	// The classic app: its request completes and hands out a new session.
	app := e.srv.Middleware(loadApp(o))
	var code int
	var body, given string
	faultWithin(t, "a request to the app", func() {
		code, body, given = loadDo(app, "sessid="+old, "/?op=inc")
	})
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "1", body, "no session found, a new one was made")
	assert.True(t, ValidID(given) && given != old, "a new session cookie: %q", given)

	faultRequest(t, e.ctx(), o, func(st session.Store) {
		assert.Nil(t, st.Get(old))
		assert.Nil(t, st.Get(given))
		st.Add(session.NewSession())
		st.Remove(session.NewSession())
	})
	assert.NotEmpty(t, e.logged("ERROR", "memcache"))
	assert.NotEmpty(t, e.logged("ERROR", "datastore"))

	e.srv.FailNext("memcache", "", 0)
	e.srv.FailNext("datastore_v3", "", 0)
	sess, _ := faultGet(t, e, o, old)
	if assert.NotNil(t, sess, "what was stored before the outage is still there") {
		assert.Equal(t, 1, sess.Attr("n"))
	}
	sess, _ = faultGet(t, e, o, given)
	assert.Nil(t, sess, "the session handed out during the outage was never stored")
	return []string{given}
}

// expiringCtx is a context whose deadline passes when expire is called,
// not after a span of real time, so that a test of deadlines does not
// depend on how fast a loaded machine runs the calls before it.
type expiringCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiringCtx(parent context.Context) *expiringCtx {
	return &expiringCtx{Context: parent, done: make(chan struct{})}
}

func (c *expiringCtx) Done() <-chan struct{} { return c.done }

func (c *expiringCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *expiringCtx) expire() { c.once.Do(func() { close(c.done) }) }

// expireOnCall returns a context that expires as soon as aelocal has
// received the first call of method (it counts the call, then waits for
// the latency injected on it, during which the deadline passes). The calls
// are served in-process (Server.Call), where aelocal's wait ends with the
// caller's context; over the HTTP bridge the client bounds a call by a
// timer set from the context's deadline, which is real time again. The
// goroutine that watches for the call ends with the test.
func expireOnCall(t *testing.T, e *testEnv, parent context.Context, method string) context.Context {
	ctx := newExpiringCtx(appengine.WithAPICallFunc(parent, e.srv.Call))
	before := e.srv.Stats()[method]
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if e.srv.Stats()[method] > before {
					ctx.expire()
					return
				}
			}
		}
	}()
	return ctx
}

func faultDatastoreSlow(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string {
	e.srv.SetLatency("datastore_v3", time.Hour)

	// In Memcache: read and changed at once; the Datastore put gives up
	// at the deadline and Close returns. By default the Memcache write
	// follows the put (see tombstone.go), so past the deadline it cannot
	// be made either: the change is lost, and both failures are logged.
	faultRequest(t, expireOnCall(t, e, e.ctx(), "datastore_v3.Put"), o, func(st session.Store) {
		sess := st.Get(old)
		if assert.NotNil(t, sess) {
			assert.Equal(t, OriginMemcache, SessionOrigin(st, old))
			sess.SetAttr("n", 2)
		}
	})
	assert.Len(t, e.logged("ERROR", LogID(old), "to the datastore failed", "deadline exceeded"), 1, "%v", e.allLogs())
	assert.Len(t, e.logged("ERROR", LogID(old), "to memcache failed", "deadline exceeded"), 1, "%v", e.allLogs())
	assert.Equal(t, int64(1), e.rpcs()["datastore_v3.Put"], "a timed-out put is not retried")
	sess, _ := faultGet(t, e, o, old)
	if assert.NotNil(t, sess) {
		assert.Equal(t, 1, sess.Attr("n"), "the stored copies are as before")
	}

	// Only in the Datastore: Get gives up at the deadline.
	e.srv.FlushMemcache()
	faultRequest(t, expireOnCall(t, e, e.ctx(), "datastore_v3.Get"), o, func(st session.Store) {
		assert.Nil(t, st.Get(old))
	})
	assert.Len(t, e.logged("ERROR", LogID(old), "datastore get failed", "deadline exceeded"), 1, "%v", e.allLogs())

	// The classic app, on a request whose context reaches its deadline
	// during the Datastore get.
	app := appengine.Middleware(loadApp(o))
	reqCtx := expireOnCall(t, e, context.Background(), "datastore_v3.Get")
	rec := httptest.NewRecorder()
	faultWithin(t, "a request to the app", func() {
		req := httptest.NewRequest("GET", "/?op=inc", nil).WithContext(reqCtx)
		req.Header.Set("Cookie", "sessid="+old)
		app.ServeHTTP(rec, req)
	})
	assert.Equal(t, http.StatusOK, rec.Code)
	return nil
}

func faultEvictedMidRequest(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string {
	other := e.newSession(o, time.Hour)
	faultRequest(t, e.ctx(), o, func(st session.Store) {
		if sess := st.Get(old); assert.NotNil(t, sess) {
			sess.SetAttr("n", 2)
		}
		assert.NotNil(t, st.Get(other)) // read only
		e.srv.FlushMemcache()
	})
	sess, origin := faultGet(t, e, o, old)
	if assert.NotNil(t, sess) {
		if c := newConfig(o); c.putFirst() {
			// The put came first: Close left a placeholder, which
			// sends the next Get to the Datastore (tombstone.go).
			assert.Equal(t, OriginDatastore, origin, "placeholder in memcache")
		} else {
			assert.Equal(t, OriginMemcache, origin, "written back on Close")
		}
		assert.Equal(t, 2, sess.Attr("n"))
	}
	sess, origin = faultGet(t, e, o, other)
	if assert.NotNil(t, sess) {
		assert.Equal(t, OriginDatastore, origin)
		assert.Equal(t, 1, sess.Attr("n"))
	}
	e.srv.FlushMemcache()
	sess, _ = faultGet(t, e, o, old)
	if assert.NotNil(t, sess) {
		assert.Equal(t, 2, sess.Attr("n"), "the Datastore has the change too")
	}
	assert.Empty(t, e.logged("ERROR"))
	return []string{other}
}

// A crash between the Memcache set and the Datastore put is modelled as a
// put that never happens (it fails on every attempt), followed by Memcache
// losing the item, as a restart or an eviction would make it.
func faultCrashBeforePut(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string {
	attempts := newConfig(o).retries
	e.srv.FailNext("datastore_v3", "Put", attempts)
	faultRequest(t, e.ctx(), o, func(st session.Store) {
		if sess := st.Get(old); assert.NotNil(t, sess) {
			sess.SetAttr("n", 2)
		}
	})
	e.srv.FailNext("datastore_v3", "Put", attempts)
	added := e.newSession(o, time.Hour)
	assert.Equal(t, int64(2*attempts), e.rpcs()["datastore_v3.Put"])
	assert.Len(t, e.logged("ERROR", "to the datastore failed"), 2, "%v", e.allLogs())

	// Before Memcache loses them, both are served, current.
	sess, _ := faultGet(t, e, o, old)
	if assert.NotNil(t, sess) {
		assert.Equal(t, 2, sess.Attr("n"))
	}
	sess, _ = faultGet(t, e, o, added)
	assert.NotNil(t, sess)

	e.srv.FlushMemcache()
	sess, origin := faultGet(t, e, o, old)
	if assert.NotNil(t, sess, "the session survives") {
		assert.Equal(t, OriginDatastore, origin)
		assert.Equal(t, 1, sess.Attr("n"), "as of its last Datastore put: the change since is lost")
	}
	sess, _ = faultGet(t, e, o, added)
	assert.Nil(t, sess, "a session never put in the Datastore is lost entirely")
	return []string{added}
}

func faultRemoveDatastoreDown(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string {
	clock := e.fakeClock()
	e.srv.FailNext("datastore_v3", "", faultDown)
	faultRequest(t, e.ctx(), o, func(st session.Store) {
		st.Remove(st.Get(old))
		assert.Nil(t, st.Get(old))
		assert.Error(t, SaveError(st))
	})
	assert.Len(t, e.logged("ERROR", LogID(old), "removing the session from the datastore failed"), 1, "%v", e.allLogs())
	sess, _ := faultGet(t, e, o, old)
	assert.Nil(t, sess, "gone while the Datastore is down")

	e.srv.FailNext("datastore_v3", "", 0)
	sess, _ = faultGet(t, e, o, old)
	assert.Nil(t, sess, "the tombstone keeps it out once the Datastore answers again")

	// The window: Memcache evicts the tombstone while the entity the
	// delete missed is still within its idle deadline.
	e.srv.FlushMemcache()
	sess, origin := faultGet(t, e, o, old)
	assert.NotNil(t, sess, "found again in the Datastore")
	assert.Equal(t, OriginDatastore, origin)

	// A tombstone that is not evicted outlives the entity's deadline.
	clock.Advance(tombstoneTTL(time.Hour) - time.Second)
	e.request(o, func(st session.Store) { st.Remove(st.Get(old)) }) // a tombstone again
	e.srv.FailNext("datastore_v3", "", 0)
	clock.Advance(time.Hour + time.Minute)
	sess, _ = faultGet(t, e, o, old)
	assert.Nil(t, sess)
	return nil
}

func faultRemoveMemcacheDown(t *testing.T, e *testEnv, o *MemcacheStoreOptions, old string) []string {
	e.srv.FailNext("memcache", "Set", faultDown)
	faultRequest(t, e.ctx(), o, func(st session.Store) {
		st.Remove(st.Get(old))
		err := SaveError(st)
		if assert.Error(t, err) {
			assert.Contains(t, err.Error(), "removing the session from memcache")
			assert.NotContains(t, err.Error(), old)
		}
	})
	assert.Len(t, e.logged("ERROR", LogID(old), "logout incomplete", "memcache refused"), 1, "%v", e.allLogs())
	assert.Equal(t, int64(newConfig(o).retries), e.rpcs()["memcache.Set"], "the tombstone was tried Retries times")

	// What remains: Memcache still holds the session's copy and serves it
	// (the Datastore copy is gone) until it is evicted or goes idle.
	e.srv.FailNext("memcache", "Set", 0)
	sess, origin := faultGet(t, e, o, old)
	assert.NotNil(t, sess, "still served from memcache")
	assert.Equal(t, OriginMemcache, origin)
	e.srv.FlushMemcache()
	sess, _ = faultGet(t, e, o, old)
	assert.Nil(t, sess, "once evicted, nothing brings it back")
	return nil
}

// faultHookCtx returns an App Engine context whose calls of one
// "service.Method" run before and after (either may be nil) around the
// call, which aelocal serves as usual. Tests use it to force one
// interleaving of concurrent requests.
func faultHookCtx(e *testEnv, method string, before, after func()) context.Context {
	return faultHookOn(e.ctx(), method, before, after)
}

// faultHookOn is faultHookCtx on a given App Engine context, so hooks can
// be stacked.
func faultHookOn(ctx context.Context, method string, before, after func()) context.Context {
	return appengine.WithAPICallFunc(ctx, func(ctx context.Context, service, m string, in, out gproto.Message) error {
		hooked := service+"."+m == method
		if hooked && before != nil {
			before()
		}
		err := appengine.APICall(ctx, service, m, in, out)
		if hooked && after != nil {
			after()
		}
		return err
	})
}

// Security: cookie values reach the store unchecked by icza/session. A
// malformed or oversized one must be a miss that costs no RPC, panics
// nowhere, is not logged, and leaves the new-session flow working.
func TestMalformedCookieValues(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	app := e.srv.Middleware(loadApp(nil))
	cookies := []string{
		"sessid=" + strings.Repeat("A", 4096),
		"sessid=" + strings.Repeat("A", 64<<10),
		"sessid=" + strings.Repeat("A", 260),
		"sessid=AAAA.AAAA.AAAA.AAAA.AAAA",
		"sessid=AAAAAAAAAAAAAAAAAAAAAAA",  // 23 characters
		"sessid=AAAAAAAAAAAAAAAAAAAA/+==", // standard, not URL, base64
		`sessid="AAAAAAAA AAAAAAAAAAAAAAA"`,
		"sessid=AAAAAAAAAAAAAAAAAAAAAAA\x00",
		"sessid=AAAAAAAAAAAAAAAAAAAAAAA\x7f",
		"sessid=%41%41%41%41%41%41%41%41",
		"sessid=../../../../etc/passwd",
		"sessid=\xc3\x81AAAAAAAAAAAAAAAAAAAAAAA",
		"sessid=AAAAAAAAAAAAAAAAAAAA=AAA",
		"sessid=",
		"sessid",
		"sessid=short; sessid=ZnV6ei1zZXNzaW9uLWlkLTE2", // the first one counts
		strings.Repeat("x=y; ", 10000) + "sessid=AA",
	}
	for i, cookie := range cookies {
		e.rpcs()
		var code int
		var body, id string
		faultWithin(t, fmt.Sprintf("request %d", i), func() { code, body, id = loadDo(app, cookie, "/?op=new") })
		require.Equal(t, http.StatusOK, code, "cookie %d", i)
		assert.Equal(t, "0", body, "cookie %d: a new session", i)
		assert.Equal(t, map[string]int64{"memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs(),
			"cookie %d: no lookup, only the new session's writes", i)

		_, body, again := loadDo(app, "sessid="+id, "/?op=inc")
		assert.Equal(t, "1", body, "cookie %d: the new session works", i)
		assert.Empty(t, again)
	}
	for _, l := range e.allLogs() {
		assert.NotContains(t, l, "AAAAAAAA")
		assert.NotContains(t, l, "passwd")
	}
}

// Security: a store's memory grows only with the lookups a request actually
// made. Invalid IDs are refused without an allocation (so nothing is
// retained) and without an RPC; an unknown valid ID is remembered as absent,
// one entry for the RPCs its lookup cost, so asking again is free.
func TestStoreMemoryIsBounded(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	known := []string{e.newSession(nil, time.Hour), e.newSession(nil, time.Hour)}
	invalid := make([]string, 10000)
	for i := range invalid {
		invalid[i] = fmt.Sprintf("%0*d*", 8+i%300, i) // every length from 9 to 308, none valid
	}
	st := NewMemcacheStore(e.ctx())
	ms := st.(*memcacheStore)
	size := func() (int, int) {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		return len(ms.sessions), len(ms.absent)
	}
	e.rpcs()

	i := 0
	allocs := testing.AllocsPerRun(len(invalid)-1, func() {
		if st.Get(invalid[i]) != nil {
			t.Fatal("found")
		}
		i++
	})
	assert.Zero(t, allocs, "allocations per Get of an invalid ID")
	assert.Empty(t, e.rpcs())
	n, r := size()
	assert.Zero(t, n+r, "nothing remembered")

	for i := 0; i < 1000; i++ {
		assert.Nil(t, st.Get(session.NewSession().ID()))
	}
	stats := e.rpcs()
	assert.Equal(t, int64(1000), stats["memcache.Get"])
	n, r = size()
	assert.Zero(t, n, "unknown IDs are no sessions")
	assert.Equal(t, 1000, r, "one absent mark per lookup made")

	for _, id := range known {
		require.NotNil(t, st.Get(id))
	}
	n, _ = size()
	assert.Equal(t, len(known), n, "only the sessions found")
	st.Close()
	assert.Empty(t, e.logged("ERROR"))
}
