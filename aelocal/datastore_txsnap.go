package aelocal

import "github.com/icza/gaesession/v2/aelocal/internal/btree"

// Queries in transactions read their snapshot through the planner, without
// the datastore's lock (issue 25).
//
// A transaction's snapshot of a kind is the live kind as it is now, except
// at the keys written since the snapshot was taken: every such write is in
// the history (writeLocked records each one while a transaction is open,
// with the version it replaced), so the snapshot is the live indexes with,
// at each of those keys, the live entity taken out and the version the
// snapshot sees (none for a key created since) put back. A planned read in
// a transaction therefore takes, under the lock, the same O(1) clones of
// the live B-trees as a live read, plus the list of those changes of the
// kind (snapChangesLocked, from histKind: the writes to that kind since
// the oldest open snapshot, not the whole history), and, without the lock,
// applies the changes to its clones before it reads them
// (applySnapshot). A clone is copy-on-write in both directions, so the
// changes copy the few nodes they touch, which only this read sees; the
// live trees are not changed.
//
// So a query in a transaction reads about as many index entries as a live
// one (the planner's cost: about 21 for a limit-20 query at any size),
// plus a seek and an update per key of its kind written since its
// snapshot, and the lock is held for the clones and the list only.
// Memory: a read's private copies live as long as its batch; the versions
// it puts back are the history's, which Options.TxHistoryLimit bounds
// (datastore_txhistory.go), and which are dropped when no open
// transaction's snapshot needs them (dropTxLocked; transactions expire
// after 60 s idle or 270 s). Nothing is kept per kind or per transaction
// beyond the history itself.
//
// A composite index answers a transaction's query only if it is kept
// already (a query of the transaction does not start its build, which
// reads the live kind); otherwise, and if a version the snapshot puts back
// has too many entries for it (exploded), the single-property indexes
// answer, as for a live query without one.

// snapChange is a key of a kind written since a transaction's snapshot:
// its path, and the version the snapshot sees there (nil if none).
type snapChange struct {
	path dsPath
	old  *dsEntity
}

// noteHistLocked lists a new history entry under its kind.
func (d *datastoreService) noteHistLocked(fk string, h *dsHist) {
	kr := kindRead{h.sp, h.path[len(h.path)-1].kind}
	m := d.histKind[kr]
	if m == nil {
		m = make(map[string]*dsHist)
		d.histKind[kr] = m
	}
	m[fk] = h
}

// forgetHistLocked removes a history entry dropped from d.history.
func (d *datastoreService) forgetHistLocked(fk string, h *dsHist) {
	kr := kindRead{h.sp, h.path[len(h.path)-1].kind}
	if m := d.histKind[kr]; m != nil {
		delete(m, fk)
		if len(m) == 0 {
			delete(d.histKind, kr)
		}
	}
}

// snapChangesLocked returns the keys of kind in sp written since v's
// snapshot, with the versions it sees; nil for the live data or if none
// was written.
func (d *datastoreService) snapChangesLocked(v dsView, sp nsKey, kind string) []snapChange {
	if v.tx == 0 {
		return nil
	}
	var out []snapChange
	for _, h := range d.histKind[kindRead{sp, kind}] {
		for _, o := range h.olds {
			if o.until > v.snap {
				out = append(out, snapChange{path: h.path, old: o.e})
				break
			}
		}
	}
	return out
}

// snapKindsLocked returns the kinds of sp that v's snapshot may hold and
// the live data has no entity of (every entity written or deleted since):
// those of its written keys.
func (d *datastoreService) snapKindsLocked(v dsView, sp nsKey) []string {
	if v.tx == 0 {
		return nil
	}
	var out []string
	for kr := range d.histKind {
		if kr.sp == sp {
			if s := d.spaces[sp]; s == nil || s.idx[kr.kind] == nil {
				out = append(out, kr.kind)
			}
		}
	}
	return out
}

// applySnapshot turns the read's clones of the live indexes into the
// snapshot's: at each changed key, the live entity out and the snapshot's
// version in. It needs no lock. It reports false if the composite index
// read cannot hold a version put back (too many entries): the fallback
// answers then.
func (r *planRead) applySnapshot() bool {
	for i, chs := range r.kindChanges {
		for _, ch := range chs {
			replaceEntity(r.kinds[i], nil, ch)
		}
	}
	r.kindChanges = nil
	for _, ch := range r.changes {
		cur := replaceEntity(r.keys, r.props, ch)
		if r.comp != nil {
			if cur != nil {
				r.comp.remove(cur)
			}
			if ch.old != nil {
				r.comp.add(ch.old)
			}
		}
	}
	r.changes = nil
	return r.comp == nil || r.comp.exploded == 0
}

// replaceEntity puts ch's version at its key in keys and in the
// single-property indexes props, in place of the entity there, which it
// returns (nil if none).
func replaceEntity(keys *btree.Tree[*dsEntity], props map[string]*btree.Tree[propEntry], ch snapChange) *dsEntity {
	cur, found := keys.Get(pathProbe(ch.path))
	if found {
		keys.Delete(cur)
		for name, t := range props {
			for _, v := range entryValues(cur.props.get(name)) {
				t.Delete(propEntry{v: v, e: cur})
			}
		}
	} else {
		cur = nil
	}
	if ch.old != nil {
		keys.ReplaceOrInsert(ch.old)
		for name, t := range props {
			for _, v := range entryValues(ch.old.props.get(name)) {
				t.ReplaceOrInsert(propEntry{v: v, e: ch.old})
			}
		}
	}
	return cur
}
