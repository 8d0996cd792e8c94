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
// in w.Err.
func (s *memcacheStore) putMerged(ctx context.Context, w *dsWrite) (removed bool) {
	value := w.Entity.Value
	changes := w.Merge.(*attrChanges)
	w.Err = s.durable.RunInTransaction(ctx, func(tc context.Context) error {
		found, err := s.lookupDatastore(tc, w.ID, true)
		if err != nil {
			return err
		}
		if found.Removed() {
			return errRemovedMeanwhile
		}
		value = w.Entity.Value
		if found.Entity != nil && !bytes.Equal(found.Entity.Value, w.MergeBase) {
			if merged, err := s.decodeSession(w.ID, found.Entity.Value); err == nil {
				changes.applyTo(merged)
				if value, err = s.encode(merged); err != nil {
					return err
				}
				s.logf(levelWarning, "%s: session was updated by a concurrent request; merged %d changed and %d deleted attribute(s) into it",
					logID(w.ID), len(changes.set), len(changes.deleted))
			}
		}
		return s.durable.Put(tc, w.ID, &savedEntity{Expires: w.Entity.Expires, Value: value})
	})
	if errors.Is(w.Err, errRemovedMeanwhile) {
		w.Err = nil
		s.logf(levelInfo, "%s: session was removed by another request meanwhile; this request's version was dropped", logID(w.ID))
		return true
	}
	if w.Err == nil {
		w.Entity.Value = value
	}
	return false
}
