package gaesession

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/protobuf/proto"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2"
)

// Two requests (two instances, say) load one session, change it, and close
// one after the other.
func concurrentUpdates(t *testing.T, e *testEnv, o *MemcacheStoreOptions) session.Session {
	t.Helper()
	id := e.newSession(o, time.Hour)
	a := NewMemcacheStoreOptions(e.ctx(), o)
	b := NewMemcacheStoreOptions(e.ctx(), o)
	sa, sb := a.Get(id), b.Get(id)
	require.NotNil(t, sa)
	require.NotNil(t, sb)
	sa.SetAttr("a", "from A")
	sa.SetAttr("both", "A")
	sb.SetAttr("b", "from B")
	sb.SetAttr("both", "B")
	sb.SetAttr("n", nil)
	a.Close()
	b.Close()

	var got session.Session
	e.request(o, func(st session.Store) { got = st.Get(id) })
	require.NotNil(t, got)
	return got
}

func TestConcurrentUpdatesLastWriterWinsByDefault(t *testing.T) {
	e := newTestEnv(t)
	got := concurrentUpdates(t, e, nil)
	assert.Nil(t, got.Attr("a"), "without merging, A's change is lost, as in the original")
	assert.Equal(t, "from B", got.Attr("b"))
}

func TestMergeConcurrentUpdates(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	got := concurrentUpdates(t, e, o)
	assert.Equal(t, "from A", got.Attr("a"))
	assert.Equal(t, "from B", got.Attr("b"))
	assert.Equal(t, "B", got.Attr("both"), "for one attribute the later writer wins")
	assert.Nil(t, got.Attr("n"), "B's deletion survives")
	assert.Len(t, e.logged("WARNING", "merged 2 changed and 1 deleted"), 1, "%v", e.allLogs())

	// The datastore got the merged version too.
	e.srv.FlushMemcache()
	e.request(o, func(st session.Store) {
		sess := st.Get(got.ID())
		require.NotNil(t, sess)
		assert.Equal(t, OriginDatastore, SessionOrigin(st, got.ID()))
		assert.Equal(t, "from A", sess.Attr("a"))
		assert.Equal(t, "from B", sess.Attr("b"))
	})
}

// Without a conflict, merging costs one Memcache get after the Datastore
// put (to settle the Datastore against Memcache), and read-only requests
// nothing at all.
func TestMergeWithoutConflictCosts(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	id := e.newSession(o, time.Hour)
	e.rpcs()
	e.request(o, func(st session.Store) { st.Get(id).SetAttr("n", 2) })
	assert.Equal(t, map[string]int64{"memcache.Get": 2, "memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs())
	e.request(o, func(st session.Store) { st.Get(id) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs())
}

func TestMergeAfterEvictionAddsTheSession(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	id := e.newSession(o, time.Hour)
	e.request(o, func(st session.Store) {
		st.Get(id).SetAttr("n", 2)
		e.srv.FlushMemcache() // evicted in the middle of the request
	})
	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, OriginMemcache, SessionOrigin(st, id))
		assert.Equal(t, 2, sess.Attr("n"))
	})
}

// A session found in the Datastore is put back into Memcache by the request
// itself; its own copy there is no concurrent update to merge with.
func TestMergeAfterDatastoreLoadIsNoConflict(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	id := e.newSession(o, time.Hour)
	e.srv.FlushMemcache()
	e.request(o, func(st session.Store) { st.Get(id).SetAttr("n", 2) })
	assert.Empty(t, e.logged("WARNING"), "no merge reported")
	e.request(o, func(st session.Store) { assert.Equal(t, 2, st.Get(id).Attr("n")) })
}

// With MergeConcurrentUpdates, a change that makes a session too large for
// Memcache used to be lost: flush deleted the old Memcache copy in parallel
// with the Datastore put, and the settle step after the put, reading
// Memcache before that delete landed, put the old small copy over the new
// entity, while the log said "kept in the datastore only". Injected latency
// forces that order: on memcache.Delete (the old eviction) and on
// memcache.Set (the marker that now replaces the copy before the put).
func TestMergeKeepsChangeThatOutgrowsMemcache(t *testing.T) {
	for _, slow := range []string{"memcache.Delete", "memcache.Set"} {
		t.Run("slow "+slow, func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			o := withLongPrefix(&MemcacheStoreOptions{MergeConcurrentUpdates: true})
			id := e.newSession(o, time.Hour)
			e.srv.SetLatency(slow, 50*time.Millisecond)
			e.request(o, func(st session.Store) {
				st.Get(id).SetAttr("big", strings.Repeat("x", bigValueLen))
			})
			e.srv.SetLatency(slow, 0)
			assert.Len(t, e.logged("WARNING", LogID(id), "kept in the datastore only"), 1, "%v", e.allLogs())
			assert.Empty(t, e.logged("ERROR"))

			for _, evict := range []bool{false, true} {
				if evict {
					e.srv.FlushMemcache()
				}
				e.request(o, func(st session.Store) {
					sess := st.Get(id)
					require.NotNil(t, sess)
					assert.Len(t, sess.Attr("big"), bigValueLen, "the change survives (memcache evicted: %v)", evict)
					assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
				})
			}
		})
	}
}

// With MergeConcurrentUpdates, a request that changes a session whose
// current version is only in the Datastore (too large for Memcache) and
// collides with another request's write merges with that Datastore version.
func TestMergeWithDatastoreOnlyVersion(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := withLongPrefix(&MemcacheStoreOptions{MergeConcurrentUpdates: true})
	id := e.newSession(o, time.Hour)
	a := NewMemcacheStoreOptions(e.ctx(), o)
	a.Get(id).SetAttr("a", "from A")
	e.request(o, func(st session.Store) { st.Get(id).SetAttr("big", strings.Repeat("x", bigValueLen)) })
	a.Close() // conflicts with the datastore-only marker: merges with the Datastore version

	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, "from A", sess.Attr("a"))
		assert.Len(t, sess.Attr("big"), bigValueLen)
	})
	assert.Len(t, e.logged("WARNING", LogID(id), "merged 1 changed"), 1, "%v", e.allLogs())
	assert.Empty(t, e.logged("ERROR"))
}

// Issue 19, item 3: two requests change a session too large for Memcache
// (its Memcache item is the placeholder) with MergeConcurrentUpdates. The
// second to close found the placeholder changed and, since it equals what
// it would write, took it for its own version already stored; its put then
// overwrote the first request's change, silently. Each change must survive,
// as for sessions that fit.
func TestMergeOfSessionsTooLargeForMemcacheKeepsBothChanges(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := withLongPrefix(&MemcacheStoreOptions{MergeConcurrentUpdates: true})
	id := e.newSession(o, time.Hour)
	e.request(o, func(st session.Store) { st.Get(id).SetAttr("big", strings.Repeat("x", bigValueLen)) })

	a := NewMemcacheStoreOptions(e.ctx(), o)
	b := NewMemcacheStoreOptions(e.ctx(), o)
	a.Get(id).SetAttr("a", "from A")
	b.Get(id).SetAttr("b", "from B")
	a.Close()
	b.Close()
	require.NoError(t, SaveError(a))
	require.NoError(t, SaveError(b))

	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
		assert.Equal(t, "from A", sess.Attr("a"), "A's change survives")
		assert.Equal(t, "from B", sess.Attr("b"), "B's change survives")
		assert.Len(t, sess.Attr("big"), bigValueLen)
	})
	assert.Len(t, e.logged("WARNING", LogID(id), "merged 1 changed"), 1, "%v", e.allLogs())
	assert.Empty(t, e.logged("ERROR"))
}

// The same when the second request merges before the first one's put has
// landed: A wins the compare-and-swap of the placeholder, then B closes
// entirely (merging with the Datastore copy, which A's put has not reached
// yet) before A makes its first Datastore call.
func TestMergeOfSessionsTooLargeForMemcacheWithPutInFlight(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := withLongPrefix(&MemcacheStoreOptions{MergeConcurrentUpdates: true})
	id := e.newSession(o, time.Hour)
	e.request(o, func(st session.Store) { st.Get(id).SetAttr("big", strings.Repeat("x", bigValueLen)) })

	b := NewMemcacheStoreOptions(e.ctx(), o)
	b.Get(id).SetAttr("b", "from B")
	var armed, ran atomic.Bool
	ctxA := appengine.WithAPICallFunc(e.ctx(), func(ctx context.Context, service, method string, in, out proto.Message) error {
		if service == "datastore_v3" && armed.Load() && ran.CompareAndSwap(false, true) {
			b.Close()
		}
		return appengine.APICall(ctx, service, method, in, out)
	})
	a := NewMemcacheStoreOptions(ctxA, o)
	a.Get(id).SetAttr("a", "from A")
	armed.Store(true)
	a.Close()
	require.True(t, ran.Load())
	require.NoError(t, SaveError(a))
	require.NoError(t, SaveError(b))

	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, "from A", sess.Attr("a"), "A's change survives")
		assert.Equal(t, "from B", sess.Attr("b"), "B's change survives")
	})
	assert.Empty(t, e.logged("ERROR"))
}

// A read-only request that found a session in the Datastore puts it back
// into Memcache on Close. If another request changed the session in the
// meantime, that refill must not overwrite the newer copy: the read-only
// request wrote nothing, so it is no "last writer".
func TestReadOnlyRefillKeepsNewerWrite(t *testing.T) {
	for _, o := range []*MemcacheStoreOptions{nil, {MergeConcurrentUpdates: true}} {
		t.Run(fmt.Sprintf("merge=%v", o != nil), func(t *testing.T) {
			e := newTestEnv(t)
			id := e.newSession(o, time.Hour)
			e.srv.FlushMemcache()

			reader := NewMemcacheStoreOptions(e.ctx(), o)
			require.NotNil(t, reader.Get(id)) // from the Datastore
			e.request(o, func(st session.Store) { st.Get(id).SetAttr("n", 2) })
			reader.Close()

			var n interface{}
			e.request(o, func(st session.Store) {
				sess := st.Get(id)
				n = sess.Attr("n")
				sess.SetAttr("n", n.(int)+1)
			})
			assert.Equal(t, 2, n, "the change survives the reader's refill")
			e.srv.FlushMemcache()
			e.request(o, func(st session.Store) { n = st.Get(id).Attr("n") })
			assert.Equal(t, 3, n, "and the next change builds on it, in the Datastore too")
		})
	}
}

// Without MergeConcurrentUpdates the last writer wins, as in the original
// package, but each request's Datastore put and Memcache write are separate
// calls, so the two tiers may disagree on which request was last: here A
// puts first and writes Memcache last. Memcache shows A's version (its
// compare-and-swap conflicts with B's write, and it overwrites it); once
// Memcache forgets the session, B's comes back. This pins the behaviour
// documented in RELIABILITY.md.
func TestLastWriterMayDifferPerTier(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	id := e.newSession(nil, time.Hour)

	ctxA, reached, release := pauseFirst(e, "memcache.Set")
	a := NewMemcacheStore(ctxA)
	b := NewMemcacheStore(e.ctx())
	a.Get(id).SetAttr("n", "A")
	b.Get(id).SetAttr("n", "B")
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		a.Close()
	}()
	<-reached // A's put has landed; its Memcache write waits
	b.Close()
	close(release)
	<-aDone

	sess, origin := faultGet(t, e, nil, id)
	require.NotNil(t, sess)
	assert.Equal(t, OriginMemcache, origin)
	assert.Equal(t, "A", sess.Attr("n"))
	e.srv.FlushMemcache()
	sess, origin = faultGet(t, e, nil, id)
	require.NotNil(t, sess)
	assert.Equal(t, OriginDatastore, origin)
	assert.Equal(t, "B", sess.Attr("n"))
	assert.Empty(t, e.logged("ERROR"))
}

// With MergeConcurrentUpdates, two requests that both found the session in
// the Datastore (Memcache had evicted it) and changed different attributes
// must both keep their change, as when they found it in Memcache.
func TestMergeAfterEvictionKeepsBothChanges(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	id := e.newSession(o, time.Hour)
	e.srv.FlushMemcache()

	a := NewMemcacheStoreOptions(e.ctx(), o)
	b := NewMemcacheStoreOptions(e.ctx(), o)
	a.Get(id).SetAttr("a", "from A")
	b.Get(id).SetAttr("b", "from B")
	a.Close()
	b.Close()

	for _, tier := range []string{"memcache", "datastore"} {
		if tier == "datastore" {
			e.srv.FlushMemcache()
		}
		e.request(o, func(st session.Store) {
			sess := st.Get(id)
			require.NotNil(t, sess)
			assert.Equal(t, "from A", sess.Attr("a"), tier)
			assert.Equal(t, "from B", sess.Attr("b"), tier)
		})
	}
}

// With MergeConcurrentUpdates, the Datastore must end up with the merged
// version, whatever order the two requests' Datastore puts land in.
// Here A wins the compare-and-swap, B merges A's change into its own, and
// B's put lands before A's (A's instance is slower to reach the
// Datastore): A's older version overwrites the merged one.
func TestMergeDatastoreKeepsMergedVersion(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	id := e.newSession(o, time.Hour)

	ctxA, reached, release := pauseFirst(e, "datastore_v3.Put")
	a := NewMemcacheStoreOptions(ctxA, o)
	b := NewMemcacheStoreOptions(e.ctx(), o)
	a.Get(id).SetAttr("a", "from A")
	b.Get(id).SetAttr("b", "from B")
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		a.Close() // wins the compare-and-swap, then its put waits
	}()
	<-reached
	b.Close() // conflicts, merges, puts the merged version
	close(release)
	<-aDone

	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, "from A", sess.Attr("a"), "memcache")
		assert.Equal(t, "from B", sess.Attr("b"), "memcache")
	})
	e.srv.FlushMemcache()
	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, "from A", sess.Attr("a"), "datastore")
		assert.Equal(t, "from B", sess.Attr("b"), "datastore")
	})
}

// With MergeConcurrentUpdates, a request whose compare-and-swap keeps
// failing because another request writes after each of its reloads gives
// up after Retries+2 attempts. It must not then save over the other
// request's changes: B's latest change stands, and A's loss is logged.
func TestMergeGivesUpWithoutOverwriting(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	id := e.newSession(o, time.Hour)

	bWrites := 0
	bWrite := func() {
		bWrites++
		e.request(o, func(st session.Store) { st.Get(id).SetAttr("b", bWrites) })
	}
	gets := 0
	ctxA := faultHookCtx(e, "memcache.Get", nil, func() {
		gets++
		bWrite() // after each of A's (re)loads, B writes again
	})
	a := NewMemcacheStoreOptions(ctxA, o)
	a.Get(id).SetAttr("a", "from A")
	a.Close()
	require.Greater(t, gets, 1, "A had to reload")
	assert.Len(t, e.logged("ERROR", LogID(id), "kept changing", "were not saved"), 1, "%v", e.allLogs())

	for _, tier := range []string{"memcache", "datastore"} {
		if tier == "datastore" {
			e.srv.FlushMemcache()
		}
		e.request(o, func(st session.Store) {
			sess := st.Get(id)
			require.NotNil(t, sess)
			assert.Nil(t, sess.Attr("a"), tier)
			assert.Equal(t, bWrites, sess.Attr("b"), "%s: B's latest change survives", tier)
		})
	}
}

// Without MergeConcurrentUpdates, a request whose compare-and-swap keeps
// meeting newer copies (B writes after each of A's reloads) overwrites
// what it finds, but not forever: after 3*(Retries+2) conflicts it gives
// up, logs it, and SaveError reports it. Its put went first, so the
// Datastore had its version until B's next put.
func TestLastWriterGivesUpAfterManyConflicts(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	id := e.newSession(nil, time.Hour)

	bWrites := 0
	var armed atomic.Bool
	ctxA := faultHookCtx(e, "memcache.Get", nil, func() {
		if armed.Load() {
			bWrites++
			e.request(nil, func(st session.Store) { st.Get(id).SetAttr("b", bWrites) })
		}
	})
	ctxA = faultHookOn(ctxA, "datastore_v3.Put", func() { // A's own put, before its memcache write
		armed.Store(true)
		bWrites++
		e.request(nil, func(st session.Store) { st.Get(id).SetAttr("b", bWrites) })
	}, nil)
	a := NewMemcacheStore(ctxA)
	a.Get(id).SetAttr("a", "from A")
	a.Close()
	assert.Equal(t, 3*(newConfig(nil).retries+2), bWrites, "one write of B per conflict of A")
	assert.Len(t, e.logged("ERROR", LogID(id), "kept changing", "not written to memcache"), 1, "%v", e.allLogs())
	assert.ErrorContains(t, SaveError(a), "kept changing")
	e.request(nil, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, bWrites, sess.Attr("b"), "B's latest version stands")
	})
}

// A loaded session that goes through Add is still merged: on Add with what
// the request changed since it loaded it, and on Close with what it changed
// since Add, so a concurrent request's change made in between is kept.
func TestMergeAfterAddOfLoadedSession(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	id := e.newSession(o, time.Hour)
	a := NewMemcacheStoreOptions(e.ctx(), o)
	sa := a.Get(id)
	require.NotNil(t, sa)
	e.request(o, func(st session.Store) { st.Get(id).SetAttr("b", "before A's Add") })
	sa.SetAttr("a", 1)
	a.Add(sa)
	e.request(o, func(st session.Store) { st.Get(id).SetAttr("b", "between A's Add and Close") })
	sa.SetAttr("a", 2)
	a.Close()
	require.NoError(t, SaveError(a))

	for _, empty := range []bool{false, true} {
		if empty {
			e.srv.FlushMemcache()
		}
		e.request(o, func(st session.Store) {
			got := st.Get(id)
			require.NotNil(t, got)
			assert.Equal(t, 2, got.Attr("a"), "memcache emptied: %v", empty)
			assert.Equal(t, "between A's Add and Close", got.Attr("b"), "memcache emptied: %v", empty)
		})
	}
}

// pauseFirst returns a context whose first call of method waits, after
// closing reached, until the test closes release; later calls go through.
func pauseFirst(e *testEnv, method string) (ctx context.Context, reached, release chan struct{}) {
	reached, release = make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	ctx = faultHookCtx(e, method, func() {
		if once.CompareAndSwap(false, true) {
			close(reached)
			<-release
		}
	}, nil)
	return ctx, reached, release
}
