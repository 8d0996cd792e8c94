package aelocal

import "github.com/google/btree"

// Reads of the sorted indexes for the planner (datastore_plan.go). Each
// calls visit with the entries in the order the query reads them, from a
// start that a seek finds, until visit returns false or the range ends.
// visit gets the entry's value, or nil for the kind index.

type indexVisit func(e *dsEntity, v *dsValue) bool

// readKeys reads the kind index in key order: from the start key from (nil
// for the first or, with desc, the last), only the descendants of
// ancestor if it is not nil (ascending only: they lie together from the
// ancestor's own key on).
func readKeys(ki *kindIndex, ancestor, from dsPath, desc bool, visit indexVisit) {
	if desc {
		iter := func(e *dsEntity) bool { return visit(e, nil) }
		if from == nil {
			ki.byKey.Descend(iter)
		} else {
			ki.byKey.DescendLessOrEqual(pathProbe(from), iter)
		}
		return
	}
	start := from
	if ancestor != nil && (start == nil || comparePath(ancestor, start) > 0) {
		start = ancestor
	}
	ki.byKey.AscendGreaterOrEqual(pathProbe(start), func(e *dsEntity) bool {
		if ancestor != nil && !e.path.hasPrefix(ancestor) {
			return false
		}
		return visit(e, nil)
	})
}

// readEqual reads the entries of value v of a property's index, in key
// order from the start key from.
func readEqual(t *btree.BTreeG[propEntry], v dsValue, from dsPath, desc bool, visit indexVisit) {
	iter := func(x propEntry) bool {
		if compareValue(x.v, v) != 0 {
			return false
		}
		return visit(x.e, &x.v)
	}
	if desc {
		probe := propEntry{v: v, top: true}
		if from != nil {
			probe = propEntry{v: v, e: pathProbe(from)}
		}
		t.DescendLessOrEqual(probe, iter)
		return
	}
	t.AscendGreaterOrEqual(propEntry{v: v, e: pathProbe(from)}, iter)
}

// readValues reads a property's index in the order of q's first sort
// order, on that property: by value up or down, and by key upwards within
// a value. It starts at the start position pos if set, and within the
// bounds of q's inequality filters on the property.
func readValues(t *btree.BTreeG[propEntry], q *dsQuery, pos dsPos, desc bool, visit indexVisit) {
	f := q.byProp[q.orders[0].prop]
	// lowOK and highOK report whether a value is within the lower and the
	// upper bounds of the inequality filters.
	lowOK := func(v dsValue) bool { return f == nil || boundOK(f, v, opGreater, opGreatEq) }
	highOK := func(v dsValue) bool { return f == nil || boundOK(f, v, opLess, opLessEq) }
	var at *propEntry // the start position as a probe
	if pos.set && (pos.has == nil || pos.has[0]) {
		at = &propEntry{v: pos.vals[0], e: pathProbe(pos.key)}
	}
	if !desc {
		start := propEntry{v: dsValue{t: vNull}} // before every entry? see lowest
		first := true
		if f != nil {
			for _, in := range f.ineqs {
				if in.op == opGreater || in.op == opGreatEq {
					if p := (propEntry{v: in.v, e: pathProbe(nil)}); first || lessEntry(start, p) {
						start, first = p, false
					}
				}
			}
		}
		if at != nil && (first || lessEntry(start, *at)) {
			start, first = *at, false
		}
		iter := func(x propEntry) bool {
			if !highOK(x.v) {
				return false
			}
			return visit(x.e, &x.v)
		}
		if first {
			t.Ascend(iter)
		} else {
			t.AscendGreaterOrEqual(start, iter)
		}
		return
	}
	// Downwards, a value at a time, each value's entries by key upwards:
	// find the highest value to start at, read its entries, then seek the
	// next lower value.
	var top *propEntry // probe at or above the first entry to read
	if f != nil {
		for _, in := range f.ineqs {
			if in.op == opLess || in.op == opLessEq {
				if p := (propEntry{v: in.v, top: true}); top == nil || lessEntry(p, *top) {
					top = &p
				}
			}
		}
	}
	if at != nil {
		if p := (propEntry{v: at.v, top: true}); top == nil || lessEntry(p, *top) {
			top = &p
		}
	}
	var cur propEntry
	found := false
	next := func(x propEntry) bool { cur, found = x, true; return false }
	if top == nil {
		t.Descend(next)
	} else {
		t.DescendLessOrEqual(*top, next)
	}
	for found {
		v := cur.v
		if !lowOK(v) {
			return
		}
		from := propEntry{v: v, e: pathProbe(nil)}
		if at != nil && compareValue(at.v, v) == 0 {
			from = *at
		}
		more := true
		t.AscendGreaterOrEqual(from, func(x propEntry) bool {
			if compareValue(x.v, v) != 0 {
				return false
			}
			more = visit(x.e, &x.v)
			return more
		})
		if !more {
			return
		}
		found = false
		t.DescendLessOrEqual(propEntry{v: v, e: pathProbe(nil)}, next)
	}
}

// boundOK reports whether v passes every inequality filter of f with
// operator lt or le... that is, those of one side: opGreater/opGreatEq
// for the lower bound, opLess/opLessEq for the upper.
func boundOK(f *dsPropFilter, v dsValue, strict, inclusive int64) bool {
	for _, in := range f.ineqs {
		if in.op != strict && in.op != inclusive {
			continue
		}
		c := compareValue(v, in.v)
		switch in.op {
		case opLess:
			if c >= 0 {
				return false
			}
		case opLessEq:
			if c > 0 {
				return false
			}
		case opGreater:
			if c <= 0 {
				return false
			}
		case opGreatEq:
			if c < 0 {
				return false
			}
		}
	}
	return true
}
