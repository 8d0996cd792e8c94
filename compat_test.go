package gaesession

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// sessionImpl mirrors the exported fields of icza/session's session type,
// name included, so that gob encodes it byte for byte as the original
// package stores a session.
type sessionImpl struct {
	IDF       string
	CreatedF  time.Time
	AccessedF time.Time
	CAttrsF   map[string]interface{}
	AttrsF    map[string]interface{}
	TimeoutF  time.Duration
}

const goldenID = "c2Vzc2lvbi1pZC1nb2xkZW4h" // 24 chars, as icza/session makes them

func goldenSession() sessionImpl {
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	return sessionImpl{
		IDF:       goldenID,
		CreatedF:  created,
		AccessedF: created.Add(time.Minute),
		CAttrsF:   map[string]interface{}{"UserName": "gopher"},
		AttrsF:    map[string]interface{}{"Count": 7},
		TimeoutF:  30 * time.Minute,
	}
}

// goldenBytes is testdata/session.gob.hex: the gob encoding of
// goldenSession, as the original package writes it to Memcache and to the
// Datastore's "val". Run the tests with GOLDEN_UPDATE=1 to rewrite it.
func goldenBytes(t *testing.T) []byte {
	t.Helper()
	const path = "testdata/session.gob.hex"
	if os.Getenv("GOLDEN_UPDATE") != "" {
		var buf bytes.Buffer
		s := goldenSession()
		require.NoError(t, gob.NewEncoder(&buf).Encode(&s))
		require.NoError(t, os.WriteFile(path, []byte(hex.EncodeToString(buf.Bytes())+"\n"), 0o644))
	}
	h, err := os.ReadFile(path)
	require.NoError(t, err)
	b, err := hex.DecodeString(strings.TrimSpace(string(h)))
	require.NoError(t, err)
	return b
}

func TestGoldenBytesMatchIczaSession(t *testing.T) {
	golden := goldenBytes(t)
	sess, err := decodeGob(golden)
	require.NoError(t, err)
	assert.Equal(t, goldenID, sess.ID())
	assert.Equal(t, 7, sess.Attr("Count"))
	assert.Equal(t, "gopher", sess.CAttr("UserName"))
	assert.Equal(t, 30*time.Minute, sess.Timeout())

	// Re-encoding icza/session's own type gives the same bytes: the
	// format is gob of that type, nothing of ours added.
	again, err := memcache.Gob.Marshal(sess)
	require.NoError(t, err)
	assert.Equal(t, golden, again)
}

// encodeSessionImpl returns the gob encoding of sess, which is the format of
// icza/session's own type.
func encodeSessionImpl(t *testing.T, sess sessionImpl) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, gob.NewEncoder(&buf).Encode(&sess))
	return buf.Bytes()
}

// originalWrite stores sess as an instance of the original package does
// when a request accessed it: Memcache with the session's Timeout as
// expiration and no flags, the Datastore with exp = Accessed+Timeout.
func originalWrite(t *testing.T, e *testEnv, sess sessionImpl) {
	t.Helper()
	b := encodeSessionImpl(t, sess)
	require.NoError(t, memcache.Set(e.ctx(), &memcache.Item{Key: sess.IDF, Value: b, Expiration: sess.TimeoutF}))
	props := datastore.PropertyList{
		{Name: "exp", Value: sess.AccessedF.Add(sess.TimeoutF)},
		{Name: "val", Value: b, NoIndex: true},
	}
	_, err := datastore.Put(e.ctx(), datastore.NewKey(e.ctx(), "sess_", sess.IDF, 0, nil), &props)
	require.NoError(t, err)
}

// An instance of the original package wrote the session; we read it, from
// Memcache and, once evicted, from the Datastore.
func TestReadsWhatTheOriginalWrote(t *testing.T) {
	e := newTestEnv(t)
	sess := goldenSession()
	sess.AccessedF = time.Now().Add(-time.Minute)
	originalWrite(t, e, sess)

	for _, origin := range []Origin{OriginMemcache, OriginDatastore} {
		e.request(nil, func(st session.Store) {
			sess := st.Get(goldenID)
			require.NotNil(t, sess)
			assert.Equal(t, origin, SessionOrigin(st, goldenID))
			assert.Equal(t, 7, sess.Attr("Count"))
			assert.Equal(t, "gopher", sess.CAttr("UserName"))
		})
		e.srv.FlushMemcache()
	}
}

// The original records no idle deadline in Memcache: the session's own
// Accessed()+Timeout() decides. The golden session was last accessed in
// 2024 with a 30-minute timeout, so a copy of it is no session, in either
// tier.
func TestOriginalsIdleCopyIsNoSession(t *testing.T) {
	e := newTestEnv(t)
	golden := goldenBytes(t)
	require.NoError(t, memcache.Set(e.ctx(), &memcache.Item{Key: goldenID, Value: golden, Expiration: time.Hour}))
	e.request(nil, func(st session.Store) { assert.Nil(t, st.Get(goldenID)) })

	originalWrite(t, e, goldenSession())
	e.srv.FlushMemcache()
	e.request(nil, func(st session.Store) { assert.Nil(t, st.Get(goldenID)) })
	assert.Equal(t, datastore.ErrNoSuchEntity, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", goldenID, 0, nil), &SessEntity{}),
		"a timed-out entity is deleted")
}

// originalGet restates what an instance of the original package does in
// Get, for a rolling deploy: Memcache through the codec, attempted up to
// retries times unless the item is missing (a value that does not decode
// counts as a failed attempt); then the Datastore. It reports the session
// found (nil for none) and whether the Datastore was asked.
func originalGet(ctx context.Context, codec memcache.Codec, retries int, id string) (sess session.Session, askedDatastore bool) {
	for i := 0; i < retries; i++ {
		s := session.NewSession()
		_, err := codec.Get(ctx, id, s)
		if err == memcache.ErrCacheMiss {
			break
		}
		if err == nil {
			return s, false
		}
	}
	var ent SessEntity
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "sess_", id, 0, nil), &ent); err != nil || ent.Expires.Before(time.Now()) {
		return nil, true
	}
	s := session.NewSession()
	if err := codec.Unmarshal(ent.Value, s); err != nil {
		return nil, true
	}
	return s, true
}

// During a rolling deploy an old instance must read a tombstone as "no
// session". It cannot decode the tombstone (gob and JSON alike), so it
// asks the Datastore, which Remove has emptied. The same holds for the
// datastore-only marker, for which asking the Datastore is right.
func TestOriginalReadsTombstoneAsNoSession(t *testing.T) {
	for _, codec := range []struct {
		name  string
		codec *memcache.Codec
	}{{"gob", nil}, {"json", &memcache.JSON}} {
		t.Run(codec.name, func(t *testing.T) {
			e := newTestEnv(t)
			o := &MemcacheStoreOptions{Codec: codec.codec}
			c := memcache.Gob
			if codec.codec != nil {
				c = *codec.codec
			}
			id := e.newSession(o, time.Hour)
			sess, asked := originalGet(e.ctx(), c, 3, id)
			require.NotNil(t, sess, "the old instance reads our session")
			assert.False(t, asked)

			e.request(o, func(st session.Store) { st.Remove(st.Get(id)) })
			e.rpcs()
			sess, asked = originalGet(e.ctx(), c, 3, id)
			assert.Nil(t, sess, "the old instance finds no session")
			assert.True(t, asked, "after failing to decode the tombstone it asks the Datastore")
			assert.Equal(t, map[string]int64{"memcache.Get": 3, "datastore_v3.Get": 1}, e.rpcs())

			for _, marker := range [][]byte{tombstoneValue, seeDatastoreValue} {
				assert.Error(t, c.Unmarshal(marker, session.NewSession()), "%q", marker)
			}
		})
	}
}

// We write; an instance of the original package must read it.
func TestWritesWhatTheOriginalReads(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)

	item, err := memcache.Get(e.ctx(), id)
	require.NoError(t, err)
	var fromMemcache sessionImpl
	require.NoError(t, gob.NewDecoder(bytes.NewReader(item.Value)).Decode(&fromMemcache))
	assert.Equal(t, id, fromMemcache.IDF)
	assert.Equal(t, map[string]interface{}{"n": 1}, fromMemcache.AttrsF)
	assert.Equal(t, map[string]interface{}{"user": "gopher"}, fromMemcache.CAttrsF)
	assert.Equal(t, time.Hour, fromMemcache.TimeoutF)

	var props datastore.PropertyList
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &props))
	require.Len(t, props, 2)
	byName := map[string]datastore.Property{}
	for _, p := range props {
		byName[p.Name] = p
	}
	assert.IsType(t, time.Time{}, byName["exp"].Value)
	assert.False(t, byName["exp"].NoIndex, "exp is indexed: the purge queries it")
	assert.Equal(t, item.Value, byName["val"].Value)
	assert.True(t, byName["val"].NoIndex)
	// The original package loads it into the same struct.
	var ent SessEntity
	require.NoError(t, datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &ent))
}

// The removal marker and the placeholder do not break the original
// package's instances: after a logout whose tombstone Memcache evicted,
// they find nothing (they never read the marker, whose key name is no
// session ID, and the entity is deleted); a placeholder sends them to the
// Datastore, which has the session it stands for.
func TestOriginalWithRemovalMarkerAndPlaceholder(t *testing.T) {
	e := newTestEnv(t)
	id := e.newSession(nil, time.Hour)
	e.srv.FlushMemcache()
	e.request(nil, func(st session.Store) { require.NotNil(t, st.Get(id)) })
	item, err := memcache.Get(e.ctx(), id)
	require.NoError(t, err)
	require.Equal(t, seeDatastoreValue, item.Value)
	sess, asked := originalGet(e.ctx(), memcache.Gob, 3, id)
	require.NotNil(t, sess, "the placeholder sends the old instance to the Datastore")
	assert.True(t, asked)
	assert.Equal(t, id, sess.ID())

	e.request(nil, func(st session.Store) { st.Remove(st.Get(id)) })
	e.srv.FlushMemcache()
	sess, _ = originalGet(e.ctx(), memcache.Gob, 3, id)
	assert.Nil(t, sess, "the old instance finds no session once the tombstone is evicted")
	sess, _ = originalGet(e.ctx(), memcache.Gob, 3, "removed:"+id)
	assert.Nil(t, sess, "the marker, read by its key name, is no session either")
	e.request(nil, func(st session.Store) { assert.Nil(t, st.Get(id)) })
}
