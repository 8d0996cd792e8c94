package gaesession

import (
	"context"

	"google.golang.org/appengine/v2/memcache"
)

// memcacheTier is the cache tier on App Engine's bundled Memcache. It has
// no state (the context comes with each call), so a store holds it in its
// cacheTier field without an allocation.
type memcacheTier struct{}

var _ cacheTier = memcacheTier{}

func readOf(it *memcache.Item) cacheRead {
	return cacheRead{value: it.Value, flags: it.Flags, token: it}
}

func (memcacheTier) get(ctx context.Context, key string) (cacheRead, error) {
	it, err := memcache.Get(ctx, key)
	if err != nil {
		return cacheRead{}, err
	}
	return readOf(it), nil
}

func (memcacheTier) getMulti(ctx context.Context, keys []string, into []*cacheRead) error {
	items, err := memcache.GetMulti(ctx, keys)
	if err != nil {
		return err
	}
	for i, k := range keys {
		if it := items[k]; it != nil {
			*into[i] = readOf(it)
		}
	}
	return nil
}

// item is the Memcache item of w. For a compare-and-swap it is a copy of
// the item read, which keeps its CAS id (unexported).
func item(w *cacheWrite) memcache.Item {
	var it memcache.Item
	if cur, ok := w.token.(*memcache.Item); ok {
		it = *cur
		it.Object = nil
	}
	it.Key, it.Value, it.Flags, it.Expiration = w.key, w.value, w.flags, w.ttl
	return it
}

func (memcacheTier) set(ctx context.Context, w cacheWrite) error {
	it := item(&w)
	return memcache.Set(ctx, &it)
}

func (memcacheTier) add(ctx context.Context, w cacheWrite) error {
	it := item(&w)
	return memcache.Add(ctx, &it)
}

func (memcacheTier) compareAndSwap(ctx context.Context, w cacheWrite) error {
	it := item(&w)
	return memcache.CompareAndSwap(ctx, &it)
}

// The batch calls make their items here rather than in a helper, so that
// the slice of pointers stays on the stack (the client does not keep it):
// one allocation per batch, whatever its size.

func (memcacheTier) setMulti(ctx context.Context, ws []cacheWrite) error {
	its := make([]memcache.Item, len(ws))
	ptrs := make([]*memcache.Item, len(ws))
	for i := range ws {
		its[i] = item(&ws[i])
		ptrs[i] = &its[i]
	}
	return memcache.SetMulti(ctx, ptrs)
}

func (memcacheTier) addMulti(ctx context.Context, ws []cacheWrite) error {
	its := make([]memcache.Item, len(ws))
	ptrs := make([]*memcache.Item, len(ws))
	for i := range ws {
		its[i] = item(&ws[i])
		ptrs[i] = &its[i]
	}
	return memcache.AddMulti(ctx, ptrs)
}

func (memcacheTier) compareAndSwapMulti(ctx context.Context, ws []cacheWrite) error {
	its := make([]memcache.Item, len(ws))
	ptrs := make([]*memcache.Item, len(ws))
	for i := range ws {
		its[i] = item(&ws[i])
		ptrs[i] = &its[i]
	}
	return memcache.CompareAndSwapMulti(ctx, ptrs)
}
