package cloud

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/icza/gaesession/v2/aelocal"
	"github.com/icza/gaesession/v2/cloud/internal/redistest"
	"github.com/icza/gaesession/v2/internal/tier"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

// transitionEnv is one real redis-server and one aelocal, with the three
// cache tiers that serve a user during the move: step a's Memcache, step
// b's transition tier, step c's Redis.
type transitionEnv struct {
	ctx        context.Context
	mc         tier.Cache // step a: Memcache only
	redis      *redisCache
	transition *transitionCache
}

func newTransitionEnv(t *testing.T) *transitionEnv {
	addr := redistest.Start(t)
	srv := aelocal.RunT(t)
	ctx := appengine.NewContext(srv.NewRequest("GET", "/", nil))
	rdb := newClient(t, addr)
	return &transitionEnv{ctx: ctx, mc: tier.Memcache{}, redis: newRedisCache(rdb), transition: newTransitionCache(rdb)}
}

func (e *transitionEnv) read(t *testing.T, c tier.Cache, key string) tier.CacheRead {
	t.Helper()
	r, err := c.Get(e.ctx, key)
	if err != nil && !errors.Is(err, tier.ErrCacheMiss) {
		t.Fatalf("get %s: %v", key, err)
	}
	return r
}

func (e *transitionEnv) must(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) || (want == nil) != (err == nil) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

func wantValue(t *testing.T, what string, r tier.CacheRead, want []byte) {
	t.Helper()
	switch {
	case want == nil && r.Held():
		t.Fatalf("%s: read %q, want a miss", what, r.Value)
	case want != nil && (!r.Held() || !bytes.Equal(r.Value, want)):
		t.Fatalf("%s: read %q (held %v), want %q", what, r.Value, r.Held(), want)
	}
}

func copyOf(v string) tier.CacheWrite {
	return tier.CacheWrite{Key: "s", Value: []byte(v), Flags: 42, TTL: time.Hour}
}

func over(w tier.CacheWrite, r tier.CacheRead) tier.CacheWrite {
	w.Token = r.Token
	return w
}

// TestTransitionReads: what the transition tier answers for each pair of
// what the two caches hold. A session copy only when both hold it; a
// tombstone from either; else the placeholder, which sends the store to
// the Datastore.
func TestTransitionReads(t *testing.T) {
	e := newTransitionEnv(t)
	for _, c := range []struct {
		name        string
		redis, mc   []byte // nil: nothing
		redisFlags  uint32
		want        []byte // nil: a miss
		wantTheSame bool
	}{
		{name: "both empty"},
		{name: "the same copy", redis: []byte("x1"), mc: []byte("x1"), redisFlags: 42, want: []byte("x1")},
		{name: "copies differ", redis: []byte("x1"), mc: []byte("x2"), redisFlags: 42, want: seeDatastoreValue},
		{name: "flags differ", redis: []byte("x1"), mc: []byte("x1"), redisFlags: 41, want: seeDatastoreValue},
		{name: "Redis only", redis: []byte("x1"), redisFlags: 42, want: seeDatastoreValue},
		{name: "Memcache only", mc: []byte("x1"), want: seeDatastoreValue},
		{name: "tombstone in Memcache", redis: []byte("x1"), mc: tombstoneValue, redisFlags: 42, want: tombstoneValue},
		{name: "tombstone in Redis", redis: tombstoneValue, mc: []byte("x1"), redisFlags: 42, want: tombstoneValue},
		{name: "tombstone in Redis, Memcache empty", redis: tombstoneValue, want: tombstoneValue},
		{name: "placeholders", redis: seeDatastoreValue, mc: seeDatastoreValue, redisFlags: 42, want: seeDatastoreValue},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "read:" + c.name
			if c.redis != nil {
				e.must(t, "redis set", e.redis.Set(e.ctx, tier.CacheWrite{Key: key, Value: c.redis, Flags: c.redisFlags}), nil)
			}
			if c.mc != nil {
				e.must(t, "memcache set", e.mc.Set(e.ctx, tier.CacheWrite{Key: key, Value: c.mc, Flags: 42}), nil)
			}
			wantValue(t, "transition read", e.read(t, e.transition, key), c.want)
			// getMulti answers the same, next to a miss.
			var r, none tier.CacheRead
			e.must(t, "getMulti", e.transition.GetMulti(e.ctx, []string{"read:none", key}, []*tier.CacheRead{&none, &r}), nil)
			wantValue(t, "transition getMulti", r, c.want)
			wantValue(t, "transition getMulti of nothing", none, nil)
		})
	}
}

// TestTransitionWithOldVersions: step a versions (Memcache only) and step
// b versions serve one session. No copy an old version replaced or
// removed is served by the transition tier, and old versions read what
// the transition tier writes.
func TestTransitionWithOldVersions(t *testing.T) {
	e := newTransitionEnv(t)
	// A new version writes the session: both caches, the same bytes, which
	// an old version reads from Memcache as it always did.
	e.must(t, "new version's set", e.transition.Set(e.ctx, copyOf("v1")), nil)
	it, err := memcache.Get(e.ctx, "s")
	if err != nil || string(it.Value) != "v1" || it.Flags != 42 {
		t.Fatalf("old version's read: %+v, %v", it, err)
	}
	v1 := e.read(t, e.transition, "s")
	wantValue(t, "new version's read", v1, []byte("v1"))

	// An old version changes it in Memcache only: Redis's copy is stale,
	// and the new version does not serve it.
	oldRead := e.read(t, e.mc, "s")
	e.must(t, "old version's cas", e.mc.CompareAndSwap(e.ctx, over(copyOf("v2"), oldRead)), nil)
	ph := e.read(t, e.transition, "s")
	wantValue(t, "new version's read after an old version's change", ph, seeDatastoreValue)
	// The new version's conditional write over its first read fails
	// (Memcache changed since).
	e.must(t, "cas over a read before the old version's change", e.transition.CompareAndSwap(e.ctx, over(copyOf("v1b"), v1)), tier.ErrCASConflict)
	wantValue(t, "old version's read", e.read(t, e.mc, "s"), []byte("v2"))
	// The store puts the Datastore's copy back over the placeholder read:
	// the caches agree again.
	ph = e.read(t, e.transition, "s")
	e.must(t, "refill over the placeholder", e.transition.CompareAndSwap(e.ctx, over(copyOf("v2"), ph)), nil)
	v2 := e.read(t, e.transition, "s")
	wantValue(t, "read after the refill", v2, []byte("v2"))
	wantValue(t, "Redis after the refill", e.read(t, e.redis, "s"), []byte("v2"))

	// An old version logs the user out: a tombstone in Memcache only. The
	// new version sees the logout, and its write over an earlier read
	// changes nothing an old version would read.
	e.must(t, "old version's tombstone", e.mc.Set(e.ctx, tier.CacheWrite{Key: "s", Value: tombstoneValue, TTL: time.Hour}), nil)
	wantValue(t, "new version's read after the logout", e.read(t, e.transition, "s"), tombstoneValue)
	e.must(t, "cas over a read before the logout", e.transition.CompareAndSwap(e.ctx, over(copyOf("v3"), v2)), tier.ErrCASConflict)
	wantValue(t, "old version's read after the refused write", e.read(t, e.mc, "s"), tombstoneValue)
	wantValue(t, "new version's read after the refused write", e.read(t, e.transition, "s"), tombstoneValue)

	// A new version's logout lands in both caches.
	e.must(t, "set", e.transition.Set(e.ctx, copyOf("w1")), nil)
	e.must(t, "new version's tombstone", e.transition.Set(e.ctx, tier.CacheWrite{Key: "s", Value: tombstoneValue, TTL: time.Hour}), nil)
	wantValue(t, "Memcache", e.read(t, e.mc, "s"), tombstoneValue)
	wantValue(t, "Redis", e.read(t, e.redis, "s"), tombstoneValue)
}

// TestTransitionWithNewerVersions: step c versions (Redis only) and step b
// versions serve one session: the transition tier serves no copy Memcache
// kept after a step c version changed or removed the session.
func TestTransitionWithNewerVersions(t *testing.T) {
	e := newTransitionEnv(t)
	e.must(t, "set", e.transition.Set(e.ctx, copyOf("v1")), nil)
	v1 := e.read(t, e.transition, "s")

	r := e.read(t, e.redis, "s")
	e.must(t, "Redis-only cas", e.redis.CompareAndSwap(e.ctx, over(copyOf("v2"), r)), nil)
	wantValue(t, "read after a Redis-only change", e.read(t, e.transition, "s"), seeDatastoreValue)
	// Conditional in both: Redis changed, so nothing is written, Memcache
	// included.
	e.must(t, "cas over a read before the change", e.transition.CompareAndSwap(e.ctx, over(copyOf("v1b"), v1)), tier.ErrCASConflict)
	wantValue(t, "Memcache untouched", e.read(t, e.mc, "s"), []byte("v1"))

	e.must(t, "Redis-only tombstone", e.redis.Set(e.ctx, tier.CacheWrite{Key: "s", Value: tombstoneValue, TTL: time.Hour}), nil)
	wantValue(t, "read after a Redis-only logout", e.read(t, e.transition, "s"), tombstoneValue)
}

// TestTransitionEviction: a cache that lost the key is written with an
// add over the read that found nothing there, so the caches agree again;
// a key that comes back between the read and the write fails it.
func TestTransitionEviction(t *testing.T) {
	e := newTransitionEnv(t)
	e.must(t, "set", e.transition.Set(e.ctx, copyOf("v1")), nil)
	e.must(t, "memcache delete", memcache.Delete(e.ctx, "s"), nil)
	ph := e.read(t, e.transition, "s")
	wantValue(t, "read after Memcache lost the key", ph, seeDatastoreValue)
	e.must(t, "refill", e.transition.CompareAndSwap(e.ctx, over(copyOf("v1"), ph)), nil)
	wantValue(t, "read after the refill", e.read(t, e.transition, "s"), []byte("v1"))

	e.must(t, "memcache delete", memcache.Delete(e.ctx, "s"), nil)
	ph = e.read(t, e.transition, "s")
	e.must(t, "old version's placeholder", e.mc.Add(e.ctx, tier.CacheWrite{Key: "s", Value: seeDatastoreValue, TTL: time.Hour}), nil)
	e.must(t, "refill after the key came back", e.transition.CompareAndSwap(e.ctx, over(copyOf("v1"), ph)), tier.ErrNotStored)
	wantValue(t, "Memcache keeps the placeholder", e.read(t, e.mc, "s"), seeDatastoreValue)

	// Both lost it: a miss, and the store's add lands in both.
	e.must(t, "memcache delete", memcache.Delete(e.ctx, "s"), nil)
	e.redis.client.Del(e.ctx, "s")
	if _, err := e.transition.Get(e.ctx, "s"); !errors.Is(err, tier.ErrCacheMiss) {
		t.Fatalf("read after both lost the key: %v, want a miss", err)
	}
	e.must(t, "add", e.transition.Add(e.ctx, tier.CacheWrite{Key: "s", Value: seeDatastoreValue, TTL: time.Hour}), nil)
	e.must(t, "add again", e.transition.Add(e.ctx, tier.CacheWrite{Key: "s", Value: seeDatastoreValue, TTL: time.Hour}), tier.ErrNotStored)
	wantValue(t, "Memcache", e.read(t, e.mc, "s"), seeDatastoreValue)
	wantValue(t, "Redis", e.read(t, e.redis, "s"), seeDatastoreValue)
}

// TestTransitionBatches: the batch calls answer per item, in order, with
// the conditions of the single calls.
func TestTransitionBatches(t *testing.T) {
	e := newTransitionEnv(t)
	keys := []string{"b1", "b2", "b3", "b4"}
	ws := func(v string) []tier.CacheWrite {
		out := make([]tier.CacheWrite, len(keys))
		for i, k := range keys {
			out[i] = tier.CacheWrite{Key: k, Value: []byte(v + k), Flags: uint32(i), TTL: time.Hour}
		}
		return out
	}
	// b2 is held by an old version, b3 by a new one: the adds of both fail.
	e.must(t, "old version's add", e.mc.Add(e.ctx, ws("o")[1]), nil)
	e.must(t, "new version's add", e.transition.Add(e.ctx, ws("n")[2]), nil)
	wantMulti(t, e.transition.AddMulti(e.ctx, ws("a")), nil, tier.ErrNotStored, tier.ErrNotStored, nil)
	// The add of b2 went to Redis (which had nothing) but not to Memcache:
	// the caches disagree, and the read says so.
	reads := make([]tier.CacheRead, len(keys))
	into := []*tier.CacheRead{&reads[0], &reads[1], &reads[2], &reads[3]}
	e.must(t, "getMulti", e.transition.GetMulti(e.ctx, keys, into), nil)
	for i, want := range []string{"ab1", string(seeDatastoreValue), "nb3", "ab4"} {
		wantValue(t, "getMulti "+keys[i], reads[i], []byte(want))
	}
	// b1 over its read; b2 over the placeholder read; b3 changed by a
	// Redis-only version; b4 changed by an old version.
	r3 := e.read(t, e.redis, "b3")
	e.must(t, "Redis-only cas", e.redis.CompareAndSwap(e.ctx, over(ws("c")[2], r3)), nil)
	m4 := e.read(t, e.mc, "b4")
	e.must(t, "old version's cas", e.mc.CompareAndSwap(e.ctx, over(ws("o")[3], m4)), nil)
	cas := ws("x")
	for i := range cas {
		cas[i].Token = reads[i].Token
	}
	wantMulti(t, e.transition.CompareAndSwapMulti(e.ctx, cas), nil, nil, tier.ErrCASConflict, tier.ErrCASConflict)
	e.must(t, "getMulti", e.transition.GetMulti(e.ctx, keys, into), nil)
	for i, want := range []string{"xb1", "xb2", string(seeDatastoreValue), string(seeDatastoreValue)} {
		wantValue(t, "getMulti after the cas "+keys[i], reads[i], []byte(want))
	}
	wantValue(t, "old version's b4", e.read(t, e.mc, "b4"), []byte("ob4"))

	e.must(t, "setMulti", e.transition.SetMulti(e.ctx, ws("s")), nil)
	for _, k := range keys {
		wantValue(t, "Memcache "+k, e.read(t, e.mc, k), []byte("s"+k))
		wantValue(t, "Redis "+k, e.read(t, e.redis, k), []byte("s"+k))
	}
}

// TestTransitionBeforeStepC: a logout by a step a version (a tombstone in
// Memcache alone) leaves the session's copy in Redis. The transition tier
// never serves it, but a Redis-only version would: so step c comes only
// after that copy's TTL (the session's idle deadline) has passed, or after
// the session keys are deleted from Redis (transitionCache says why).
func TestTransitionBeforeStepC(t *testing.T) {
	e := newTransitionEnv(t)
	e.must(t, "new version's set", e.transition.Set(e.ctx, copyOf("v1")), nil)
	e.must(t, "old version's logout", e.mc.Set(e.ctx, tier.CacheWrite{Key: "s", Value: tombstoneValue, TTL: time.Hour}), nil)
	wantValue(t, "transition read", e.read(t, e.transition, "s"), tombstoneValue)
	wantValue(t, "Redis-only read", e.read(t, e.redis, "s"), []byte("v1"))
	if ttl := e.redis.client.PTTL(e.ctx, "s").Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("the Redis copy's TTL is %v, want at most the write's hour", ttl)
	}
	e.redis.client.Del(e.ctx, "s")
	wantValue(t, "Redis-only read after the delete", e.read(t, e.redis, "s"), nil)
	wantValue(t, "transition read after the delete", e.read(t, e.transition, "s"), tombstoneValue)
}
