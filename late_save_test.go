package gaesession

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// A late save: a request loads a session just before its idle deadline,
// changes it, and saves it after the deadline has passed. Whatever deletes
// expired Datastore entities (the purge, or a request that finds the
// expired copy) and reads the entity before that put lands must not delete
// it after: the put is a live session. These tests run the deleting side's
// read, then the late put, then its delete, in that order, through the
// real appengine/v2 client against aelocal.

const lateSaveTimeout = 30 * time.Minute

// lateSaver loads the session id in a request of its own one second before
// its deadline, changes it, and moves the clock two seconds on: the
// session's stored deadline has passed, and the request has yet to save.
func lateSaver(t *testing.T, e *testEnv, clock *fakeClock, id string) session.Store {
	t.Helper()
	clock.Advance(lateSaveTimeout - time.Second)
	st := NewMemcacheStore(e.ctx())
	sess := st.Get(id)
	require.NotNil(t, sess, "loaded just before its deadline")
	sess.SetAttr("n", 2)
	clock.Advance(2 * time.Second)
	return st
}

// wantLateSaveKept checks that the late save survived in the Datastore.
func wantLateSaveKept(t *testing.T, e *testEnv, id string) {
	t.Helper()
	e.srv.FlushMemcache()
	sess, origin := faultGet(t, e, nil, id)
	require.NotNil(t, sess, "the late save was deleted from the datastore")
	assert.Equal(t, OriginDatastore, origin)
	assert.Equal(t, 2, sess.Attr("n"))
}

// afterFirst returns a hook that runs f once, after the first call it is
// given.
func afterFirst(f func()) func() {
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			f()
		}
	}
}

// The purge's query runs, the late save's put lands, the purge's delete
// runs. The purge used to delete the keys its query returned, among them
// the session's: its put had not landed at the query.
func TestPurgeKeepsLateSave(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	id := e.newSession(nil, lateSaveTimeout)
	ctx := e.ctx()
	// Sessions expired long ago, which the purge does delete, so that it
	// reaches its delete in every version.
	old := purgePutSessions(t, ctx, "sess_", "expired", 3, clock.Now().Add(-3*defaultExpiredFor))
	late := lateSaver(t, e, clock, id)

	req := e.srv.NewRequest("GET", "/purge", nil)
	req = req.WithContext(faultHookOn(req.Context(), "datastore_v3.RunQuery", nil, afterFirst(func() {
		late.Close() // lands between the purge's query and its delete
		require.NoError(t, SaveError(late))
	})))
	rec := httptest.NewRecorder()
	PurgeExpiredSessFromDSFunc("")(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"completed":true,"deleted":3,"failed":0}`, rec.Body.String())
	assert.Zero(t, purgeExisting(t, ctx, old), "the long expired sessions are gone")
	wantLateSaveKept(t, e, id)

	// Once the saved session has timed out, and ExpiredFor has passed, a
	// purge deletes it.
	clock.Advance(lateSaveTimeout + defaultExpiredFor)
	r := callPurge(t, e.srv, PurgeExpiredSessFromDSFunc(""), nil, nil)
	purgeWantResponse(t, r, true, 1, 0)
}

// A request finds no Memcache copy and an expired Datastore copy, and
// deletes that; the late save's put lands between its read and its delete.
// That delete used to remove the late save.
func TestLoadCleanupKeepsLateSave(t *testing.T) {
	e := newTestEnv(t)
	clock := e.fakeClock()
	id := e.newSession(nil, lateSaveTimeout)
	late := lateSaver(t, e, clock, id) // Memcache's copy has expired too
	e.rpcs()

	ctx := faultHookCtx(e, "datastore_v3.Get", nil, afterFirst(func() {
		late.Close() // lands between the reader's get and its delete
		require.NoError(t, SaveError(late))
	}))
	reader := NewMemcacheStore(ctx)
	assert.Nil(t, reader.Get(id), "the copy it read had expired")
	reader.Close()
	wantLateSaveKept(t, e, id)
}

// The cleanup on load deletes an expired entity only once it has been
// expired for longer than a request can run (defaultExpiredFor).
func TestLoadCleanupWaitsExpiredFor(t *testing.T) {
	e := newTestEnv(t)
	for _, c := range []struct {
		expiredFor time.Duration
		deleted    bool
	}{
		{time.Minute, false},
		{defaultExpiredFor - time.Minute, false},
		{defaultExpiredFor + time.Minute, true},
	} {
		sess := session.NewSession()
		id := sess.ID()
		key := datastore.NewKey(e.ctx(), "sess_", id, 0, nil)
		b, err := memcache.Gob.Marshal(sess)
		require.NoError(t, err)
		_, err = datastore.Put(e.ctx(), key, &SessEntity{Expires: time.Now().Add(-c.expiredFor), Value: b})
		require.NoError(t, err)
		e.rpcs()
		e.request(nil, func(st session.Store) { assert.Nil(t, st.Get(id)) })
		want := map[string]int64{"memcache.Get": 1, "datastore_v3.Get": 1}
		if c.deleted {
			want["datastore_v3.Delete"] = 1
		}
		assert.Equal(t, want, e.rpcs(), "expired for %v", c.expiredFor)
		err = datastore.Get(e.ctx(), key, &SessEntity{})
		if c.deleted {
			assert.ErrorIs(t, err, datastore.ErrNoSuchEntity, "expired for %v", c.expiredFor)
		} else {
			assert.NoError(t, err, "expired for %v: kept", c.expiredFor)
		}
	}
}
