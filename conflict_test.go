package gaesession

import (
	"strings"
	"testing"
	"time"

	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
