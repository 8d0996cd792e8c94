package gaesession

import (
	"bytes"
	"time"
)

// Remove does not delete a session's Memcache item: it overwrites it with a
// tombstone, a small marker value that lives longer than any copy of the
// session could still be used. Every later write of a session that a
// request loaded is conditional (a compare-and-swap on the item as loaded,
// or an add), so no request that loaded the session before the logout can
// store it again; Get reads the tombstone as "no session" without asking
// the Datastore.
//
// The Datastore cannot be written conditionally without a transaction, so
// the order of the calls carries the argument instead. Remove writes the
// tombstone first and deletes the entity after it (never in parallel). A
// writer that loaded the session earlier is in one of two positions:
//
//   - Default mode puts the entity first and writes Memcache after the put
//     returned. If that conditional write succeeds, the tombstone was not
//     there yet, so Remove's delete comes later than the put and deletes
//     it. If it fails on the tombstone, the put may have landed after the
//     delete, and the writer deletes the entity itself.
//   - AsyncDatastoreSave and MergeConcurrentUpdates write Memcache first (the
//     response must not wait for the Datastore; merges are decided in
//     Memcache), then put, then read the Memcache item once more. If the put
//     landed after Remove's delete, the tombstone was written before that
//     delete, so this read sees it, and the writer deletes the entity it
//     just put.
//
// Memcache may evict the tombstone itself. A writer that loaded the session
// before the logout and writes after the eviction stores it again, in
// Memcache and possibly in the Datastore; RELIABILITY.md bounds what that
// allows. Every copy such a writer stores carries the writer's own last
// access, so Get drops it at that access plus Timeout at the latest: the
// session can outlive the logout only as long as it would have lived if the
// user had simply stopped using it.
//
// Old instances of the original package, during a rolling deploy, cannot
// decode the tombstone (it is not valid gob, nor JSON): their Get retries
// Memcache, logs the decode error and then asks the Datastore, which Remove
// has emptied, so they answer "no session". An old instance's own writes
// are unconditional sets and do overwrite a tombstone; nothing written by
// this package can prevent that.

// Marker values stored in Memcache in place of a session. The first byte,
// 0xff, makes gob read a message length the value does not have, and is no
// valid start of JSON, so neither codec decodes a marker; this package
// recognises them before decoding.
var (
	// tombstoneValue marks a removed session.
	tombstoneValue = []byte("\xffgaesession:removed")
	// datastoreOnlyValue stands for a session too large for Memcache,
	// whose current version only the Datastore holds. It replaces the
	// session's older, smaller copy (so that copy is no longer served) and
	// is written conditionally like a session, so it never overwrites a
	// tombstone. Old instances cannot decode it either and ask the
	// Datastore, which is what they should do.
	datastoreOnlyValue = []byte("\xffgaesession:datastore-only")
)

// valueKind classifies a Memcache value of a session key.
type valueKind int

const (
	kindSession       valueKind = iota // a session's encoding (or garbage)
	kindRemoved                        // tombstoneValue
	kindDatastoreOnly                  // datastoreOnlyValue
)

func kindOf(v []byte) valueKind {
	switch {
	case bytes.Equal(v, tombstoneValue):
		return kindRemoved
	case bytes.Equal(v, datastoreOnlyValue):
		return kindDatastoreOnly
	}
	return kindSession
}

// tombstoneMargin is how much longer than the session's Timeout a tombstone
// lives: it covers clocks that differ between instances and the whole
// seconds in which Memcache counts.
const tombstoneMargin = time.Minute

// tombstoneTTL is how long the tombstone of a session with the given
// timeout lives. Every copy of the session written by a request that loaded
// it before the logout records an access before the logout, so once the
// tombstone expires, Get drops any such copy as idle. Memcache keeps
// nothing longer than 30 days; for longer timeouts, see RELIABILITY.md.
func tombstoneTTL(timeout time.Duration) time.Duration {
	if timeout < 0 {
		timeout = 0
	}
	if timeout > maxMemcacheTTL-tombstoneMargin {
		return maxMemcacheTTL
	}
	return timeout + tombstoneMargin
}
