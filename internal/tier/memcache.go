package tier

import (
	"context"

	"google.golang.org/appengine/v2/memcache"
)

// Memcache is the cache tier on App Engine's bundled Memcache (the
// context of each call must be an App Engine one). It has no state, so a
// store holds it in its Cache field without an allocation.
type Memcache struct{}

var _ Cache = Memcache{}

func readOf(it *memcache.Item) CacheRead {
	return CacheRead{Value: it.Value, Flags: it.Flags, Token: it}
}

// Get is one memcache.Get.
func (Memcache) Get(ctx context.Context, key string) (CacheRead, error) {
	it, err := memcache.Get(ctx, key)
	if err != nil {
		return CacheRead{}, err
	}
	return readOf(it), nil
}

// GetMulti is one memcache.GetMulti.
func (Memcache) GetMulti(ctx context.Context, keys []string, into []*CacheRead) error {
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
func item(w *CacheWrite) memcache.Item {
	var it memcache.Item
	if cur, ok := w.Token.(*memcache.Item); ok {
		it = *cur
		it.Object = nil
	}
	it.Key, it.Value, it.Flags, it.Expiration = w.Key, w.Value, w.Flags, w.TTL
	return it
}

// Set is one memcache.Set.
func (Memcache) Set(ctx context.Context, w CacheWrite) error {
	it := item(&w)
	return memcache.Set(ctx, &it)
}

// Add is one memcache.Add.
func (Memcache) Add(ctx context.Context, w CacheWrite) error {
	it := item(&w)
	return memcache.Add(ctx, &it)
}

// CompareAndSwap is one memcache.CompareAndSwap over the item of w.Token.
func (Memcache) CompareAndSwap(ctx context.Context, w CacheWrite) error {
	it := item(&w)
	return memcache.CompareAndSwap(ctx, &it)
}

// The batch calls make their items here rather than in a helper, so that
// the slice of pointers stays on the stack (the client does not keep it):
// one allocation per batch, whatever its size.

// SetMulti is one memcache.SetMulti.
func (Memcache) SetMulti(ctx context.Context, ws []CacheWrite) error {
	its := make([]memcache.Item, len(ws))
	ptrs := make([]*memcache.Item, len(ws))
	for i := range ws {
		its[i] = item(&ws[i])
		ptrs[i] = &its[i]
	}
	return memcache.SetMulti(ctx, ptrs)
}

// AddMulti is one memcache.AddMulti.
func (Memcache) AddMulti(ctx context.Context, ws []CacheWrite) error {
	its := make([]memcache.Item, len(ws))
	ptrs := make([]*memcache.Item, len(ws))
	for i := range ws {
		its[i] = item(&ws[i])
		ptrs[i] = &its[i]
	}
	return memcache.AddMulti(ctx, ptrs)
}

// CompareAndSwapMulti is one memcache.CompareAndSwapMulti.
func (Memcache) CompareAndSwapMulti(ctx context.Context, ws []CacheWrite) error {
	its := make([]memcache.Item, len(ws))
	ptrs := make([]*memcache.Item, len(ws))
	for i := range ws {
		its[i] = item(&ws[i])
		ptrs[i] = &its[i]
	}
	return memcache.CompareAndSwapMulti(ctx, ptrs)
}
