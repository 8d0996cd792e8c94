package gaesession

import (
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/icza/session"
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

// attrsOf returns the attributes of sess, none for nil.
func attrsOf(sess session.Session) map[string]interface{} {
	if sess == nil {
		return nil
	}
	return sess.Attrs()
}

// mergeInto applies this request's changes to base, the encoding of a
// newer version another request wrote, and makes the result the value of
// w: concurrent requests that change different attributes both keep their
// changes, and for one attribute the later writer wins. A base that is
// missing or unreadable is overwritten, as without merging. False if the
// write ends here.
func (s *memcacheStore) mergeInto(w *sessWrite, base []byte) bool {
	if base == nil {
		return true
	}
	merged, err := s.decode(base)
	if err != nil || merged.ID() != w.id {
		return true
	}
	w.changes.applyTo(merged)
	value, err := s.encode(merged)
	if err != nil {
		w.outcome, w.failed = outcomeSuperseded, true
		s.logf(levelError, "%s: session not saved: cannot marshal it merged with a concurrent update: %s", logID(w.id), redact(err, w.id))
		s.failure.set(newStoreError(w.id, "session not saved: cannot marshal it merged with a concurrent update", err))
		return false
	}
	s.logf(levelWarning, "%s: session was updated by a concurrent request; merged %d changed and %d deleted attribute(s) into it",
		logID(w.id), len(w.changes.set), len(w.changes.deleted))
	w.value, w.base = value, base
	return true
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
