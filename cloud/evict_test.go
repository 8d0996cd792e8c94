package cloud

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/protobuf/proto"
	gaesession "github.com/icza/gaesession/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
	"google.golang.org/grpc"
)

// A logout stays final when the cache evicts, on the Cloud store as on the
// bundled one (the root package's TestLogoutFinalWhenMemcacheEvicts): the
// Datastore carries the removal. Request B loads the session and works
// with it; the logout runs in another request before B's first call
// (Memcache or Cloud Datastore), before its second, and so on up to after
// its last, and Memcache is emptied right after the logout, or before
// every call of B and of the logout alike. No Get after the logout, by
// either store, returns the session, and no entity of it is left.
func TestCloudLogoutFinalWhenCacheEvicts(t *testing.T) {
	modes := []struct {
		name  string
		cache Cache
		opts  *gaesession.MemcacheStoreOptions
	}{
		{"memcache", Memcache(), nil},
		{"memcache, merge", Memcache(), &gaesession.MemcacheStoreOptions{MergeConcurrentUpdates: true}},
		{"memcache, async", Memcache(), &gaesession.MemcacheStoreOptions{AsyncDatastoreSave: true}},
		// Every access is written back: B's read-only request refreshes
		// the stored copies (the root test moves the clock instead).
		{"memcache, negative slack", Memcache(), &gaesession.MemcacheStoreOptions{ExpirySlack: -1}},
		{"no cache", Cache{}, nil},
	}
	behaviours := []struct {
		name          string
		fromDatastore bool // Memcache is emptied before B's Get
		add           bool // B hands the session to Add after changing it
		readOnly      bool // B only reads the session
	}{
		{name: "change"},
		{name: "read only", readOnly: true},
		{name: "add", add: true},
		{name: "change after datastore load", fromDatastore: true},
	}
	for _, mode := range modes {
		kind := cloudNoCache
		if mode.cache.tier != nil {
			kind = cloudMemcache
		}
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t)
			logs := captureLogs(t)
			// B's calls, of both clients, first run before().
			var before atomic.Pointer[func()]
			hook := func() {
				if f := before.Load(); f != nil {
					(*f)()
				}
			}
			clientB := e.newClient(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				hook()
				return invoker(ctx, method, req, reply, cc, opts...)
			})
			// The logout's calls first empty Memcache if evictL is set.
			var evictL atomic.Bool
			clientL := e.newClient(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				if evictL.Load() {
					e.srv.FlushMemcache()
				}
				return invoker(ctx, method, req, reply, cc, opts...)
			})
			logout := func(t *testing.T, id string, evictAll bool) {
				evictL.Store(evictAll)
				defer evictL.Store(false)
				ctx := context.Background()
				if mode.cache.tier != nil {
					ctx = e.aeCtx()
					if evictAll {
						ctx = appengine.WithAPICallFunc(ctx, func(ctx context.Context, service, method string, in, out proto.Message) error {
							e.srv.FlushMemcache()
							return appengine.APICall(ctx, service, method, in, out)
						})
					}
				}
				st := NewStore(ctx, clientL, mode.cache, optionsOf(mode.opts))
				if sess := st.Get(id); assert.NotNil(t, sess, "the logout finds the session") {
					st.Remove(sess)
				}
				st.Close()
				assert.NoError(t, gaesession.SaveError(st))
			}
			for _, bh := range behaviours {
				for _, evictAll := range []bool{false, true} {
					evict := "evict at logout"
					if evictAll {
						evict = "evict before every call"
					}
					for point := 0; ; point++ {
						after := false
						t.Run(fmt.Sprintf("%s/%s/before call %d", bh.name, evict, point), func(t *testing.T) {
							id := e.newSession(kind, mode.opts, time.Hour)
							if bh.fromDatastore {
								e.srv.FlushMemcache()
							}
							var calls atomic.Int64
							var ran atomic.Bool
							logoutNow := func() {
								ran.Store(true)
								logout(t, id, evictAll)
								e.srv.FlushMemcache()
							}
							f := func() {
								if calls.Add(1)-1 == int64(point) {
									logoutNow()
								}
								if evictAll {
									e.srv.FlushMemcache()
								}
							}
							before.Store(&f)
							ctxB := context.Background()
							if mode.cache.tier != nil {
								ctxB = appengine.WithAPICallFunc(e.aeCtx(), func(ctx context.Context, service, method string, in, out proto.Message) error {
									hook()
									return appengine.APICall(ctx, service, method, in, out)
								})
							}
							b := NewStore(ctxB, clientB, mode.cache, optionsOf(mode.opts))
							if sess := b.Get(id); sess != nil && !bh.readOnly {
								sess.SetAttr("n", 2)
								if bh.add {
									b.Add(sess)
								}
							}
							b.Close()
							require.NoError(t, gaesession.WaitForAsyncSaves(context.Background()))
							before.Store(nil)
							if !ran.Load() {
								after = true
								logoutNow()
							}
							e.requireGone(t, kind, mode.opts, id)
							assert.Empty(t, logs.with(id), "no session ID in any log line")
						})
						if after || point == 80 {
							break
						}
					}
				}
			}
		})
	}
}

// requireGone checks that the session id is gone for good: Gets by a
// store of kind k and by the bundled store return nil (the last ones after
// Memcache lost everything), Memcache holds no copy of it, and the
// Datastore no entity (a put that landed after the logout's delete is
// deleted by the first lookup that sees it with the marker).
func (e *env) requireGone(t *testing.T, k storeKind, o *gaesession.MemcacheStoreOptions, id string) {
	t.Helper()
	for round := 0; round < 3; round++ {
		if round == 2 {
			e.srv.FlushMemcache()
		}
		for _, r := range []storeKind{k, bundled} {
			sess, _ := e.get(r, o, id)
			assert.Nil(t, sess, "round %d: %s finds the session after the logout", round, r.name)
		}
	}
	if item, err := memcache.Get(e.aeCtx(), id); err == nil {
		assert.Equal(t, byte(0xff), item.Value[0], "memcache holds a copy of the session")
	}
	assert.Nil(t, e.entity(id), "the datastore entity is gone")
}
