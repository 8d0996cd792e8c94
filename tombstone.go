package gaesession

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/icza/gaesession/v2/internal/tier"
)

// A logout is final: once Remove has returned, no Get returns the session
// and no write brings it back, even if Memcache evicts any item at any
// moment (in every mode with a Datastore; OnlyMemcache has no second tier,
// see the end of this comment). Memcache may forget; the Datastore does
// not, so the Datastore carries the removal and Memcache only caches it.
//
// Remove makes three writes, one after the other:
//
//  1. a removal marker in the Datastore: an entity of the session kind
//     whose key name is "removed:" and the ID (removalKey), with an "exp"
//     of the logout plus the session's Timeout and a minute;
//  2. the tombstone in Memcache, a set over whatever is there;
//  3. the delete of the session entity.
//
// Every Datastore lookup of a session reads the marker in the same
// GetMulti as the entity (no extra RPC), and a live marker means "no
// session", whatever the entity says. The marker is written once and only
// the purge deletes it (its "exp" puts it in the purge's query); no write
// of a session touches it, so a put that lands after step 3 cannot undo it.
//
// Memcache is harder: Get serves a session copy from Memcache with one get
// and no Datastore read, so a copy in Memcache must never be written after
// a tombstone. The store keeps this invariant: every session copy in
// Memcache was written before any tombstone of its session, or by an
// instance of the original package (below). It holds because the store
// writes a copy of a session that others may know only in these ways:
//
//   - A compare-and-swap over a session copy the request read. It succeeds
//     only if no write came between that copy and it; the copy predates
//     any tombstone (the invariant), and a tombstone is a write, so the
//     compare-and-swap predates it too.
//   - A compare-and-swap over any other item the request read (a
//     placeholder, below, or a value that is no session), and only after a
//     Datastore lookup made after that read found no marker. If a tombstone
//     had been set before the compare-and-swap, either it came after the
//     read, and the compare-and-swap fails, or before it: then the marker,
//     written before the tombstone, was there for the lookup to see.
//   - A set of a session created by this request (Add of a new session):
//     its ID is known to no one until the response carries the cookie
//     (RELIABILITY.md names the one window, a response streamed before
//     Close).
//
// No add ever writes a session copy, in a mode with a Datastore: an add
// succeeds on an empty key, and a key is empty as well after a tombstone
// is evicted, so an add cannot tell "never removed" from "removed, and
// the tombstone lost". A lookup before the add does not help: the whole
// logout and the eviction may come between the two. Where the store would
// add a copy (a Datastore load after a Memcache miss, a write whose item
// vanished), it adds a placeholder instead (seeDatastoreValue, "the
// Datastore has the current version"), which Get never serves: a Get that
// finds it reads the Datastore, marker included, and replaces the
// placeholder with the copy by the compare-and-swap of the second case. A
// session that Memcache lost therefore costs two Datastore lookups (the
// miss, then the placeholder) instead of one before its copy is back. A
// writer whose item vanished, or that meets a placeholder, in the default
// mode leaves the placeholder (its put came first, so the Datastore has its
// version); with AsyncDatastoreSave or MergeConcurrentUpdates, whose put
// comes later, it adds the placeholder, reads it back for its CAS id, looks
// the marker up, and only then writes its copy.
//
// When a Datastore lookup finds the marker, the store puts the tombstone
// back (compare-and-swap over what it read, or an add, both safe for a
// tombstone), so that a logged-out cookie costs one Memcache get again;
// and if the session entity is there too (a put that landed after
// Remove's delete), it deletes it, so that instances of the original
// package, which never read the marker, do not find it.
//
// The Datastore entity: the marker makes a late put harmless to this
// package; the order of the calls also keeps the entity itself deleted in
// the common cases, for the original package's instances. Remove writes
// the tombstone before it deletes the entity. Default mode puts the entity
// first and writes Memcache after the put returned: if that conditional
// write succeeds, the tombstone was not there yet, so Remove's delete
// comes after the put and deletes it; if the write meets the tombstone or
// the marker, the writer deletes the entity itself. AsyncDatastoreSave and
// MergeConcurrentUpdates write Memcache first (the response must not wait
// for the Datastore; merges are decided in Memcache), then put, then read
// the Memcache item once more: a tombstone there, or a marker found when
// Memcache holds no session copy, makes the writer delete the entity it
// just put.
//
// The marker lives as long as any copy written by a request that loaded
// the session before the logout could: such a copy records that request's
// access, before the logout, plus Timeout, and the marker's "exp" is the
// logout plus Timeout plus tombstoneMargin. A request that writes later
// than its own access plus Timeout writes nothing (the session timed out
// during it).
//
// OnlyMemcache has no second tier: there the store adds copies as before,
// and Memcache alone carries the logout. If Memcache evicts the tombstone
// before a request that loaded the session earlier writes it back, that
// write stores the session again, and readers refresh it like any other
// session; RELIABILITY.md says what that allows and how often it happened.
//
// Old instances of the original package, during a rolling deploy, cannot
// decode the tombstone or the placeholder (neither is valid gob, nor JSON):
// their Get retries Memcache, logs the decode error and then asks the
// Datastore, which Remove has emptied (a placeholder sends them to the
// entity, which is what it stands for). They never read the marker, whose
// key name is no session ID. An old instance's own writes are
// unconditional sets and do overwrite a tombstone; nothing written by this
// package can prevent that.

// Marker values stored in Memcache in place of a session. The first byte,
// 0xff, makes gob read a message length the value does not have, and is no
// valid start of JSON, so neither codec decodes a marker; this package
// recognises them before decoding.
var (
	// tombstoneValue marks a removed session.
	tombstoneValue = []byte("\xffgaesession:removed")
	// seeDatastoreValue is a placeholder: Memcache holds no copy of the
	// session that Get may serve, and the Datastore has the current
	// version. It stands for a session too large for Memcache (replacing
	// its older, smaller copy, so that copy is no longer served), and for
	// a session Memcache lost, in place of the copy that no add may write
	// (see above). The bytes are those of the earlier "datastore-only"
	// marker, which meant the same. Old instances cannot decode it either
	// and ask the Datastore, which is what they should do.
	seeDatastoreValue = []byte("\xffgaesession:datastore-only")
)

// valueKind classifies a Memcache value of a session key.
type valueKind int

const (
	kindSession      valueKind = iota // a session's encoding (or garbage)
	kindRemoved                       // tombstoneValue
	kindSeeDatastore                  // seeDatastoreValue
)

func kindOf(v []byte) valueKind {
	switch {
	case bytes.Equal(v, tombstoneValue):
		return kindRemoved
	case bytes.Equal(v, seeDatastoreValue):
		return kindSeeDatastore
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

// removalKeyPrefix begins the key name of a removal marker. ':' is no
// character of a session ID (see ValidID), so no session entity has such a
// name and the original package, which reads only the key named by the ID,
// never reads a marker.
const removalKeyPrefix = tier.RemovalKeyPrefix

// removalExpiry is the "exp" of the marker of a session with the given
// timeout removed at now: later than the deadline of any copy that a
// request which loaded the session before the logout can write.
func removalExpiry(now time.Time, timeout time.Duration) time.Time {
	if timeout < 0 {
		timeout = 0
	}
	return idleDeadline(now, timeout).Add(tombstoneMargin)
}

// lookupDatastore reads the removal marker of the session id and, if
// entity is set, its entity, in one RPC. An expired marker counts as none.
func (s *memcacheStore) lookupDatastore(ctx context.Context, id string, entity bool) (datastoreLookup, error) {
	var l datastoreLookup
	err := s.retry(ctx, func() (err error) {
		l, err = s.durable.Lookup(ctx, id, entity)
		return err
	})
	if l.Removed() && timeNow().After(l.RemovedUntil) {
		l.RemovedUntil = time.Time{} // expired: the purge deletes it
	}
	return l, err
}

// putRemovalMarker writes the removal marker of the session id.
func (s *memcacheStore) putRemovalMarker(id string, timeout time.Duration) error {
	m := &removalMarker{Expires: removalExpiry(timeNow(), timeout)}
	return s.retry(s.ctx, func() error { return s.durable.PutMarker(s.ctx, id, m) })
}

// restoreTombstone runs when a Datastore lookup found the removal marker
// of the session id: it puts the tombstone back into Memcache, over
// mcItem, what the request read there before the lookup (zero for a miss),
// so that the next Get of the ID costs one Memcache get again; and it
// deletes the session entity if the lookup found one (a put that landed
// after the logout's delete), for the original package's instances, which
// do not read the marker. A failure of either is logged only: the marker
// keeps the session out.
func (s *memcacheStore) restoreTombstone(id string, mcItem cacheRead, l datastoreLookup) {
	now := timeNow()
	tomb := cacheWrite{Key: s.cfg.memcacheKey(id), Value: tombstoneValue, Flags: expiryFlags(l.RemovedUntil), TTL: memcacheTTL(l.RemovedUntil, now)}
	var err error
	if mcItem.Held() {
		tomb.Token = mcItem.Token
		err = s.cache.CompareAndSwap(s.ctx, tomb)
	} else {
		err = s.cache.Add(s.ctx, tomb)
	}
	if err != nil && !errors.Is(err, errCASConflict) && !errors.Is(err, errNotStored) {
		s.logf(levelWarning, "%s: putting the tombstone of a removed session back into memcache failed: %s", logID(id), redact(err, id))
	}
	if l.Entity != nil {
		s.logf(levelInfo, "%s: the datastore holds a copy of a removed session, put after the logout; it is deleted", logID(id))
		if err := s.deleteEntity(s.ctx, id); err != nil {
			s.logf(levelError, "%s: deleting a removed session from the datastore again failed: %s", logID(id), redact(err, id))
		}
	}
}
