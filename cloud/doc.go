// Package cloud is the session store of github.com/icza/gaesession/v2 on
// Google's Cloud client libraries: Cloud Datastore
// (cloud.google.com/go/datastore, the same Firestore in Datastore mode
// database the bundled Datastore reads) for the durable tier, and Redis
// (Memorystore for Redis or Valkey, through github.com/redis/go-redis/v9)
// or App Engine's bundled Memcache for the cache tier. It stores the same
// entities and cache values as the bundled store, so that both serve the
// same users while an app moves off the bundled services.
//
// NewStore returns the store for one request, over a Cloud Datastore
// client and a Cache: Memcache, Redis, Transition or none. It is the
// session core of github.com/icza/gaesession/v2 itself (tombstones,
// removal markers, change detection, expiry, merges, retries), reached
// through that module's internal package internal/tier, over this
// package's tiers; gaesession's SaveError, SessionOrigin and
// WaitForAsyncSaves work on its stores. PurgeExpiredSessFunc is its purge.
// README's "Moving off the bundled services" gives the steps from the
// bundled store to Cloud Datastore and Redis, and what each guarantees.
//
// It is a module of its own: the Cloud client and go-redis need a newer Go
// than the one the store's package builds on (go.mod of
// github.com/icza/gaesession/v2), and an app that imports only that
// package must not pull them in. The module's tests also hold aelocal's
// Cloud Datastore API against the newest Cloud client; the repository's
// one `go test ./...` runs them (internal/cloudmodule).
package cloud
