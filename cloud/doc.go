// Package cloud is the session store of github.com/icza/gaesession/v2 on
// Google's Cloud client libraries: Cloud Datastore
// (cloud.google.com/go/datastore, the same Firestore in Datastore mode
// database the bundled Datastore reads) for the durable tier, and Redis
// (Memorystore for Redis or Valkey, through github.com/redis/go-redis/v9)
// or App Engine's bundled Memcache for the cache tier. It stores the same
// entities and cache values as the bundled store, so that both serve the
// same users while an app moves off the bundled services.
//
// It is a module of its own: the Cloud client and go-redis need a newer Go
// than the one the store's package builds on (go.mod of
// github.com/icza/gaesession/v2), and an app that imports only that
// package must not pull them in. The module's tests also hold aelocal's
// Cloud Datastore API against the newest Cloud client; the repository's
// one `go test ./...` runs them (cmd/aelocal/cloud_test.go).
package cloud
