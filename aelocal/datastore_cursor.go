package aelocal

import (
	"slices"
	"sort"
	"strings"
)

// Query positions. As in production, a cursor is a position between index
// entries, not "after entity X": it holds the values of the query's index
// columns (its sort properties, and the key unless the query is distinct)
// at the last result, and whether it lies just before or just after the
// entries equal to them. A cursor fits any query with the same index
// columns, whatever their directions, and means there the same place in
// the index: taken on Order("A") and used on Order("-A"), it starts at the
// entry it was taken after. This is the SDK stub's model (BaseCursor,
// _NormalizeCursor), which keeps the side relative to ascending order
// (before_ascending) and derives the side in the query's order from the
// direction of its first sort order.
//
// aelocal writes positions in the Position group of the CompiledCursor that
// appengine/v2 knows: one IndexValue per sort property, the key, and
// before_ascending in start_inclusive, the only field left for it. A
// cursor with a multi-valued sort property holds the one value its entry
// sorted by; the stub writes every value of the entity there and then
// refuses its own cursor, which production does not.

// dsPos is a position in a query's order; the zero dsPos is the start.
type dsPos struct {
	set    bool
	before bool      // just before the entries equal to the position, else just after
	vals   []dsValue // one per query order, unused for __key__ orders
	has    []bool    // which orders the position has a value for; nil: every one
	key    dsPath    // nil when the position has no key (distinct queries)
}

// cursorProp reports whether name is one of q's index columns, the
// properties its cursors hold: the group-by properties of a distinct
// query, else every sort property and __key__.
func (q *dsQuery) cursorProp(name string) bool {
	if len(q.groupBy) > 0 {
		return slices.Contains(q.groupBy, name)
	}
	if name == keyProp {
		return true
	}
	return slices.ContainsFunc(q.orders, func(o dsOrder) bool { return !o.key && o.prop == name })
}

// firstDesc reports whether q's first sort order is descending; without
// orders the implicit key order is ascending.
func (q *dsQuery) firstDesc() bool { return len(q.orders) > 0 && q.orders[0].desc }

// posAfter returns the position just after result c.
func (q *dsQuery) posAfter(c dsCand) dsPos {
	p := dsPos{set: true, vals: c.vals}
	if len(q.groupBy) == 0 {
		p.key = c.e.path
		return p
	}
	p.has = make([]bool, len(q.orders))
	for i, o := range q.orders {
		p.has[i] = !o.key && q.cursorProp(o.prop)
	}
	return p
}

// comparePos orders result c against position p, in q's order.
func (q *dsQuery) comparePos(c dsCand, p dsPos) int {
	for i, o := range q.orders {
		var x int
		switch {
		case o.key && p.key == nil, !o.key && p.has != nil && !p.has[i]:
			continue
		case o.key:
			x = comparePath(c.e.path, p.key)
		default:
			x = compareValue(c.vals[i], p.vals[i])
		}
		if o.desc {
			x = -x
		}
		if x != 0 {
			return x
		}
	}
	if p.key == nil {
		return 0
	}
	return comparePath(c.e.path, p.key)
}

// isBefore reports whether result c lies before position p.
func (q *dsQuery) isBefore(c dsCand, p dsPos) bool {
	x := q.comparePos(c, p)
	return x < 0 || (x == 0 && !p.before)
}

// afterStart reports whether c comes at or after the start position p.
func (q *dsQuery) afterStart(c dsCand, p dsPos) bool { return !p.set || !q.isBefore(c, p) }

// beforeEnd reports whether c comes before the end position p.
func (q *dsQuery) beforeEnd(c dsCand, p dsPos) bool { return p.set && q.isBefore(c, p) }

// parsePos reads a CompiledCursor that writePos wrote, for q or for any
// query with the same index columns.
func (q *dsQuery) parsePos(cc pmsg, what string) (dsPos, error) {
	if !cc.Has("position") {
		return dsPos{}, nil
	}
	p := cc.Msg("position")
	ivs := p.Msgs("indexvalue")
	if !p.Has("key") && len(ivs) == 0 {
		if p.Str("start_key") != "" {
			return dsPos{}, badRequest("the %s cursor was not made by aelocal: it has no key position", what)
		}
		return dsPos{}, nil
	}
	got := make(map[string]dsValue, len(ivs))
	pos := dsPos{set: true, before: p.Bool("start_inclusive") != q.firstDesc()}
	if p.Has("key") {
		sp, path, err := parseKey(p.Msg("key"), "the "+what+" cursor's key", false)
		if err != nil {
			return dsPos{}, err
		}
		if sp != q.sp {
			return dsPos{}, badRequest("the %s cursor does not match the query: it is for app %q namespace %q, the query for app %q namespace %q",
				what, sp.app, sp.ns, q.sp.app, q.sp.ns)
		}
		if !q.cursorProp(keyProp) {
			return dsPos{}, badRequest("Cursor does not match query: extra value %s", keyProp)
		}
		pos.key = path
	}
	for _, iv := range ivs {
		name := iv.Str("property")
		if _, dup := got[name]; dup || name == keyProp || !q.cursorProp(name) {
			return dsPos{}, badRequest("Cursor does not match query: extra value %s", name)
		}
		got[name] = parseValue(iv.Msg("value"))
	}
	var missing []string
	if pos.key == nil && q.cursorProp(keyProp) {
		missing = append(missing, keyProp)
	}
	pos.vals = make([]dsValue, len(q.orders))
	pos.has = make([]bool, len(q.orders))
	for i, o := range q.orders {
		if o.key || !q.cursorProp(o.prop) {
			continue
		}
		v, ok := got[o.prop]
		if !ok {
			missing = append(missing, o.prop)
			continue
		}
		pos.vals[i], pos.has[i] = v, true
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return dsPos{}, badRequest("Cursor does not match query: missing values for %s", strings.Join(missing, ", "))
	}
	return pos, nil
}

// writePos fills an empty CompiledCursor with position p of q.
func (q *dsQuery) writePos(cc pmsg, p dsPos) {
	if !p.set {
		return
	}
	pm := cc.Mutable("position")
	for i, o := range q.orders {
		if o.key || (p.has != nil && !p.has[i]) {
			continue
		}
		iv := pm.AppendMsg("indexvalue")
		iv.Set("property", o.prop)
		writeValue(iv.Mutable("value"), p.vals[i])
	}
	if p.key != nil {
		writeRef(pm.Mutable("key"), q.sp.app, q.sp.ns, p.key)
	}
	pm.Set("start_inclusive", p.before != q.firstDesc()) // before_ascending
}
