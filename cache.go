package gaesession

import "github.com/icza/gaesession/v2/internal/tier"

// The store is one session core over two tiers: a cache (cacheTier; App
// Engine's bundled Memcache here, tier.Memcache in internal/tier) and a
// durable store (durableTier and purgeTier in durable.go; the bundled
// Datastore here, datastoreTier and datastorePurge in
// durable_datastore.go). Tombstones, placeholders, conditional writes,
// change detection, expiry, merges and retries are the core's
// (memcache_store.go, flush.go, datastore_backup.go, tombstone.go,
// conflict.go, merge_datastore.go, expiry.go, changes.go, purge.go); a tier
// moves bytes, one RPC per call, and decides nothing.
// TestCoreUsesServicesOnlyThroughTiers keeps the core off the services'
// packages.
//
// The tiers' interfaces and the values that cross them live in the
// internal package internal/tier, which the nested module
// github.com/icza/gaesession/v2/cloud imports (the go command allows it
// across the module boundary, as gopls imports x/tools' internal
// packages): its Redis and Cloud Datastore tiers implement them, and it
// builds the core over its tiers through the hooks this package sets in
// its init (tiers.go). Being internal, nothing of the seam is an API
// promise. The core names the types by aliases (below, and in durable.go),
// so its code is that of before the move but for the exported names the
// other package requires (Value, Get, ...). Two details of the seam:
// Durable.PutMulti takes the core's dsWrite (tier.EntityWrite), so that
// the bundled tier builds its key and entity slices exactly as the store
// did before the seam, without a slice more; and the errors are memcache's
// and datastore's sentinels, which a Redis tier returns as well, since
// this module already depends on appengine/v2. The bundled Memcache tier is
// tier.Memcache, in that package too, so that the nested module's
// transition tier (Redis and Memcache) and its stores on Cloud Datastore
// and Memcache use the very same one.
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
// CAS ids are unique for the same reason. get is one HMGET of v, f and n
// (a fixed reply, no map); its token is "n". Every write is one EVALSHA of one Lua script (go-redis's Script.Run
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
// bytes with 0x00 and 0xff kept exactly, flags and TTL) are tested
// against a real redis-server and miniredis (cloud/redis_tier_test.go; the
// tier is cloud/redis_tier.go). The core's retry policy (retryable) knows App
// Engine's API errors and retries anything else, which suits a Redis
// connection error; a Redis timeout (a net.Error whose Timeout() is true)
// is not to be retried, as App Engine's are not, so the tier returns it
// wrapped in an error with an IsTimeout() bool method, which
// appengine.IsTimeoutError recognises.
//
// Old instances of the original package read only Memcache, so during a
// move from Memcache to Redis the transition tier (issue 23 step b) is a
// cacheTier over both: get from Redis then Memcache, writes and
// invalidations to both, its token a pair (cloud/transition.go argues why
// neither cache serves a stale copy).

// The core's names for the seam's types (package internal/tier), so that
// its code reads as before the seam moved there.
type (
	cacheTier  = tier.Cache
	cacheRead  = tier.CacheRead
	cacheWrite = tier.CacheWrite
)

// Errors a cacheTier reports, compared with errors.Is: memcache's own, so
// that the bundled tier passes the client's errors through unchanged.
var (
	errCacheMiss   = tier.ErrCacheMiss   // get: nothing under the key
	errNotStored   = tier.ErrNotStored   // add: the key holds a value; compare-and-swap: the key is gone
	errCASConflict = tier.ErrCASConflict // compare-and-swap: written since the read
)
