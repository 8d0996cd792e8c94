package cloud

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/datastore"
	gaesession "github.com/icza/gaesession/v2"
	"github.com/icza/session"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/appengine/v2"
	bundledds "google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// The Cloud store writes the very entity the bundled store (and the
// original package) writes: kind, key name, property names, types and
// index flags, value bytes and expiry, as the bundled client reads them.
func TestCloudEntityIsTheBundledOne(t *testing.T) {
	e := newEnv(t)
	props := func(id string) bundledds.PropertyList {
		t.Helper()
		ctx := e.aeCtx()
		var pl bundledds.PropertyList
		require.NoError(t, bundledds.Get(ctx, bundledds.NewKey(ctx, "sess_", id, 0, nil), &pl))
		return pl
	}
	fromBundled := props(e.newSession(bundled, nil, time.Hour))
	id := e.newSession(cloudNoCache, nil, time.Hour)
	fromCloud := props(id)
	require.Len(t, fromCloud, 2)
	require.Len(t, fromBundled, 2)
	for i := range fromCloud {
		c, b := fromCloud[i], fromBundled[i]
		assert.Equal(t, b.Name, c.Name)
		assert.Equal(t, b.NoIndex, c.NoIndex, "%s: index flag", c.Name)
		assert.Equal(t, b.Multiple, c.Multiple)
		assert.IsType(t, b.Value, c.Value, "%s: type", c.Name)
	}
	assert.Equal(t, "exp", fromCloud[0].Name)
	assert.False(t, fromCloud[0].NoIndex, "exp is indexed: the purge queries it")
	assert.Equal(t, "val", fromCloud[1].Name)
	assert.True(t, fromCloud[1].NoIndex, "val is not indexed")

	// The value bytes are those of the codec, and "exp" the idle
	// deadline, both as the bundled client reads them.
	var ent gaesession.SessEntity
	ctx := e.aeCtx()
	require.NoError(t, bundledds.Get(ctx, bundledds.NewKey(ctx, "sess_", id, 0, nil), &ent))
	sess, err := decodeGob(ent.Value)
	require.NoError(t, err)
	assert.Equal(t, id, sess.ID())
	assert.Equal(t, 1, sess.Attr("n"))
	assert.WithinDuration(t, sess.Accessed().Add(time.Hour), ent.Expires, time.Second)
	cloudEnt := e.entity(id)
	require.NotNil(t, cloudEnt)
	assert.Equal(t, cloudEnt.Value, ent.Value)
	assert.True(t, cloudEnt.Expires.Equal(ent.Expires), "exp: %v (Cloud) against %v (bundled)", cloudEnt.Expires, ent.Expires)
}

// A session written by either store is read by the other, from the
// Datastore (the cache emptied, or none) and from the shared Memcache; and
// a change by either is seen by the other.
func TestCloudAndBundledReadEachOthersSessions(t *testing.T) {
	for _, w := range []storeKind{bundled, cloudMemcache, cloudNoCache} {
		for _, r := range []storeKind{bundled, cloudMemcache, cloudNoCache} {
			if w.name == r.name {
				continue
			}
			t.Run(w.name+" writes, "+r.name+" reads", func(t *testing.T) {
				e := newEnv(t)
				id := e.newSession(w, nil, time.Hour)
				e.srv.FlushMemcache()
				sess, origin := e.get(r, nil, id)
				require.NotNil(t, sess, "from the datastore")
				assert.Equal(t, gaesession.OriginDatastore, origin)
				assert.Equal(t, "gopher", sess.CAttr("user"))
				assert.Equal(t, 1, sess.Attr("n"))

				e.request(w, nil, func(st session.Store) { st.Get(id).SetAttr("n", 2) })
				if w.aeCtx && r.aeCtx {
					sess, origin = e.get(r, nil, id)
					require.NotNil(t, sess, "from the shared memcache")
					assert.Equal(t, gaesession.OriginMemcache, origin)
					assert.Equal(t, 2, sess.Attr("n"))
				}
				e.srv.FlushMemcache()
				sess, _ = e.get(r, nil, id)
				require.NotNil(t, sess)
				assert.Equal(t, 2, sess.Attr("n"), "the change, from the datastore")
			})
		}
	}
}

// A logout by either store is seen by the other: through the shared
// Memcache's tombstone, and through the Datastore's removal marker once
// the cache lost it (or for a store without a cache). The entity is gone
// for the original package too.
func TestRemovalByEitherStoreSeenByBoth(t *testing.T) {
	for _, remover := range []storeKind{bundled, cloudMemcache, cloudNoCache} {
		t.Run(remover.name+" logs out", func(t *testing.T) {
			e := newEnv(t)
			id := e.newSession(bundled, nil, time.Hour)
			for _, k := range []storeKind{bundled, cloudMemcache, cloudNoCache} {
				sess, _ := e.get(k, nil, id) // each has it, and Memcache holds a copy
				require.NotNil(t, sess, k.name)
			}
			e.request(remover, nil, func(st session.Store) { st.Remove(st.Get(id)) })
			readers := []storeKind{bundled, cloudMemcache, cloudNoCache}
			if !remover.aeCtx {
				// A store without Memcache cannot reach the copy that
				// Memcache holds for the bundled store: that is what
				// the migration's steps are for (README). Its marker
				// holds once Memcache lost the copy.
				e.srv.FlushMemcache()
			}
			for round := 0; round < 2; round++ {
				for _, k := range readers {
					sess, _ := e.get(k, nil, id)
					assert.Nil(t, sess, "round %d: %s finds the session", round, k.name)
				}
				e.srv.FlushMemcache()
			}
			assert.Nil(t, e.entity(id))
			var ent gaesession.SessEntity
			ctx := e.aeCtx()
			assert.Equal(t, bundledds.ErrNoSuchEntity, bundledds.Get(ctx, bundledds.NewKey(ctx, "sess_", id, 0, nil), &ent))
		})
	}
}

// The removal marker the Cloud store writes is the bundled store's:
// key name "removed:" and the ID, in the session kind, "exp" the logout
// plus the session's Timeout and a minute; and the tombstone in Memcache
// is the bundled store's bytes.
func TestCloudRemovalMarkerIsTheBundledOne(t *testing.T) {
	e := newEnv(t)
	id := e.newSession(cloudMemcache, nil, time.Hour)
	before := time.Now()
	e.request(cloudMemcache, nil, func(st session.Store) { st.Remove(st.Get(id)) })
	after := time.Now()
	ctx := e.aeCtx()
	var m struct {
		Expires time.Time `datastore:"exp"`
	}
	require.NoError(t, bundledds.Get(ctx, bundledds.NewKey(ctx, "sess_", "removed:"+id, 0, nil), &m))
	assert.False(t, m.Expires.Before(before.Add(time.Hour+time.Minute).Truncate(time.Microsecond)))
	assert.False(t, m.Expires.After(after.Add(time.Hour+time.Minute)))
	item, err := memcache.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "\xffgaesession:removed", string(item.Value))
}

// Options.Namespace is the Datastore namespace the bundled store writes to
// under an App Engine context of that namespace (appengine.Namespace):
// each store reads the other's sessions there, and none in the default
// namespace.
func TestCloudNamespace(t *testing.T) {
	e := newEnv(t)
	o := &Options{Namespace: "tenant1"}
	nsCtx := func() context.Context {
		ctx, err := appengine.Namespace(e.aeCtx(), "tenant1")
		require.NoError(t, err)
		return ctx
	}
	var id string
	st := NewStore(context.Background(), e.client, Cache{}, o)
	sess := session.NewSession()
	st.Add(sess)
	st.Close()
	id = sess.ID()
	assert.Nil(t, e.entity(id), "nothing in the default namespace")

	b := gaesession.NewMemcacheStore(nsCtx())
	assert.NotNil(t, b.Get(id), "the bundled store in the namespace finds it")
	b.Close()

	st = NewStore(context.Background(), e.client, Cache{}, nil)
	assert.Nil(t, st.Get(id), "a Cloud store of the default namespace does not")
	st.Close()

	b = gaesession.NewMemcacheStore(nsCtx())
	bs := session.NewSession()
	b.Add(bs)
	b.Close()
	st = NewStore(context.Background(), e.client, Cache{}, o)
	assert.NotNil(t, st.Get(bs.ID()), "the Cloud store in the namespace reads the bundled store's")
	st.Remove(st.Get(bs.ID()))
	st.Close()
	e.srv.FlushMemcache()
	b = gaesession.NewMemcacheStore(nsCtx())
	assert.Nil(t, b.Get(bs.ID()), "and its logout holds there")
	b.Close()
}

// A session whose stored idle deadline ("exp") has passed is no session,
// whichever store wrote it and whichever reads it.
func TestCloudIdleDeadlineOfStoredCopy(t *testing.T) {
	e := newEnv(t)
	for _, w := range []storeKind{bundled, cloudNoCache} {
		id := e.newSession(w, nil, time.Hour)
		ent := e.entity(id)
		require.NotNil(t, ent)
		ent.Expires = time.Now().Add(-time.Second) // idle for longer than its Timeout
		_, err := e.client.Put(context.Background(), datastore.NameKey("sess_", id, nil), ent)
		require.NoError(t, err)
		e.srv.FlushMemcache()
		for _, r := range []storeKind{bundled, cloudMemcache, cloudNoCache} {
			sess, _ := e.get(r, nil, id)
			assert.Nil(t, sess, "%s reads a session %s stored, past its deadline", r.name, w.name)
		}
		assert.NotNil(t, e.entity(id), "the purge deletes it, after ExpiredFor")
	}
}
