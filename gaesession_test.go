package gaesession

// The package's main behaviour: the drop-in API of the original
// github.com/icza/gaesession/v2 and the classic request flow (a store per
// request, wrapped in a session.CookieManager, closed at the end), run
// through the real appengine/v2 client against aelocal.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
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

// Every exported name of the original package keeps its exact signature,
// so that switching needs no change in an app (upstream.md).
var (
	_ func(context.Context) session.Store                        = NewMemcacheStore
	_ func(context.Context, *MemcacheStoreOptions) session.Store = NewMemcacheStoreOptions
	_ func(string) http.HandlerFunc                              = PurgeExpiredSessFromDSFunc
	_                                                            = MemcacheStoreOptions{
		KeyPrefix:          "",
		Retries:            0,
		Codec:              (*memcache.Codec)(nil),
		OnlyMemcache:       false,
		AsyncDatastoreSave: false,
		DSEntityName:       "",
	}
)

// SessEntity is the stored format: its fields and datastore tags are the
// original's.
func TestSessEntityFormat(t *testing.T) {
	typ := reflect.TypeOf(SessEntity{})
	require.Equal(t, 2, typ.NumField())
	for i, want := range []struct{ name, tag string }{{"Expires", "exp"}, {"Value", "val"}} {
		f := typ.Field(i)
		assert.Equal(t, want.name, f.Name)
		assert.Equal(t, want.tag, f.Tag.Get("datastore"))
	}
	assert.Equal(t, reflect.TypeOf(time.Time{}), typ.Field(0).Type)
	assert.Equal(t, reflect.TypeOf([]byte(nil)), typ.Field(1).Type)
}

// The store puts a session entity exactly as datastore.Put of a SessEntity
// does (as the original package did), without its reflection.
func TestPutEntityIsSessEntitys(t *testing.T) {
	e := newTestEnv(t)
	var puts []proto.Message
	ctx := appengine.WithAPICallFunc(e.ctx(), func(ctx context.Context, service, method string, in, out proto.Message) error {
		if service == "datastore_v3" && method == "Put" {
			puts = append(puts, proto.Clone(in))
		}
		return appengine.APICall(ctx, service, method, in, out)
	})
	st := NewMemcacheStore(ctx)
	sess := session.NewSession()
	st.Add(sess)
	st.Close()
	key := datastore.NewKey(ctx, "sess_", sess.ID(), 0, nil)
	var ent SessEntity
	require.NoError(t, datastore.Get(ctx, key, &ent))
	_, err := datastore.Put(ctx, key, &ent)
	require.NoError(t, err)
	require.Len(t, puts, 2)
	assert.True(t, proto.Equal(puts[0], puts[1]), "the store's put:\n%v\ndatastore.Put of a SessEntity:\n%v", puts[0], puts[1])
}

// classicApp is an app written the way the original package's
// documentation shows: a new store per request, wrapped in a
// session.CookieManager, closed at the end of the request.
//
//	POST /login   starts a session for the user "gopher"
//	GET  /        shows the session's visit count, or "none"
//	POST /visit   counts a visit
//	POST /logout  ends the session
func classicApp(o *MemcacheStoreOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sessmgr := session.NewCookieManager(NewMemcacheStoreOptions(appengine.NewContext(r), o))
		defer sessmgr.Close()

		sess := sessmgr.Get(r)
		switch r.URL.Path {
		case "/login":
			sess = session.NewSessionOptions(&session.SessOptions{
				CAttrs: map[string]interface{}{"UserName": "gopher"},
				Attrs:  map[string]interface{}{"Count": 0},
			})
			sessmgr.Add(sess, w)
		case "/visit":
			if sess != nil {
				sess.SetAttr("Count", sess.Attr("Count").(int)+1)
			}
		case "/logout":
			if sess != nil {
				sessmgr.Remove(sess, w)
				sess = nil
			}
		}
		if sess == nil {
			fmt.Fprint(w, "none")
			return
		}
		fmt.Fprintf(w, "%s %d", sess.CAttr("UserName"), sess.Attr("Count"))
	})
}

// The classic flow, request by request, with what each costs: log in, read,
// visit, log out, and come back with the old cookie.
func TestClassicRequestFlow(t *testing.T) {
	for _, mode := range storeModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.captureLogs()
			app := e.srv.Middleware(classicApp(mode.opts))
			var cookie *http.Cookie
			do := func(method, path string) string {
				t.Helper()
				req := httptest.NewRequest(method, path, nil)
				if cookie != nil {
					req.AddCookie(cookie)
				}
				rec := httptest.NewRecorder()
				app.ServeHTTP(rec, req)
				require.Equal(t, http.StatusOK, rec.Code)
				for _, c := range rec.Result().Cookies() {
					if c.Name == "sessid" {
						cookie = c
					}
				}
				require.NoError(t, WaitForAsyncSaves(context.Background()))
				return rec.Body.String()
			}
			assert.Equal(t, "none", do("GET", "/"))
			assert.Empty(t, e.rpcs(), "no cookie, no lookup")

			assert.Equal(t, "gopher 0", do("POST", "/login"))
			require.NotNil(t, cookie)
			id := cookie.Value
			assert.Equal(t, mode.costs["login"], e.rpcs(), "login")

			assert.Equal(t, "gopher 0", do("GET", "/"))
			assert.Equal(t, mode.costs["read"], e.rpcs(), "a read-only request")

			assert.Equal(t, "gopher 1", do("POST", "/visit"))
			assert.Equal(t, mode.costs["visit"], e.rpcs(), "a modified request")
			assert.Equal(t, "gopher 1", do("GET", "/"))
			e.rpcs()

			assert.Equal(t, "none", do("POST", "/logout"))
			assert.Equal(t, mode.costs["logout"], e.rpcs(), "logout")
			assert.True(t, cookie.MaxAge < 0, "the cookie is deleted")

			cookie = &http.Cookie{Name: "sessid", Value: id}
			assert.Equal(t, "none", do("GET", "/"))
			assert.Equal(t, map[string]int64{"memcache.Get": 1}, e.rpcs(),
				"the old cookie finds the tombstone: no datastore lookup")
			e.srv.FlushMemcache()
			assert.Equal(t, "none", do("GET", "/"), "nor is it in the datastore")
			assert.Empty(t, e.logged("ERROR"))
			assert.Empty(t, e.logged("WARNING"))
		})
	}
}

// storeModes are the store configurations every logout and expiry test
// runs in, with the RPCs each step of the classic flow costs there.
var storeModes = []struct {
	name  string
	opts  *MemcacheStoreOptions
	costs map[string]map[string]int64
}{
	{"default", nil, map[string]map[string]int64{
		"login":  {"memcache.Set": 1, "datastore_v3.Put": 1},
		"read":   {"memcache.Get": 1},
		"visit":  {"memcache.Get": 1, "memcache.Set": 1, "datastore_v3.Put": 1},
		"logout": {"memcache.Get": 1, "datastore_v3.Put": 1, "memcache.Set": 1, "datastore_v3.Delete": 1},
	}},
	{"merge", &MemcacheStoreOptions{MergeConcurrentUpdates: true}, map[string]map[string]int64{
		"login":  {"memcache.Set": 1, "datastore_v3.Put": 1},
		"read":   {"memcache.Get": 1},
		"visit":  {"memcache.Get": 2, "memcache.Set": 1, "datastore_v3.Put": 1},
		"logout": {"memcache.Get": 1, "datastore_v3.Put": 1, "memcache.Set": 1, "datastore_v3.Delete": 1},
	}},
	{"async", &MemcacheStoreOptions{AsyncDatastoreSave: true}, map[string]map[string]int64{
		"login":  {"memcache.Set": 1, "datastore_v3.Put": 1, "memcache.Get": 1},
		"read":   {"memcache.Get": 1},
		"visit":  {"memcache.Get": 2, "memcache.Set": 1, "datastore_v3.Put": 1},
		"logout": {"memcache.Get": 1, "datastore_v3.Put": 1, "memcache.Set": 1, "datastore_v3.Delete": 1},
	}},
	{"negative slack", &MemcacheStoreOptions{ExpirySlack: -1}, map[string]map[string]int64{
		"login":  {"memcache.Set": 1, "datastore_v3.Put": 1},
		"read":   {"memcache.Get": 1, "memcache.Set": 1, "datastore_v3.Put": 1},
		"visit":  {"memcache.Get": 1, "memcache.Set": 1, "datastore_v3.Put": 1},
		"logout": {"memcache.Get": 1, "datastore_v3.Put": 1, "memcache.Set": 1, "datastore_v3.Delete": 1},
	}},
	{"only memcache", &MemcacheStoreOptions{OnlyMemcache: true}, map[string]map[string]int64{
		"login":  {"memcache.Set": 1},
		"read":   {"memcache.Get": 1},
		"visit":  {"memcache.Get": 1, "memcache.Set": 1},
		"logout": {"memcache.Get": 1, "memcache.Set": 1},
	}},
}

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
	lo := time.Now()
	id := e.newSession(nil, time.Hour)
	hi := time.Now()
	assert.Equal(t, map[string]int64{"memcache.Set": 1, "datastore_v3.Put": 1}, e.rpcs(),
		"a new session is written once, to both tiers")

	var ent SessEntity
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &ent))
	assert.True(t, between(ent.Expires, lo.Add(time.Hour), hi.Add(time.Hour)), "the idle deadline, last access plus Timeout: %v", ent.Expires)
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
		"a session found in the datastore leaves a placeholder in memcache (an add), and nothing else is written")
	item, err := memcache.Get(e.ctx(), id)
	require.NoError(t, err)
	assert.Equal(t, seeDatastoreValue, item.Value, "no add writes a session copy (tombstone.go)")
	e.rpcs()

	e.request(nil, func(st session.Store) {
		require.NotNil(t, st.Get(id))
		assert.Equal(t, OriginDatastore, SessionOrigin(st, id))
	})
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "datastore_v3.Get": 1, "memcache.Set": 1}, e.rpcs(),
		"the next Get finds the placeholder, reads the datastore and writes the copy over it (a compare-and-swap)")

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

// Remove writes a removal marker into the Datastore, replaces the Memcache
// copy with a tombstone, both living the session's Timeout and a minute
// more, and deletes the Datastore entity.
func TestRemoveDeletesBothTiers(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)
	e.rpcs()
	lo := e.srv.Now()
	e.request(nil, func(st session.Store) { st.Remove(st.Get(id)) })
	hi := e.srv.Now()
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "datastore_v3.Put": 1, "memcache.Set": 1, "datastore_v3.Delete": 1}, e.rpcs(),
		"the removal marker, the tombstone, the delete")
	var marker removalMarker
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", "removed:"+id, 0, nil), &marker))
	assert.True(t, between(marker.Expires, lo.Add(time.Hour+time.Minute), hi.Add(time.Hour+time.Minute)), "the marker expires %v", marker.Expires)
	item, err := memcache.Peek(e.ctx(), id)
	require.NoError(t, err)
	assert.Equal(t, tombstoneValue, item.Value)
	require.NotNil(t, item.Timestamps.Expiration)
	ttl := time.Hour + time.Minute
	assert.True(t, between(*item.Timestamps.Expiration, lo.Add(ttl), hi.Add(ttl)), "tombstone expires %v", *item.Timestamps.Expiration)
	assert.Equal(t, datastore.ErrNoSuchEntity, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &SessEntity{}))
}

func TestSyncSaveIsDoneWhenCloseReturns(t *testing.T) {
	e := newTestEnv(t)
	e.srv.SetLatency("datastore_v3.Put", 20*time.Millisecond)
	id := e.newSession(nil, time.Hour) // no async saves: nothing to wait for
	var ent SessEntity
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &ent))
}
