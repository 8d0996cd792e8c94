package aelocal

import (
	"slices"
	"strings"

	"github.com/icza/gaesession/v2/aelocal/internal/btree"
)

// Reads of the sorted indexes for the planner (datastore_plan.go). Each
// calls visit with the entries in the order the query reads them, from a
// start that a seek finds, until visit returns false or the range ends.
// visit gets the entry's value, or nil for the kind index.

type indexVisit func(e *dsEntity, v *dsValue) bool

// readKeys reads the kind index t in key order: from the start key from (nil
// for the first or, with desc, the last), within the bounds of the
// __key__ inequality filters f (nil if none), and only the descendants of
// ancestor if it is not nil (they lie together from the ancestor's own
// key on).
func readKeys(t *btree.Tree[*dsEntity], f *dsPropFilter, ancestor, from dsPath, desc bool, count *int64, visit indexVisit) {
	// The __key__ filter's keys are in the query's app and namespace
	// (parseQuery checks), so comparing paths compares the keys.
	keyCmp := func(path dsPath) func(dsValue) int {
		return func(v dsValue) int { return comparePath(path, v.ref().path) }
	}
	lowOK := func(path dsPath) bool { return f == nil || boundOK(f, keyCmp(path), opGreater, opGreatEq) }
	highOK := func(path dsPath) bool { return f == nil || boundOK(f, keyCmp(path), opLess, opLessEq) }
	if desc {
		start := from
		if ancestor != nil {
			// A key after every descendant of ancestor and before every
			// other key after it: a kind longer than any valid one
			// (maxKeyPartBytes) of the highest bytes sorts after every
			// kind under ancestor.
			end := append(slices.Clone(ancestor), dsElem{kind: strings.Repeat("\xff", maxKeyPartBytes+1)})
			if start == nil || comparePath(end, start) < 0 {
				start = end
			}
		}
		if f != nil {
			for _, in := range f.ineqs {
				if (in.op == opLess || in.op == opLessEq) && (start == nil || comparePath(in.v.ref().path, start) < 0) {
					start = in.v.ref().path
				}
			}
		}
		iter := func(e *dsEntity) bool {
			*count++
			if ancestor != nil && !e.path.hasPrefix(ancestor) {
				return false
			}
			return lowOK(e.path) && visit(e, nil)
		}
		if start == nil {
			t.Descend(iter)
		} else {
			t.DescendLessOrEqual(pathProbe(start), iter)
		}
		return
	}
	start := from
	if ancestor != nil && (start == nil || comparePath(ancestor, start) > 0) {
		start = ancestor
	}
	var eq dsPath // the key an equality filter asks for
	if f != nil {
		for _, in := range f.ineqs {
			if (in.op == opGreater || in.op == opGreatEq) && (start == nil || comparePath(in.v.ref().path, start) > 0) {
				start = in.v.ref().path
			}
		}
		if len(f.eqs) > 0 {
			eq = f.eqs[0].ref().path
			if start == nil || comparePath(eq, start) > 0 {
				start = eq
			}
		}
	}
	t.AscendGreaterOrEqual(pathProbe(start), func(e *dsEntity) bool {
		*count++
		if ancestor != nil && !e.path.hasPrefix(ancestor) || eq != nil && comparePath(e.path, eq) > 0 {
			return false
		}
		return highOK(e.path) && visit(e, nil)
	})
}

// readEqual reads the entries of value v of a property's index, in key
// order from the start key from.
func readEqual(t *btree.Tree[propEntry], v dsValue, from dsPath, desc bool, count *int64, visit indexVisit) {
	iter := func(x propEntry) bool {
		*count++
		if compareValue(*x.v, v) != 0 {
			return false
		}
		return visit(x.e, x.v)
	}
	if desc {
		probe := topOf(v)
		if from != nil {
			probe = entryAt(v, from)
		}
		t.DescendLessOrEqual(probe, iter)
		return
	}
	t.AscendGreaterOrEqual(entryAt(v, from), iter)
}

// readValues reads a property's index in the order of q's first sort
// order, on that property: by value up or down, and by key upwards within
// a value. It starts at the start position pos if set, and within the
// bounds of q's inequality filters on the property.
//
// A distinct query's read sets *skip (if skip is not nil) once it has the
// result of a value: the read then seeks past the value's other entries,
// as production skips to the next group.
func readValues(t *btree.Tree[propEntry], q *dsQuery, pos dsPos, desc bool, count *int64, skip *bool, visit indexVisit) {
	skipped := func() bool {
		if skip == nil || !*skip {
			return false
		}
		*skip = false
		return true
	}
	f := q.byProp[q.orders[0].prop]
	// lowOK and highOK report whether a value is within the lower and the
	// upper bounds of the inequality filters.
	valueCmp := func(v dsValue) func(dsValue) int {
		return func(w dsValue) int { return compareValue(v, w) }
	}
	lowOK := func(v dsValue) bool { return f == nil || boundOK(f, valueCmp(v), opGreater, opGreatEq) }
	highOK := func(v dsValue) bool { return f == nil || boundOK(f, valueCmp(v), opLess, opLessEq) }
	var at *propEntry // the start position as a probe
	// afterValue: the position lies after every entry of its value, in the
	// read's direction: a distinct query's, after the combination of a
	// value of its first order (its only group-by order), which the read
	// seeks past instead of reading the combination's entries again.
	afterValue := false
	if pos.set && (pos.has == nil || pos.has[0]) {
		p := entryAt(pos.vals[0], pos.key)
		at = &p
		afterValue = len(q.groupBy) > 0 && pos.key == nil && !pos.before && pos.has != nil && !slices.Contains(pos.has[1:], true)
	}
	if afterValue && !desc {
		p := topOf(*at.v)
		at = &p
	}
	if !desc {
		var start propEntry // the highest of the lower bounds, if first is false
		first := true
		if f != nil {
			for _, in := range f.ineqs {
				if in.op == opGreater || in.op == opGreatEq {
					// > starts after the value's entries, >= at them.
					p := entryAt(in.v, nil)
					if in.op == opGreater {
						p = topOf(in.v)
					}
					if first || lessEntry(start, p) {
						start, first = p, false
					}
				}
			}
		}
		if at != nil && (first || lessEntry(start, *at)) {
			start, first = *at, false
		}
		for {
			var past *dsValue // the value whose other entries to skip
			iter := func(x propEntry) bool {
				*count++
				if !highOK(*x.v) || !visit(x.e, x.v) {
					return false
				}
				if skipped() {
					past = x.v
					return false
				}
				return true
			}
			if first {
				t.Ascend(iter)
			} else {
				t.AscendGreaterOrEqual(start, iter)
			}
			if past == nil {
				return
			}
			start, first = topOf(*past), false
		}
	}
	// Downwards, a value at a time, each value's entries by key upwards:
	// find the highest value to start at, read its entries, then seek the
	// next lower value.
	var top *propEntry // probe at or above the first entry to read
	if f != nil {
		for _, in := range f.ineqs {
			if in.op == opLess || in.op == opLessEq {
				// < starts below the value's entries, <= at them.
				p := topOf(in.v)
				if in.op == opLess {
					p = entryAt(in.v, nil)
				}
				if top == nil || lessEntry(p, *top) {
					top = &p
				}
			}
		}
	}
	if at != nil {
		p := topOf(*at.v)
		if afterValue {
			p = entryAt(*at.v, nil) // below every entry of the value
		}
		if top == nil || lessEntry(p, *top) {
			top = &p
		}
	}
	// The entries of a value come downwards in key order downwards: they
	// are kept (up to descGroup) and visited in reverse once the value
	// changes, so a read costs an entry per entry. A value with more
	// entries is read again upwards from its first entry (or the start
	// position), so that memory stays bounded.
	descGroup := 64
	if len(q.groupBy) > 0 {
		// Distinct: a value's first result is usually its first entry
		// in key order, so each value is read upwards from it (as a
		// value of many entries is), and the read seeks past the
		// value's other entries once it has the result: two entries
		// a value.
		descGroup = 0
	}
	var buf []propEntry
	var val *dsValue // the value of buf's entries
	// flush visits buf's entries in key order; it reports whether to
	// read on.
	flush := func() bool {
		for i := len(buf) - 1; i >= 0; i-- {
			if !visit(buf[i].e, buf[i].v) {
				return false
			}
			if skipped() {
				break
			}
		}
		buf = buf[:0]
		return true
	}
	start := top
	for {
		stop := false
		var big *dsValue // a value of more than descGroup entries
		iter := func(x propEntry) bool {
			*count++
			if val == nil || compareValue(*x.v, *val) != 0 {
				if val != nil && !flush() || !lowOK(*x.v) {
					stop = true
					return false
				}
				val = x.v
			}
			if len(buf) == descGroup {
				big = val
				return false
			}
			buf = append(buf, x)
			return true
		}
		if start == nil {
			t.Descend(iter)
		} else {
			t.DescendLessOrEqual(*start, iter)
		}
		switch {
		case stop:
			return
		case big == nil: // the index's first entry
			if val != nil {
				flush()
			}
			return
		}
		v := *big
		buf, val = buf[:0], nil
		from := entryAt(v, nil)
		if at != nil && compareValue(*at.v, v) == 0 {
			from = *at
		}
		more := true
		t.AscendGreaterOrEqual(from, func(x propEntry) bool {
			*count++
			if compareValue(*x.v, v) != 0 {
				return false
			}
			more = visit(x.e, x.v)
			return more && !skipped()
		})
		if !more {
			return
		}
		below := entryAt(v, nil) // before every entry of v, after the lower values'
		start = &below
	}
}

// justAfter returns a probe key that sorts right after path and before
// every other key after it (its descendants included): no key has an
// element of empty kind, and a longer path sorts after its prefix.
func justAfter(path dsPath) dsPath { return append(slices.Clone(path), dsElem{}) }

// boundOK reports whether a value passes the inequality filters of f on
// one side: opGreater and opGreatEq for the lower bound, opLess and
// opLessEq for the upper. cmp compares the value with a filter's.
func boundOK(f *dsPropFilter, cmp func(dsValue) int, strict, inclusive int64) bool {
	for _, in := range f.ineqs {
		if in.op != strict && in.op != inclusive {
			continue
		}
		if !ineqHolds(in.op, cmp(in.v)) {
			return false
		}
	}
	return true
}

// joinTerm is one equality filter of a merge join: the entries of value v
// in a property's index t.
type joinTerm struct {
	t     *btree.Tree[propEntry]
	v     dsValue
	count *int64 // counts the entries read
}

// seek returns the first entry of the term with a key at or after key (nil:
// the first), or strictly after it if strict.
func (tm joinTerm) seek(key dsPath, strict bool) (propEntry, bool) {
	var got propEntry
	found := false
	if strict {
		key = justAfter(key)
	}
	tm.t.AscendGreaterOrEqual(entryAt(tm.v, key), func(x propEntry) bool {
		*tm.count++
		if compareValue(*x.v, tm.v) != 0 {
			return false
		}
		got, found = x, true
		return false
	})
	return got, found
}

// readJoin reads, in key order from the start key from, the entities that
// have an entry in every term: a merge join of the terms' entries, each in
// key order, seeking each term to the highest key another term reached
// (production's zigzag join), so that it reads about as many entries as
// the terms' smallest list has between the results, not every entry.
func readJoin(terms []joinTerm, from dsPath, visit indexVisit) {
	key, strict := from, false
	for {
		var e *dsEntity
		// Cycle through the terms until all of them agree on one key.
		for i, agree := 0, 0; agree < len(terms); i = (i + 1) % len(terms) {
			x, ok := terms[i].seek(key, strict)
			if !ok {
				return
			}
			if key != nil && !strict && comparePath(x.e.path, key) == 0 {
				agree++
			} else {
				key, strict, agree = x.e.path, false, 1
			}
			e = x.e
		}
		if !visit(e, nil) {
			return
		}
		strict = true
	}
}

// readKindless reads, in key order from the start key from, the key
// indexes of every kind of a namespace (kinds), merged by key: the answer
// to a query of no kind. Production keeps one key index across kinds; a
// merge of the kinds' seeks costs a seek per kind to start and one per
// result, so a page costs its rows (times the log of the kind's size),
// not the namespace's size. f is the query's __key__ filter, ancestor its
// ancestor; visit gets each entity with nil values.
func readKindless(kinds []*btree.Tree[*dsEntity], f *dsPropFilter, ancestor, from dsPath, count *int64, visit func(*dsEntity, []*dsValue) bool) {
	start := from
	if ancestor != nil && (start == nil || comparePath(ancestor, start) > 0) {
		start = ancestor
	}
	if f != nil {
		for _, in := range f.ineqs {
			if (in.op == opGreater || in.op == opGreatEq) && (start == nil || comparePath(in.v.ref().path, start) > 0) {
				start = in.v.ref().path
			}
		}
		if len(f.eqs) > 0 && (start == nil || comparePath(f.eqs[0].ref().path, start) > 0) {
			start = f.eqs[0].ref().path
		}
	}
	// past reports whether every key from path on is outside the query's
	// range: past its ancestor's descendants, its key equality or its
	// upper bounds.
	past := func(path dsPath) bool {
		if ancestor != nil && !path.hasPrefix(ancestor) {
			return true
		}
		if f == nil {
			return false
		}
		if len(f.eqs) > 0 && comparePath(path, f.eqs[0].ref().path) > 0 {
			return true
		}
		return !boundOK(f, func(v dsValue) int { return comparePath(path, v.ref().path) }, opLess, opLessEq)
	}
	// seek returns kind i's first entity at or after key (strictly after
	// if strict).
	seek := func(t *btree.Tree[*dsEntity], key dsPath) *dsEntity {
		var got *dsEntity
		t.AscendGreaterOrEqual(pathProbe(key), func(e *dsEntity) bool {
			*count++
			got = e
			return false
		})
		return got
	}
	heads := make([]*dsEntity, len(kinds))
	for i, t := range kinds {
		heads[i] = seek(t, start)
	}
	for {
		best := -1
		for i, e := range heads {
			if e != nil && (best < 0 || comparePath(e.path, heads[best].path) < 0) {
				best = i
			}
		}
		if best < 0 || past(heads[best].path) {
			return
		}
		e := heads[best]
		if !visit(e, nil) {
			return
		}
		heads[best] = seek(kinds[best], justAfter(e.path))
	}
}
