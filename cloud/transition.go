package cloud

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/redis/go-redis/v9"
	"google.golang.org/appengine/v2"
)

// transitionCache is the cache tier of the move from Memcache to Redis
// (step b of "Moving off the bundled services" in README): it reads Redis
// then Memcache, and writes and invalidates (tombstones) both, so that
// versions on Memcache only (the bundled store, the original package, or
// the Cloud store on Memcache: step a) and versions on Redis only (step c)
// may serve the same users while it runs.
//
// # Why no stale copy is served from either cache
//
// The core serves a session copy it finds in the cache without asking the
// Datastore; a placeholder (seeDatastoreValue) sends it to the Datastore,
// which every version writes, marker of a logout included (tombstone.go of
// the core). So the tier must answer a session copy only when it is the
// newest one, and the placeholder whenever it cannot tell.
//
// While step a versions run, Memcache is the cache every version writes,
// and Redis may miss writes: an old version's update or logout lands in
// Memcache only. Once only step b and c versions run, Redis is the one
// every version writes, and Memcache may miss writes. This tier does not
// know which phase it runs in, so it trusts neither cache alone:
//
//   - A tombstone in either cache is the answer: a logout is final, in
//     whichever cache it landed.
//   - A session copy is answered only if both caches hold it, the same
//     bytes and flags. Every write of a session copy by any version lands
//     in at least one of the two caches (each version writes the cache it
//     reads), so a write after both copies were written leaves them
//     different: equal copies are the newest.
//   - Anything else (one side missing, copies that differ, a placeholder
//     on either side) is answered as a placeholder, with the pair of
//     tokens read. The core then reads the Datastore (removal marker
//     included) and writes its copy back with a compare-and-swap in both
//     caches over what this read found, which makes them agree again. In
//     the store's default mode the Datastore is written before the cache
//     (putFirst), so the Datastore has any copy a cache holds; with
//     AsyncDatastoreSave, a copy whose Datastore put is still in flight
//     can be replaced by the Datastore's older one, which is the window
//     the bundled store has when Memcache evicts such a copy.
//   - Both missing is a miss, as in one cache.
//
// A read is two round trips (Redis, then Memcache), for the transition
// only.
//
// # Why no write brings back a removed session
//
// The core keeps the invariant that every session copy in a cache was
// written before any tombstone of its session (tombstone.go of the core);
// here it must hold in each cache. Conditional writes (compareAndSwap,
// add) go to Redis first and to Memcache only if Redis took them, each
// conditional on what the read found in that cache (an add where the
// read found nothing). A tombstone set in Memcache alone by a step a
// version after the read fails the Memcache half; the Redis half landed
// before that tombstone, so each cache's invariant holds, and readers of
// both see the tombstone (first rule above). Unconditional writes (set:
// tombstones, and new sessions nobody else knows) go to both, whatever
// either answers, so that a logout reaches every cache it can.
//
// One thing the tier cannot do: a logout by a step a version leaves a
// session copy in Redis that this tier never serves (the tombstone in
// Memcache wins) but a step c version, which reads Redis only, would.
// Nothing extends such a copy's TTL (the core writes no copy over a
// tombstone it read, and a placeholder answer ends with both caches
// agreeing), and a copy's TTL is the session's idle deadline, capped at
// 30 days. So before step c, once no step a version runs any more, either
// wait until every copy written while they ran has expired (the sessions'
// Timeout, at most 30 days), or delete the sessions' keys from Redis
// (FLUSHDB if its database holds nothing else): step b versions then find
// a session in Memcache alone, answer the placeholder, and put the
// Datastore's copy back in both caches; a removed one stays removed, since
// the Datastore carries its logout. TestTransitionBeforeStepC shows both.
//
// OnlyMemcache mode has no Datastore to ask: there a placeholder answer
// loses the session (the user logs in again), never serves a stale one.
type transitionCache struct {
	redis    tier.Cache
	memcache tier.Cache
}

// newTransitionCache returns the transition tier over the Redis server
// that client speaks to and App Engine's bundled Memcache (reached through
// each request's App Engine context).
func newTransitionCache(client redis.UniversalClient) *transitionCache {
	return &transitionCache{redis: newRedisCache(client), memcache: tier.Memcache{}}
}

var _ tier.Cache = (*transitionCache)(nil)

// pairToken is the token of a read of both caches: each side's token, nil
// where that cache held nothing.
type pairToken struct{ redis, memcache any }

// both is the answer of a read that found r in Redis and m in Memcache.
func both(r, m tier.CacheRead) (tier.CacheRead, bool) {
	tok := pairToken{r.Token, m.Token}
	switch {
	case !r.Held() && !m.Held():
		return tier.CacheRead{}, false
	case m.Held() && bytes.Equal(m.Value, tombstoneValue):
		return tier.CacheRead{Value: m.Value, Flags: m.Flags, Token: tok}, true
	case r.Held() && bytes.Equal(r.Value, tombstoneValue):
		return tier.CacheRead{Value: r.Value, Flags: r.Flags, Token: tok}, true
	case r.Held() && m.Held() && r.Flags == m.Flags && bytes.Equal(r.Value, m.Value):
		return tier.CacheRead{Value: m.Value, Flags: m.Flags, Token: tok}, true
	}
	flags := m.Flags
	if !m.Held() {
		flags = r.Flags
	}
	return tier.CacheRead{Value: seeDatastoreValue, Flags: flags, Token: tok}, true
}

func (c *transitionCache) Get(ctx context.Context, key string) (tier.CacheRead, error) {
	r, err := c.redis.Get(ctx, key)
	if err != nil && !errors.Is(err, tier.ErrCacheMiss) {
		return tier.CacheRead{}, err
	}
	m, err := c.memcache.Get(ctx, key)
	if err != nil && !errors.Is(err, tier.ErrCacheMiss) {
		return tier.CacheRead{}, err
	}
	read, ok := both(r, m)
	if !ok {
		return tier.CacheRead{}, tier.ErrCacheMiss
	}
	return read, nil
}

func (c *transitionCache) GetMulti(ctx context.Context, keys []string, into []*tier.CacheRead) error {
	rs, ms := make([]tier.CacheRead, len(keys)), make([]tier.CacheRead, len(keys))
	rp, mp := make([]*tier.CacheRead, len(keys)), make([]*tier.CacheRead, len(keys))
	for i := range keys {
		rp[i], mp[i] = &rs[i], &ms[i]
	}
	errs := make([]error, len(keys))
	all := indexes(len(keys))
	if err := spread(c.redis.GetMulti(ctx, keys, rp), all, errs); err != nil {
		return err
	}
	if err := spread(c.memcache.GetMulti(ctx, keys, mp), all, errs); err != nil {
		return err
	}
	for i := range keys {
		if errs[i] == nil {
			*into[i], _ = both(rs[i], ms[i])
		}
	}
	return multi(errs)
}

// set writes both caches, whatever either answers: a tombstone must reach
// every cache it can.
func (c *transitionCache) Set(ctx context.Context, w tier.CacheWrite) error {
	rerr := c.redis.Set(ctx, w)
	merr := c.memcache.Set(ctx, w)
	if rerr != nil {
		return rerr
	}
	return merr
}

func (c *transitionCache) SetMulti(ctx context.Context, ws []tier.CacheWrite) error {
	errs := make([]error, len(ws))
	all := indexes(len(ws))
	rwhole := spread(c.redis.SetMulti(ctx, ws), all, errs)
	mwhole := spread(c.memcache.SetMulti(ctx, ws), all, errs)
	if rwhole != nil {
		return rwhole
	}
	if mwhole != nil {
		return mwhole
	}
	return multi(errs)
}

// add adds in Redis, then in Memcache if Redis took it.
func (c *transitionCache) Add(ctx context.Context, w tier.CacheWrite) error {
	w.Token = nil
	if err := c.redis.Add(ctx, w); err != nil {
		return err
	}
	return c.memcache.Add(ctx, w)
}

// compareAndSwap writes Redis, then Memcache if Redis took it, each
// conditional on what the read found there.
func (c *transitionCache) CompareAndSwap(ctx context.Context, w tier.CacheWrite) error {
	tok, ok := w.Token.(pairToken)
	if !ok {
		return fmt.Errorf("gaesession/cloud: compare-and-swap over a token of another cache (%T)", w.Token)
	}
	if err := conditional(ctx, c.redis, w, tok.redis); err != nil {
		return err
	}
	return conditional(ctx, c.memcache, w, tok.memcache)
}

// conditional writes w to t over tok: a compare-and-swap, or an add where
// the read found nothing.
func conditional(ctx context.Context, t tier.Cache, w tier.CacheWrite, tok any) error {
	w.Token = tok
	if tok == nil {
		return t.Add(ctx, w)
	}
	return t.CompareAndSwap(ctx, w)
}

func (c *transitionCache) AddMulti(ctx context.Context, ws []tier.CacheWrite) error {
	return c.conditionalMulti(ctx, ws, func(int) pairToken { return pairToken{} })
}

func (c *transitionCache) CompareAndSwapMulti(ctx context.Context, ws []tier.CacheWrite) error {
	errs := make([]error, len(ws))
	toks := make([]pairToken, len(ws))
	for i := range ws {
		tok, ok := ws[i].Token.(pairToken)
		if !ok {
			errs[i] = fmt.Errorf("gaesession/cloud: compare-and-swap over a token of another cache (%T)", ws[i].Token)
		}
		toks[i] = tok
	}
	if err := multi(errs); err != nil {
		return err
	}
	return c.conditionalMulti(ctx, ws, func(i int) pairToken { return toks[i] })
}

// conditionalMulti is the batch form of compareAndSwap (add where tok's
// side is nil): Redis for every item, then Memcache for the items Redis
// took.
func (c *transitionCache) conditionalMulti(ctx context.Context, ws []tier.CacheWrite, tok func(int) pairToken) error {
	errs := make([]error, len(ws))
	if err := writeEach(ctx, c.redis, ws, indexes(len(ws)), func(i int) any { return tok(i).redis }, errs); err != nil {
		return err
	}
	var taken []int
	for i, err := range errs {
		if err == nil {
			taken = append(taken, i)
		}
	}
	if err := writeEach(ctx, c.memcache, ws, taken, func(i int) any { return tok(i).memcache }, errs); err != nil {
		return err
	}
	return multi(errs)
}

// writeEach writes ws[i] for each i in idx to t, conditionally on tok(i)
// (an add where it is nil), in at most two batch calls; each item's error
// lands in errs[i]. It returns the error of a whole call.
func writeEach(ctx context.Context, t tier.Cache, ws []tier.CacheWrite, idx []int, tok func(int) any, errs []error) error {
	var casW, addW []tier.CacheWrite
	var casI, addI []int
	for _, i := range idx {
		w := ws[i]
		w.Token = tok(i)
		if w.Token == nil {
			addW, addI = append(addW, w), append(addI, i)
		} else {
			casW, casI = append(casW, w), append(casI, i)
		}
	}
	if len(casW) > 0 {
		if err := spread(t.CompareAndSwapMulti(ctx, casW), casI, errs); err != nil {
			return err
		}
	}
	if len(addW) > 0 {
		if err := spread(t.AddMulti(ctx, addW), addI, errs); err != nil {
			return err
		}
	}
	return nil
}

// spread puts the items' errors of a batch call over the items idx into
// errs (keeping an earlier error of an item); it returns err if it is the
// error of the whole call.
func spread(err error, idx []int, errs []error) error {
	if err == nil {
		return nil
	}
	var me appengine.MultiError
	if !errors.As(err, &me) || len(me) != len(idx) {
		return err
	}
	for j, i := range idx {
		if errs[i] == nil {
			errs[i] = me[j]
		}
	}
	return nil
}

// multi is errs as the error of a batch call: nil if every item
// succeeded.
func multi(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return appengine.MultiError(errs)
		}
	}
	return nil
}

func indexes(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// Transition returns the cache of step b of the move from Memcache to
// Redis: both at once, Redis through client and App Engine's bundled
// Memcache through the store's context (an App Engine one). See
// transitionCache for what it guarantees while versions on Memcache only
// or on Redis only serve the same users.
func Transition(client redis.UniversalClient) Cache { return Cache{tier: newTransitionCache(client)} }
