package gaesession

import (
	"context"
	"time"

	"google.golang.org/appengine/v2/memcache"
)

// The store is one session core over two tiers: a cache (cacheTier; App
// Engine's bundled Memcache today, memcacheTier in cache_memcache.go) and a
// durable store (durableTier and purgeTier in durable.go; the bundled
// Datastore today, datastoreTier and datastorePurge in
// durable_datastore.go). Tombstones, placeholders, conditional writes,
// change detection, expiry, merges and retries are the core's
// (memcache_store.go, flush.go, datastore_backup.go, tombstone.go,
// conflict.go, merge_datastore.go, expiry.go, changes.go, purge.go); a tier
// moves bytes, one RPC per call, and decides nothing.
// TestCoreUsesServicesOnlyThroughTiers keeps the core off the services'
// packages.
//
// The interfaces are unexported while each has one implementation: the
// second (Redis, Cloud Datastore) is to prove their shape, and lives in a
// nested module, since go-redis and the Cloud client are dependencies this
// module must not pull in. That module reaches the core in one of two
// ways: the core moves to an internal package of this module (the go
// command lets a nested module import it, as gopls imports x/tools'
// internal packages), which keeps the seam out of the public API; or this
// package exports a constructor taking the two tiers and the interfaces
// with their item types. Either way nothing here is an API promise yet.
// Two details change then: durableTier.putMulti takes the core's dsWrite
// (so that the bundled tier builds its key and entity slices exactly as the
// store did before the seam, without a slice more), and the errors are
// memcache's and datastore's sentinels, which a Redis tier can return as
// well, since this module already depends on appengine/v2.
//
// The seam costs no allocation and no RPC: the tiers are held in the store
// (memcacheTier has no state, datastoreTier is a field the durableTier
// points to), items travel by value, the batch of one lives in the store
// (writeBuf), and calls that would make a slice escape through an interface
// have a form for one item (cacheTier.get after a put, durableTier.delete).
// allocs_test.go and the per-step RPC tables of gaesession_test.go assert
// it.
//
// # How a Redis tier maps onto cacheTier
//
// Keys: the core's (memcacheKey: KeyPrefix plus ID, hashed past 250
// bytes), so that during a migration both caches hold a session under one
// name. A key holds a hash: "v", the very bytes Memcache holds (a session's
// encoding, tombstoneValue or seeDatastoreValue, byte for byte: a tier
// never re-encodes them, so both caches and both codecs agree on what a
// marker is); "f", the flags in decimal (expiryFlags: the idle deadline in
// Unix seconds); "n", the write's token. Expiration becomes the key's TTL
// (PEXPIRE, whole milliseconds; PERSIST for none); the core already caps
// TTLs at Memcache's 30 days (maxMemcacheTTL), so a tombstone ends at the
// same moment in both caches.
//
// Redis has no CAS ids; "n" stands in for one. It must be fresh and random
// for every write (the tier draws it, say 96 bits), not a per-key counter:
// a counter restarts when the key is evicted and written again (a
// placeholder added after a tombstone was evicted), and a compare-and-swap
// over a token read before the logout would then match (ABA). Memcache's
// CAS ids are unique for the same reason. get is one HGETALL; its token is
// "n". Every write is one EVALSHA of one Lua script (go-redis's Script.Run
// falls back to EVAL once if the server lost it), atomic on the server:
// mode "add" answers "notstored" (errNotStored) if the key holds anything;
// mode "cas" answers "notstored" if the key is gone and "conflict"
// (errCASConflict) if "n" is not the token; otherwise, and always in mode
// "set", it writes v, f, a new n and the TTL. One round trip per
// conditional write, as Memcache's; and a set (a logout's tombstone) makes
// every compare-and-swap over an earlier read fail. The batch calls are
// pipelines of the same commands, one round trip; their errors an
// appengine.MultiError with one element per item, in order. A miss is
// errCacheMiss. This script and these answers (miss, add, add again, cas,
// cas over an old read, the tombstone's set, cas after it, cas after an
// eviction, cas with a token from before the eviction, marker and session
// bytes with 0x00 and 0xff kept exactly, flags and TTL) were checked
// against redis-server 7.0.15 with go-redis v9.23.0 in a scratch program,
// outside this module. The core's retry policy (retryable) knows App
// Engine's API errors and retries anything else, which suits a Redis
// connection error; a Redis timeout (a net.Error whose Timeout() is true)
// is not to be retried, as App Engine's are not, so the tier returns it
// wrapped in an error with an IsTimeout() bool method, which
// appengine.IsTimeoutError recognises.
//
// Old instances of the original package read only Memcache, so during a
// move from Memcache to Redis the transition tier (issue 23 step b) is a
// cacheTier over both: get from Redis then Memcache, writes and
// invalidations to both, its token a pair.

// Errors a cacheTier reports, compared with errors.Is: memcache's own, so
// that the bundled tier passes the client's errors through unchanged.
var (
	errCacheMiss   = memcache.ErrCacheMiss   // get: nothing under the key
	errNotStored   = memcache.ErrNotStored   // add: the key holds a value; compare-and-swap: the key is gone
	errCASConflict = memcache.ErrCASConflict // compare-and-swap: written since the read
)

// cacheRead is what a cache read found under a key. The zero value is a
// miss.
type cacheRead struct {
	value []byte
	flags uint32
	// token identifies the version read, for a compare-and-swap over it;
	// non-nil for every item found. Memcache's is the *memcache.Item the
	// client returned (it carries the unexported CAS id); a Redis tier's
	// would be the version counter.
	token any
}

// held tells whether the read found an item.
func (r cacheRead) held() bool { return r.token != nil }

// cacheWrite is one value to write under a key.
type cacheWrite struct {
	key   string
	value []byte
	flags uint32        // expiryFlags of the stored deadline
	ttl   time.Duration // 0: no expiry (the core always sets one)
	// token is the cacheRead.token a compare-and-swap is conditional on;
	// unused by set and add.
	token any
}

// cacheTier is the store's cache: get with a compare token, conditional
// writes, and the batch forms the store uses. Each call is one round trip
// and is not retried (the core retries). A batch call's error is nil, or
// an appengine.MultiError with one element per item in order, or an error
// of the whole call.
type cacheTier interface {
	// get reads key; errCacheMiss if nothing is there.
	get(ctx context.Context, key string) (cacheRead, error)
	// getMulti reads keys in one call into into[i] (left zero on a miss).
	getMulti(ctx context.Context, keys []string, into []*cacheRead) error
	// set writes unconditionally.
	set(ctx context.Context, w cacheWrite) error
	setMulti(ctx context.Context, ws []cacheWrite) error
	// add writes only where nothing is stored (else errNotStored).
	add(ctx context.Context, w cacheWrite) error
	addMulti(ctx context.Context, ws []cacheWrite) error
	// compareAndSwap writes only if the key still holds the version of
	// w.token (errCASConflict if it changed, errNotStored if it is gone).
	compareAndSwap(ctx context.Context, w cacheWrite) error
	compareAndSwapMulti(ctx context.Context, ws []cacheWrite) error
}
