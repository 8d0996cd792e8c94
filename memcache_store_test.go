package gaesession

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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

// An entity timed out for longer than a request can run is deleted by the
// request that finds it (TestLoadCleanupWaitsExpiredFor: not before).
func TestExpiredDatastoreEntityIsDeleted(t *testing.T) {
	e := newTestEnv(t)
	id := session.NewSession().ID()
	key := datastore.NewKey(e.ctx(), "sess_", id, 0, nil)
	b, err := memcache.Gob.Marshal(session.NewSession())
	require.NoError(t, err)
	_, err = datastore.Put(e.ctx(), key, &SessEntity{Expires: time.Now().Add(-defaultExpiredFor - time.Minute), Value: b})
	require.NoError(t, err)

	e.request(nil, func(st session.Store) {
		assert.Nil(t, st.Get(id))
	})
	assert.Equal(t, datastore.ErrNoSuchEntity, datastore.Get(e.ctx(), key, &SessEntity{}))
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
		e.srv.FailNext("memcache", "", faultDown)
		e.request(nil, func(st session.Store) {
			require.NotNil(t, st.Get(id))
			assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
		})
		e.srv.FailNext("memcache", "", 0)
		assert.Equal(t, int64(3), e.rpcs()["memcache.Get"])
	})
	t.Run("Retries sets the attempts", func(t *testing.T) {
		e.srv.FailNext("memcache", "", faultDown)
		e.request(&MemcacheStoreOptions{Retries: 1}, func(st session.Store) {
			require.NotNil(t, st.Get(id))
			assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
		})
		e.srv.FailNext("memcache", "", 0)
		assert.Equal(t, int64(1), e.rpcs()["memcache.Get"])
	})
	t.Run("a lookup that failed meets the copy memcache still has", func(t *testing.T) {
		// The get fails, the Datastore answers, and the refill finds the
		// Memcache copy: the store goes on with that one, the newest.
		e.srv.FailNext("memcache", "Get", 3)
		e.request(nil, func(st session.Store) {
			require.NotNil(t, st.Get(id))
			assert.Equal(t, OriginMemcache, SessionOrigin(st, id))
		})
		assert.Equal(t, map[string]int64{"memcache.Get": 4, "datastore_v3.Get": 1, "memcache.Set": 1}, e.rpcs())
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

// A session added and then changed in one request is saved twice with
// AsyncDatastoreSave: by Add and by Close. The two puts run in goroutines
// of their own; the Datastore must end with the later version whatever
// order the service would serve them in. Here Add's put is held back until
// Close's put has been answered.
func TestAsyncSavesOfOneRequestLandInOrder(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := &MemcacheStoreOptions{AsyncDatastoreSave: true}
	var puts atomic.Int32
	secondDone := make(chan struct{})
	ctx := faultHookOn(e.ctx(), "datastore_v3.Put", func() {
		if puts.Add(1) == 1 {
			// Add's put: wait (a little, should the saves already be
			// in order) for Close's.
			select {
			case <-secondDone:
			case <-time.After(200 * time.Millisecond):
			}
		}
	}, func() {
		if puts.Load() == 2 {
			select {
			case <-secondDone:
			default:
				close(secondDone)
			}
		}
	})
	st := NewMemcacheStoreOptions(ctx, o)
	sess := session.NewSessionOptions(&session.SessOptions{Attrs: map[string]interface{}{"n": 1}, Timeout: time.Hour})
	st.Add(sess)
	sess.SetAttr("n", 2) // after Add: Close writes the session again
	st.Close()
	require.NoError(t, WaitForAsyncSaves(context.Background()))
	require.Equal(t, int32(2), puts.Load())
	require.NoError(t, SaveError(st))

	e.srv.FlushMemcache() // only the Datastore is left
	e.request(o, func(st session.Store) {
		got := st.Get(sess.ID())
		require.NotNil(t, got)
		assert.Equal(t, 2, got.Attr("n"), "the Datastore has the version Close saved")
	})
	assert.Empty(t, e.logged("ERROR"))
}
