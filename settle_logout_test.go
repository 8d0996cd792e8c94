package gaesession

import (
	"context"
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

// With MergeConcurrentUpdates, the settle step re-puts the version another
// request wrote to Memcache. A logout may come between the read that chose
// that version and its put, and Memcache may evict the tombstone before
// the read that follows the put: the put then lands after the logout's
// delete, and like the first put of a save (checkAfterPut) the settle step
// must ask the removal marker when Memcache holds no session copy, and
// delete the entity it put. Otherwise the entity of a removed session
// stays, and an instance of the original package (which reads no marker)
// serves it.
func TestSettleAfterLogoutDeletesItsPut(t *testing.T) {
	e := newTestEnv(t)
	o := &MemcacheStoreOptions{MergeConcurrentUpdates: true}
	id := e.newSession(o, time.Hour)

	var puts atomic.Int64
	var trace []string
	ctxB := appengine.WithAPICallFunc(e.ctx(), func(ctx context.Context, service, method string, in, out proto.Message) error {
		trace = append(trace, service+"."+method)
		if service+"."+method == "datastore_v3.Put" {
			switch puts.Add(1) {
			case 1: // another request changes the session before B's put lands
				e.request(o, func(st session.Store) { st.Get(id).SetAttr("d", "from D") })
				require.NoError(t, WaitForAsyncSaves(context.Background()))
			case 2: // the settle step's put: the logout comes first, and its tombstone is evicted
				evictingLogout(t, e, o, id, false)
				e.srv.FlushMemcache()
			}
		}
		return appengine.APICall(ctx, service, method, in, out)
	})
	b := NewMemcacheStoreOptions(ctxB, o)
	b.Get(id).SetAttr("b", "from B")
	b.Close()
	require.NoError(t, WaitForAsyncSaves(context.Background()))
	require.Equal(t, int64(2), puts.Load(), "B's calls: %v", trace)

	// Before any Get (which would delete it on finding the marker).
	err := datastore.Get(e.ctx(), datastore.NewKey(e.ctx(), "sess_", id, 0, nil), &SessEntity{})
	assert.Equal(t, datastore.ErrNoSuchEntity, err, "the entity of the removed session is gone (B's calls: %v)", trace)
	sess, _ := originalGet(e.ctx(), memcache.Gob, 3, id)
	assert.Nil(t, sess, "an instance of the original package finds the removed session")
	requireGoneFromDatastoreView(t, e, o, id)
}
