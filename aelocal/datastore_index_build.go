package aelocal

import (
	"cmp"
	"encoding/binary"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/icza/gaesession/v2/aelocal/internal/btree"
)

// buildKindIndex builds the indexes of one kind from its entities, as
// adding each to a new kindIndex would (kindIndex.add), for a load
// (dsImage.finish). ents must be in ascending key order. Each index is
// built in O(n) from its entries in order (btree.Build, full nodes)
// rather than by n inserts: the kind index straight from ents, and each
// single-property index from its entries collected in key order and
// sorted by value and then by the entity's position in ents (its key
// order), which is cheaper than comparing keys. The kind index and
// each single-property index are built by up to workers goroutines at
// once, each index by one of them. TestBuildKindIndexMatchesAdd pins that
// the result equals add's.
func buildKindIndex(ents []*dsEntity, workers int) *kindIndex {
	ki := &kindIndex{props: make(map[string]*btree.Tree[propEntry])}
	names := make(map[string]bool)
	for _, e := range ents {
		for name := range e.props.all() {
			names[name] = true
		}
	}
	type job struct {
		name string
		t    *btree.Tree[propEntry]
	}
	jobs := make([]job, 0, len(names))
	for name := range names {
		jobs = append(jobs, job{name: name})
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(workers, len(jobs)+1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf entryBuf
			for i := range next {
				if i < 0 {
					ki.byKey = btree.Build(lessByKey, ents)
					continue
				}
				jobs[i].t = buf.build(ents, jobs[i].name)
			}
		}()
	}
	next <- -1
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, j := range jobs {
		ki.props[j.name] = j.t
	}
	return ki
}

// entryBuf holds the array a worker sorts, reused from one property to
// the next: the tree holds copies of the entries, so the array is garbage
// after each index, and allocating it afresh for each would leave 16
// bytes per entity per property for the collector, which a load's peak
// heap (and the resident set after it) would carry.
type entryBuf struct {
	xs []sortEntry
}

// sortEntry is an entry as sorted: a value and the position of its entity
// in ents (16 bytes, where the entity too would take 24: a sort moves
// them).
type sortEntry struct {
	v   *dsValue
	pos int
	key uint64 // sortByKey's: the value's order as an integer
}

// sortByKey sorts xs by value and then by position, as build needs, when
// every value is an integer (a time, a bool) or every value a string: it
// gives each entry an integer that orders as its value does (for a string,
// its first eight bytes after the prefix all the strings share), so that
// most comparisons compare two integers held in the array, not two values
// behind pointers; only strings of equal keys compare their bytes. A
// restart's index build was mostly such comparisons (issue 25: ten
// properties of a million entities, names and notes sharing long
// prefixes). It reports false, leaving xs as it was, for any other mix of
// types, which build sorts by compareValue.
func sortByKey(xs []sortEntry) bool {
	if len(xs) == 0 {
		return true
	}
	t := xs[0].v.typ()
	switch t {
	case vInt, vBool:
		for i := range xs {
			if xs[i].v.typ() != t {
				return false
			}
			xs[i].key = uint64(xs[i].v.int()) ^ 1<<63 // signed order as unsigned
		}
		slices.SortFunc(xs, func(a, b sortEntry) int {
			if c := cmp.Compare(a.key, b.key); c != 0 {
				return c
			}
			return cmp.Compare(a.pos, b.pos)
		})
		return true
	case vString:
	default:
		return false
	}
	prefix := xs[0].v.str()
	for i := range xs {
		if xs[i].v.typ() != vString {
			return false
		}
		s := xs[i].v.str()
		n := 0
		for n < len(prefix) && n < len(s) && prefix[n] == s[n] {
			n++
		}
		prefix = prefix[:n]
	}
	skip := len(prefix)
	for i := range xs {
		var k [8]byte
		copy(k[:], xs[i].v.str()[skip:])
		xs[i].key = binary.BigEndian.Uint64(k[:])
	}
	slices.SortFunc(xs, func(a, b sortEntry) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		// Equal keys: the same first bytes, or a shorter string padded
		// with zeros; the bytes after the prefix decide.
		if c := strings.Compare(a.v.str()[skip:], b.v.str()[skip:]); c != 0 {
			return c
		}
		return cmp.Compare(a.pos, b.pos)
	})
	return true
}

// build returns the single-property index of name over ents (in
// ascending key order), built from its entries sorted as the index keeps
// them.
func (b *entryBuf) build(ents []*dsEntity, name string) *btree.Tree[propEntry] {
	if cap(b.xs) < len(ents) {
		b.xs = make([]sortEntry, 0, len(ents)) // most properties have one value
	}
	xs := b.xs[:0]
	for pos, e := range ents {
		vals := e.props.get(name)
		switch len(vals) {
		case 0:
		case 1:
			xs = append(xs, sortEntry{v: &vals[0], pos: pos})
		default:
			for _, v := range entryValues(vals) {
				xs = append(xs, sortEntry{v: v, pos: pos})
			}
		}
	}
	sorted := sortByKey(xs)
	if !sorted {
		// Sorted by value alone first: a property of few distinct values
		// (a flag, a category) then costs few comparisons of values,
		// where with the position as a tie-break no two entries would be
		// equal. Each run of one value is then put back in key order by
		// position, which compares integers only.
		slices.SortFunc(xs, func(a, b sortEntry) int { return compareValue(*a.v, *b.v) })
		for lo := 0; lo < len(xs); {
			hi := lo + 1
			for hi < len(xs) && compareValue(*xs[lo].v, *xs[hi].v) == 0 {
				hi++
			}
			if hi-lo > 1 {
				slices.SortFunc(xs[lo:hi], func(a, b sortEntry) int { return cmp.Compare(a.pos, b.pos) })
			}
			lo = hi
		}
	}
	b.xs = xs
	entry := func(i int) propEntry { return propEntry{xs[i].v, ents[xs[i].pos]} }
	if sorted {
		// sortByKey's order is the index's (TestSortByKeyMatchesCompareValue),
		// and the positions are distinct per value: no check needed.
		return btree.BuildSortedFunc(lessEntry, len(xs), entry)
	}
	return btree.BuildFunc(lessEntry, len(xs), entry)
}

// loadWorkers is how many goroutines build indexes at a load.
func loadWorkers() int { return runtime.GOMAXPROCS(0) }
