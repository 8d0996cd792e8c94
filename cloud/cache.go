package cloud

import (
	"context"

	"github.com/icza/gaesession/v2/internal/tier"
	"google.golang.org/appengine/v2"
)

// Cache is the cache tier of a Cloud store: Memcache, App Engine's bundled
// Memcache (for an app that moves the Datastore first); Redis, Memorystore
// for Redis or Valkey; Transition, both at once while the cache moves; or
// the zero Cache for none. Every one holds the same bytes under the same
// keys as the bundled store's Memcache, so stores of either kind share
// it.
type Cache struct {
	tier tier.Cache // nil: none
}

// Memcache returns App Engine's bundled Memcache as a Cloud store's cache.
// The store's context must then be an App Engine one (appengine.NewContext
// of the request), and the App Engine app must have the bundled services
// enabled (app_engine_apis: true).
func Memcache() Cache { return Cache{tier: tier.Memcache{}} }

// noCache is the zero Cache: it holds nothing. Reads miss, and writes
// succeed without storing (a compare-and-swap finds its item gone), so the
// core reads the Datastore for every session, marker included, and its
// default mode (put first) stores every change there; see NewStore.
type noCache struct{}

var _ tier.Cache = noCache{}

func (noCache) Get(context.Context, string) (tier.CacheRead, error) {
	return tier.CacheRead{}, tier.ErrCacheMiss
}
func (noCache) GetMulti(context.Context, []string, []*tier.CacheRead) error { return nil }
func (noCache) Set(context.Context, tier.CacheWrite) error                  { return nil }
func (noCache) SetMulti(context.Context, []tier.CacheWrite) error           { return nil }
func (noCache) Add(context.Context, tier.CacheWrite) error                  { return nil }
func (noCache) AddMulti(context.Context, []tier.CacheWrite) error           { return nil }
func (noCache) CompareAndSwap(context.Context, tier.CacheWrite) error {
	return tier.ErrNotStored
}
func (noCache) CompareAndSwapMulti(_ context.Context, ws []tier.CacheWrite) error {
	me := make(appengine.MultiError, len(ws))
	for i := range me {
		me[i] = tier.ErrNotStored
	}
	return me
}
