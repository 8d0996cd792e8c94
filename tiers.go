package gaesession

import (
	"context"
	"net/http"

	"github.com/icza/gaesession/v2/internal/tier"
	"github.com/icza/session"
)

// The nested module github.com/icza/gaesession/v2/cloud builds this
// package's session core over its own tiers (Redis, Cloud Datastore)
// through these hooks, which nothing outside this module can reach
// (internal/tier says why hooks).
func init() {
	tier.SetHooks(newStoreOver, newPurgeHandler)
	tier.SetLogHookSwapper(logHook.Swap)
}

// newStoreOver is NewMemcacheStoreOptions over the given tiers: cache in
// place of Memcache and durable in place of the bundled Datastore (nil:
// none, as with OnlyMemcache). The store is the one this package's
// functions (SaveError, SessionOrigin, WaitForAsyncSaves) know.
func newStoreOver(ctx context.Context, cache tier.Cache, durable tier.Durable, o *MemcacheStoreOptions) session.Store {
	s := &memcacheStore{
		ctx:     ctx,
		logger:  logger{ctx: ctx},
		cfg:     newConfig(o),
		cache:   cache,
		durable: durable,
	}
	if durable == nil {
		s.cfg.onlyMemcache = true
	}
	s.sessions = s.first[:0]
	return s
}

// newPurgeHandler is PurgeExpiredSessFromDSFuncOptions over the purge tier
// tierFor gives for each request.
func newPurgeHandler(o *PurgeOptions, tierFor func(r *http.Request) (context.Context, tier.Purge[any])) http.HandlerFunc {
	c := newPurgeConfig(o)
	return func(w http.ResponseWriter, r *http.Request) {
		servePurge(c, w, r, tierFor)
	}
}
