package cloud

import (
	"strings"
	"testing"
	"time"

	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two requests change a session too large for Memcache (its item is the
// placeholder) with MergeConcurrentUpdates: the second one's put is a
// Cloud Datastore transaction that merges its change into what the first
// one put (the core's putMerged over the Cloud tier, its transaction
// carried in the context), so both changes survive, as on the bundled
// store (TestMergeOfSessionsTooLargeForMemcacheKeepsBothChanges).
func TestCloudMergeInTransaction(t *testing.T) {
	e := newEnv(t)
	logs := captureLogs(t)
	o := &gaesession.MemcacheStoreOptions{MergeConcurrentUpdates: true, KeyPrefix: strings.Repeat("p", 200)}
	id := e.newSession(cloudMemcache, o, time.Hour)
	e.request(cloudMemcache, o, func(st session.Store) { st.Get(id).SetAttr("big", strings.Repeat("x", 1048000)) })

	a := NewStore(e.aeCtx(), e.client, Memcache(), optionsOf(o))
	b := NewStore(e.aeCtx(), e.client, Memcache(), optionsOf(o))
	a.Get(id).SetAttr("a", "from A")
	b.Get(id).SetAttr("b", "from B")
	e.rpcs()
	a.Close()
	b.Close()
	require.NoError(t, gaesession.SaveError(a))
	require.NoError(t, gaesession.SaveError(b))
	stats := e.rpcs()
	assert.Equal(t, int64(2), stats["cloud_datastore_v1.BeginTransaction"], "each put is a transaction: %v", stats)

	e.request(cloudMemcache, o, func(st session.Store) {
		sess := st.Get(id)
		require.NotNil(t, sess)
		assert.Equal(t, gaesession.OriginDatastore, gaesession.SessionOrigin(st, id))
		assert.Equal(t, "from A", sess.Attr("a"), "A's change survives")
		assert.Equal(t, "from B", sess.Attr("b"), "B's change survives")
		assert.Len(t, sess.Attr("big"), 1048000)
	})
	assert.Len(t, logs.with("WARNING", gaesession.LogID(id), "merged 1 changed"), 1, "%v", logs.with())
	assert.Empty(t, logs.with("ERROR"))
}
