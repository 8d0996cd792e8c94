package gaesession

import (
	"bytes"
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

// An instance of the original package wrote the session; we read it, from
// Memcache and, once evicted, from the Datastore.
func TestReadsWhatTheOriginalWrote(t *testing.T) {
	e := newTestEnv(t)
	golden := goldenBytes(t)
	exp := time.Now().Add(time.Hour)
	require.NoError(t, memcache.Set(e.ctx(), &memcache.Item{Key: goldenID, Value: golden, Expiration: time.Hour}))
	key := datastore.NewKey(e.ctx(), "sess_", goldenID, 0, nil)
	props := datastore.PropertyList{
		{Name: "exp", Value: exp},
		{Name: "val", Value: golden, NoIndex: true},
	}
	_, err := datastore.Put(e.ctx(), key, &props)
	require.NoError(t, err)

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
