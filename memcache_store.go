package gaesession

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/icza/session"
	"google.golang.org/appengine/v2"
)

// timeNow is the store's clock; tests move it together with aelocal's.
var timeNow = time.Now

// Origin tells where a store found a session during the current request.
type Origin string

// Origins reported by SessionOrigin.
const (
	OriginNone         Origin = ""              // not accessed through this store
	OriginNew          Origin = "new"           // added with Add in this request
	OriginRequestCache Origin = "request cache" // already loaded earlier in this request
	OriginMemcache     Origin = "memcache"
	OriginDatastore    Origin = "datastore" // Memcache missed; the Datastore backup had it
)

// SessionOrigin reports where store found the session with the given ID on
// its latest Get (or OriginNew after Add). It is meant for diagnostics and
// demos; store must come from NewMemcacheStore or NewMemcacheStoreOptions.
func SessionOrigin(store session.Store, id string) Origin {
	s, ok := store.(*memcacheStore)
	if !ok {
		return OriginNone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entry(id); e != nil {
		return e.origin
	}
	return OriginNone
}

// memcacheStore is a session.Store for one request: Memcache first, the
// Datastore as backup.
type memcacheStore struct {
	ctx context.Context
	cfg config
	logger

	// The tiers the core works through (cache.go, durable.go). durable
	// points to dsTier, held in the store so that it costs no allocation.
	cache   cacheTier
	durable durableTier
	dsTier  datastoreTier
	// writeBuf is room for the one item of a request's batch write, so
	// that a batch of one costs no slice (cacheWrites).
	writeBuf [1]cacheWrite

	mu sync.Mutex
	// sessions were accessed in this request and are written on Close if
	// need be. A request uses one session as a rule, so they are kept in a
	// slice, at first in room inside the store, rather than in a map.
	sessions []*entry
	first    [1]*entry
	absent   map[string]bool // removed or not found in this request
	closed   bool

	failure failureRecord // for SaveError

	// lastAsyncSave is closed when the store's latest asynchronous
	// Datastore save has finished; the next one waits for it.
	lastAsyncSave chan struct{}
}

// entry is a session accessed through the store, with what is needed to
// decide on Close whether it must be written back, and how.
type entry struct {
	id           string
	sess         session.Session
	origin       Origin
	newUnwritten bool // new in this request and not yet written: written unconditionally
	// existing: Get loaded the session, so other requests know its ID and
	// may log it out at any time; every write of it is conditional, even
	// after Add and after a first write in this request.
	existing bool

	// accessed is when this request accessed the session, by the store's
	// clock: the next stored copy records it.
	accessed time.Time

	// loaded is the encoding the session was read from (or last written
	// as). storedExp is the idle deadline its stored copy records (zero
	// if unknown, as for items written by the original package).
	loaded    []byte
	storedExp time.Time

	// print is the print of the attributes as loaded or last written, the
	// baseline of change detection (see changes.go); nil if none was
	// taken, because the session is written on Close anyway, or none
	// could be made.
	print []byte

	// casItem is the Memcache item as loaded (the session's copy, or a
	// placeholder or an undecodable value read before the Datastore
	// lookup that found no removal marker), the basis of the
	// compare-and-swap that writes the session back. rereadFirst is set
	// when Memcache holds something this request has no CAS id for (what
	// its refill wrote, or an item it read after its Datastore lookup): a
	// write reads it first.
	casItem     cacheRead
	rereadFirst bool

	// written is set once the store has written the session in this
	// request; timedOut once it turned out to be past its idle deadline,
	// which no write can fix.
	written  bool
	timedOut bool
}

// Get is to implement session.Store.Get. It returns nil for an unknown,
// removed, timed-out, malformed or undecodable session.
//
// Important! Since sessions are marshalled and stored in Memcache, the
// mutex of the Session (Session.Mutex()) differs between Session values,
// even with the same session ID.
func (s *memcacheStore) Get(id string) session.Session {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.closed {
		// The original package served these silently; their changes are
		// never saved, which an app would rather hear about.
		s.logf(levelWarning, "%s: Get after Close: changes made to the session from now on are not saved", logID(id))
	}
	if e := s.entry(id); e != nil {
		if e.origin != OriginNew {
			e.origin = OriginRequestCache
		}
		return e.sess
	}
	if s.absent[id] || !ValidID(id) {
		return nil
	}

	e := s.load(id)
	if e == nil {
		// Asking again in this request would cost the same RPCs for the
		// same answer.
		s.markAbsent(id)
		return nil
	}
	e.existing = true
	now := timeNow()
	if s.cfg.merge || !s.writeDue(e, now) {
		// Taken before the app can change anything.
		withAttrs(e.sess, func(attrs map[string]interface{}) {
			e.print = printAttrs(attrs, len(e.loaded))
		})
	}
	e.sess.Access()
	e.accessed = now
	s.setEntry(e)
	return e.sess
}

// entry returns the session with the given ID accessed in this request,
// nil if there is none.
func (s *memcacheStore) entry(id string) *entry {
	for _, e := range s.sessions {
		if e.id == id {
			return e
		}
	}
	return nil
}

// setEntry remembers e for the rest of the request, in place of any other
// entry of its session.
func (s *memcacheStore) setEntry(e *entry) {
	for i, x := range s.sessions {
		if x.id == e.id {
			s.sessions[i] = e
			return
		}
	}
	s.sessions = append(s.sessions, e)
}

// dropEntry forgets the session with the given ID.
func (s *memcacheStore) dropEntry(id string) {
	for i, x := range s.sessions {
		if x.id == id {
			s.sessions = slices.Delete(s.sessions, i, i+1)
			return
		}
	}
}

// markAbsent remembers that the session does not exist for this request.
func (s *memcacheStore) markAbsent(id string) {
	if s.absent == nil {
		s.absent = make(map[string]bool, 1)
	}
	s.absent[id] = true
}

// load finds a session in Memcache or, failing that, in the Datastore.
func (s *memcacheStore) load(id string) *entry {
	item := s.getMemcache(id)
	if item.Held() {
		switch kindOf(item.Value) {
		case kindRemoved:
			// Logged out: the Datastore is not asked, whatever it
			// still holds.
			return nil
		case kindSession:
			if e, ok := s.fromMemcache(id, item); ok {
				return e
			}
		}
	}
	if s.cfg.onlyMemcache {
		return nil
	}
	return s.loadDatastore(id, item)
}

// getMemcache reads the Memcache item of a session; none on a miss or a
// failure (the Datastore may still have the session).
func (s *memcacheStore) getMemcache(id string) cacheRead {
	item, _ := s.readMemcache(id)
	return item
}

// readMemcache reads the Memcache item of a session: none and no error on
// a miss; a failure is logged and returned.
func (s *memcacheStore) readMemcache(id string) (cacheRead, error) {
	var item cacheRead
	err := s.retry(s.ctx, func() (err error) {
		item, err = s.cache.Get(s.ctx, s.cfg.memcacheKey(id))
		return err
	})
	switch {
	case errors.Is(err, errCacheMiss):
		return cacheRead{}, nil
	case err != nil:
		s.logf(levelError, "%s: memcache get failed: %s", logID(id), redact(err, id))
		return cacheRead{}, err
	}
	return item, nil
}

// fromMemcache makes the entry of a session found in Memcache. ok is false
// if the item holds no usable copy: then the Datastore is asked (an
// undecodable value may be a codec change, and a timed-out copy may have a
// newer Datastore copy if a Memcache write failed); e is nil then.
func (s *memcacheStore) fromMemcache(id string, item cacheRead) (e *entry, ok bool) {
	sess, err := s.decodeSession(id, item.Value)
	if err != nil {
		s.logf(levelError, "%s: memcache holds a value that is not this session (%d bytes): %s", logID(id), len(item.Value), redact(err, id))
		return nil, false
	}
	deadline, known := flagsDeadline(item.Flags, sess)
	if timeNow().After(deadline) || sess.Timeout() <= 0 {
		return nil, false // timed out; Memcache with another clock kept it
	}
	e = &entry{id: id, sess: sess, origin: OriginMemcache, loaded: item.Value, casItem: item}
	if known {
		e.storedExp = deadline
	}
	return e, true
}

// decodeSession decodes the stored value of the session with the given ID.
func (s *memcacheStore) decodeSession(id string, b []byte) (session.Session, error) {
	sess, err := s.decode(b)
	if err == nil && sess.ID() != id {
		return nil, fmt.Errorf("it decodes to another session (%s)", logID(sess.ID()))
	}
	return sess, err
}

// decode unmarshals a stored session. The codec works on values from
// outside this process, so a panic in it is turned into an error.
func (s *memcacheStore) decode(b []byte) (sess session.Session, err error) {
	defer func() {
		if p := recover(); p != nil {
			sess, err = nil, errors.New("codec panicked")
		}
	}()
	if kindOf(b) != kindSession {
		return nil, errors.New("it is a marker of this package, not a session")
	}
	if s.cfg.gob {
		sess, err = gobDecodeSession(b)
	} else {
		sess = newSession()
		err = s.cfg.codec.Unmarshal(b, sess)
	}
	if err != nil {
		return nil, err
	}
	if sess.ID() == "" {
		return nil, errors.New("decoded session has no ID")
	}
	return sess, nil
}

// Add is to implement session.Store.Add. The session is written at once,
// to Memcache and (unless OnlyMemcache) the Datastore in parallel, so that
// the next request finds it even if Close is forgotten; Close writes it
// again only if it changed after Add. A session whose Timeout is zero or
// negative times out at once (see icza/session) and is not stored.
//
// A session this request loaded with Get (the same value or another one
// with its ID) is written as Close would write it: conditionally on the
// copy loaded, so that a logout by another request meanwhile stays final,
// and at the cost of a modified request. So are its later writes in this
// request.
func (s *memcacheStore) Add(sess session.Session) {
	if sess == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := sess.ID()
	if !ValidID(id) {
		// Get refuses such IDs, so the session could never be found again.
		s.logf(levelError, "%s: session not added: its ID (%d characters) is outside what Get accepts; see ValidID (IDLength must be 6 to 192)", logID(id), len(id))
		s.failure.set(fmt.Errorf("gaesession: %s: session not added: its ID is outside what Get accepts", logID(id)))
		return
	}
	if s.closed {
		s.logf(levelWarning, "%s: Add after Close: the session is stored now, but later changes to it are not saved", logID(id))
	}
	delete(s.absent, id)
	e := s.entry(id)
	if e != nil && e.existing {
		// Its stored copy and the CAS state as loaded stay: the write
		// below is conditional on them. e.print stays the baseline of
		// what this request changed (merges diff against it).
		e.sess, e.origin, e.accessed, e.timedOut = sess, OriginNew, timeNow(), false
	} else {
		e = &entry{id: id, sess: sess, origin: OriginNew, newUnwritten: true, accessed: timeNow()}
		s.setEntry(e)
	}
	if s.flush([]*entry{e}) && s.entry(id) != nil {
		s.logf(levelInfo, "%s: session added", logID(id))
	}
}

// Remove is to implement session.Store.Remove: a logout. It writes a
// removal marker into the Datastore (unless OnlyMemcache), then the
// session's tombstone into Memcache, then deletes the Datastore entity;
// after it returns no Get, on any instance, returns the session, whatever
// requests that loaded it earlier do when they close and whatever Memcache
// evicts (see tombstone.go). If a service refuses its part on every
// attempt, that is logged at error level and reported by SaveError; the
// other parts still happen. RELIABILITY.md says what remains possible
// then.
func (s *memcacheStore) Remove(sess session.Session) {
	if sess == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := sess.ID()
	s.dropEntry(id)
	s.markAbsent(id)
	if !ValidID(id) {
		return // nothing can be stored under such an ID
	}

	ok := true
	if !s.cfg.onlyMemcache {
		// The marker first: once the tombstone is there, Memcache may
		// evict it at once, and the marker must carry the removal then
		// (see tombstone.go).
		if err := s.putRemovalMarker(id, sess.Timeout()); err != nil {
			ok = false
			s.logf(levelError, "%s: logout incomplete: the datastore refused the removal marker: %s; the logout holds while memcache keeps its tombstone", logID(id), redact(err, id))
			s.failure.set(newStoreError(id, "writing the removal marker to the datastore", err))
		}
	}
	ttl := tombstoneTTL(sess.Timeout())
	tomb := cacheWrite{
		Key:   s.cfg.memcacheKey(id),
		Value: tombstoneValue,
		Flags: expiryFlags(timeNow().Add(ttl)),
		TTL:   ttl,
	}
	// A set, not a conditional write: the logout overwrites whatever copy
	// is there, and is the last word on the session.
	// The tombstone must be in place before the Datastore delete: a put by
	// a concurrent request that lands after the delete is then sure to
	// find it (see tombstone.go). So the two calls are not parallel.
	if err := s.retry(s.ctx, func() error { return s.cache.Set(s.ctx, tomb) }); err != nil {
		ok = false
		s.logf(levelError, "%s: logout incomplete: memcache refused the removal mark: %s; a copy cached there stays usable until it is evicted or idle for its Timeout", logID(id), redact(err, id))
		s.failure.set(newStoreError(id, "removing the session from memcache", err))
	}
	if !s.cfg.onlyMemcache {
		if err := s.deleteEntity(s.ctx, id); err != nil {
			ok = false
			s.logf(levelError, "%s: removing the session from the datastore failed: %s", logID(id), redact(err, id))
			s.failure.set(newStoreError(id, "removing the session from the datastore", err))
		}
	}
	if ok {
		s.logf(levelInfo, "%s: session removed", logID(id))
	}
}

// Close is to implement session.Store.Close. It writes back every session
// accessed through the store that changed, that is new, or whose stored
// copy is due for an expiry refresh; other sessions cost no RPC.
func (s *memcacheStore) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	var dirty []*entry
	for _, e := range s.sessions {
		if s.needsWrite(e) {
			dirty = append(dirty, e)
		}
	}
	if len(dirty) > 0 {
		s.flush(dirty)
	}
}

// needsWrite tells whether the stored copies of e must be rewritten.
func (s *memcacheStore) needsWrite(e *entry) bool {
	if e.timedOut {
		return false
	}
	if e.newUnwritten || e.loaded == nil {
		return true
	}
	// A session written earlier in this request (by Add) has a deadline
	// as late as it gets: only a later change needs another write.
	if !e.written && s.writeDue(e, timeNow()) {
		return true
	}
	return s.changed(e)
}

// writeDue tells whether the stored copy of a loaded session is to be
// written again at now whether the session changed or not: its deadline is
// unknown (the original package wrote it) or due for a refresh. Once due,
// it stays due for the rest of the request, so a session due when it is
// loaded needs no print.
func (s *memcacheStore) writeDue(e *entry, now time.Time) bool {
	return e.storedExp.IsZero() || s.cfg.refreshDue(e.storedExp, now, e.sess.Timeout())
}

// changed compares the session's attributes with their print (see
// changes.go); without a print, the session counts as changed.
func (s *memcacheStore) changed(e *entry) bool {
	same := false
	withAttrs(e.sess, func(attrs map[string]interface{}) { same = matchesPrint(e.print, attrs) })
	return !same
}

// encode marshals a session with the codec, turning a panic into an error.
func (s *memcacheStore) encode(sess session.Session) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("codec panicked: %v", p)
		}
	}()
	return s.cfg.codec.Marshal(sess)
}

// allAre tells whether err, or every error of a MultiError, is target: a
// miss on delete or a refused add, which are answers, not failures.
func allAre(err, target error) bool {
	if errors.Is(err, target) {
		return true
	}
	var me appengine.MultiError
	if !errors.As(err, &me) {
		return false
	}
	for _, e := range me {
		if e != nil && !errors.Is(e, target) {
			return false
		}
	}
	return true
}
