package gaesession

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gproto "github.com/golang/protobuf/proto"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

func TestGetAddRemoveClose(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)

	e.rpcs()
	e.request(nil, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, 1, sess.Attr("n"))
		assert.Equal(t, "gopher", sess.CAttr("user"))
		assert.Equal(t, OriginMemcache, SessionOrigin(st, id))
		assert.Same(t, sess, st.Get(id), "a second Get in one request comes from the request cache")
		assert.Equal(t, OriginRequestCache, SessionOrigin(st, id))
		sess.SetAttr("n", 2)
	})
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs(),
		"a modified session costs one get, then a set and a put")

	e.request(nil, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, 2, sess.Attr("n"))
		st.Remove(sess)
		assert.Nil(t, st.Get(id), "a removed session is not found again in the same request")
	})
	e.request(nil, func(st session.Store) {
		assert.Nil(t, st.Get(id))
	})
	err := datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &SessEntity{})
	assert.Equal(t, datastore.ErrNoSuchEntity, err)
}

func TestUnknownIDIsNil(t *testing.T) {
	e := newTestEnv(t)
	e.request(nil, func(st session.Store) {
		assert.Nil(t, st.Get("AAAAAAAAAAAAAAAAAAAAAAAA"))
	})
}

func TestAddWritesMemcacheAndDatastore(t *testing.T) {
	e := newTestEnv(t)
	e.rpcs()
	id := e.newSession(nil, time.Hour)
	assert.Equal(t, map[string]int64{"memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs(),
		"a new session is written once, to both tiers")

	var ent SessEntity
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &ent))
	assert.WithinDuration(t, time.Now().Add(66*time.Minute), ent.Expires, time.Minute)
	sess, err := decodeGob(ent.Value)
	require.NoError(t, err)
	assert.Equal(t, id, sess.ID())
}

func TestMemcacheMissFallsBackToDatastore(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)
	e.srv.FlushMemcache()
	e.rpcs()

	e.request(nil, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, 1, sess.Attr("n"))
		assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
	})
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "datastore_v3.Get": 1, "memcache.Set": 1}, e.rpcs(),
		"a session found in the datastore is put back into memcache, and nothing else is written")

	e.request(nil, func(st session.Store) {
		require.NotNil(t, st.Get(id))
		assert.Equal(t, OriginMemcache, SessionOrigin(st, id))
	})
	assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs())
}

func TestOnlyMemcacheMakesNoDatastoreRPC(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{OnlyMemcache: true}
	id := e.newSession(o, time.Hour)
	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		sess.SetAttr("n", 5)
	})
	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, 5, sess.Attr("n"))
		st.Remove(sess)
	})
	e.srv.FlushMemcache()
	e.request(o, func(st session.Store) {
		assert.Nil(t, st.Get(id))
	})
	stats := e.rpcs()
	assert.Zero(t, total(stats, "datastore_v3"), "datastore RPCs: %v", stats)
	assert.NotZero(t, total(stats, "memcache"))
}

func TestSyncSaveIsDoneWhenCloseReturns(t *testing.T) {
	e := newTestEnv(t)
	e.srv.SetLatency("datastore_v3.Put", 20*time.Millisecond)
	id := e.newSession(nil, time.Hour) // no async saves: nothing to wait for
	var ent SessEntity
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &ent))
}

// The original saved asynchronously on the request's context, which App
// Engine cancels when the handler returns: the save was lost.
func TestAsyncSaveSurvivesCancelledRequest(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	e.srv.SetLatency("datastore_v3.Put", 50*time.Millisecond)

	var id string
	h := e.srv.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sessmgr := session.NewCookieManager(NewMemcacheStoreOptions(appengine.NewContext(r), &MemcacheStoreOptions{AsyncDatastoreSave: true}))
		defer sessmgr.Close()
		sess := session.NewSession()
		sessmgr.Add(sess, w)
		id = sess.ID()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	cancel() // the request is over

	require.NoError(t, WaitForAsyncSaves(context.Background()))
	var ent SessEntity
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &ent))
	assert.Empty(t, e.logged("ERROR"))
}

func TestAsyncSaveFailureIsLogged(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	e.srv.FailNext("datastore_v3", "Put", 3)
	id := e.newSession(&MemcacheStoreOptions{AsyncDatastoreSave: true}, time.Hour)
	require.NoError(t, WaitForAsyncSaves(context.Background()))
	assert.Len(t, e.logged("ERROR", LogID(id), "to the datastore failed"), 1, "logs: %v", e.allLogs())
}

func TestAsyncSaveIsBoundedByItsTimeout(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	e.srv.SetLatency("datastore_v3.Put", time.Hour)
	o := &MemcacheStoreOptions{AsyncDatastoreSave: true, AsyncSaveTimeout: 20 * time.Millisecond}
	id := e.newSession(o, time.Hour)
	require.NoError(t, WaitForAsyncSaves(context.Background()))
	assert.Len(t, e.logged("ERROR", LogID(id), "to the datastore failed"), 1, "logs: %v", e.allLogs())
	assert.Equal(t, int64(1), e.srv.Stats()["datastore_v3.Put"], "a timed-out save is not retried")
}

func TestExpiredDatastoreEntityIsDeleted(t *testing.T) {
	e := newTestEnv(t)
	id := session.NewSession().ID()
	key := datastore.NewKey(e.ctx(), "sess_", id, 0, nil)
	b, err := memcache.Gob.Marshal(session.NewSession())
	require.NoError(t, err)
	_, err = datastore.Put(e.ctx(), key, &SessEntity{Expires: time.Now().Add(-time.Minute), Value: b})
	require.NoError(t, err)

	e.request(nil, func(st session.Store) {
		assert.Nil(t, st.Get(id))
	})
	assert.Equal(t, datastore.ErrNoSuchEntity, datastore.Get(e.ctx(), key, &SessEntity{}))
}

func TestKeyPrefix(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{KeyPrefix: "app1:", DSEntityName: "websess"}
	id := e.newSession(o, time.Hour)

	item, err := memcache.Get(e.ctx(), "app1:"+id)
	require.NoError(t, err)
	sess, err := decodeGob(item.Value)
	require.NoError(t, err)
	assert.Equal(t, id, sess.ID())
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "websess", id, 0, nil), &SessEntity{}))

	e.request(&MemcacheStoreOptions{KeyPrefix: "app2:", OnlyMemcache: true}, func(st session.Store) {
		assert.Nil(t, st.Get(id), "another prefix is another namespace of sessions")
	})
}

// The original failed every memcache call once KeyPrefix+ID passed 250 bytes.
func TestLongMemcacheKeyIsHashed(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := &MemcacheStoreOptions{KeyPrefix: strings.Repeat("p", 240), OnlyMemcache: true}
	id := e.newSession(o, time.Hour)
	e.request(o, func(st session.Store) {
		require.NotNil(t, st.Get(id))
	})
	assert.Empty(t, e.logged("ERROR"))
}

func TestCustomCodec(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{Codec: &memcache.JSON}
	id := e.newSession(o, time.Hour)

	item, err := memcache.Get(e.ctx(), id)
	require.NoError(t, err)
	assert.True(t, json.Valid(item.Value), "stored with the JSON codec: %q", item.Value)
	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.EqualValues(t, 1, sess.Attr("n")) // JSON numbers come back as float64
	})
}

func TestRetries(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)

	t.Run("memcache recovers within the attempts", func(t *testing.T) {
		e.rpcs()
		e.srv.FailNext("memcache", "Get", 2)
		e.request(nil, func(st session.Store) {
			require.NotNil(t, st.Get(id))
			assert.Equal(t, OriginMemcache, SessionOrigin(st, id))
		})
		assert.Equal(t, int64(3), e.rpcs()["memcache.Get"])
	})
	t.Run("memcache down falls back to the datastore", func(t *testing.T) {
		e.srv.FailNext("memcache", "Get", 3)
		e.request(nil, func(st session.Store) {
			require.NotNil(t, st.Get(id))
			assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
		})
		assert.Equal(t, int64(3), e.rpcs()["memcache.Get"])
	})
	t.Run("Retries sets the attempts", func(t *testing.T) {
		e.srv.FailNext("memcache", "Get", 1)
		e.request(&MemcacheStoreOptions{Retries: 1}, func(st session.Store) {
			require.NotNil(t, st.Get(id))
			assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
		})
		assert.Equal(t, int64(1), e.rpcs()["memcache.Get"])
	})
	t.Run("a cache miss is not retried", func(t *testing.T) {
		e.request(&MemcacheStoreOptions{OnlyMemcache: true}, func(st session.Store) {
			assert.Nil(t, st.Get(session.NewSession().ID()))
		})
		assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs())
	})
	t.Run("a timed-out call is not retried", func(t *testing.T) {
		e.srv.SetLatency("memcache", time.Hour)
		defer e.srv.SetLatency("memcache", 0)
		ctx, cancel := context.WithTimeout(e.ctx(), 20*time.Millisecond)
		defer cancel()
		st := NewMemcacheStoreOptions(ctx, &MemcacheStoreOptions{OnlyMemcache: true})
		assert.Nil(t, st.Get(id))
		st.Close()
		assert.Equal(t, int64(1), e.rpcs()["memcache.Get"])
	})
}

// Defect 1 of the original: Get wrote the request cache under a read lock.
func TestStoreIsSafeForConcurrentUse(t *testing.T) {
	e := newTestEnv(t)
	ids := []string{e.newSession(nil, time.Hour), e.newSession(nil, time.Hour)}
	st := NewMemcacheStore(e.ctx())
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if sess := st.Get(ids[(g+i)%2]); sess != nil {
					sess.SetAttr("g", g)
				}
				if i%5 == 0 {
					st.Add(session.NewSession())
				}
				if i == 10 && g == 7 {
					st.Remove(st.Get(ids[1]))
				}
				SessionOrigin(st, ids[0])
			}
		}(g)
	}
	wg.Wait()
	st.Close()
	e.request(nil, func(st session.Store) {
		require.NotNil(t, st.Get(ids[0]))
		assert.Nil(t, st.Get(ids[1]))
	})
}

// Defect 6: IDs from cookies are attacker-controlled.
func TestInvalidIDCostsNoRPC(t *testing.T) {
	e := newTestEnv(t)
	e.rpcs()
	bad := []string{
		"", "short", strings.Repeat("A", 260), "AAAAAAAAAAAAAAAAAAAAAAA*", "AAAAAAAAAAAAAAAAAAAAAAA", // 23 chars
		"AAAAAAAAAAAAAAAAAAAA=AAA", "AAAAAAAA AAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA\x00",
		"ÁAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAA/+==",
	}
	e.request(nil, func(st session.Store) {
		for _, id := range bad {
			assert.Nil(t, st.Get(id), "%q", id)
		}
	})
	assert.Empty(t, e.rpcs())
	for _, n := range []int{6, 16, 18, 32, 100, 192} {
		id := session.NewSessionOptions(&session.SessOptions{IDLength: n}).ID()
		assert.True(t, ValidID(id), "IDLength %d: %q", n, id)
	}
}

// Defect 7: a session over memcache's limit was silently not cached, and an
// older, smaller copy stayed there to be served. Memcache's limit counts the
// key, the value and 73 bytes of overhead within 1 MiB, so with the default
// short key a session too big for it is too big for an entity too; a long
// KeyPrefix leaves room between the two.
func TestOversizedSessionKeptInDatastore(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := &MemcacheStoreOptions{KeyPrefix: strings.Repeat("p", 200)}
	id := e.newSession(o, time.Hour)
	e.request(o, func(st session.Store) {
		st.Get(id).SetAttr("big", strings.Repeat("x", 1048000))
	})
	lines := e.logged("ERROR", LogID(id), "exceeds memcache's item limit (1048576 bytes for key, value and overhead)")
	require.Len(t, lines, 1, "logs: %v", e.allLogs())
	assert.Contains(t, lines[0], "datastore only")

	_, err := memcache.Get(e.ctx(), o.KeyPrefix+id)
	assert.Equal(t, memcache.ErrCacheMiss, err, "the stale small copy must leave memcache")
	e.request(o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Len(t, sess.Attr("big"), 1048000)
		assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
	})
}

// Defect 8: the original logged whole session IDs.
func TestLogsNeverContainSessionIDs(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	id := e.newSession(nil, time.Hour)
	e.srv.FailNext("memcache", "", 100)
	e.srv.FailNext("datastore_v3", "", 100)
	e.request(nil, func(st session.Store) {
		st.Get(id)
		st.Add(session.NewSession())
		st.Remove(session.NewSession())
	})
	require.NotEmpty(t, e.logged("ERROR"))
	for _, l := range e.allLogs() {
		assert.NotContains(t, l, id)
		assert.NotContains(t, l, id[:12])
	}
}

// appengine/v2/log panics on a context that did not come through
// appengine.Middleware; the store must not.
func TestLoggingWithoutAppEngineContext(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	ctx := appengine.WithAPICallFunc(context.Background(), func(context.Context, string, string, gproto.Message, gproto.Message) error {
		return context.DeadlineExceeded
	})
	st := NewMemcacheStore(ctx)
	assert.NotPanics(t, func() {
		assert.Nil(t, st.Get(session.NewSession().ID()))
		st.Add(session.NewSession())
		st.Close()
	})
	assert.NotEmpty(t, e.logged("ERROR"))
}

// A stored value that does not decode is a miss, not a panic.
func TestCorruptStoredValues(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	id := e.newSession(nil, time.Hour)
	require.NoError(t, memcache.Set(e.ctx(), &memcache.Item{Key: id, Value: []byte("\x07garbage")}))

	e.request(nil, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess, "the datastore copy is still good")
		assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
	})
	assert.Len(t, e.logged("ERROR", LogID(id), "memcache holds a value that is not this session"), 1)

	require.NoError(t, memcache.Set(e.ctx(), &memcache.Item{Key: id, Value: []byte{}}))
	_, err := datastore.Put(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &SessEntity{Expires: time.Now().Add(time.Hour), Value: []byte{0xff, 0x00}})
	require.NoError(t, err)
	e.request(nil, func(st session.Store) {
		assert.Nil(t, st.Get(id))
	})
	assert.Len(t, e.logged("ERROR", LogID(id), "datastore holds a value that is not this session"), 1)

	// Another session's bytes under this ID are not this session.
	other := e.newSession(&MemcacheStoreOptions{OnlyMemcache: true}, time.Hour)
	item, err := memcache.Get(e.ctx(), other)
	require.NoError(t, err)
	require.NoError(t, memcache.Set(e.ctx(), &memcache.Item{Key: id, Value: item.Value}))
	e.request(&MemcacheStoreOptions{OnlyMemcache: true}, func(st session.Store) {
		assert.Nil(t, st.Get(id))
	})
}

// A session whose ID Get would refuse is not stored at all, and says why.
func TestAddRefusesIDsGetWouldNotAccept(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	e.rpcs()
	e.request(nil, func(st session.Store) {
		st.Add(session.NewSessionOptions(&session.SessOptions{IDLength: 3}))
	})
	assert.Empty(t, e.rpcs())
	assert.Len(t, e.logged("ERROR", "session not added", "IDLength"), 1, "%v", e.allLogs())
}

// A miss is remembered for the rest of the request: asking again costs no
// RPC, and Add still works.
func TestMissIsRememberedWithinARequest(t *testing.T) {
	e := newTestEnv(t)
	id := session.NewSession().ID()
	e.rpcs()
	e.request(nil, func(st session.Store) {
		for i := 0; i < 3; i++ {
			assert.Nil(t, st.Get(id))
		}
	})
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "datastore_v3.Get": 1}, e.rpcs())
}

// Several changed sessions in one store go out in one SetMulti and one
// PutMulti.
func TestSeveralSessionsAreWrittenInOneBatch(t *testing.T) {
	e := newTestEnv(t)
	ids := []string{e.newSession(nil, time.Hour), e.newSession(nil, time.Hour), e.newSession(nil, time.Hour)}
	e.rpcs()
	e.request(nil, func(st session.Store) {
		for _, id := range ids {
			st.Get(id).SetAttr("n", 2)
		}
	})
	assert.Equal(t, map[string]int64{"memcache.Get": 3, "memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs())
	e.srv.FlushMemcache()
	e.request(nil, func(st session.Store) {
		for _, id := range ids {
			assert.Equal(t, 2, st.Get(id).Attr("n"))
		}
	})
}

// Remove deletes from Memcache and the Datastore.
func TestRemoveDeletesBothTiers(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)
	e.rpcs()
	e.request(nil, func(st session.Store) { st.Remove(st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "memcache.Delete": 1, "datastore_v3.Delete": 1}, e.rpcs())
	_, err := memcache.Get(e.ctx(), id)
	assert.Equal(t, memcache.ErrCacheMiss, err)
	assert.Equal(t, datastore.ErrNoSuchEntity, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &SessEntity{}))
}
