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
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// dsWrite is one session entity to put, and the outcome of the put. The
// Datastore stage of a flush works on these copies, so that an
// asynchronous save shares nothing with the request.
type dsWrite struct {
	id, key string // session ID and Memcache key
	entity  SessEntity
	check   bool  // read Memcache after the put (see saveDatastore)
	err     error // the put failed
}

// dsWritesOf makes the Datastore writes of ws. check marks the ones whose
// put must be followed by a Memcache read: sessions loaded in this request,
// and with AsyncDatastoreSave also new ones, whose cookie reaches the
// client before their put lands, so that a logout can overtake it.
func (s *memcacheStore) dsWritesOf(ws []*sessWrite, check bool) []dsWrite {
	out := make([]dsWrite, len(ws))
	for i, w := range ws {
		out[i] = dsWrite{
			id:     w.id,
			key:    w.key,
			entity: SessEntity{Expires: w.deadline, Value: w.value},
			check:  check && (!w.fresh || s.cfg.async),
		}
	}
	return out
}

// savedEntity is SessEntity as the store puts it: the properties that
// datastore.SaveStruct makes of a SessEntity ("exp" indexed; "val"
// unindexed, as every []byte is), without the reflection that costs.
type savedEntity SessEntity

func (e *savedEntity) Save() ([]datastore.Property, error) {
	return []datastore.Property{
		{Name: "exp", Value: e.Expires},
		{Name: "val", Value: e.Value, NoIndex: true},
	}, nil
}

func (e *savedEntity) Load(ps []datastore.Property) error {
	return datastore.LoadStruct((*SessEntity)(e), ps)
}

// markDatastore copies the outcome of a synchronous Datastore stage back
// to the writes it was made of.
func markDatastore(ws []*sessWrite, writes []dsWrite) {
	for i, w := range ws {
		if writes[i].err != nil {
			w.failed = true
		}
	}
}

// loadDatastore looks the session up in the Datastore backup. A timed-out
// entity is no session; it is deleted once it has been timed out for
// defaultExpiredFor, not before, since a request that loaded the session
// just before its deadline may save it between this get and the delete
// (see expiredBefore). mcItem is what Memcache holds under the session's
// key instead of a usable copy (a datastore-only marker, a value that does
// not decode, a timed-out copy), nil if nothing.
func (s *memcacheStore) loadDatastore(id string, mcItem *memcache.Item) *entry {
	key := s.cfg.datastoreKey(s.ctx, id)
	var ent SessEntity
	err := s.retry(s.ctx, func() error {
		ent = SessEntity{}
		return datastore.Get(s.ctx, key, &ent)
	})
	if err != nil {
		if !errors.Is(err, datastore.ErrNoSuchEntity) {
			s.logf(levelError, "%s: datastore get failed: %s", logID(id), redact(err, id))
		}
		return nil
	}
	if now := timeNow(); now.After(ent.Expires) {
		if !ent.Expires.Before(expiredBefore(now, defaultExpiredFor)) {
			return nil // the purge deletes it later
		}
		if err := s.deleteDatastore(s.ctx, []string{id}); err != nil {
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
	if mcItem != nil {
		// The Memcache item stays until this request writes the session
		// (a compare-and-swap replaces it); a refill could not add over
		// it anyway.
		e.casItem = mcItem
		return e
	}
	return s.refill(id, e, ent)
}

// refill puts a session found only in the Datastore back into Memcache, so
// the next request finds it there. It adds rather than sets, and at once
// rather than on Close: a request that wrote the session in the meantime
// has the newer copy, which must stay, and a logout's tombstone must stay
// too. If the add finds either, it is read: a tombstone means the session
// was removed while this request loaded it (no session); a newer copy is
// the one this request goes on with.
//
// If that read fails, what refused the add is unknown: a tombstone as well
// as a newer copy or a marker. The Datastore copy read before it may
// belong to a session logged out since, so Get answers no session: a
// spurious logout, when Memcache fails right after it answered, rather
// than a removed session served. This costs no RPC: the common path (the
// add succeeds) is unchanged. A miss is not unknown: Memcache holds
// nothing, as when this request first looked, and the Datastore copy
// stands. Under eviction pressure that is common (another reader's refill
// refused the add and was evicted at once; TestLoadUnderMemcachePressure
// meets it), and answering nil there would log users out. A tombstone
// evicted that fast is the window RELIABILITY.md bounds.
func (s *memcacheStore) refill(id string, e *entry, ent SessEntity) *entry {
	key := s.cfg.memcacheKey(id)
	if !gaelimits.MemcacheItemFits(len(key), len(ent.Value)) {
		return e
	}
	now := timeNow()
	item := &memcache.Item{
		Key:        key,
		Value:      ent.Value,
		Flags:      expiryFlags(ent.Expires),
		Expiration: memcacheTTL(ent.Expires, now),
	}
	err := s.retry(s.ctx, func() error { return memcache.Add(s.ctx, item) })
	switch {
	case err == nil:
		e.refilled = true
		return e
	case !errors.Is(err, memcache.ErrNotStored):
		s.logf(levelError, "%s: putting the session back into memcache failed: %s", logID(id), redact(err, id))
		return e
	}
	fresh, err := s.readMemcache(id)
	switch {
	case err != nil:
		s.logf(levelWarning, "%s: memcache refused to take the session back, and what it holds instead could not be read back: it may have been removed meanwhile, so this request gets no session", logID(id))
		return nil
	case fresh == nil:
		return e
	}
	switch kindOf(fresh.Value) {
	case kindRemoved:
		return nil
	case kindSession:
		if newer, ok := s.fromMemcache(id, fresh); ok {
			return newer
		}
	}
	e.casItem = fresh
	return e
}

// deleteDatastore deletes session entities; a missing one is no failure.
func (s *memcacheStore) deleteDatastore(ctx context.Context, ids []string) error {
	keys := make([]*datastore.Key, len(ids))
	for i, id := range ids {
		keys[i] = s.cfg.datastoreKey(ctx, id)
	}
	err := s.retry(ctx, func() error { return datastore.DeleteMulti(ctx, keys) })
	if err != nil && !allAre(err, datastore.ErrNoSuchEntity) {
		return err
	}
	return nil
}

// datastoreValue returns the stored encoding of a session, nil if there is
// none or the Datastore fails.
func (s *memcacheStore) datastoreValue(id string) []byte {
	var ent SessEntity
	err := s.retry(s.ctx, func() error { return datastore.Get(s.ctx, s.cfg.datastoreKey(s.ctx, id), &ent) })
	if err != nil {
		return nil
	}
	return ent.Value
}

// saveDatastore puts session entities with one PutMulti and logs the
// failures. It then reads the Memcache items of the writes marked check
// (one GetMulti): a tombstone there means the session was removed while this
// request saved it, and the entity just put is deleted again (see
// tombstone.go); with MergeConcurrentUpdates, a newer merged version there
// is put in its place (settleDatastore).
func (s *memcacheStore) saveDatastore(ctx context.Context, writes []dsWrite) {
	keys := make([]*datastore.Key, len(writes))
	ents := make([]*savedEntity, len(writes))
	for i := range writes {
		keys[i] = s.cfg.datastoreKey(ctx, writes[i].id)
		ents[i] = (*savedEntity)(&writes[i].entity)
	}
	err := s.retry(ctx, func() error {
		_, err := datastore.PutMulti(ctx, keys, ents)
		return err
	})
	for i := range writes {
		w := &writes[i]
		w.err = errorOf(err, i, len(writes))
		n := len(w.entity.Value)
		oversize := !gaelimits.MemcacheItemFits(len(w.key), n)
		switch {
		case w.err == nil && oversize:
			s.logf(levelWarning, "%s: session of %d bytes is over memcache's item limit (%d bytes for key, value and overhead); it is kept in the datastore only", logID(w.id), n, gaelimits.MemcacheMaxItemBytes)
		case w.err == nil:
		case oversize:
			what := fmt.Sprintf("session not saved: %d bytes is over memcache's item limit (%d bytes for key, value and overhead), and saving it to the datastore failed", n, gaelimits.MemcacheMaxItemBytes)
			s.logf(levelError, "%s: %s: %s", logID(w.id), what, redact(w.err, idsOf(writes)...))
			s.failure.set(newStoreError(w.id, what, w.err, idsOf(writes)...))
		default:
			s.logf(levelError, "%s: saving the session (%d bytes) to the datastore failed: %s", logID(w.id), n, redact(w.err, idsOf(writes)...))
			s.failure.set(newStoreError(w.id, "saving the session to the datastore", w.err, idsOf(writes)...))
		}
	}
	s.checkAfterPut(ctx, writes)
}

// idsOf returns the session IDs of writes, which the error of a batch call
// may quote.
func idsOf(writes []dsWrite) []string {
	ids := make([]string, len(writes))
	for i := range writes {
		ids[i] = writes[i].id
	}
	return ids
}

// checkAfterPut reads the Memcache items of sessions just put; see
// saveDatastore.
func (s *memcacheStore) checkAfterPut(ctx context.Context, writes []dsWrite) {
	var put []*dsWrite
	var keys []string
	for i := range writes {
		if writes[i].err == nil && writes[i].check {
			put = append(put, &writes[i])
			keys = append(keys, writes[i].key)
		}
	}
	if len(put) == 0 {
		return
	}
	var items map[string]*memcache.Item
	err := s.retry(ctx, func() (err error) {
		items, err = memcache.GetMulti(ctx, keys)
		return err
	})
	if err != nil {
		ids := make([]string, len(put))
		for i, w := range put {
			ids[i] = w.id
		}
		s.logf(levelError, "the memcache read that follows the datastore put of %d session(s) failed: %s; a logout that overtook the put would go unnoticed", len(put), redact(err, ids...))
		return
	}
	var gone []string
	for _, w := range put {
		item := items[w.key]
		if item == nil {
			continue
		}
		switch kindOf(item.Value) {
		case kindRemoved:
			gone = append(gone, w.id)
		case kindSession:
			if s.cfg.merge && !bytes.Equal(item.Value, w.entity.Value) {
				s.settleDatastore(ctx, w, item)
			}
		}
	}
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

// settleDatastore runs after a merged session was put and Memcache, where
// merges are decided, turned out to hold another version: two requests'
// puts may land in either order, so until the Datastore holds what
// Memcache holds, the latest Memcache version is put again. Each round
// trip costs a Memcache get; it stops when the two agree, when Memcache no
// longer holds a session copy (a tombstone there means a logout: the entity
// is deleted), or after a few rounds.
func (s *memcacheStore) settleDatastore(ctx context.Context, w *dsWrite, item *memcache.Item) {
	key := s.cfg.datastoreKey(ctx, w.id)
	for round := 0; round < 3; round++ {
		if _, err := s.decodeSession(w.id, item.Value); err != nil {
			return // not a version of this session to keep
		}
		ent := SessEntity{Expires: w.entity.Expires, Value: item.Value}
		if item.Flags != 0 && item.Flags != math.MaxUint32 {
			ent.Expires = time.Unix(int64(item.Flags), 0)
		}
		if _, err := datastore.Put(ctx, key, (*savedEntity)(&ent)); err != nil {
			s.logf(levelError, "%s: saving the merged session to the datastore failed: %s", logID(w.id), redact(err, w.id))
			return
		}
		written := item.Value
		var err error
		if item, err = memcache.Get(ctx, w.key); err != nil || bytes.Equal(item.Value, written) {
			return
		}
		switch kindOf(item.Value) {
		case kindRemoved:
			if err := s.deleteDatastore(ctx, []string{w.id}); err != nil {
				s.logf(levelError, "%s: deleting a removed session from the datastore again failed: %s", logID(w.id), redact(err, w.id))
			}
			return
		case kindDatastoreOnly:
			return
		}
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
