package gaesession

import (
	"context"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// # How Cloud Datastore maps onto durableTier
//
// The same entities, so that the bundled store, the original package and
// a tier on cloud.google.com/go/datastore read one another's: kind
// DSEntityName; a named key without parent whose name is the session ID,
// in the namespace the App Engine context names (the default one unless
// the app sets one); properties "exp" (a timestamp, indexed) and "val"
// (bytes, unindexed: tag `datastore:"val,noindex"`, since the Cloud client
// indexes byte slices unless told not to, and an indexed value is limited
// to 1500 bytes), as savedEntity saves them. The removal marker is in the
// same kind, key name removalKeyPrefix+ID, one indexed "exp", so that one
// purge query finds expired sessions and markers alike. Both clients store
// times to the microsecond.
//
// lookup is one GetMulti of the marker key and the entity key; the Cloud
// client's MultiError with datastore.ErrNoSuchEntity for a missing one
// maps to "not found" as datastoreTier's does (the Cloud tier returns this
// package's errNoSuchEntity for it). put, putMulti, delete, deleteMulti and
// markers are the client's Put, PutMulti, Delete, DeleteMulti and GetMulti.
// runInTransaction differs in shape: the Cloud client's transaction is a
// *Transaction, not a context, so the Cloud tier puts it into the context
// it passes to f and its lookup and put use it when they find it there.
// Firestore in Datastore mode has no entity-group limit, so XG is moot.
// purgeTier is a keys-only query on "exp" < cutoff with Limit n, continued
// from the iterator's cursor (Query.Start), and DeleteMulti of the keys.

// durableTier is the store's durable tier: session entities and removal
// markers (see tombstone.go), in one kind. Each call is one RPC (or one
// transaction) and is not retried (the core retries). A batch call's error
// is nil, or an appengine.MultiError with one element per key in order,
// or an error of the whole call; a missing entity is
// errNoSuchEntity.
type durableTier interface {
	// lookup reads the removal marker of the session id and, if entity is
	// set, its entity, in one call. An expired marker counts as none.
	lookup(ctx context.Context, id string, entity bool) (datastoreLookup, error)
	// markers reads the removal markers of ids in one call; the
	// MultiError tells which are missing.
	markers(ctx context.Context, ids []string) ([]removalMarker, error)
	// putMarker writes the removal marker of the session id.
	putMarker(ctx context.Context, id string, m *removalMarker) error
	// put writes one session entity.
	put(ctx context.Context, id string, ent *savedEntity) error
	// putMulti writes the entity of every write of writes whose merge is
	// nil (the others go through a transaction, see putMerged) in one
	// call; a MultiError has one element per such write.
	putMulti(ctx context.Context, writes []dsWrite) error
	// delete deletes the entity of the session id, deleteMulti those of
	// ids.
	delete(ctx context.Context, id string) error
	deleteMulti(ctx context.Context, ids []string) error
	// runInTransaction runs f in one transaction over the tier; the calls
	// above made with tc belong to it.
	runInTransaction(ctx context.Context, f func(tc context.Context) error) error
}

// savedEntity is SessEntity as the store puts it: the properties that
// datastore.SaveStruct makes of a SessEntity ("exp" indexed; "val"
// unindexed, as every []byte is), without the reflection that costs. Every
// durable tier stores these properties, under these names and types, so
// that the bundled store, the original package and a Cloud Datastore tier
// read one another's entities.
type savedEntity SessEntity

// errNoSuchEntity is how a durableTier reports a missing entity (in a
// MultiError, for a batch), compared with errors.Is.
var errNoSuchEntity = datastore.ErrNoSuchEntity

// datastoreLookup is what one lookup of a session found.
type datastoreLookup struct {
	entity       *SessEntity // nil if there is none (or it was not asked for)
	removedUntil time.Time   // "exp" of a live removal marker; zero if none
}

func (l datastoreLookup) removed() bool { return !l.removedUntil.IsZero() }

// purgeTier is the durable tier's side of the purge (purge.go), over the
// tier's key type K, which the purge only passes back: keys-only queries
// of the entities of the session kind whose "exp" is before a cutoff, and
// deletes by key. The query's state (its cursor) is the tier's; one value
// serves one run.
type purgeTier[K any] interface {
	// start sets up the run's query: entities whose "exp" is before
	// cutoff, in batches of up to n keys.
	start(cutoff time.Time, n int)
	// next returns the next batch; a batch shorter than n is the last.
	// Each batch goes on after the previous one (from its cursor), so
	// that keys whose delete failed are not fetched again: a run visits
	// every expired entity once.
	next(ctx context.Context) ([]K, error)
	// deleteKeys deletes the entities of keys in one call.
	deleteKeys(ctx context.Context, keys []K) error
	// name is the key's name (a session ID, or a removal marker's name),
	// which logs replace with its LogID.
	name(k K) string
}
