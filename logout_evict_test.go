package gaesession

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/protobuf/proto"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// A logout stays final when Memcache evicts, in every mode with a
// Datastore: request B loads the session and works with it; the logout runs
// in another request before B's first call, before its second, and so on
// up to after B's last, and Memcache is emptied right after the logout
// (its tombstone evicted), or before every call of B and of the logout
// request alike. Whatever B does (changes the session, only reads it with
// an expiry refresh due, hands it to Add, loaded it from the Datastore),
// no Get after the logout returns the session, and no write of B's stores
// it where a Get, or an instance of the original package, would find it.

// dsModes are storeModes with a Datastore.
func dsModes() (modes []struct {
	name string
	opts *MemcacheStoreOptions
}) {
	for _, m := range storeModes {
		if !newConfig(m.opts).onlyMemcache {
			modes = append(modes, struct {
				name string
				opts *MemcacheStoreOptions
			}{m.name, m.opts})
		}
	}
	return modes
}

// beforeEveryCall returns a context of e whose every call (those of an
// asynchronous save included) first runs before.
func beforeEveryCall(e *testEnv, before func()) context.Context {
	return appengine.WithAPICallFunc(e.ctx(), func(ctx context.Context, service, method string, in, out proto.Message) error {
		before()
		return appengine.APICall(ctx, service, method, in, out)
	})
}

// evictingLogout removes the session id in a request of its own; with
// evictAll, Memcache is emptied before each of its calls.
func evictingLogout(t *testing.T, e *testEnv, o *MemcacheStoreOptions, id string, evictAll bool) {
	ctx := e.ctx()
	if evictAll {
		ctx = beforeEveryCall(e, e.srv.FlushMemcache)
	}
	st := NewMemcacheStoreOptions(ctx, o)
	sess := st.Get(id)
	if !assert.NotNil(t, sess, "the logout finds the session") {
		return
	}
	st.Remove(sess)
	st.Close()
	assert.NoError(t, SaveError(st))
}

// requireGoneFromDatastoreView checks that the session id is gone for
// good: Gets return nil (the last one after Memcache lost everything),
// Memcache holds no copy of it, the Datastore no entity (a put that landed
// after the logout's delete is deleted by the first lookup that sees it
// with the marker), and an instance of the original package finds nothing.
func requireGoneFromDatastoreView(t *testing.T, e *testEnv, o *MemcacheStoreOptions, id string) {
	t.Helper()
	require.NoError(t, WaitForAsyncSaves(context.Background()))
	for round := 0; round < 3; round++ {
		if round == 2 {
			e.srv.FlushMemcache()
		}
		e.request(o, func(st session.Store) { assert.Nil(t, st.Get(id), "round %d: found after the logout", round) })
	}
	if item, err := memcache.Get(e.ctx(), id); err == nil {
		assert.NotEqual(t, kindSession, kindOf(item.Value), "memcache holds a copy of the session")
	}
	err := datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &SessEntity{})
	assert.Equal(t, datastore.ErrNoSuchEntity, err, "the datastore entity is gone")
	sess, _ := originalGet(e.ctx(), memcache.Gob, 3, id)
	assert.Nil(t, sess, "an instance of the original package finds the session")
}

func TestLogoutFinalWhenMemcacheEvicts(t *testing.T) {
	behaviours := []struct {
		name          string
		fromDatastore bool // Memcache is emptied before B's Get
		refresh       bool // B only reads; its copy is due for a refresh
		add           bool // B hands the session to Add after changing it
	}{
		{name: "change"},
		{name: "refresh", refresh: true},
		{name: "add", add: true},
		{name: "change after datastore load", fromDatastore: true},
	}
	for _, mode := range dsModes() {
		for _, bh := range behaviours {
			for _, evictAll := range []bool{false, true} {
				evict := "evict at logout"
				if evictAll {
					evict = "evict before every call"
				}
				for point := 0; ; point++ {
					after := false // the logout came after B's last call
					t.Run(fmt.Sprintf("%s/%s/%s/before call %d", mode.name, bh.name, evict, point), func(t *testing.T) {
						e := newTestEnv(t)
						clock := e.fakeClock()
						o := mode.opts
						id := e.newSession(o, time.Hour)
						if bh.refresh {
							clock.Advance(30 * time.Minute)
						}
						if bh.fromDatastore {
							e.srv.FlushMemcache()
						}
						var calls atomic.Int64
						var ran atomic.Bool
						logoutNow := func() {
							ran.Store(true)
							evictingLogout(t, e, o, id, evictAll)
							e.srv.FlushMemcache()
						}
						ctxB := beforeEveryCall(e, func() {
							if calls.Add(1)-1 == int64(point) {
								logoutNow()
							}
							if evictAll {
								e.srv.FlushMemcache()
							}
						})
						b := NewMemcacheStoreOptions(ctxB, o)
						if sess := b.Get(id); sess != nil && !bh.refresh {
							sess.SetAttr("n", 2)
							if bh.add {
								b.Add(sess)
							}
						}
						b.Close()
						require.NoError(t, WaitForAsyncSaves(context.Background()))
						if !ran.Load() {
							after = true
							logoutNow()
						}
						requireGoneFromDatastoreView(t, e, o, id)
					})
					if after || point == 60 {
						break
					}
				}
			}
		}
	}
}
