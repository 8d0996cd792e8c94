package aelocal

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
)

// Composite indexes. Production answers a query from one index, or from a
// merge join of several, and refuses a query that needs a composite index
// index.yaml does not declare. The built-in single-property indexes serve
// kind-only queries, queries on one property (one filter or one sort
// order), equality filters alone (merged, with or without an ancestor),
// and an inequality with sort orders on the same property; the rest needs
// a composite index: sort orders with filters on other properties,
// inequalities with other filters, ancestor queries with inequalities or
// sort orders, a descending key order, and projections of more than one
// property, distinct or not. These are the documented rules, and the ones
// the SDK's stub implements (datastore_index.Normalize,
// RemoveNativelySupportedComponents, CompositeIndexForQuery,
// MinimalCompositeIndexForQuery); the code below follows the stub.

// Index property directions; dirAny is a requirement that either direction
// meets.
const (
	dirAny  = 0
	dirAsc  = 1
	dirDesc = 2
)

// dsIndexProp is a property of a composite index.
type dsIndexProp struct {
	name string
	dir  int
}

// dsIndex is a composite index, as index.yaml declares one. Its properties
// have a direction each.
type dsIndex struct {
	kind     string
	ancestor bool
	props    []dsIndexProp
}

// idxQuery is what decides the index a query needs.
type idxQuery struct {
	kind     string
	ancestor bool
	filters  []idxFilter
	orders   []idxOrder
	project  []string
	groupBy  []string
}

type idxFilter struct {
	prop string
	op   int64 // opIn counts as opEqual
}

type idxOrder struct {
	prop string
	desc bool
}

// dsIndexNeed is the composite index a query needs: its equality
// properties in any order (prefix), then its sort orders in order, then its
// group-by properties in any order, then the properties it needs to exist
// (projected, EXISTS-filtered) in any order.
type dsIndexNeed struct {
	kind      string
	ancestor  bool
	prefix    []string // sorted
	ordered   []dsIndexProp
	groupBy   []string // sorted
	unordered []string // sorted
}

// specialProps are the reserved properties that no built-in index serves
// an equality filter on.
var specialProps = []string{keyProp, "__unapplied_log_timestamp_us__", "__scatter__"}

// idxQueryOf reads what decides the index of a Query request that
// parseQuery accepted.
func idxQueryOf(in pmsg) idxQuery {
	q := idxQuery{
		kind:     in.Str("kind"),
		ancestor: in.Has("ancestor"),
		project:  stringList(in, "property_name"),
		groupBy:  stringList(in, "group_by_property_name"),
	}
	for _, f := range in.Msgs("filter") {
		op := f.Int("op")
		if op == opIn {
			op = opEqual
		}
		q.filters = append(q.filters, idxFilter{prop: f.Msgs("property")[0].Str("name"), op: op})
	}
	for _, o := range in.Msgs("order") {
		q.orders = append(q.orders, idxOrder{prop: o.Str("property"), desc: o.Int("direction") == 2})
	}
	return q
}

func isIneq(op int64) bool { return op >= opLess && op <= opGreatEq }

// normalize drops the filters and orders that cannot change a query's
// results, and adds an EXISTS filter for each property in exists that is
// neither filtered nor ordered (datastore_index.Normalize).
func normalize(filters []idxFilter, orders []idxOrder, exists []string) ([]idxFilter, []idxOrder) {
	eq, ineq := map[string]bool{}, map[string]bool{}
	for _, f := range filters {
		switch {
		case f.op == opEqual:
			eq[f.prop] = true
		case isIneq(f.op):
			ineq[f.prop] = true
		}
	}
	for p := range ineq {
		delete(eq, p)
	}
	remove := map[string]bool{}
	for p := range eq {
		remove[p] = true
	}
	var newOrders []idxOrder
	for _, o := range orders {
		if !remove[o.prop] {
			remove[o.prop] = true
			newOrders = append(newOrders, o)
		}
	}
	for p := range ineq {
		remove[p] = true
	}
	var newFilters []idxFilter
	for _, f := range filters {
		if f.op != opExists {
			newFilters = append(newFilters, f)
		} else if !remove[f.prop] {
			remove[f.prop] = true
			newFilters = append(newFilters, f)
		}
	}
	for _, p := range exists {
		if !remove[p] {
			remove[p] = true
			newFilters = append(newFilters, idxFilter{prop: p, op: opExists})
		}
	}
	if eq[keyProp] {
		newOrders = nil
	}
	if i := slices.IndexFunc(newOrders, func(o idxOrder) bool { return o.prop == keyProp }); i >= 0 {
		newOrders = newOrders[:i+1]
	}
	return newFilters, newOrders
}

// removeNative drops what the datastore serves without a composite index:
// a final ascending key order, and key filters unless a descending key
// order or an inequality on another property needs them in the index
// (datastore_index.RemoveNativelySupportedComponents).
func removeNative(filters []idxFilter, orders []idxOrder, exists []string) ([]idxFilter, []idxOrder) {
	filters, orders = normalize(filters, orders, exists)
	if slices.ContainsFunc(filters, func(f idxFilter) bool { return f.op == opExists }) {
		return filters, orders
	}
	keyDesc := false
	if n := len(orders); n > 0 && orders[n-1].prop == keyProp {
		if orders[n-1].desc {
			keyDesc = true
		} else {
			orders = orders[:n-1]
		}
	}
	if !keyDesc && !slices.ContainsFunc(filters, func(f idxFilter) bool { return isIneq(f.op) && f.prop != keyProp }) {
		filters = slices.DeleteFunc(slices.Clone(filters), func(f idxFilter) bool { return f.prop == keyProp })
	}
	return filters, orders
}

// indexNeed returns the composite index q needs, and whether it needs one
// at all (datastore_index.CompositeIndexForQuery).
func indexNeed(q idxQuery) (dsIndexNeed, bool) {
	need := dsIndexNeed{kind: q.kind, ancestor: q.ancestor}
	required := q.kind != "" // kindless queries are served by the key index
	exists := slices.Concat(q.project, q.groupBy)
	filters, orders := removeNative(q.filters, q.orders, exists)

	var ineqProp string
	hasIneq, hasExists := false, false
	for _, f := range filters {
		switch {
		case f.op == opEqual:
			if !slices.Contains(need.prefix, f.prop) {
				need.prefix = append(need.prefix, f.prop)
			}
		case isIneq(f.op):
			hasIneq = true
			if ineqProp == "" && f.prop != "__unapplied_log_timestamp_us__" {
				ineqProp = f.prop
			}
		case f.op == opExists:
			hasExists = true
			if slices.Contains(q.groupBy, f.prop) {
				need.groupBy = append(need.groupBy, f.prop)
			} else {
				need.unordered = append(need.unordered, f.prop)
			}
		}
	}
	if q.kind != "" && !hasIneq && !hasExists && len(orders) == 0 &&
		!slices.ContainsFunc(need.prefix, func(p string) bool { return slices.Contains(specialProps, p) }) {
		required = false // equality filters alone: a merge join of built-in indexes
	}
	for _, o := range orders {
		dir := dirAsc
		if o.desc {
			dir = dirDesc
		}
		need.ordered = append(need.ordered, dsIndexProp{o.prop, dir})
	}
	if ineqProp != "" && len(orders) == 0 {
		need.ordered = append(need.ordered, dsIndexProp{ineqProp, dirAny})
	}
	slices.Sort(need.prefix)
	slices.Sort(need.groupBy)
	slices.Sort(need.unordered)
	n := len(need.prefix) + len(need.ordered) + len(need.groupBy) + len(need.unordered)
	if q.kind != "" && !q.ancestor && n <= 1 {
		// One property: its built-in index, except for a descending key
		// order, which no built-in index has.
		required = len(need.ordered) == 1 && need.ordered[0] == dsIndexProp{keyProp, dirDesc}
	}
	return need, required
}

// recommended returns the index that serves the query best: the one
// dev_appserver writes to index.yaml (GetRecommendedIndexProperties).
func (n dsIndexNeed) recommended() dsIndex {
	ix := dsIndex{kind: n.kind, ancestor: n.ancestor}
	for _, p := range n.prefix {
		ix.props = append(ix.props, dsIndexProp{p, dirAsc})
	}
	for _, p := range n.ordered {
		if p.dir == dirAny {
			p.dir = dirAsc
		}
		ix.props = append(ix.props, p)
	}
	for _, set := range [][]string{n.groupBy, n.unordered} {
		for _, p := range set {
			ix.props = append(ix.props, dsIndexProp{p, dirAsc})
		}
	}
	return ix
}

// matchPostfix matches the end of index props against the ordered,
// group-by and unordered parts of n, and returns the index's properties
// before them (datastore_index._MatchPostfix).
func (n dsIndexNeed) matchPostfix(props []dsIndexProp) ([]dsIndexProp, bool) {
	end := len(props)
	take := func(k int) []dsIndexProp {
		start := max(end-k, 0)
		part := props[start:end]
		end = start
		return part
	}
	for _, set := range [][]string{n.unordered, n.groupBy} {
		part := take(len(set))
		names := make([]string, 0, len(part))
		for _, p := range part {
			names = append(names, p.name)
		}
		slices.Sort(names)
		if !slices.Equal(slices.Compact(names), set) {
			return nil, false
		}
	}
	part := take(len(n.ordered))
	if len(part) != len(n.ordered) {
		return nil, false
	}
	for i, want := range n.ordered {
		if part[i].name != want.name || (want.dir != dirAny && part[i].dir != want.dir) {
			return nil, false
		}
	}
	return props[:end], true
}

// missingIndex returns nil if the declared indexes serve a query that
// needs n, alone or merged; else the index to add: the recommended one, or
// if some declared index goes part of the way, the smallest one that
// completes it, with efficient false (MinimalCompositeIndexForQuery).
func (n dsIndexNeed) missingIndex(declared []dsIndex) (ix *dsIndex, efficient bool) {
	type remaining struct {
		postfix  []dsIndexProp
		props    []string // sorted
		ancestor bool
	}
	var rems []*remaining
	for _, d := range declared {
		if d.kind != n.kind || (!n.ancestor && d.ancestor) {
			continue
		}
		pre, ok := n.matchPostfix(d.props)
		if !ok {
			continue
		}
		covered := make([]string, 0, len(pre))
		for _, p := range pre {
			covered = append(covered, p.name)
		}
		if slices.ContainsFunc(covered, func(p string) bool { return !slices.Contains(n.prefix, p) }) {
			continue
		}
		postfix := d.props[len(pre):]
		i := slices.IndexFunc(rems, func(r *remaining) bool { return slices.Equal(r.postfix, postfix) })
		r := &remaining{postfix: postfix, props: n.prefix, ancestor: n.ancestor}
		if i >= 0 {
			r = rems[i]
		}
		props := slices.DeleteFunc(slices.Clone(r.props), func(p string) bool { return slices.Contains(covered, p) })
		anc := r.ancestor && !d.ancestor
		if len(props) == 0 && !anc {
			return nil, true
		}
		if i < 0 {
			if slices.Equal(props, r.props) && anc == r.ancestor {
				continue
			}
			rems = append(rems, r)
		}
		r.props, r.ancestor = props, anc
	}
	if len(rems) == 0 {
		rec := n.recommended()
		return &rec, true
	}
	cost := func(r *remaining) int {
		if r.ancestor {
			return len(r.props) + 2
		}
		return len(r.props)
	}
	best := rems[len(rems)-1]
	for _, r := range rems[:len(rems)-1] {
		if cost(r) < cost(best) {
			best = r
		}
	}
	min := &dsIndex{kind: n.kind, ancestor: best.ancestor}
	for _, p := range best.props {
		min.props = append(min.props, dsIndexProp{p, dirAsc})
	}
	min.props = append(min.props, best.postfix...)
	return min, false
}

// compareIndex orders indexes as dev_appserver lists them in index.yaml:
// by kind, ancestor, then properties.
func compareIndex(a, b dsIndex) int {
	if c := strings.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	if a.ancestor != b.ancestor {
		if a.ancestor {
			return 1
		}
		return -1
	}
	return slices.CompareFunc(a.props, b.props, func(x, y dsIndexProp) int {
		if c := strings.Compare(x.name, y.name); c != 0 {
			return c
		}
		return cmp.Compare(x.dir, y.dir)
	})
}

func (ix dsIndex) equal(o dsIndex) bool { return compareIndex(ix, o) == 0 }

// yaml renders ix as an entry of index.yaml's indexes list.
func (ix dsIndex) yaml() string {
	var b strings.Builder
	b.WriteString("- kind: " + yamlScalar(ix.kind) + "\n")
	if ix.ancestor {
		b.WriteString("  ancestor: yes\n")
	}
	if len(ix.props) > 0 {
		b.WriteString("  properties:\n")
	}
	for _, p := range ix.props {
		b.WriteString("  - name: " + yamlScalar(p.name) + "\n")
		if p.dir == dirDesc {
			b.WriteString("    direction: desc\n")
		}
	}
	return b.String()
}

var plainYAML = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]*$`)

// yamlScalar writes s as a YAML scalar, quoted unless it is a plain name.
func yamlScalar(s string) string {
	if plainYAML.MatchString(s) && !slices.Contains([]string{"yes", "no", "true", "false", "on", "off", "null", "y", "n"}, strings.ToLower(s)) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
