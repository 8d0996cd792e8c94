package gaesession

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/icza/gaesession/v2/internal/gaelimits"
	"google.golang.org/appengine/v2"
)

// sessWrite is one session's new stored copy on its way to Memcache.
type sessWrite struct {
	e        *entry
	id, key  string
	batch    []*sessWrite // every write of the flush: a batch call's error may quote any of their IDs
	value    []byte       // the encoding: the Datastore's "val", and Memcache's unless too large
	deadline time.Time    // idle deadline the copy records

	// created: the session was created by this request (its ID is new,
	// known to no one else yet), which may write it unconditionally.
	// Otherwise the write is conditional: a compare-and-swap on cur, or an
	// add if cur is nil, or, with reread, a read of Memcache first (what
	// the request's refill or an earlier write put there, without a CAS
	// id).
	created bool
	cur     cacheRead
	reread  bool

	// viaPlaceholder: an add writes the placeholder, never the copy (every
	// mode with a Datastore; see tombstone.go). In the default mode, whose
	// put came first, the placeholder then stays; otherwise the write reads
	// it back, looks for a removal marker, and writes the copy over it by
	// compare-and-swap.
	viaPlaceholder bool

	// changes is what this request changed, re-applied to a concurrent
	// request's newer version (MergeConcurrentUpdates only). base is the
	// encoding that value is base plus changes of: the copy loaded, or the
	// newer version merged with.
	changes *attrChanges
	base    []byte

	// print is the print of the attributes written, taken before they
	// were encoded; nil on Close, after which nothing compares with it.
	print []byte

	outcome writeOutcome
	failed  bool  // a failure was logged and recorded for SaveError
	err     error // of the first conditional write
}

type writeOutcome int

const (
	outcomePending    writeOutcome = iota
	outcomeStored                  // Memcache holds this request's version (merged, perhaps)
	outcomeRemoved                 // the session was removed meanwhile: nothing of it may be stored
	outcomeSuperseded              // gave up against concurrent writers: their version stands
	outcomeFailed                  // Memcache failed: the Datastore has the last word
)

// oversize tells whether the copy is too large for a Memcache item (whose
// key, value and overhead must fit in 1 MiB), which then holds
// seeDatastoreValue instead.
func (w *sessWrite) oversize() bool { return !gaelimits.MemcacheItemFits(len(w.key), len(w.value)) }

// memcacheValue is what Memcache is to hold: the encoding, or the
// placeholder for a copy too large for it.
func (w *sessWrite) memcacheValue() []byte {
	if w.oversize() {
		return seeDatastoreValue
	}
	return w.value
}

// item returns the Memcache item of the write, made at now.
func (w *sessWrite) item(now time.Time) cacheWrite {
	return cacheWrite{Key: w.key, Value: w.memcacheValue(), Flags: expiryFlags(w.deadline), TTL: memcacheTTL(w.deadline, now)}
}

// addItem returns what an add of w writes, made at now: the placeholder
// if w.viaPlaceholder, the copy otherwise.
func (w *sessWrite) addItem(now time.Time) cacheWrite {
	item := w.item(now)
	if w.viaPlaceholder {
		item.Value = seeDatastoreValue
	}
	return item
}

// placed tells whether a successful add of w put only the placeholder,
// which the copy is still to replace.
func (w *sessWrite) placed() bool { return w.viaPlaceholder && !w.oversize() }

// flush writes new stored copies of sessions. It reports whether all of
// them were saved without a failure (in async mode, as far as known when it
// returns).
//
// The order of the calls depends on the mode, for the reasons given in
// tombstone.go: by default the Datastore put goes first and the conditional
// Memcache writes follow it (sessions added in this request are set in
// parallel with the put); with AsyncDatastoreSave or
// MergeConcurrentUpdates Memcache goes first and the put is followed by a
// Memcache read.
func (s *memcacheStore) flush(entries []*entry) bool {
	now := timeNow()
	ws := make([]*sessWrite, 0, len(entries))
	ok := true
	for _, e := range entries {
		if w := s.prepare(e, now); w != nil {
			ws = append(ws, w)
		} else {
			ok = false
		}
	}
	if len(ws) == 0 {
		return ok
	}
	for _, w := range ws {
		w.batch = ws
	}

	switch {
	case s.cfg.onlyMemcache:
		s.writeMemcache(ws, now)
	case s.cfg.async || s.cfg.merge:
		s.writeMemcache(ws, now)
		var puts []*sessWrite
		for _, w := range ws {
			if w.outcome == outcomeStored || w.outcome == outcomeFailed {
				puts = append(puts, w)
			}
		}
		if len(puts) > 0 {
			writes := s.dsWritesOf(puts, true)
			if s.cfg.async {
				s.saveDatastoreAsync(writes)
			} else {
				s.saveDatastore(s.ctx, writes)
				markDatastore(puts, writes)
			}
		}
	default:
		s.flushPutFirst(ws, now)
	}

	for _, w := range ws {
		e := w.e
		switch w.outcome {
		case outcomeRemoved:
			// Another request logged the session out: this request
			// must not bring it back, nor find it again.
			s.logf(levelInfo, "%s: session was removed by another request meanwhile; this request's version was dropped", logID(w.id))
			s.dropEntry(w.id)
			s.markAbsent(w.id)
		case outcomeSuperseded:
			e.loaded, e.casItem = nil, cacheRead{} // nothing of this request's stands
		default:
			e.loaded, e.storedExp, e.newUnwritten, e.casItem, e.rereadFirst, e.written = w.value, w.deadline, false, cacheRead{}, false, true
			e.print = w.print
		}
		ok = ok && !w.failed
	}
	return ok
}

// prepare encodes an entry and decides how it is written; nil if it is not
// written at all (logged, and recorded for SaveError).
func (s *memcacheStore) prepare(e *entry, now time.Time) *sessWrite {
	id := e.sess.ID()
	var (
		print   []byte
		changes *attrChanges
	)
	merging := s.cfg.merge && e.existing
	if !s.closed || merging {
		// Taken before the encoding, so that a change the encoding may
		// have missed is never taken for written.
		withAttrs(e.sess, func(attrs map[string]interface{}) {
			if !s.closed {
				// Close compares the attributes with the print of
				// what was written.
				print = printAttrs(attrs, 0)
			}
			if merging {
				changes = s.changesOf(e, attrs)
			}
		})
	}
	value, err := s.encode(e.sess)
	if err != nil {
		s.logf(levelError, "%s: session not saved: cannot marshal it: %s", logID(id), redact(err, id))
		s.failure.set(newStoreError(id, "session not saved: cannot marshal it", err))
		return nil
	}
	timeout := e.sess.Timeout()
	deadline := idleDeadline(e.accessed, timeout)
	if !deadline.After(now) {
		what := fmt.Sprintf("session not saved: it timed out during this request (idle for more than its Timeout of %v)", timeout)
		if e.newUnwritten {
			what = fmt.Sprintf("session not stored: a Timeout of %v makes it time out at once", timeout)
		}
		s.logf(levelWarning, "%s: %s", logID(id), what)
		s.failure.set(newStoreError(id, what, nil))
		e.timedOut = true
		return nil
	}
	w := &sessWrite{e: e, id: id, key: s.cfg.memcacheKey(id), value: value, deadline: deadline, print: print}
	if w.oversize() && s.cfg.onlyMemcache {
		what := fmt.Sprintf("session not saved: %d bytes is over memcache's item limit (%d bytes for key, value and overhead), and OnlyMemcache is set; its stored copy keeps its previous state", len(value), gaelimits.MemcacheMaxItemBytes)
		s.logf(levelError, "%s: %s", logID(id), what)
		s.failure.set(newStoreError(id, what, nil))
		return nil
	}
	switch {
	case !e.existing:
		// Added in this request; see setMemcache for why its writes,
		// Close's too, need no condition.
		w.created = true
	case e.casItem.Held():
		w.cur = e.casItem
	default:
		// Memcache holds what this request put there, a refill or an
		// earlier write (by Add), whose CAS id the add or the
		// compare-and-swap did not return: read it first.
		w.reread = e.rereadFirst || e.written
	}
	w.viaPlaceholder = !s.cfg.onlyMemcache
	w.changes, w.base = changes, e.loaded
	return w
}

// changesOf returns what this request changed in the attributes of a
// session it loaded.
func (s *memcacheStore) changesOf(e *entry, attrs map[string]interface{}) *attrChanges {
	c, ok := diffPrint(e.print, attrs)
	if !ok {
		// No print of the attributes as loaded: decode them again.
		before, err := s.decode(e.loaded)
		if err != nil {
			before = nil
		}
		c = diffAttrs(attrsOf(before), attrs)
	}
	return &c
}

// flushPutFirst is flush in the default mode: the Datastore put, then the
// conditional Memcache writes.
func (s *memcacheStore) flushPutFirst(ws []*sessWrite, now time.Time) {
	var wg sync.WaitGroup
	if slices.ContainsFunc(ws, isCreated) {
		// No other request knows a session added in this one: its
		// Memcache write need not wait for the put.
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.setMemcache(ws, now)
		}()
	}
	writes := s.dsWritesOf(ws, false)
	s.saveDatastore(s.ctx, writes)
	wg.Wait()
	markDatastore(ws, writes)

	for i, w := range ws {
		if !w.created && w.oversize() && writes[i].Err != nil {
			// Not saved anywhere: the previous copy stays in Memcache
			// rather than a marker pointing at a Datastore that
			// lacks this version.
			w.outcome = outcomeSuperseded
		}
	}
	s.writeConditional(ws, now)

	// A put that may have landed after a logout's delete: undo it.
	var gone []string
	for _, w := range ws {
		if !w.created && w.outcome == outcomeRemoved {
			gone = append(gone, w.id)
		}
	}
	if len(gone) > 0 {
		if err := s.deleteDatastore(s.ctx, gone); err != nil {
			s.logf(levelError, "deleting %d session(s) removed by another request from the datastore again failed: %s", len(gone), redact(err, gone...))
			s.failure.set(newStoreError(gone[0], "deleting a removed session from the datastore again", err, gone...))
		}
	}
}

// writeMemcache writes the Memcache part of a flush: sessions added in
// this request unconditionally, the others conditionally.
func (s *memcacheStore) writeMemcache(ws []*sessWrite, now time.Time) {
	s.setMemcache(ws, now)
	s.writeConditional(ws, now)
}

func isCreated(w *sessWrite) bool { return w.created }

// setMemcache sets the copies of the sessions of ws added in this request
// (w.created); it ignores the others.
//
// These are the store's only unconditional writes of a session (the other
// Memcache set is Remove's tombstone, which is meant to overwrite
// anything). A conditional one would cost a read first, for a CAS id no
// set returns. They are safe because no other request can have removed
// the session: its ID is new, made by this request, and reaches a client
// only with this response's cookie, which icza/session sets after Add
// returns. Close's write of a session changed after Add is a set too: a
// logout can come before it only if the handler streamed its response
// before Close, which App Engine does not do (it sends a response once the
// handler has returned); locally, a request that flushes the response and
// then changes the session has that window (RELIABILITY.md). A session
// loaded with Get, whose ID others know, is never written here, even
// after Add (see entry.existing).
func (s *memcacheStore) setMemcache(ws []*sessWrite, now time.Time) {
	items := s.cacheWrites()
	for _, w := range ws {
		if w.created {
			items = append(items, w.item(now))
		}
	}
	if len(items) == 0 {
		return
	}
	err := s.retry(s.ctx, func() error { return s.cache.SetMulti(s.ctx, items) })
	i := 0
	for _, w := range ws {
		if !w.created {
			continue
		}
		err := errorOf(err, i, len(items))
		i++
		if err == nil {
			w.outcome = outcomeStored
			continue
		}
		w.outcome, w.failed = outcomeFailed, true
		s.logf(levelError, "%s: saving the session to memcache failed: %s", logID(w.id), redact(err, w.batchIDs()...))
		s.failure.set(newStoreError(w.id, "saving the session to memcache", err, w.batchIDs()...))
	}
}

// writeConditional writes the copies of the sessions of ws loaded earlier
// in the request, which have no outcome yet (it ignores the others), so
// that none overwrites a tombstone: a compare-and-swap on the item as
// loaded, or an add where there was none. The first attempts go out in one
// call per kind; conflicts are then resolved one session at a time.
func (s *memcacheStore) writeConditional(ws []*sessWrite, now time.Time) {
	pending := func(w *sessWrite) bool { return !w.created && w.outcome == outcomePending }
	s.firstAttempts(ws, func(w *sessWrite) bool { return pending(w) && !w.reread && w.cur.Held() },
		(*sessWrite).casItem, s.cache.CompareAndSwapMulti, now)
	s.firstAttempts(ws, func(w *sessWrite) bool { return pending(w) && !w.reread && !w.cur.Held() },
		(*sessWrite).addItem, s.cache.AddMulti, now)
	for _, w := range ws {
		if pending(w) {
			s.resolve(w, w.err, now)
		}
	}
}

// firstAttempts makes the first conditional write of the writes of ws
// selected by which, in one batch call, and records each one's error.
func (s *memcacheStore) firstAttempts(ws []*sessWrite, which func(*sessWrite) bool, item func(*sessWrite, time.Time) cacheWrite, call func(context.Context, []cacheWrite) error, now time.Time) {
	items := s.cacheWrites()
	for _, w := range ws {
		if which(w) {
			items = append(items, item(w, now))
		}
	}
	if len(items) == 0 {
		return
	}
	err := call(s.ctx, items)
	i := 0
	for _, w := range ws {
		if which(w) {
			w.err = errorOf(err, i, len(items))
			i++
		}
	}
}

// casItem is the compare-and-swap of w's copy over w.cur.
func (w *sessWrite) casItem(now time.Time) cacheWrite {
	item := w.item(now)
	item.Token = w.cur.Token
	return item
}

// cacheWrites returns an empty slice for the items of a batch write, in
// room inside the store for the first one: most requests write one
// session, and then the batch costs no allocation. Its items are valid
// until the next call; batch writes are made one after the other (under
// the store's lock).
func (s *memcacheStore) cacheWrites() []cacheWrite {
	s.writeBuf = [1]cacheWrite{}
	return s.writeBuf[:0]
}

// batchIDs returns the IDs of the sessions of w's flush, which an error of
// a batch call may quote.
func (w *sessWrite) batchIDs() []string {
	ids := make([]string, len(w.batch))
	for i, b := range w.batch {
		ids[i] = b.id
	}
	return ids
}

// errorOf returns the error of item i of a batch call over n items that
// returned err.
func errorOf(err error, i, n int) error {
	if err == nil {
		return nil
	}
	me, ok := err.(appengine.MultiError)
	if !ok && !errors.As(err, &me) {
		return err
	}
	if len(me) != n {
		return err
	}
	return me[i]
}

// resolve finishes one conditional write whose first attempt returned err
// (not yet made if w.reread). On a conflict it reads Memcache again: a
// tombstone ends the write (the session was removed); another request's
// version is overwritten (last writer wins) or, with
// MergeConcurrentUpdates, merged with. A session that keeps changing gives
// up after Retries+2 conflicts rather than overwrite blindly, and a failing
// Memcache leaves the last word to the Datastore.
func (s *memcacheStore) resolve(w *sessWrite, err error, now time.Time) {
	conflicts, failures := 0, 0
	readFirst := w.reread
	for {
		switch {
		case readFirst:
			readFirst = false
			if !s.reread(w) {
				return
			}
		case err == nil && !w.cur.Held() && w.placed() && s.putDone(w):
			// The Datastore has this version (its put came first), and
			// the placeholder sends readers there.
			w.outcome = outcomeStored
			return
		case err == nil && !w.cur.Held() && w.placed():
			// The add put the placeholder in, and the put is still to
			// come: read it back (for its CAS id) and write the copy
			// over it once the Datastore shows no removal (reread).
			// Counted as a conflict, so that an item evicted again and
			// again ends the loop.
			conflicts++
			if conflicts >= s.conflictBudget(w) {
				s.giveUp(w)
				return
			}
			if !s.reread(w) {
				return
			}
		case err == nil:
			w.outcome = outcomeStored
			return
		case errors.Is(err, errNotStored) && w.cur.Held():
			// The item as loaded is gone (evicted): add instead, which
			// still fails on a tombstone (and, with a Datastore, adds
			// only the placeholder).
			w.cur = cacheRead{}
		case errors.Is(err, errCASConflict), errors.Is(err, errNotStored):
			conflicts++
			if conflicts >= s.conflictBudget(w) {
				s.giveUp(w)
				return
			}
			if conflicts > 1 && !s.backoff(conflicts-1) {
				s.memcacheFailed(w, s.ctx.Err())
				return
			}
			if !s.reread(w) {
				return
			}
		default:
			failures++
			if failures >= s.cfg.retries || !retryable(s.ctx, err) {
				s.memcacheFailed(w, err)
				return
			}
		}
		err = s.attempt(w, now)
	}
}

// putDone tells whether w's Datastore put has already succeeded: in the
// default mode, which puts first, unless it failed.
func (s *memcacheStore) putDone(w *sessWrite) bool { return s.cfg.putFirst() && !w.failed }

// conflictBudget is how many conflicts a write meets before it gives up.
// Merging gives up after Retries+2 attempts, rather than keep building on
// versions that keep changing. The last writer, who overwrites whatever it
// finds, needs the bound only to end a loop: its conflicts are mostly with
// copies put back into an evicting Memcache by readers that loaded the
// Datastore before this request's put, so it gets three times as many.
func (s *memcacheStore) conflictBudget(w *sessWrite) int {
	if w.changes != nil {
		return s.cfg.retries + 2
	}
	return 3 * (s.cfg.retries + 2)
}

// attempt makes one conditional write of w.
func (s *memcacheStore) attempt(w *sessWrite, now time.Time) error {
	if w.cur.Held() {
		return s.cache.CompareAndSwap(s.ctx, w.casItem(now))
	}
	return s.cache.Add(s.ctx, w.addItem(now))
}

// reread reads the Memcache item of w after a conflict (or to learn the
// CAS id of what this request put there) and decides what to write over
// it; false if the write ends here.
func (s *memcacheStore) reread(w *sessWrite) bool {
	var current cacheRead
	err := s.retry(s.ctx, func() (err error) {
		current, err = s.cache.Get(s.ctx, w.key)
		return err
	})
	switch {
	case errors.Is(err, errCacheMiss):
		w.cur = cacheRead{}
		return true
	case err != nil:
		s.memcacheFailed(w, err)
		return false
	}
	switch kindOf(current.Value) {
	case kindRemoved:
		w.outcome = outcomeRemoved
		return false
	case kindSession:
		if bytes.Equal(current.Value, w.value) {
			// Memcache already holds this very version: another request
			// put it back from the Datastore, which has it since this
			// request's put.
			w.outcome = outcomeStored
			return false
		}
		w.cur = current
		if w.changes == nil || bytes.Equal(current.Value, w.e.loaded) {
			// Last writer wins; or Memcache holds the very copy this
			// request loaded (its own refill), so no one else wrote.
			return true
		}
		return s.mergeInto(w, current.Value)
	}
	// A placeholder (or the datastore-only marker of a session too large
	// for Memcache): its bytes say nothing about which version the
	// Datastore has, nor whether a tombstone came and went before it was
	// added. Equal to what this request would write or not, it is to be
	// replaced only after a Datastore lookup that comes after this read
	// finds no removal marker (tombstone.go); a merge merges with the
	// Datastore's version, read in the same RPC.
	w.cur = current
	switch {
	case s.cfg.onlyMemcache:
		return true // no Datastore, no placeholders of this store's
	case s.putDone(w):
		// The Datastore has this version, or a later one, and the
		// placeholder sends readers there: nothing to write.
		w.outcome = outcomeStored
		return false
	}
	found, err := s.lookupDatastore(s.ctx, w.id, w.changes != nil)
	if err != nil {
		w.outcome, w.failed = outcomeFailed, true
		s.logf(levelError, "%s: memcache not written: the datastore lookup that must come first failed: %s", logID(w.id), redact(err, w.id))
		s.failure.set(newStoreError(w.id, "looking up the session in the datastore before writing memcache", err))
		return false
	}
	if found.Removed() {
		w.outcome = outcomeRemoved
		return false
	}
	if w.changes == nil || found.Entity == nil || bytes.Equal(found.Entity.Value, w.e.loaded) {
		return true
	}
	return s.mergeInto(w, found.Entity.Value)
}

// memcacheFailed ends a write whose Memcache part failed for good.
func (s *memcacheStore) memcacheFailed(w *sessWrite, err error) {
	w.outcome, w.failed = outcomeFailed, true
	where := "the datastore has this version"
	if s.cfg.onlyMemcache {
		where = "the change is lost"
	}
	s.logf(levelError, "%s: saving the session to memcache failed: %s; %s", logID(w.id), redact(err, w.batchIDs()...), where)
	s.failure.set(newStoreError(w.id, "saving the session to memcache", err, w.batchIDs()...))
}

// giveUp ends a write that kept colliding with other requests' writes.
func (s *memcacheStore) giveUp(w *sessWrite) {
	w.outcome, w.failed = outcomeSuperseded, true
	what := "session kept changing under concurrent requests; this request's version was not written to memcache"
	if w.changes != nil {
		what = fmt.Sprintf("session kept changing under concurrent requests; this request's changes to %d attribute(s) were not saved",
			len(w.changes.set)+len(w.changes.deleted))
	}
	s.logf(levelError, "%s: %s", logID(w.id), what)
	s.failure.set(newStoreError(w.id, what, nil))
}
