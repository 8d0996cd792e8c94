package aelocal

import (
	"slices"

	"github.com/icza/gaesession/v2/aelocal/internal/btree"
)

// Sorted indexes, as production keeps them (issue 25). Each kind of each
// namespace has
//
//   - the kind index: its entities in key order (which also serves
//     ancestor queries, since an entity's descendants sort right after it
//     and before anything else), and
//   - one built-in single-property index per indexed property: an entry
//     (value, key) per distinct indexed value of the property, so a
//     multi-valued property has one entry per value, and unindexed values
//     and properties (raw_property, never in dsEntity.props) have none.
//     Entries sort by production's order of values (compareValue) and then
//     by key; the built-in descending index is this one read backwards
//     value by value, with keys still ascending within a value, as
//     production's descending index orders them;
//   - the composite indexes queries use (datastore_index_comp.go), each
//     built from a snapshot of the kind index, without the lock, the first
//     time a query it serves runs.
//
// All are kept on every write (storeLocked). A load (LoadDatastore, or
// opening the datastore file) builds every kind's indexes before the
// server answers (dsImage.finish in persist_load.go), not under the lock
// at the kind's first query or write.
//
// The ordered container is aelocal's own B-tree (internal/btree). It
// keeps github.com/google/btree's BTreeG contract, which aelocal used
// before: the same method names (ReplaceOrInsert, Delete, Get, Len, the
// seeks AscendGreaterOrEqual and DescendLessOrEqual the planner needs),
// and O(1) lazy copy-on-write clones that may be read from other
// goroutines while the original is written (planned queries read clones
// without the lock). Entries live in arrays of up to 63 per node, so an
// entry costs about its own size, where a balanced binary tree or a skip
// list would add two or more pointers per entry. It replaced google/btree
// because a load of a million entities inserted 11 million index entries
// one by one (O(n log n), half the restart), and because google/btree,
// which splits a full node in the middle, leaves nodes half full when
// entries arrive in ascending order (keys of sequential IDs, increasing
// times), as an API load adds them: Build makes a tree of full nodes from
// sorted entries in O(n), and an insert past the last entry splits so
// that the left node stays full. About 500 lines, no dependencies.

// kindIndex holds the sorted indexes of one kind of one namespace.
type kindIndex struct {
	byKey *btree.Tree[*dsEntity]
	props map[string]*btree.Tree[propEntry]
	comps map[string]*compIndex // the composite indexes kept, by dsIndex.yaml (datastore_index_comp.go)
	// building holds the composite indexes being built without the lock,
	// by dsIndex.yaml; each logs the writes to the kind meanwhile.
	building map[string]*compBuild
}

// propEntry is one entry of a single-property index: one value of the
// property and the entity that has it. v points into the entity's own
// props (never modified once stored), so an entry costs two pointers.
type propEntry struct {
	v *dsValue
	e *dsEntity
}

// topOfValue, as the entity of a probe, sorts after every entry of the
// probe's value (for seeks only).
var topOfValue = &dsEntity{}

// entryAt is a probe for the entry of value v and key path (nil: before
// every key).
func entryAt(v dsValue, path dsPath) propEntry { return propEntry{v: &v, e: pathProbe(path)} }

// topOf is a probe after every entry of value v.
func topOf(v dsValue) propEntry { return propEntry{v: &v, e: topOfValue} }

func lessByKey(a, b *dsEntity) bool { return comparePath(a.path, b.path) < 0 }

func lessEntry(a, b propEntry) bool {
	if c := compareValue(*a.v, *b.v); c != 0 {
		return c < 0
	}
	switch {
	case a.e == topOfValue:
		return false
	case b.e == topOfValue:
		return true
	}
	return comparePath(a.e.path, b.e.path) < 0
}

// pathProbe is an entity that only has a key, for seeks; a nil path sorts
// before every key.
func pathProbe(path dsPath) *dsEntity { return &dsEntity{path: path} }

func newKindIndex() *kindIndex {
	return &kindIndex{
		byKey: btree.New(lessByKey),
		props: make(map[string]*btree.Tree[propEntry]),
	}
}

// entryValues returns the distinct values among vals, in order, as
// pointers into vals: the values a property has index entries for.
func entryValues(vals []dsValue) []*dsValue {
	out := make([]*dsValue, len(vals))
	for i := range vals {
		out[i] = &vals[i]
	}
	if len(out) <= 1 {
		return out
	}
	slices.SortFunc(out, func(a, b *dsValue) int { return compareValue(*a, *b) })
	return slices.CompactFunc(out, func(a, b *dsValue) bool { return compareValue(*a, *b) == 0 })
}

func (ki *kindIndex) add(e *dsEntity) {
	ki.byKey.ReplaceOrInsert(e)
	ki.addEntries(e)
}

// addEntries adds the entries of e to every index of ki but the kind
// index.
func (ki *kindIndex) addEntries(e *dsEntity) {
	for _, ix := range ki.comps {
		ix.add(e)
	}
	for _, b := range ki.building {
		b.log = append(b.log, compOp{e, true})
	}
	for name, vals := range e.props.all() {
		t := ki.props[name]
		if t == nil {
			t = btree.New(lessEntry)
			ki.props[name] = t
		}
		for _, v := range entryValues(vals) {
			t.ReplaceOrInsert(propEntry{v: v, e: e})
		}
	}
}

// removeEntries removes the entries of e from every index of ki but the
// kind index.
func (ki *kindIndex) removeEntries(e *dsEntity) {
	for _, ix := range ki.comps {
		ix.remove(e)
	}
	for _, b := range ki.building {
		b.log = append(b.log, compOp{e, false})
	}
	for name, vals := range e.props.all() {
		t := ki.props[name]
		if t == nil {
			continue
		}
		for _, v := range entryValues(vals) {
			t.Delete(propEntry{v: v, e: e})
		}
		if t.Len() == 0 {
			delete(ki.props, name)
		}
	}
}

// indexLocked returns the indexes of kind in s, nil if s has no entity
// of kind.
func (s *dsSpace) indexLocked(kind string) *kindIndex { return s.idx[kind] }
