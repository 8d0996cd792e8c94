package cloud

import (
	"context"
	"testing"
	"time"

	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Cloud Datastore's calls in aelocal's Stats.
const (
	lookup = "cloud_datastore_v1.Lookup"
	commit = "cloud_datastore_v1.Commit"
)

// cloudModes are the Cloud store's configurations, with the RPCs each step
// of the classic flow costs there: the bundled store's figures
// (gaesession_test.go's storeModes), a Lookup for a datastore_v3 Get and a
// Commit for a Put or a Delete.
var cloudModes = []struct {
	name  string
	kind  storeKind
	opts  *gaesession.MemcacheStoreOptions
	costs map[string]map[string]int64
}{
	{"memcache", cloudMemcache, nil, map[string]map[string]int64{
		"login":  {"memcache.Set": 1, commit: 1},
		"read":   {"memcache.Get": 1},
		"visit":  {"memcache.Get": 1, "memcache.Set": 1, commit: 1},
		"logout": {"memcache.Get": 1, commit: 2, "memcache.Set": 1},
		"again":  {"memcache.Get": 1},
	}},
	{"memcache, merge", cloudMemcache, &gaesession.MemcacheStoreOptions{MergeConcurrentUpdates: true}, map[string]map[string]int64{
		"login":  {"memcache.Set": 1, commit: 1},
		"read":   {"memcache.Get": 1},
		"visit":  {"memcache.Get": 2, "memcache.Set": 1, commit: 1},
		"logout": {"memcache.Get": 1, commit: 2, "memcache.Set": 1},
		"again":  {"memcache.Get": 1},
	}},
	{"memcache, async", cloudMemcache, &gaesession.MemcacheStoreOptions{AsyncDatastoreSave: true}, map[string]map[string]int64{
		"login":  {"memcache.Set": 1, commit: 1, "memcache.Get": 1},
		"read":   {"memcache.Get": 1},
		"visit":  {"memcache.Get": 2, "memcache.Set": 1, commit: 1},
		"logout": {"memcache.Get": 1, commit: 2, "memcache.Set": 1},
		"again":  {"memcache.Get": 1},
	}},
	{"memcache, negative slack", cloudMemcache, &gaesession.MemcacheStoreOptions{ExpirySlack: -1}, map[string]map[string]int64{
		"login":  {"memcache.Set": 1, commit: 1},
		"read":   {"memcache.Get": 1, "memcache.Set": 1, commit: 1},
		"visit":  {"memcache.Get": 1, "memcache.Set": 1, commit: 1},
		"logout": {"memcache.Get": 1, commit: 2, "memcache.Set": 1},
		"again":  {"memcache.Get": 1},
	}},
	// No cache: every Get is a Lookup (of the entity and its removal
	// marker), and a write is one Commit.
	{"no cache", cloudNoCache, nil, map[string]map[string]int64{
		"login":  {commit: 1},
		"read":   {lookup: 1},
		"visit":  {lookup: 1, commit: 1},
		"logout": {lookup: 1, commit: 2},
		"again":  {lookup: 1},
	}},
	{"no cache, async and merge asked for", cloudNoCache, &gaesession.MemcacheStoreOptions{AsyncDatastoreSave: true, MergeConcurrentUpdates: true}, map[string]map[string]int64{
		"login":  {commit: 1},
		"read":   {lookup: 1},
		"visit":  {lookup: 1, commit: 1},
		"logout": {lookup: 1, commit: 2},
		"again":  {lookup: 1},
	}},
}

// The classic flow on the Cloud store, request by request, with what each
// step costs: log in, read, change, log out, come back with the old
// cookie (also once the cache lost everything).
func TestCloudRequestFlow(t *testing.T) {
	for _, mode := range cloudModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t)
			logs := captureLogs(t)
			e.rpcs()
			id := e.newSession(mode.kind, mode.opts, time.Hour)
			assert.Equal(t, mode.costs["login"], e.rpcs(), "login")

			sess, _ := e.get(mode.kind, mode.opts, id)
			require.NotNil(t, sess)
			assert.Equal(t, 1, sess.Attr("n"))
			assert.Equal(t, mode.costs["read"], e.rpcs(), "a read-only request")

			e.request(mode.kind, mode.opts, func(st session.Store) {
				sess := st.Get(id)
				require.NotNil(t, sess)
				sess.SetAttr("n", 2)
			})
			assert.Equal(t, mode.costs["visit"], e.rpcs(), "a modified request")
			sess, _ = e.get(mode.kind, mode.opts, id)
			require.NotNil(t, sess)
			assert.Equal(t, 2, sess.Attr("n"))
			assert.Equal(t, 2, e.storedN(id), "the datastore has the change")
			e.rpcs()

			e.request(mode.kind, mode.opts, func(st session.Store) { st.Remove(st.Get(id)) })
			assert.Equal(t, mode.costs["logout"], e.rpcs(), "logout")
			assert.Nil(t, e.entity(id), "the entity is deleted")
			e.rpcs()

			sess, _ = e.get(mode.kind, mode.opts, id)
			assert.Nil(t, sess)
			assert.Equal(t, mode.costs["again"], e.rpcs(), "the old cookie")
			e.srv.FlushMemcache()
			sess, _ = e.get(mode.kind, mode.opts, id)
			assert.Nil(t, sess, "nor is it found once the cache lost everything: the removal marker keeps it out")
			assert.Empty(t, logs.with("ERROR"))
			assert.Empty(t, logs.with("WARNING"))
			assert.Empty(t, logs.with(id), "no session ID in any log line")
		})
	}
}

// storedN is attribute "n" of the session id as its Cloud Datastore entity
// holds it; 0 if there is none.
func (e *env) storedN(id string) int {
	e.t.Helper()
	ent := e.entity(id)
	if ent == nil {
		return 0
	}
	sess, err := decodeGob(ent.Value)
	if err != nil {
		e.t.Fatal(err)
	}
	n, _ := sess.Attr("n").(int)
	return n
}

// Without a Datastore client (or with OnlyMemcache) the store keeps
// sessions in its cache alone, as the bundled store's OnlyMemcache; with
// neither a client nor a cache there is nowhere to keep them.
func TestCloudStoreWithoutClient(t *testing.T) {
	e := newEnv(t)
	only := storeKind{"memcache only", func(e *env, ctx context.Context, o *gaesession.MemcacheStoreOptions) session.Store {
		return NewStore(ctx, nil, Memcache(), optionsOf(o))
	}, true}
	e.rpcs()
	id := e.newSession(only, nil, time.Hour)
	sess, origin := e.get(only, nil, id)
	require.NotNil(t, sess)
	assert.Equal(t, gaesession.OriginMemcache, origin)
	e.request(only, nil, func(st session.Store) { st.Remove(st.Get(id)) })
	assert.Equal(t, map[string]int64{"memcache.Set": 2, "memcache.Get": 2}, e.rpcs(), "no Cloud Datastore call")

	id = e.newSession(cloudMemcache, &gaesession.MemcacheStoreOptions{OnlyMemcache: true}, time.Hour)
	assert.Nil(t, e.entity(id), "OnlyMemcache: nothing in the Datastore")

	assert.Panics(t, func() { NewStore(context.Background(), nil, Cache{}, nil) })
}
