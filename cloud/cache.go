package cloud

import "github.com/icza/gaesession/v2/internal/tier"

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
