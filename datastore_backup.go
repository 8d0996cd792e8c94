package gaesession

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/icza/gaesession/v2/internal/gaelimits"
	"google.golang.org/appengine/v2"
)

// dsWritesOf makes the Datastore writes of ws. check marks the ones whose
// put must be followed by a Memcache read: sessions loaded in this request,
// and with AsyncDatastoreSave also new ones, whose cookie reaches the
// client before their put lands, so that a logout can overtake it.
func (s *memcacheStore) dsWritesOf(ws []*sessWrite, check bool) []dsWrite {
	out := make([]dsWrite, len(ws))
	for i, w := range ws {
		out[i] = dsWrite{
			ID:     w.id,
			Key:    w.key,
			Entity: savedEntity{Expires: w.deadline, Value: w.value},
			Check:  check && (!w.created || s.cfg.async),
		}
		if s.cfg.merge && w.changes != nil && w.oversize() {
			out[i].Merge, out[i].MergeBase, out[i].Check = w.changes, w.base, false
		}
	}
	return out
}

// markDatastore copies the outcome of a synchronous Datastore stage back
// to the writes it was made of.
func markDatastore(ws []*sessWrite, writes []dsWrite) {
	for i, w := range ws {
		if writes[i].Err != nil {
			w.failed = true
		}
	}
}

// loadDatastore looks the session up in the Datastore backup, with its
// removal marker in the same RPC: a live marker means no session (see
// tombstone.go). A timed-out entity is no session; it is deleted once it
// has been timed out for defaultExpiredFor, not before, since a request
// that loaded the session just before its deadline may save it between
// this get and the delete (see expiredBefore). mcItem is what Memcache
// holds under the session's key instead of a usable copy (a placeholder, a
// value that does not decode, a timed-out copy), none if nothing; it was
// read before this lookup.
func (s *memcacheStore) loadDatastore(id string, mcItem cacheRead) *entry {
	found, err := s.lookupDatastore(s.ctx, id, true)
	if err != nil {
		s.logf(levelError, "%s: datastore get failed: %s", logID(id), redact(err, id))
		return nil
	}
	if found.Removed() {
		s.restoreTombstone(id, mcItem, found)
		return nil
	}
	if found.Entity == nil {
		return nil
	}
	ent := *found.Entity
	if now := timeNow(); now.After(ent.Expires) {
		if !ent.Expires.Before(expiredBefore(now, defaultExpiredFor)) {
			return nil // the purge deletes it later
		}
		if err := s.deleteEntity(s.ctx, id); err != nil {
			s.logf(levelError, "%s: deleting the timed-out session from the datastore failed: %s", logID(id), redact(err, id))
		}
		return nil
	}
	sess, err := s.decodeSession(id, ent.Value)
	if err != nil {
		s.logf(levelError, "%s: datastore holds a value that is not this session (%d bytes): %s", logID(id), len(ent.Value), redact(err, id))
		return nil
	}
	if sess.Timeout() <= 0 {
		return nil // times out at once, whatever "exp" says (see expiry.go)
	}
	e := &entry{id: id, sess: sess, origin: OriginDatastore, loaded: ent.Value, storedExp: ent.Expires}
	return s.refill(id, e, ent, mcItem)
}

// refill puts a session found only in the Datastore back into Memcache, so
// that the next request finds it there, at once rather than on Close, and
// never over a newer copy or a tombstone:
//
//   - Over mcItem, the item read before the Datastore lookup, it writes the
//     copy with a compare-and-swap. The lookup found no removal marker
//     after that read, so if a logout's tombstone came first, the
//     compare-and-swap fails (tombstone.go). A session too large for
//     Memcache leaves mcItem as it is.
//   - On a miss it adds a placeholder, not the copy: the key is empty also
//     when a tombstone was evicted, and the whole logout may have come
//     after this request's lookup. The next Get reads the placeholder,
//     then the Datastore, and writes the copy over it as above.
//
// If the write is refused, Memcache is read: a tombstone means the session
// was removed while this request loaded it (no session); a session copy is
// newer and is the one this request goes on with; a placeholder or another
// value read after the lookup is re-read (and the marker looked up) before
// this request writes over it.
//
// If that read fails, what refused the write is unknown: a tombstone as
// well as a newer copy or a placeholder. The Datastore copy read before it
// may belong to a session logged out since, so Get answers no session: a
// spurious logout, when Memcache fails right after it answered, rather
// than a removed session served. This costs no RPC: the common path (the
// write succeeds) is unchanged. A miss is not unknown: Memcache holds
// nothing, as when this request first looked, and the Datastore copy
// stands, with no marker. Under eviction pressure that is common
// (TestLoadUnderMemcachePressure meets it), and answering nil there would
// log users out.
func (s *memcacheStore) refill(id string, e *entry, ent savedEntity, mcItem cacheRead) *entry {
	key := s.cfg.memcacheKey(id)
	now := timeNow()
	var err error
	if mcItem.Held() {
		if !gaelimits.MemcacheItemFits(len(key), len(ent.Value)) {
			// The item stays until this request writes the session.
			e.casItem = mcItem
			return e
		}
		item := cacheWrite{Key: key, Value: ent.Value, Flags: expiryFlags(ent.Expires), TTL: memcacheTTL(ent.Expires, now), Token: mcItem.Token}
		err = s.retry(s.ctx, func() error { return s.cache.CompareAndSwap(s.ctx, item) })
	} else {
		item := cacheWrite{Key: key, Value: seeDatastoreValue, Flags: expiryFlags(ent.Expires), TTL: memcacheTTL(ent.Expires, now)}
		err = s.retry(s.ctx, func() error { return s.cache.Add(s.ctx, item) })
	}
	switch {
	case err == nil:
		// Memcache holds what this request wrote, without a CAS id.
		e.rereadFirst = true
		return e
	case !errors.Is(err, errNotStored) && !errors.Is(err, errCASConflict):
		s.logf(levelError, "%s: putting the session back into memcache failed: %s", logID(id), redact(err, id))
		e.casItem = mcItem
		return e
	}
	held, err := s.readMemcache(id)
	switch {
	case err != nil:
		s.logf(levelWarning, "%s: memcache refused to take the session back, and what it holds instead could not be read back: it may have been removed meanwhile, so this request gets no session", logID(id))
		return nil
	case !held.Held():
		return e
	}
	switch kindOf(held.Value) {
	case kindRemoved:
		return nil
	case kindSession:
		if newer, ok := s.fromMemcache(id, held); ok {
			return newer
		}
	}
	// Read after this request's lookup: a write reads it again and looks
	// for a marker first.
	e.rereadFirst = true
	return e
}

// deleteDatastore deletes session entities; a missing one is no failure.
func (s *memcacheStore) deleteDatastore(ctx context.Context, ids []string) error {
	err := s.retry(ctx, func() error { return s.durable.DeleteMulti(ctx, ids) })
	if err != nil && !allAre(err, errNoSuchEntity) {
		return err
	}
	return nil
}

// deleteEntity deletes the entity of the session id; a missing one is no
// failure. (deleteDatastore of one ID, without a slice that would escape
// through the tier's interface.)
func (s *memcacheStore) deleteEntity(ctx context.Context, id string) error {
	err := s.retry(ctx, func() error { return s.durable.Delete(ctx, id) })
	if err != nil && !allAre(err, errNoSuchEntity) {
		return err
	}
	return nil
}

// saveDatastore puts session entities with one PutMulti and logs the
// failures. It then reads the Memcache items of the writes marked check
// (one GetMulti): a tombstone there means the session was removed while this
// request saved it, and the entity just put is deleted again (see
// tombstone.go); with MergeConcurrentUpdates, a newer merged version there
// is put in its place (settleDatastore).
func (s *memcacheStore) saveDatastore(ctx context.Context, writes []dsWrite) {
	batched := 0 // writes put in one call, the others in a transaction each
	for i := range writes {
		if writes[i].Merge == nil {
			batched++
		}
	}
	var err error
	if batched > 0 {
		err = s.retry(ctx, func() error { return s.durable.PutMulti(ctx, writes) })
	}
	j := 0
	for i := range writes {
		w := &writes[i]
		if w.Merge != nil {
			if s.putMerged(ctx, w) {
				continue // removed meanwhile: nothing was put
			}
		} else {
			w.Err = errorOf(err, j, batched)
			j++
		}
		n := len(w.Entity.Value)
		oversize := !gaelimits.MemcacheItemFits(len(w.Key), n)
		switch {
		case w.Err == nil && oversize:
			s.logf(levelWarning, "%s: session of %d bytes is over memcache's item limit (%d bytes for key, value and overhead); it is kept in the datastore only", logID(w.ID), n, gaelimits.MemcacheMaxItemBytes)
		case w.Err == nil:
		case oversize:
			what := fmt.Sprintf("session not saved: %d bytes is over memcache's item limit (%d bytes for key, value and overhead), and saving it to the datastore failed", n, gaelimits.MemcacheMaxItemBytes)
			s.logf(levelError, "%s: %s: %s", logID(w.ID), what, redact(w.Err, idsOf(writes)...))
			s.failure.set(newStoreError(w.ID, what, w.Err, idsOf(writes)...))
		default:
			s.logf(levelError, "%s: saving the session (%d bytes) to the datastore failed: %s", logID(w.ID), n, redact(w.Err, idsOf(writes)...))
			s.failure.set(newStoreError(w.ID, "saving the session to the datastore", w.Err, idsOf(writes)...))
		}
	}
	s.checkAfterPut(ctx, writes)
}

// idsOf returns the session IDs of writes, which the error of a batch call
// may quote.
func idsOf(writes []dsWrite) []string {
	ids := make([]string, len(writes))
	for i := range writes {
		ids[i] = writes[i].ID
	}
	return ids
}

// checkAfterPut reads the Memcache items of sessions just put; see
// saveDatastore.
func (s *memcacheStore) checkAfterPut(ctx context.Context, writes []dsWrite) {
	var put []*dsWrite
	for i := range writes {
		if writes[i].Err == nil && writes[i].Check {
			put = append(put, &writes[i])
		}
	}
	var err error
	switch len(put) {
	case 0:
		return
	case 1:
		// One session, the rule: a get is the same RPC as a batch of
		// one, and passes no slice through the tier's interface.
		w := put[0]
		err = s.retry(ctx, func() (err error) {
			w.After, err = s.cache.Get(ctx, w.Key)
			if errors.Is(err, errCacheMiss) {
				w.After, err = cacheRead{}, nil
			}
			return err
		})
	default:
		keys := make([]string, len(put))
		into := make([]*cacheRead, len(put))
		for i, w := range put {
			keys[i], into[i] = w.Key, &w.After
		}
		err = s.retry(ctx, func() error { return s.cache.GetMulti(ctx, keys, into) })
	}
	if err != nil {
		ids := make([]string, len(put))
		for i, w := range put {
			ids[i] = w.ID
		}
		s.logf(levelError, "the memcache read that follows the datastore put of %d session(s) failed: %s; a logout that overtook the put would go unnoticed", len(put), redact(err, ids...))
		return
	}
	var gone, unsure []string
	for _, w := range put {
		item := w.After
		switch {
		case !item.Held():
			unsure = append(unsure, w.ID)
		case kindOf(item.Value) == kindRemoved:
			gone = append(gone, w.ID)
		case kindOf(item.Value) == kindSession:
			// A session copy after the put means no tombstone came
			// since this request's Memcache write (tombstone.go), so a
			// logout's delete comes after the put.
			if s.cfg.merge && !bytes.Equal(item.Value, w.Entity.Value) {
				s.settleDatastore(ctx, w, item)
			}
		default:
			unsure = append(unsure, w.ID)
		}
	}
	// No session copy in Memcache: a tombstone may have come and gone
	// (evicted). The removal marker tells.
	gone = append(gone, s.removedOf(ctx, unsure)...)
	if len(gone) == 0 {
		return
	}
	for _, id := range gone {
		s.logf(levelInfo, "%s: session was removed by another request while this one saved it; its datastore copy is deleted again", logID(id))
	}
	if err := s.deleteDatastore(ctx, gone); err != nil {
		s.logf(levelError, "deleting %d session(s) removed by another request from the datastore again failed: %s", len(gone), redact(err, gone...))
		s.failure.set(newStoreError(gone[0], "deleting a removed session from the datastore again", err, gone...))
	}
}

// removedOf returns those of ids whose removal marker the Datastore holds,
// read with one Get RPC; none if the read fails (logged).
func (s *memcacheStore) removedOf(ctx context.Context, ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	var markers []removalMarker
	err := s.retry(ctx, func() (err error) {
		markers, err = s.durable.Markers(ctx, ids)
		return err
	})
	var me appengine.MultiError
	if err != nil && !errors.As(err, &me) || me != nil && len(me) != len(ids) {
		s.logf(levelError, "looking up the removal markers of %d session(s) after their put failed: %s; a logout that overtook the put would go unnoticed", len(ids), redact(err, ids...))
		return nil
	}
	var removed []string
	for i, id := range ids {
		if me != nil && me[i] != nil {
			if !errors.Is(me[i], errNoSuchEntity) {
				s.logf(levelError, "%s: looking up the removal marker after the put failed: %s", logID(id), redact(me[i], ids...))
			}
			continue
		}
		if !timeNow().After(markers[i].Expires) {
			removed = append(removed, id)
		}
	}
	return removed
}

// settleDatastore runs after a merged session was put and Memcache, where
// merges are decided, turned out to hold another version: two requests'
// puts may land in either order, so until the Datastore holds what
// Memcache holds, the latest Memcache version is put again. Each round
// trip costs a Memcache get; it stops when the two agree, when Memcache no
// longer holds a session copy (a tombstone there, or the removal marker
// when Memcache holds none, means a logout: the entity is deleted), or
// after a few rounds.
func (s *memcacheStore) settleDatastore(ctx context.Context, w *dsWrite, item cacheRead) {
	for round := 0; round < 3; round++ {
		if _, err := s.decodeSession(w.ID, item.Value); err != nil {
			return // not a version of this session to keep
		}
		ent := savedEntity{Expires: w.Entity.Expires, Value: item.Value}
		if item.Flags != 0 && item.Flags != math.MaxUint32 {
			ent.Expires = time.Unix(int64(item.Flags), 0)
		}
		if err := s.durable.Put(ctx, w.ID, &ent); err != nil {
			s.logf(levelError, "%s: saving the merged session to the datastore failed: %s", logID(w.ID), redact(err, w.ID))
			return
		}
		written := item.Value
		var err error
		item, err = s.cache.Get(ctx, w.Key)
		switch {
		case errors.Is(err, errCacheMiss):
			item = cacheRead{}
		case err != nil:
			return
		}
		if item.Held() && bytes.Equal(item.Value, written) {
			return
		}
		switch {
		case item.Held() && kindOf(item.Value) == kindSession:
			continue // yet another version: put that one
		case item.Held() && kindOf(item.Value) == kindRemoved:
		case len(s.removedOf(ctx, []string{w.ID})) == 0:
			// No session copy and no marker: nothing to settle.
			return
		}
		// A logout came: its tombstone is there, or was evicted and the
		// marker tells (as in checkAfterPut). This put may have landed
		// after its delete.
		s.logf(levelInfo, "%s: session was removed by another request while this one saved it; its datastore copy is deleted again", logID(w.ID))
		if err := s.deleteEntity(ctx, w.ID); err != nil {
			s.logf(levelError, "%s: deleting a removed session from the datastore again failed: %s", logID(w.ID), redact(err, w.ID))
		}
		return
	}
}

// saveDatastoreAsync saves in a new goroutine that survives the request:
// on second-generation runtimes the request's context is cancelled once the
// handler returns, which silently killed the original package's
// asynchronous saves. The save keeps the context's values (the App Engine
// API routing) but not its cancellation, and has a timeout of its own.
//
// A store's saves run one after the other: a session added and changed in
// one request is saved by Add and again by Close, and the Datastore must
// end with Close's version, which two concurrent puts would not ensure.
func (s *memcacheStore) saveDatastoreAsync(writes []dsWrite) {
	asyncSaves.add()
	prev, done := s.lastAsyncSave, make(chan struct{})
	s.lastAsyncSave = done
	go func() {
		defer asyncSaves.done()
		defer close(done)
		if prev != nil {
			<-prev
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.asyncSaveTimeout)
		defer cancel()
		s.saveDatastore(ctx, writes)
	}()
}

// asyncSaves counts the asynchronous saves in flight.
var asyncSaves inflight

type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero; nil while n == 0
}

func (f *inflight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.idle)
		f.idle = nil
	}
}

func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitForAsyncSaves waits until every asynchronous Datastore save started
// so far (AsyncDatastoreSave) has finished, or until ctx is done, in which
// case it returns ctx's error. Tests call it before checking the Datastore;
// a server can call it on shutdown so that no save is cut short.
func WaitForAsyncSaves(ctx context.Context) error {
	return asyncSaves.wait(ctx)
}
