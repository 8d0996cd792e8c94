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
