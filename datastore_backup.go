package gaesession

import (
	"context"
	"errors"
	"sync"

	"github.com/icza/gaesession/v2/internal/gaelimits"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// dsWrite is one session entity to put.
type dsWrite struct {
	id     string
	entity SessEntity
	// memcacheKey is set for a merged session (MergeConcurrentUpdates):
	// after the put, the Datastore is settled against Memcache.
	memcacheKey string
}

// loadDatastore looks the session up in the Datastore backup. An expired
// entity is deleted and reported as no session.
func (s *memcacheStore) loadDatastore(id string) *entry {
	key := s.cfg.datastoreKey(s.ctx, id)
	var ent SessEntity
	err := s.retry(s.ctx, func() error {
		ent = SessEntity{}
		return datastore.Get(s.ctx, key, &ent)
	})
	if err != nil {
		if !errors.Is(err, datastore.ErrNoSuchEntity) {
			s.logf(levelError, "%s: datastore get failed: %v", logID(id), err)
		}
		return nil
	}
	if ent.Expires.Before(timeNow()) {
		s.deleteDatastore(id)
		return nil
	}
	sess, err := s.decodeSession(id, ent.Value)
	if err != nil {
		s.logf(levelError, "%s: datastore holds a value that is not this session (%d bytes): %v", logID(id), len(ent.Value), err)
		return nil
	}
	s.refillMemcache(id, ent)
	return &entry{sess: sess, origin: OriginDatastore, loaded: ent.Value, storedExp: ent.Expires}
}

// refillMemcache puts a session found only in the Datastore back into
// Memcache, so the next request finds it there. It adds rather than sets,
// and at once rather than on Close: a request that wrote the session in
// the meantime has the newer copy, which must stay.
func (s *memcacheStore) refillMemcache(id string, ent SessEntity) {
	key := s.cfg.memcacheKey(id)
	if !gaelimits.MemcacheItemFits(len(key), len(ent.Value)) {
		return
	}
	item := memcacheItem(key, ent.Value, ent.Expires, timeNow())
	if item == nil {
		return
	}
	err := s.retry(s.ctx, func() error { return memcache.Add(s.ctx, item) })
	if err != nil && !errors.Is(err, memcache.ErrNotStored) {
		s.logf(levelError, "%s: putting the session back into memcache failed: %v", logID(id), err)
	}
}

func (s *memcacheStore) deleteDatastore(id string) {
	key := s.cfg.datastoreKey(s.ctx, id)
	err := s.retry(s.ctx, func() error { return datastore.Delete(s.ctx, key) })
	if err != nil && !errors.Is(err, datastore.ErrNoSuchEntity) {
		s.logf(levelError, "%s: datastore delete failed: %v", logID(id), err)
	}
}

// saveDatastore puts session entities with one PutMulti.
func (s *memcacheStore) saveDatastore(ctx context.Context, writes []dsWrite) {
	keys := make([]*datastore.Key, len(writes))
	ents := make([]*SessEntity, len(writes))
	for i := range writes {
		keys[i] = s.cfg.datastoreKey(ctx, writes[i].id)
		ents[i] = &writes[i].entity
	}
	err := s.retry(ctx, func() error {
		_, err := datastore.PutMulti(ctx, keys, ents)
		return err
	})
	if err != nil {
		for _, w := range writes {
			s.logf(levelError, "%s: saving the session (%d bytes) to the datastore failed: %v", logID(w.id), len(w.entity.Value), err)
		}
		return
	}
	for _, w := range writes {
		if w.memcacheKey != "" {
			s.settleDatastore(ctx, w)
		}
	}
}

// saveDatastoreAsync saves in a new goroutine that survives the request:
// on second-generation runtimes the request's context is cancelled once the
// handler returns, which silently killed the original package's
// asynchronous saves. The save keeps the context's values (the App Engine
// API routing) but not its cancellation, and has a timeout of its own.
func (s *memcacheStore) saveDatastoreAsync(writes []dsWrite) {
	asyncSaves.add()
	go func() {
		defer asyncSaves.done()
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
