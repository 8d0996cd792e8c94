package gaesession

import "github.com/icza/gaesession/v2/internal/tier"

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
// maps to "not found" as datastoreTier's does (the Cloud tier returns
// tier.ErrNoSuchEntity, the bundled client's, for it). put, putMulti,
// delete, deleteMulti and markers are the client's Put, PutMulti, Delete,
// DeleteMulti and GetMulti.
// runInTransaction differs in shape: the Cloud client's transaction is a
// *Transaction, not a context, so the Cloud tier puts it into the context
// it passes to f and its lookup and put use it when they find it there.
// Firestore in Datastore mode has no entity-group limit, so XG is moot.
// purgeTier is a keys-only query on "exp" < cutoff with Limit n, continued
// from the iterator's cursor (Query.Start), and DeleteMulti of the keys.

// The core's names for the seam's types (package internal/tier; see
// cache.go).
type (
	durableTier     = tier.Durable
	datastoreLookup = tier.Lookup
	// savedEntity is SessEntity as every durable tier stores it (see
	// tier.Entity); the bundled tier saves it without the reflection of
	// datastore.SaveStruct (dsEntity).
	savedEntity   = tier.Entity
	removalMarker = tier.Marker
	// dsWrite is one session entity to put, and the outcome of the put.
	// The Datastore stage of a flush works on these copies, so that an
	// asynchronous save shares nothing with the request.
	dsWrite = tier.EntityWrite
)

// errNoSuchEntity is how a durableTier reports a missing entity (in a
// MultiError, for a batch), compared with errors.Is.
var errNoSuchEntity = tier.ErrNoSuchEntity
