package gaesession

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// A logout is final: after Remove returns, no Get on any instance returns
// the session, whatever requests that loaded it earlier do when they close.
// Each test runs in every mode (storeModes), with the logout placed at each
// point of the other request's work by a hook on that request's calls, so
// that every order of the calls is forced rather than hoped for.

// logout removes the session id in a request of its own, as another
// instance would.
func logout(t *testing.T, e *testEnv, o *MemcacheStoreOptions, id string) {
	t.Helper()
	st := NewMemcacheStoreOptions(e.ctx(), o)
	sess := st.Get(id)
	require.NotNil(t, sess, "the logout finds the session")
	st.Remove(sess)
	st.Close()
	require.NoError(t, SaveError(st))
}

// requireGone checks that the session id is found nowhere: not through
// Memcache (which holds its tombstone), not in the Datastore, and not once
// Memcache has forgotten everything.
func requireGone(t *testing.T, e *testEnv, o *MemcacheStoreOptions, id string) {
	t.Helper()
	require.NoError(t, WaitForAsyncSaves(context.Background()))
	e.request(o, func(st session.Store) { assert.Nil(t, st.Get(id), "found after the logout") })
	item, err := memcache.Get(e.ctx(), id)
	if assert.NoError(t, err, "the tombstone is in memcache") {
		assert.Equal(t, tombstoneValue, item.Value)
	}
	if !newConfig(o).onlyMemcache {
		err := datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &SessEntity{})
		assert.Equal(t, datastore.ErrNoSuchEntity, err, "the datastore entity is gone")
	}
	e.srv.FlushMemcache()
	e.request(o, func(st session.Store) { assert.Nil(t, st.Get(id), "found after the logout, with memcache empty") })
}

// logoutPoints are the calls of the other request before which the logout
// runs; "" means before its Close.
var logoutPoints = []string{"", "memcache.Set", "datastore_v3.Put", "memcache.Get"}

// onceBefore returns a context of e whose first call of method made after
// arm runs f first. For method "" it returns a plain context and f is never
// run.
func onceBefore(e *testEnv, method string, f func()) (ctx context.Context, arm func(), ran func() bool) {
	var armed, done atomic.Bool
	if method == "" {
		return e.ctx(), func() {}, done.Load
	}
	ctx = faultHookCtx(e, method, func() {
		if armed.Load() && done.CompareAndSwap(false, true) {
			f()
		}
	}, nil)
	return ctx, func() { armed.Store(true) }, done.Load
}

// Request B loads the session and changes it; A logs it out at some point
// of B's work; B's Close must not bring it back. Nor must B's Add, with
// which B hands the session it loaded back to the store (a
// session.Manager's Add does so): Add's write is the conditional write
// Close's would be.
func TestLogoutWinsOverConcurrentWriter(t *testing.T) {
	for _, mode := range storeModes {
		for _, point := range logoutPoints {
			for _, add := range []bool{false, true} {
				name := fmt.Sprintf("%s/before %q", mode.name, point)
				if add {
					name = fmt.Sprintf("%s/Add, before %q", mode.name, point)
				}
				t.Run(name, func(t *testing.T) {
					e := newTestEnv(t)
					e.captureLogs()
					o := mode.opts
					id := e.newSession(o, time.Hour)

					ctxB, arm, ran := onceBefore(e, point, func() { logout(t, e, o, id) })
					b := NewMemcacheStoreOptions(ctxB, o)
					sess := b.Get(id)
					require.NotNil(t, sess)
					sess.SetAttr("n", 2)
					arm()
					if point == "" {
						logout(t, e, o, id)
					}
					if add {
						b.Add(sess)
					}
					b.Close()
					require.NoError(t, WaitForAsyncSaves(context.Background()))
					writesDatastore := !newConfig(o).onlyMemcache
					switch {
					case point == "memcache.Set", point == "datastore_v3.Put" && writesDatastore:
						require.True(t, ran(), "B made no %s call", point)
					case point != "" && !ran():
						// B made no such call (only merge and async read
						// Memcache after their put): log out after B.
						logout(t, e, o, id)
					}
					requireGone(t, e, o, id)
					assert.NoError(t, SaveError(b), "a logout that wins is no save failure")
					assert.Empty(t, e.logged("ERROR"))
					if add && (point == "" || point == "memcache.Set") {
						// The logout came before Add's Memcache write.
						assert.Len(t, e.logged("session added"), 1, "only the setup's session was added")
					}
				})
			}
		}
	}
}

// The same with a B that only reads the session: it writes only when its
// copy is due for an expiry refresh (always, with a negative ExpirySlack).
func TestLogoutWinsOverRefreshingReader(t *testing.T) {
	for _, mode := range storeModes {
		for _, point := range logoutPoints {
			t.Run(fmt.Sprintf("%s/before %q", mode.name, point), func(t *testing.T) {
				e := newTestEnv(t)
				e.captureLogs()
				clock := e.fakeClock()
				o := mode.opts
				id := e.newSession(o, time.Hour)
				clock.Advance(30 * time.Minute) // a refresh is due

				ctxB, arm, ran := onceBefore(e, point, func() { logout(t, e, o, id) })
				b := NewMemcacheStoreOptions(ctxB, o)
				require.NotNil(t, b.Get(id))
				arm()
				if point == "" {
					logout(t, e, o, id)
				}
				b.Close()
				require.NoError(t, WaitForAsyncSaves(context.Background()))
				if point == "memcache.Set" {
					require.True(t, ran(), "B did not refresh its copy")
				}
				if !ran() && point != "" {
					logout(t, e, o, id)
				}
				requireGone(t, e, o, id)
				assert.Empty(t, e.logged("ERROR"))
			})
		}
	}
}

// A B that found the session only in the Datastore (Memcache had evicted
// it) puts it back into Memcache with an add, at once. Whether the logout
// comes before or after B's Datastore get, the session stays gone; if it
// comes between B's get and B's add, B's own Get already answers nil.
func TestLogoutWinsOverDatastoreLoad(t *testing.T) {
	for _, mode := range storeModes {
		if newConfig(mode.opts).onlyMemcache {
			continue
		}
		for _, point := range []string{"datastore_v3.Get", "memcache.Set"} {
			for _, change := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/before %q/change=%v", mode.name, point, change), func(t *testing.T) {
					e := newTestEnv(t)
					e.captureLogs()
					o := mode.opts
					id := e.newSession(o, time.Hour)
					e.srv.FlushMemcache()

					ctxB, arm, ran := onceBefore(e, point, func() { logout(t, e, o, id) })
					arm()
					b := NewMemcacheStoreOptions(ctxB, o)
					sess := b.Get(id)
					require.True(t, ran())
					switch point {
					case "datastore_v3.Get":
						assert.Nil(t, sess, "the logout came before B's datastore get")
					case "memcache.Set":
						assert.Nil(t, sess, "B's add found the tombstone")
					}
					if sess != nil && change {
						sess.SetAttr("n", 2)
					}
					b.Close()
					requireGone(t, e, o, id)
					assert.Empty(t, e.logged("ERROR"))
				})
			}
		}
	}
}

// The same, but the read that follows the refused refill fails: what
// refused the add is unknown, a tombstone as likely as a newer copy, so B's
// Get answers nil rather than the Datastore copy it read before the logout.
func TestRefusedRefillThenFailedReadIsNoSession(t *testing.T) {
	for _, mode := range storeModes {
		if newConfig(mode.opts).onlyMemcache {
			continue
		}
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			o := mode.opts
			id := e.newSession(o, time.Hour)
			e.srv.FlushMemcache()

			ctxB, arm, ran := onceBefore(e, "memcache.Set", func() {
				logout(t, e, o, id)
				e.srv.FailNext("memcache", "Get", 1<<30)
			})
			arm()
			b := NewMemcacheStoreOptions(ctxB, o)
			sess := b.Get(id)
			e.srv.FailNext("memcache", "Get", 0)
			require.True(t, ran())
			assert.Nil(t, sess, "B answered with the Datastore copy it read before the logout")
			assert.Len(t, e.logged("WARNING", LogID(id), "could not be read back"), 1, "%v", e.allLogs())
			b.Close()
			requireGone(t, e, o, id)
		})
	}
}

// A session added with AsyncDatastoreSave reaches the client (its cookie)
// before its Datastore put lands, so a logout can overtake that put: the
// put's Memcache read afterwards finds the tombstone and deletes the
// entity again.
func TestLogoutOvertakesAsyncSaveOfNewSession(t *testing.T) {
	e := newTestEnv(t)
	e.captureLogs()
	o := &MemcacheStoreOptions{AsyncDatastoreSave: true}
	var id string
	ctx, arm, ran := onceBefore(e, "datastore_v3.Put", func() { logout(t, e, o, id) })
	arm()
	st := NewMemcacheStoreOptions(ctx, o)
	sess := session.NewSession()
	id = sess.ID()
	st.Add(sess)
	st.Close()
	require.NoError(t, WaitForAsyncSaves(context.Background()))
	require.True(t, ran())
	requireGone(t, e, o, id)
	assert.Len(t, e.logged("INFO", LogID(id), "removed by another request while this one saved it"), 1, "%v", e.allLogs())
}

// OnlyMemcache has no second tier: if Memcache evicts the tombstone before
// a request that loaded the session earlier writes it back, that write
// stores the session again, and Gets serve it (and, refreshing it, keep it
// alive while it is used). Every mode with a Datastore keeps it out: see
// TestLogoutFinalWhenMemcacheEvicts.
func TestOnlyMemcacheLogoutLostWithItsTombstone(t *testing.T) {
	for _, mode := range storeModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			o := mode.opts
			id := e.newSession(o, time.Hour)
			b := NewMemcacheStoreOptions(e.ctx(), o)
			require.NotNil(t, b.Get(id))
			b.Get(id).SetAttr("n", 2)
			logout(t, e, o, id)
			e.srv.FlushMemcache() // the tombstone is evicted
			b.Close()
			require.NoError(t, WaitForAsyncSaves(context.Background()))
			e.request(o, func(st session.Store) {
				if newConfig(o).onlyMemcache {
					assert.NotNil(t, st.Get(id), "OnlyMemcache: back, with nothing to tell it was removed")
				} else {
					assert.Nil(t, st.Get(id), "the removal marker keeps it out")
				}
			})
		})
	}
}

// B hands the session it loaded to Add, and changes it after Add (a
// response may have been streamed in between); a logout between Add and
// Close stays final: Close's write is conditional too.
func TestLogoutWinsBetweenAddOfLoadedSessionAndClose(t *testing.T) {
	for _, mode := range storeModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			o := mode.opts
			id := e.newSession(o, time.Hour)

			b := NewMemcacheStoreOptions(e.ctx(), o)
			sess := b.Get(id)
			require.NotNil(t, sess)
			b.Add(sess)
			require.NoError(t, WaitForAsyncSaves(context.Background()))
			// The response may reach the client here (it was streamed),
			// and the client log out in another request.
			logout(t, e, o, id)
			sess.SetAttr("n", 3) // so that Close writes again
			b.Close()
			requireGone(t, e, o, id)
			assert.NoError(t, SaveError(b))
			assert.Empty(t, e.logged("ERROR"))
		})
	}
}

// Add of a loaded session costs what a modified request costs in each mode,
// and saves it; a later change is saved by Close.
func TestAddOfLoadedSession(t *testing.T) {
	for _, mode := range storeModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			o := mode.opts
			id := e.newSession(o, time.Hour)

			e.rpcs()
			e.request(o, func(st session.Store) {
				sess := st.Get(id)
				require.NotNil(t, sess)
				sess.SetAttr("n", 2)
				st.Add(sess)
				assert.Equal(t, OriginNew, SessionOrigin(st, id))
			})
			require.NoError(t, WaitForAsyncSaves(context.Background()))
			assert.Equal(t, mode.costs["visit"], e.rpcs())

			e.request(o, func(st session.Store) {
				sess := st.Get(id)
				require.NotNil(t, sess)
				assert.Equal(t, 2, sess.Attr("n"))
				st.Add(sess)
				sess.SetAttr("n", 3)
			})
			for _, empty := range []bool{false, true} {
				if empty {
					require.NoError(t, WaitForAsyncSaves(context.Background()))
					e.srv.FlushMemcache()
				}
				e.request(o, func(st session.Store) {
					sess := st.Get(id)
					if newConfig(o).onlyMemcache && empty {
						assert.Nil(t, sess)
						return
					}
					require.NotNil(t, sess)
					assert.Equal(t, 3, sess.Attr("n"), "memcache emptied: %v", empty)
				})
			}
			assert.Empty(t, e.logged("ERROR"))
		})
	}
}

// The purge deletes removal markers once they expire, with the sessions:
// they are entities of the session kind with an "exp", so the purge's wait
// (ExpiredFor) applies to them too.
func TestPurgeDeletesExpiredRemovalMarkers(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	id := e.newSession(nil, time.Hour)
	logout(t, e, nil, id)
	markerKey := datastore.NewKey(e.ctx(), "sess_", "removed:"+id, 0, nil)
	require.NoError(t, datastore.Get(e.ctx(), markerKey, &removalMarker{}))

	purge := PurgeExpiredSessFromDSFunc("")
	callPurge(t, e.srv, purge, nil, nil)
	require.NoError(t, datastore.Get(e.ctx(), markerKey, &removalMarker{}), "a live marker stays")

	clock.Advance(2 * time.Hour)
	callPurge(t, e.srv, purge, nil, nil)
	require.NoError(t, datastore.Get(e.ctx(), markerKey, &removalMarker{}), "an expired marker stays for ExpiredFor, as sessions do")

	clock.Advance(defaultExpiredFor)
	r := callPurge(t, e.srv, purge, nil, nil)
	assert.Equal(t, 1, r.resp.Deleted)
	assert.Equal(t, datastore.ErrNoSuchEntity, datastore.Get(e.ctx(), markerKey, &removalMarker{}), "the expired marker is purged")
}

// While the marker lives, the logout holds in the Datastore even past the
// tombstone (which Memcache may drop at once): a Get that goes to the
// Datastore finds the marker, answers nil, and puts the tombstone back, so
// the next Get costs one Memcache get again.
func TestRemovalMarkerRestoresTombstone(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)
	logout(t, e, nil, id)
	e.srv.FlushMemcache()
	e.rpcs()
	e.request(nil, func(st session.Store) { assert.Nil(t, st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "datastore_v3.Get": 1, "memcache.Set": 1}, e.rpcs(),
		"a miss, the lookup (entity and marker in one RPC), the tombstone added back")
	e.request(nil, func(st session.Store) { assert.Nil(t, st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs())
}
