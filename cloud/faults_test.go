package cloud

import (
	"bytes"
	"errors"
	"testing"
	"time"

	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// faultDown makes a service fail every call for the rest of a test.
const faultDown = 1 << 30

// A Cloud Datastore error that another attempt cannot fix is not retried:
// a session too large for an entity costs one Commit, not Retries, and
// SaveError reports the API's status.
func TestCloudPermanentErrorNotRetried(t *testing.T) {
	e := newEnv(t)
	logs := captureLogs(t)
	e.rpcs()
	var st session.Store
	var id string
	e.request(cloudNoCache, nil, func(s session.Store) {
		st = s
		sess := session.NewSessionOptions(&session.SessOptions{
			Attrs:   map[string]interface{}{"blob": bytes.Repeat([]byte{1}, 1100<<10)},
			Timeout: time.Hour,
		})
		id = sess.ID()
		s.Add(sess)
	})
	assert.Equal(t, map[string]int64{commit: 1}, e.rpcs(), "INVALID_ARGUMENT is final")
	err := gaesession.SaveError(st)
	require.Error(t, err)
	assert.Equal(t, codes.InvalidArgument, status.Code(errors.Unwrap(err)), "%v", err)
	assert.NotContains(t, err.Error(), id)
	assert.Len(t, logs.with("ERROR", gaesession.LogID(id), "to the datastore failed"), 1, "%v", logs.with())
	assert.Empty(t, logs.with(id))
	assert.Nil(t, e.entity(id))
}

// Cloud Datastore refuses every write: Memcache still serves and stores
// the session's changes (as with the bundled store when its Datastore is
// down), every failed Commit is retried as the bundled store retries a
// failed Put, and the failures are logged and reported without the ID.
func TestCloudDatastoreWritesDown(t *testing.T) {
	e := newEnv(t)
	logs := captureLogs(t)
	id := e.newSession(cloudMemcache, nil, time.Hour)
	e.srv.FailNext("cloud_datastore_v1", "Commit", faultDown)
	e.rpcs()
	var st session.Store
	e.request(cloudMemcache, nil, func(s session.Store) {
		st = s
		s.Get(id).SetAttr("n", 2)
	})
	assert.Equal(t, map[string]int64{"memcache.Get": 1, "memcache.Set": 1, commit: 3}, e.rpcs(),
		"the put is tried Retries times; the compare-and-swap follows")
	assert.Error(t, gaesession.SaveError(st))
	sess, origin := e.get(cloudMemcache, nil, id)
	require.NotNil(t, sess)
	assert.Equal(t, gaesession.OriginMemcache, origin)
	assert.Equal(t, 2, sess.Attr("n"))
	assert.Len(t, logs.with("ERROR", gaesession.LogID(id), "to the datastore failed"), 1, "%v", logs.with())
	assert.Empty(t, logs.with(id))

	// A logout then: the removal marker and the delete fail, the
	// tombstone holds while Memcache keeps it.
	e.request(cloudMemcache, nil, func(s session.Store) {
		st = s
		s.Remove(s.Get(id))
	})
	assert.Error(t, gaesession.SaveError(st))
	assert.Len(t, logs.with("ERROR", gaesession.LogID(id), "logout incomplete"), 1, "%v", logs.with())
	sess, _ = e.get(cloudMemcache, nil, id)
	assert.Nil(t, sess, "the tombstone keeps it out")
	assert.Empty(t, logs.with(id))
}

// Memcache down under the Cloud store with Memcache: sessions come from
// Cloud Datastore, and changes are saved there.
func TestCloudMemcacheDown(t *testing.T) {
	e := newEnv(t)
	logs := captureLogs(t)
	id := e.newSession(cloudMemcache, nil, time.Hour)
	e.srv.FailNext("memcache", "", faultDown)
	e.request(cloudMemcache, nil, func(s session.Store) {
		sess := s.Get(id)
		if assert.NotNil(t, sess) {
			assert.Equal(t, gaesession.OriginDatastore, gaesession.SessionOrigin(s, id))
			sess.SetAttr("n", 2)
		}
	})
	assert.Equal(t, 2, e.storedN(id))
	e.srv.FailNext("memcache", "", 0)
	e.srv.FlushMemcache()
	sess, _ := e.get(cloudMemcache, nil, id)
	require.NotNil(t, sess)
	assert.Equal(t, 2, sess.Attr("n"))
	assert.NotEmpty(t, logs.with("ERROR", gaesession.LogID(id), "memcache"))
	assert.Empty(t, logs.with(id))
}

// The Cloud client retries a failing Lookup itself (5 attempts, with
// backoff, for INTERNAL among others): the core does not multiply them.
// A failing Commit, which the client does not retry for INTERNAL, is sent
// Retries times by the core, as a failing datastore_v3 Put is.
func TestCloudClientRetriesNotMultiplied(t *testing.T) {
	e := newEnv(t)
	logs := captureLogs(t)
	id := e.newSession(cloudNoCache, nil, time.Hour)
	e.srv.FailNext("cloud_datastore_v1", "", faultDown)
	e.rpcs()
	sess, _ := e.get(cloudNoCache, nil, id)
	assert.Nil(t, sess)
	assert.Equal(t, map[string]int64{lookup: 5}, e.rpcs(), "the client's 5 attempts, once")
	added := e.newSession(cloudNoCache, nil, time.Hour)
	assert.Equal(t, map[string]int64{commit: 3}, e.rpcs(), "the core's Retries")
	assert.Len(t, logs.with("ERROR", gaesession.LogID(id), "datastore get failed"), 1, "%v", logs.with())
	assert.Len(t, logs.with("ERROR", gaesession.LogID(added), "to the datastore failed"), 1, "%v", logs.with())
	assert.Empty(t, logs.with(id))
	assert.Empty(t, logs.with(added))
}
