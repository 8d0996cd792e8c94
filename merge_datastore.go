package gaesession

import (
	"bytes"
	"context"
	"errors"
)

// errRemovedMeanwhile ends the transaction of putMerged when the session's
// removal marker is there.
var errRemovedMeanwhile = errors.New("removed meanwhile")

// putMerged puts a merged session too large for Memcache. Memcache holds
// only a placeholder for such a session, so it cannot tell which version
// is the latest, as it does for sessions that fit: the compare-and-swap of
// the placeholder orders the writers, but the puts that follow may land in
// either order, and a writer that merged before another's put landed
// merged with an older version. So the put is a transaction: it reads the
// entity (and the removal marker), and if the entity is no longer the
// version this write was merged into, it applies this request's changes
// to what is there instead. Concurrent changes to different attributes
// both survive, whatever order the puts come in. It reports whether the
// session was removed meanwhile (then nothing is put); a failure is left
// in w.err.
func (s *memcacheStore) putMerged(ctx context.Context, w *dsWrite) (removed bool) {
	value := w.entity.Value
	w.err = s.durable.runInTransaction(ctx, func(tc context.Context) error {
		found, err := s.lookupDatastore(tc, w.id, true)
		if err != nil {
			return err
		}
		if found.removed() {
			return errRemovedMeanwhile
		}
		value = w.entity.Value
		if found.entity != nil && !bytes.Equal(found.entity.Value, w.mergeBase) {
			if merged, err := s.decodeSession(w.id, found.entity.Value); err == nil {
				w.merge.applyTo(merged)
				if value, err = s.encode(merged); err != nil {
					return err
				}
				s.logf(levelWarning, "%s: session was updated by a concurrent request; merged %d changed and %d deleted attribute(s) into it",
					logID(w.id), len(w.merge.set), len(w.merge.deleted))
			}
		}
		return s.durable.put(tc, w.id, &savedEntity{Expires: w.entity.Expires, Value: value})
	})
	if errors.Is(w.err, errRemovedMeanwhile) {
		w.err = nil
		s.logf(levelInfo, "%s: session was removed by another request meanwhile; this request's version was dropped", logID(w.id))
		return true
	}
	if w.err == nil {
		w.entity.Value = value
	}
	return false
}
