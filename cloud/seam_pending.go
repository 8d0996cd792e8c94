package cloud

import (
	"context"
	"time"

	"google.golang.org/appengine/v2/memcache"
)

// Until the core's tier interfaces move to an internal package of the root
// module (issue 23, the cloudstore branch), this file mirrors them
// (cache.go of github.com/icza/gaesession/v2) so that the Redis tier can be
// written and tested against real servers. It goes when the seam lands.

var (
	errCacheMiss   = memcache.ErrCacheMiss
	errNotStored   = memcache.ErrNotStored
	errCASConflict = memcache.ErrCASConflict
)

type cacheRead struct {
	value []byte
	flags uint32
	token any
}

func (r cacheRead) held() bool { return r.token != nil }

type cacheWrite struct {
	key   string
	value []byte
	flags uint32
	ttl   time.Duration
	token any
}

type cacheTier interface {
	get(ctx context.Context, key string) (cacheRead, error)
	getMulti(ctx context.Context, keys []string, into []*cacheRead) error
	set(ctx context.Context, w cacheWrite) error
	setMulti(ctx context.Context, ws []cacheWrite) error
	add(ctx context.Context, w cacheWrite) error
	addMulti(ctx context.Context, ws []cacheWrite) error
	compareAndSwap(ctx context.Context, w cacheWrite) error
	compareAndSwapMulti(ctx context.Context, ws []cacheWrite) error
}

const maxCacheTTL = 30 * 24 * time.Hour

// memcacheTier mirrors the core's (cache_memcache.go) until the seam
// exports it.
type memcacheTier struct{}

func mcRead(it *memcache.Item) cacheRead {
	return cacheRead{value: it.Value, flags: it.Flags, token: it}
}

func (memcacheTier) get(ctx context.Context, key string) (cacheRead, error) {
	it, err := memcache.Get(ctx, key)
	if err != nil {
		return cacheRead{}, err
	}
	return mcRead(it), nil
}

func (memcacheTier) getMulti(ctx context.Context, keys []string, into []*cacheRead) error {
	items, err := memcache.GetMulti(ctx, keys)
	if err != nil {
		return err
	}
	for i, k := range keys {
		if it := items[k]; it != nil {
			*into[i] = mcRead(it)
		}
	}
	return nil
}

func mcItem(w *cacheWrite) *memcache.Item {
	var it memcache.Item
	if cur, ok := w.token.(*memcache.Item); ok {
		it = *cur
		it.Object = nil
	}
	it.Key, it.Value, it.Flags, it.Expiration = w.key, w.value, w.flags, w.ttl
	return &it
}

func mcItems(ws []cacheWrite) []*memcache.Item {
	its := make([]*memcache.Item, len(ws))
	for i := range ws {
		its[i] = mcItem(&ws[i])
	}
	return its
}

func (memcacheTier) set(ctx context.Context, w cacheWrite) error {
	return memcache.Set(ctx, mcItem(&w))
}
func (memcacheTier) add(ctx context.Context, w cacheWrite) error {
	return memcache.Add(ctx, mcItem(&w))
}
func (memcacheTier) compareAndSwap(ctx context.Context, w cacheWrite) error {
	return memcache.CompareAndSwap(ctx, mcItem(&w))
}
func (memcacheTier) setMulti(ctx context.Context, ws []cacheWrite) error {
	return memcache.SetMulti(ctx, mcItems(ws))
}
func (memcacheTier) addMulti(ctx context.Context, ws []cacheWrite) error {
	return memcache.AddMulti(ctx, mcItems(ws))
}
func (memcacheTier) compareAndSwapMulti(ctx context.Context, ws []cacheWrite) error {
	return memcache.CompareAndSwapMulti(ctx, mcItems(ws))
}

var (
	tombstoneValue    = []byte("\xffgaesession:removed")
	seeDatastoreValue = []byte("\xffgaesession:datastore-only")
)
