package gaesession

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"time"

	"github.com/icza/gaesession/v2/internal/gaelimits"
	"github.com/icza/session"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/memcache"
)

// refreshMargin is added to the remaining lifetime a stored copy must have
// to be left alone: Memcache counts expirations in whole seconds.
const refreshMargin = 2 * time.Second

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
	if e := s.sessions[id]; e != nil {
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

	mu       sync.Mutex
	sessions map[string]*entry // accessed in this request, written on Close
	absent   map[string]bool   // removed or not found in this request
	closed   bool
}

// entry is a session accessed through the store, with what is needed to
// decide on Close whether it must be written back.
type entry struct {
	sess   session.Session
	origin Origin
	added  bool // new in this request: always written

	// loaded is the encoding the session was read from, the baseline for
	// change detection. storedExp is when the stored copy expires (zero if
	// unknown, as for items written by the original package).
	loaded    []byte
	storedExp time.Time

	// casItem is the Memcache item as loaded, for compare-and-swap.
	casItem *memcache.Item

	// written is set once the store has written the session in this
	// request.
	written bool
}

// Get is to implement session.Store.Get. It returns nil for an unknown,
// expired, malformed or undecodable session.
//
// Important! Since sessions are marshalled and stored in Memcache, the
// mutex of the Session (Session.Mutex()) differs between Session values,
// even with the same session ID.
func (s *memcacheStore) Get(id string) session.Session {
	s.mu.Lock()
	defer s.mu.Unlock()

	if e := s.sessions[id]; e != nil {
		if e.origin != OriginNew {
			e.origin = OriginRequestCache
		}
		return e.sess
	}
	if s.absent[id] || !ValidID(id) {
		return nil
	}

	e := s.loadMemcache(id)
	if e == nil && !s.cfg.onlyMemcache {
		e = s.loadDatastore(id)
	}
	if e == nil {
		// Asking again in this request would cost the same RPCs for the
		// same answer.
		s.markAbsent(id)
		return nil
	}
	e.sess.Access()
	s.sessions[id] = e
	return e.sess
}

// markAbsent remembers that the session does not exist for this request.
func (s *memcacheStore) markAbsent(id string) {
	if s.absent == nil {
		s.absent = make(map[string]bool, 1)
	}
	s.absent[id] = true
}

// loadMemcache looks the session up in Memcache. Any failure is a miss
// here: the Datastore may still have the session.
func (s *memcacheStore) loadMemcache(id string) *entry {
	var item *memcache.Item
	err := s.retry(s.ctx, func() (err error) {
		item, err = memcache.Get(s.ctx, s.cfg.memcacheKey(id))
		return err
	})
	if err != nil {
		if !errors.Is(err, memcache.ErrCacheMiss) {
			s.logf(levelError, "%s: memcache get failed: %v", logID(id), err)
		}
		return nil
	}
	sess, err := s.decodeSession(id, item.Value)
	if err != nil {
		s.logf(levelError, "%s: memcache holds a value that is not this session (%d bytes): %v", logID(id), len(item.Value), err)
		return nil
	}
	e := &entry{sess: sess, origin: OriginMemcache, loaded: item.Value, casItem: item}
	if item.Flags != 0 {
		e.storedExp = time.Unix(int64(item.Flags), 0)
		if e.storedExp.Before(timeNow()) {
			return nil // expired; Memcache with another clock kept it
		}
	}
	return e
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
	sess = session.NewSession()
	if err := s.cfg.codec.Unmarshal(b, sess); err != nil {
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
// again only if it changed after Add.
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
		return
	}
	delete(s.absent, id)
	e := &entry{sess: sess, origin: OriginNew, added: true}
	s.sessions[id] = e
	s.logf(levelInfo, "%s: session added", logID(id))
	s.flush([]*entry{e})
}

// Remove is to implement session.Store.Remove. The session is deleted from
// Memcache and the Datastore in parallel.
func (s *memcacheStore) Remove(sess session.Session) {
	if sess == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := sess.ID()
	delete(s.sessions, id)
	s.markAbsent(id)

	var wg sync.WaitGroup
	if !s.cfg.onlyMemcache {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.deleteDatastore(id)
		}()
	}
	err := s.retry(s.ctx, func() error { return memcache.Delete(s.ctx, s.cfg.memcacheKey(id)) })
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		s.logf(levelError, "%s: removing the session from memcache failed: %v", logID(id), err)
	} else {
		s.logf(levelInfo, "%s: session removed", logID(id))
	}
	wg.Wait()
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

// flush writes new stored copies of sessions: Memcache and the Datastore in
// parallel. In async mode the Datastore part outlives the call.
func (s *memcacheStore) flush(entries []*entry) {
	now := timeNow()
	var (
		items    []*memcache.Item
		evict    []string // keys whose stale Memcache copy must go
		dsWrites []dsWrite
	)
	for _, e := range entries {
		id := e.sess.ID()
		// A session loaded in this request may have been written by
		// another since; one this request already wrote is its own.
		merging := s.cfg.merge && !e.written && e.loaded != nil
		value, err := s.encode(e.sess)
		if err != nil {
			s.logf(levelError, "%s: session not saved: cannot marshal it: %v", logID(id), err)
			continue
		}
		exp := now.Add(s.ttl(e.sess))
		key := s.cfg.memcacheKey(id)
		if !gaelimits.MemcacheItemFits(len(key), len(value)) {
			where := "it is kept in the datastore only"
			if s.cfg.onlyMemcache {
				where = "OnlyMemcache is set, so the change is lost"
			}
			s.logf(levelError, "%s: session of %d bytes exceeds memcache's item limit (%d bytes for key, value and overhead); %s", logID(id), len(value), gaelimits.MemcacheMaxItemBytes, where)
			evict = append(evict, key)
		} else if item := memcacheItem(key, value, exp, now); item != nil {
			if merging {
				// Memcache decides the final value, so the Datastore
				// waits for it.
				var ok bool
				if value, ok = s.compareAndSwap(e, item); !ok {
					e.loaded, e.casItem = nil, nil
					continue // nothing of this request's was written
				}
			} else {
				items = append(items, item)
			}
		}
		if !s.cfg.onlyMemcache {
			w := dsWrite{id: id, entity: SessEntity{Expires: exp, Value: value}}
			if merging {
				w.memcacheKey = key
			}
			dsWrites = append(dsWrites, w)
		}
		e.loaded, e.storedExp, e.added, e.casItem, e.written = value, exp, false, nil, true
	}

	var wg sync.WaitGroup
	if len(dsWrites) > 0 {
		if s.cfg.async {
			s.saveDatastoreAsync(dsWrites)
		} else {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.saveDatastore(s.ctx, dsWrites)
			}()
		}
	}
	s.writeMemcache(items, evict)
	wg.Wait()
}

// memcacheItem makes the Memcache item of a stored copy that expires at
// exp, or nil if too little of its life is left to be worth caching.
func memcacheItem(key string, value []byte, exp, now time.Time) *memcache.Item {
	ttl := exp.Sub(now)
	if ttl > maxMemcacheTTL {
		// Longer expirations are read as relative by App Engine but as
		// absolute times by memcached-like servers; 30 days means the
		// same to all, and the Datastore carries longer sessions.
		ttl = maxMemcacheTTL
	}
	if ttl < time.Second {
		return nil
	}
	return &memcache.Item{Key: key, Value: value, Flags: expiryFlags(exp), Expiration: ttl}
}

func (s *memcacheStore) writeMemcache(items []*memcache.Item, evict []string) {
	if len(items) > 0 {
		err := s.retry(s.ctx, func() error { return memcache.SetMulti(s.ctx, items) })
		if err != nil {
			s.logf(levelError, "saving %d session(s) to memcache failed: %v", len(items), err)
		}
	}
	if len(evict) > 0 {
		err := s.retry(s.ctx, func() error { return memcache.DeleteMulti(s.ctx, evict) })
		if err != nil && !allAre(err, memcache.ErrCacheMiss) {
			s.logf(levelError, "removing %d outdated session(s) from memcache failed: %v", len(evict), err)
		}
	}
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

// encode marshals a session with the codec, turning a panic into an error.
func (s *memcacheStore) encode(sess session.Session) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("codec panicked: %v", p)
		}
	}()
	return s.cfg.codec.Marshal(sess)
}

// needsWrite tells whether the stored copies of e must be rewritten, rather
// than just Memcache refilled.
func (s *memcacheStore) needsWrite(e *entry) bool {
	if e.added || e.loaded == nil {
		return true
	}
	if e.written {
		// Written earlier in this request (by Add): its expiry is as
		// fresh as it gets, only a later change needs another write.
		return s.changed(e)
	}
	// The stored copy must outlive a full timeout from now, or an access
	// pattern within the timeout could still let it expire. The margin
	// covers Memcache's whole-second expirations.
	if e.storedExp.IsZero() || e.storedExp.Sub(timeNow()) < e.sess.Timeout()+refreshMargin {
		return true
	}
	return s.changed(e)
}

// changed compares the session's attributes with those it was loaded with.
// Decoding the loaded bytes again, rather than comparing encodings,
// ignores the access time and the random order in which gob writes maps,
// and still sees values that were changed in place through a pointer.
func (s *memcacheStore) changed(e *entry) bool {
	before, err := s.decode(e.loaded)
	if err != nil {
		return true
	}
	return !reflect.DeepEqual(before.Attrs(), e.sess.Attrs())
}

// ttl is how long a stored copy written now lives: the timeout plus the
// slack that lets read-only requests skip writes.
func (s *memcacheStore) ttl(sess session.Session) time.Duration {
	return time.Duration(float64(sess.Timeout()) * (1 + s.cfg.slack))
}

// expiryFlags encodes an expiry time into Memcache item flags, which the
// original package leaves at zero and ignores: a new instance learns when a
// cached copy expires without another RPC, and an old one is unaffected.
func expiryFlags(t time.Time) uint32 {
	sec := t.Unix()
	if sec <= 0 {
		return 1
	}
	if sec > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(sec)
}
