// Package tier is the seam of the session store of
// github.com/icza/gaesession/v2: the interfaces of its two tiers, a cache
// (Cache) and a durable store (Durable, Purge), the values that cross them,
// and the hooks through which code outside the store's package builds a
// store over tiers of its own (hooks.go).
//
// The store's package keeps the session core (tombstones, change
// detection, expiry, merges, retries) and refers to these types through
// aliases, so the core reads as before; the tiers move bytes, one RPC per
// call, and decide nothing. The nested module github.com/icza/gaesession/v2/cloud
// implements them on Redis and Cloud Datastore; the go command lets it
// import this package, and being internal, nothing here is an API promise:
// the seam may change with its two users.
//
// The errors a tier reports are the bundled services' sentinels
// (ErrCacheMiss, ...), compared with errors.Is, so that the bundled tiers
// pass the client's errors through unchanged and the others return the
// same values. A batch call's error is nil, or an appengine.MultiError with
// one element per item in order, or an error of the whole call. The core
// retries an error unless another attempt cannot fix it: besides App
// Engine's own, an error is final if it has a method Permanent() bool that
// answers true (found by errors.As), or IsTimeout() bool that answers true
// (on the error itself, as appengine.IsTimeoutError looks for it: a
// timeout is not retried, as App Engine's are not).
package tier

import (
	"context"
	"time"

	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// Errors a Cache reports, compared with errors.Is.
var (
	ErrCacheMiss   = memcache.ErrCacheMiss   // Get: nothing under the key
	ErrNotStored   = memcache.ErrNotStored   // Add: the key holds a value; CompareAndSwap: the key is gone
	ErrCASConflict = memcache.ErrCASConflict // CompareAndSwap: written since the read
)

// ErrNoSuchEntity is how a Durable reports a missing entity (in a
// MultiError, for a batch), compared with errors.Is.
var ErrNoSuchEntity = datastore.ErrNoSuchEntity

// CacheRead is what a cache read found under a key. The zero value is a
// miss.
type CacheRead struct {
	Value []byte
	Flags uint32
	// Token identifies the version read, for a compare-and-swap over it;
	// non-nil for every item found. Memcache's is the *memcache.Item the
	// client returned (it carries the unexported CAS id); a Redis tier's is
	// the token its write drew.
	Token any
}

// Held tells whether the read found an item.
func (r CacheRead) Held() bool { return r.Token != nil }

// CacheWrite is one value to write under a key.
type CacheWrite struct {
	Key   string
	Value []byte
	Flags uint32        // the idle deadline in Unix seconds (the core's expiryFlags)
	TTL   time.Duration // 0: no expiry (the core always sets one, at most 30 days)
	// Token is the CacheRead.Token a compare-and-swap is conditional on;
	// unused by Set and Add.
	Token any
}

// Cache is the store's cache: get with a compare token, conditional
// writes, and the batch forms the store uses. Each call is one round trip
// and is not retried (the core retries). A tier stores the values it is
// given byte for byte: session encodings and the core's markers alike.
type Cache interface {
	// Get reads key; ErrCacheMiss if nothing is there.
	Get(ctx context.Context, key string) (CacheRead, error)
	// GetMulti reads keys in one call into into[i] (left zero on a miss).
	GetMulti(ctx context.Context, keys []string, into []*CacheRead) error
	// Set writes unconditionally.
	Set(ctx context.Context, w CacheWrite) error
	SetMulti(ctx context.Context, ws []CacheWrite) error
	// Add writes only where nothing is stored (else ErrNotStored).
	Add(ctx context.Context, w CacheWrite) error
	AddMulti(ctx context.Context, ws []CacheWrite) error
	// CompareAndSwap writes only if the key still holds the version of
	// w.Token (ErrCASConflict if it changed, ErrNotStored if it is gone).
	CompareAndSwap(ctx context.Context, w CacheWrite) error
	CompareAndSwapMulti(ctx context.Context, ws []CacheWrite) error
}

// Entity is the session entity as every durable tier stores it, the
// properties that the bundled datastore.SaveStruct makes of the store's
// SessEntity: "exp", a timestamp, indexed (the purge queries it); "val",
// the session's encoding, unindexed bytes. Its key is a named key without
// parent, kind the store's DSEntityName, name the session ID. The bundled
// store, the original package and a Cloud Datastore tier read one
// another's entities.
type Entity struct {
	Expires time.Time `datastore:"exp"`
	Value   []byte    `datastore:"val,noindex"`
}

// Marker is the entity of a removal marker (see the store's tombstone.go):
// key name RemovalKeyPrefix and the session ID, in the session kind; only
// "exp", indexed, which the purge queries.
type Marker struct {
	Expires time.Time `datastore:"exp"`
}

// RemovalKeyPrefix begins the key name of a removal marker. ':' is no
// character of a session ID, so no session entity has such a name.
const RemovalKeyPrefix = "removed:"

// Lookup is what one lookup of a session found.
type Lookup struct {
	Entity *Entity // nil if there is none (or it was not asked for)
	// RemovedUntil is the "exp" of the removal marker, zero if there is
	// none. The tier reports it as stored; the core decides whether it
	// has passed.
	RemovedUntil time.Time
}

// Removed tells whether the lookup found a removal marker.
func (l Lookup) Removed() bool { return !l.RemovedUntil.IsZero() }

// EntityWrite is one session entity a flush puts, and the outcome of the
// put; the core's dsWrite. A Durable reads ID and Entity of the writes
// whose Merge is nil (PutMulti) and nothing else: the other fields are the
// core's, held here so that a batch of them crosses the seam as one slice.
type EntityWrite struct {
	ID     string // the session ID
	Entity Entity

	Key   string    // the cache key
	Check bool      // read the cache after the put (see the core's saveDatastore)
	Err   error     // the put failed
	After CacheRead // what that read found

	// Merge is set (to the core's *attrChanges) for a merged session too
	// large for the cache, which cannot arbitrate between concurrent
	// writers: the core puts it by itself in a transaction that merges
	// again if the Datastore no longer holds MergeBase.
	Merge     any
	MergeBase []byte
}

// Durable is the store's durable tier: session entities and removal
// markers, in one kind. Each call is one RPC (or one transaction) and is
// not retried (the core retries); a missing entity is ErrNoSuchEntity.
type Durable interface {
	// Lookup reads the removal marker of the session id and, if entity is
	// set, its entity, in one call.
	Lookup(ctx context.Context, id string, entity bool) (Lookup, error)
	// Markers reads the removal markers of ids in one call; the
	// MultiError tells which are missing.
	Markers(ctx context.Context, ids []string) ([]Marker, error)
	// PutMarker writes the removal marker of the session id.
	PutMarker(ctx context.Context, id string, m *Marker) error
	// Put writes one session entity.
	Put(ctx context.Context, id string, ent *Entity) error
	// PutMulti writes the entity of every write of writes whose Merge is
	// nil, in one call; a MultiError has one element per such write.
	PutMulti(ctx context.Context, writes []EntityWrite) error
	// Delete deletes the entity of the session id, DeleteMulti those of
	// ids.
	Delete(ctx context.Context, id string) error
	DeleteMulti(ctx context.Context, ids []string) error
	// RunInTransaction runs f in one transaction over the tier; the calls
	// above made with tc belong to it. It may run f more than once.
	RunInTransaction(ctx context.Context, f func(tc context.Context) error) error
}

// Purge is the durable tier's side of the purge, over the tier's key type
// K, which the purge only passes back: keys-only queries of the entities
// of the session kind whose "exp" is before a cutoff, and deletes by key.
// The query's state (its cursor) is the tier's; one value serves one run.
type Purge[K any] interface {
	// Start sets up the run's query: entities whose "exp" is before
	// cutoff, in batches of up to n keys.
	Start(cutoff time.Time, n int)
	// Next returns the next batch; a batch shorter than n is the last.
	// Each batch goes on after the previous one (from its cursor), so
	// that keys whose delete failed are not fetched again: a run visits
	// every expired entity once.
	Next(ctx context.Context) ([]K, error)
	// DeleteKeys deletes the entities of keys in one call. It may run
	// while Next fetches the following batch.
	DeleteKeys(ctx context.Context, keys []K) error
	// Name is the key's name (a session ID, or a removal marker's name),
	// which logs replace with its LogID.
	Name(k K) string
}
