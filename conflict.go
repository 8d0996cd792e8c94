package gaesession

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/icza/session"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// attrChanges is what one request did to a session's attributes: values
// set (new or changed) and names deleted, relative to the loaded copy.
type attrChanges struct {
	set     map[string]interface{}
	deleted []string
}

// diffAttrs compares the attributes a session was loaded with to its
// current ones.
func diffAttrs(before, after map[string]interface{}) attrChanges {
	c := attrChanges{set: make(map[string]interface{})}
	for k, v := range after {
		if old, ok := before[k]; !ok || !reflect.DeepEqual(old, v) {
			c.set[k] = v
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			c.deleted = append(c.deleted, k)
		}
	}
	return c
}

func (c attrChanges) applyTo(sess session.Session) {
	for k, v := range c.set {
		sess.SetAttr(k, v)
	}
	for _, k := range c.deleted {
		sess.SetAttr(k, nil)
	}
}

// compareAndSwap writes a session that this request loaded only if no
// other request wrote it since. If one did, this request's attribute
// changes are applied to that newer version, which is written instead:
// concurrent requests that change different attributes both keep their
// changes, and for one attribute the later writer wins. It returns the value
// finally written, which is also what goes to the Datastore, and false if
// nothing was written: then the other requests' versions stand, and this
// request's changes are logged as lost rather than saved over theirs.
func (s *memcacheStore) compareAndSwap(e *entry, item *memcache.Item) ([]byte, bool) {
	id := e.sess.ID()
	before, err := s.decode(e.loaded)
	if err != nil {
		before = session.NewSession()
	}
	changes := diffAttrs(before.Attrs(), e.sess.Attrs())

	cur := e.casItem // nil when loaded from the Datastore
	for attempt := 0; attempt < s.cfg.retries+2; attempt++ {
		if cur != nil {
			cur.Value, cur.Flags, cur.Expiration = item.Value, item.Flags, item.Expiration
			err = memcache.CompareAndSwap(s.ctx, cur)
		} else {
			// Nothing to compare with: store only if still absent.
			err = memcache.Add(s.ctx, item)
		}
		switch {
		case err == nil:
			return item.Value, true
		case cur != nil && errors.Is(err, memcache.ErrNotStored):
			cur = nil // evicted or removed meanwhile: try to add
			continue
		case !errors.Is(err, memcache.ErrCASConflict) && !errors.Is(err, memcache.ErrNotStored):
			if retryable(s.ctx, err) {
				continue
			}
			s.logf(levelError, "%s: saving the session to memcache failed: %v", logID(id), err)
			return item.Value, true // memcache is down: the Datastore decides
		}

		// Another request wrote the session since it was loaded.
		if attempt > 0 && !s.backoff(attempt) {
			break
		}
		fresh, err := memcache.Get(s.ctx, item.Key)
		if errors.Is(err, memcache.ErrCacheMiss) {
			cur = nil
			continue
		}
		if err != nil {
			s.logf(levelError, "%s: reloading a concurrently updated session failed: %v", logID(id), err)
			return item.Value, true
		}
		if bytes.Equal(fresh.Value, e.loaded) {
			// Memcache holds the very copy this request loaded (put back
			// there after a Datastore load): no one else wrote it.
			cur = fresh
			continue
		}
		merged, err := s.decode(fresh.Value)
		if err != nil || merged.ID() != id {
			cur = fresh // unreadable: overwrite it, as without merging
			continue
		}
		changes.applyTo(merged)
		value, err := s.encode(merged)
		if err != nil {
			s.logf(levelError, "%s: session not saved: cannot marshal it: %v", logID(id), err)
			return nil, false
		}
		s.logf(levelWarning, "%s: session was updated by a concurrent request; merged %d changed and %d deleted attribute(s) into it",
			logID(id), len(changes.set), len(changes.deleted))
		item.Value, cur = value, fresh
	}
	s.logf(levelError, "%s: session kept changing under concurrent requests; this request's changes to %d attribute(s) were not saved",
		logID(id), len(changes.set)+len(changes.deleted))
	return nil, false
}

// backoff waits a little, more with each attempt, so that requests that
// keep colliding spread out; false if the request's context ended.
func (s *memcacheStore) backoff(attempt int) bool {
	d := time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// settleDatastore runs after a merged session was put: two requests'
// puts may land in either order, so until the Datastore holds what
// Memcache, where merges are decided, holds, the latest Memcache version
// is put again. Each round trip costs a Memcache get; it stops when the
// two agree, when Memcache lost the session, or after a few rounds.
func (s *memcacheStore) settleDatastore(ctx context.Context, w dsWrite) {
	written := w.entity.Value
	for round := 0; round < 3; round++ {
		item, err := memcache.Get(ctx, w.memcacheKey)
		if err != nil || bytes.Equal(item.Value, written) {
			return
		}
		ent := SessEntity{Expires: w.entity.Expires, Value: item.Value}
		if item.Flags != 0 {
			ent.Expires = time.Unix(int64(item.Flags), 0)
		}
		if _, err := datastore.Put(ctx, s.cfg.datastoreKey(ctx, w.id), &ent); err != nil {
			s.logf(levelError, "%s: saving the merged session to the datastore failed: %v", logID(w.id), err)
			return
		}
		written = item.Value
	}
}
