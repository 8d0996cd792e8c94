package aelocal

import (
	"fmt"
	"slices"
)

// The Cloud Datastore API's filters (issue 22): IN, NOT_IN, != (NOT_EQUAL)
// and OR composite filters, on top of datastore_v3's conjunctive queries,
// with the rules Firestore in Datastore mode applies to them.
//
// A filter tree (dsFilter) is brought to disjunctive normal form: an OR of
// conjunctions, IN counting as an OR of equalities. Production limits that
// form to 30 disjunctions. Then != v becomes the two ranges < v and > v,
// and NOT_IN [a, b] the ranges < a, between a and b, and > b, as an index
// answers them: so != and NOT_IN are inequalities on their property (the
// first sort order must be on it), they match an entity with at least one
// indexed value (null included) outside the list, as every other filter
// matches one index entry, and never an entity without an indexed value
// of the property. Each conjunction is then a datastore_v3 query, parsed
// and checked by parseQuery: a branch.
//
// One query with branches (dsQuery.branches) matches an entity if a
// branch does; it sorts by the same orders in every branch. Its results
// are the union of the branches' results: an entity is one result, at
// the first place any branch gives it (the lowest in the query's order),
// and a projection result is one result however many branches give it.
// The planner answers such a query by reading each branch from its own
// index range (datastore_plan.go plans each like any query) and merging
// the reads in the query's order (readUnion): a batch of n reads about n
// entries per branch. Each result is emitted by one branch only, the first
// that gives it (dsQuery.appendResults), so the merge needs no set of the
// keys seen and a cursor is a position in the merged order like any other.

// Cloud Datastore API operators beyond datastore_v3's (whose numbers
// opLess..opIn the Cloud API shares), and the composite operators.
const (
	opNotEqual    = 9  // PropertyFilter.NOT_EQUAL
	opHasAncestor = 11 // PropertyFilter.HAS_ANCESTOR
	opNotIn       = 13 // PropertyFilter.NOT_IN
	opAnd         = -1 // CompositeFilter.AND
	opOr          = -2 // CompositeFilter.OR
)

// Production's limits on the filters (Firestore in Datastore mode).
const (
	maxDisjunctions = 30 // conjunctions in the filter's disjunctive normal form
	maxNotInValues  = 10 // values of a NOT_IN filter
)

// dsFilter is a filter of the Cloud Datastore API, as its adapter hands
// it to the engine: a property filter, or an AND or OR of filters.
type dsFilter struct {
	op   int64       // opLess..opEqual, opIn, opNotEqual, opHasAncestor, opNotIn; or opAnd, opOr
	prop string      // a property filter's property
	v    dsValue     // its value (HAS_ANCESTOR: the ancestor key)
	list []dsValue   // the values of IN and NOT_IN
	subs []*dsFilter // the filters of opAnd and opOr
}

// dsLeaf is one filter of a conjunction: op is opLess..opEqual or
// opHasAncestor.
type dsLeaf struct {
	op   int64
	prop string
	v    dsValue
}

// checkFilterRules applies production's rules on combining the Cloud API's
// filters (google.datastore.v1 PropertyFilter.Operator).
func checkFilterRules(f *dsFilter) error {
	var notIn, notEq, in, or int
	var walk func(f *dsFilter, depth int) error
	walk = func(f *dsFilter, depth int) error {
		if depth > maxQueryComponents {
			return badRequest("the query's filter is nested more than %d deep", maxQueryComponents)
		}
		switch f.op {
		case opAnd, opOr:
			if len(f.subs) == 0 {
				return badRequest("a composite filter must have at least one sub-filter")
			}
			if f.op == opOr {
				or++
			}
			for _, s := range f.subs {
				if err := walk(s, depth+1); err != nil {
					return err
				}
			}
			return nil
		case opLess, opLessEq, opGreater, opGreatEq, opEqual, opHasAncestor:
		case opNotEqual:
			notEq++
		case opIn, opNotIn:
			what := "IN"
			if f.op == opNotIn {
				what = "NOT_IN"
				notIn++
				if len(f.list) > maxNotInValues {
					return badRequest("a NOT_IN filter allows at most %d values; the filter on %q has %d", maxNotInValues, f.prop, len(f.list))
				}
			} else {
				in++
			}
			if len(f.list) == 0 {
				return badRequest("an %s filter needs a non-empty array value; the filter on %q has none", what, f.prop)
			}
		default:
			return badRequest("unknown filter operator %d", f.op)
		}
		if f.prop == "" {
			return badRequest("a property filter has an empty property name")
		}
		if f.op == opHasAncestor && (f.prop != keyProp || f.v.typ() != vRef) {
			return badRequest("a HAS_ANCESTOR filter must be on %s and have a key value", keyProp)
		}
		return nil
	}
	if err := walk(f, 0); err != nil {
		return err
	}
	switch {
	case notIn > 1:
		return badRequest("a query may have at most one NOT_IN filter")
	case notIn == 1 && (notEq > 0 || in > 0 || or > 0):
		return badRequest("a NOT_IN filter cannot be combined with NOT_EQUAL, IN or OR filters in the same query")
	case notEq > 1:
		return badRequest("a query may have at most one NOT_EQUAL filter")
	}
	return nil
}

// toDNF returns f in disjunctive normal form, an OR of conjunctions, each
// as its leaves; IN is an OR of equalities, != and NOT_IN stay leaves of
// their own for now. It refuses a form of more than maxDisjunctions
// conjunctions before building one.
func toDNF(f *dsFilter) ([][]*dsFilter, error) {
	tooMany := func(n int) error {
		return badRequest("the query's filter has %d or more disjunctions in disjunctive normal form; the limit is %d", n, maxDisjunctions)
	}
	switch f.op {
	case opOr:
		var out [][]*dsFilter
		for _, s := range f.subs {
			d, err := toDNF(s)
			if err != nil {
				return nil, err
			}
			if out = append(out, d...); len(out) > maxDisjunctions {
				return nil, tooMany(len(out))
			}
		}
		return out, nil
	case opAnd:
		out := [][]*dsFilter{nil}
		for _, s := range f.subs {
			d, err := toDNF(s)
			if err != nil {
				return nil, err
			}
			if len(out)*len(d) > maxDisjunctions {
				return nil, tooMany(len(out) * len(d))
			}
			var next [][]*dsFilter
			for _, a := range out {
				for _, b := range d {
					next = append(next, append(slices.Clip(a), b...))
				}
			}
			out = next
		}
		return out, nil
	case opIn:
		if len(f.list) > maxDisjunctions {
			return nil, tooMany(len(f.list))
		}
		out := make([][]*dsFilter, len(f.list))
		for i, v := range f.list {
			out[i] = []*dsFilter{{op: opEqual, prop: f.prop, v: v}}
		}
		return out, nil
	}
	return [][]*dsFilter{{f}}, nil
}

// expandRanges turns a conjunction's != and NOT_IN into ranges: the
// conjunctions of leaves, one per combination of the ranges.
func expandRanges(conj []*dsFilter) [][]dsLeaf {
	out := [][]dsLeaf{nil}
	for _, f := range conj {
		var alts [][]dsLeaf
		switch f.op {
		case opNotEqual:
			alts = [][]dsLeaf{{{opLess, f.prop, f.v}}, {{opGreater, f.prop, f.v}}}
		case opNotIn:
			vs := slices.Clone(f.list)
			slices.SortFunc(vs, compareValue)
			vs = slices.CompactFunc(vs, func(a, b dsValue) bool { return compareValue(a, b) == 0 })
			alts = append(alts, []dsLeaf{{opLess, f.prop, vs[0]}})
			for i := 1; i < len(vs); i++ {
				alts = append(alts, []dsLeaf{{opGreater, f.prop, vs[i-1]}, {opLess, f.prop, vs[i]}})
			}
			alts = append(alts, []dsLeaf{{opGreater, f.prop, vs[len(vs)-1]}})
		default:
			alts = [][]dsLeaf{{{f.op, f.prop, f.v}}}
		}
		var next [][]dsLeaf
		for _, a := range out {
			for _, b := range alts {
				next = append(next, append(slices.Clip(a), b...))
			}
		}
		out = next
	}
	return out
}

// parseFilteredQuery reads a query of the Cloud Datastore API: in is the
// datastore_v3 Query of everything but its filter (app, namespace, kind,
// orders, projection, group-by properties, keys_only, and an ancestor if
// the adapter took it out of the filter), f its filter or nil. A filter
// that is one conjunction of datastore_v3's operators is a datastore_v3
// query, parsed by parseQuery; any other has branches. Each branch
// (b.in) and a query without branches (in with the filters added)
// need their composite index as a datastore_v3 query does: checkFiltered.
func parseFilteredQuery(in pmsg, f *dsFilter) (*dsQuery, error) {
	if f == nil {
		q, err := parseQuery(in)
		if err == nil {
			q.in = in
		}
		return q, err
	}
	if err := checkFilterRules(f); err != nil {
		return nil, err
	}
	conjs, err := toDNF(f)
	if err != nil {
		return nil, err
	}
	var branches [][]dsLeaf
	for _, c := range conjs {
		branches = append(branches, expandRanges(c)...)
	}
	// The ancestor: every branch must have the same one.
	var anc *dsValue
	for i, b := range branches {
		var mine *dsValue
		for _, l := range b {
			if l.op != opHasAncestor {
				continue
			}
			if mine != nil && compareValue(*mine, l.v) != 0 {
				return nil, badRequest("a query may have only one HAS_ANCESTOR filter")
			}
			mine = &l.v
		}
		if i > 0 && (mine == nil) != (anc == nil) || mine != nil && anc != nil && compareValue(*mine, *anc) != 0 {
			return nil, badRequest("all disjunctions of a query must have the same HAS_ANCESTOR filter")
		}
		anc = mine
	}
	base := in.Clone()
	base.Clear("filter")
	if anc != nil {
		if base.Has("ancestor") {
			return nil, badRequest("a query may have only one HAS_ANCESTOR filter")
		}
		r := base.Mutable("ancestor")
		writeRef(r, anc.ref().app, anc.ref().ns, anc.ref().path)
	}
	if len(branches) == 1 {
		one := base.Clone()
		addLeaves(one, branches[0])
		q, err := parseQuery(one)
		if err == nil {
			q.in = one
		}
		return q, err
	}
	q, err := parseQuery(base)
	if err != nil {
		return nil, err
	}
	if q.meta != "" || q.kind == "" {
		return nil, badRequest("OR, IN, NOT_IN and != filters need a kind, and not a metadata one")
	}
	// The one inequality property, and the orders every branch shares:
	// the requested ones, or the inequality property's (so an entity
	// without a value of it is no result of any branch, as production's
	// implicit order by it has it), then the projected and group-by
	// properties, as parseQuery orders a query without filters.
	ineq := ""
	for _, b := range branches {
		for _, l := range b {
			if isIneq(l.op) {
				if ineq != "" && ineq != l.prop {
					return nil, badRequest("only one inequality filter property per query is supported; this query has inequality filters on %q and %q", ineq, l.prop)
				}
				ineq = l.prop
			}
		}
	}
	orders := q.orders
	if ineq != "" && in.Len("order") == 0 {
		orders = append([]dsOrder{{prop: ineq, key: ineq == keyProp}},
			slices.DeleteFunc(slices.Clone(orders), func(o dsOrder) bool { return o.prop == ineq })...)
	}
	q.orders, q.nProp = orders, 0
	for _, o := range orders {
		if !o.key {
			q.nProp++
		}
	}
	for i, leaves := range branches {
		m := base.Clone()
		m.Clear("order")
		for _, o := range orders {
			om := m.AppendMsg("order")
			om.Set("property", o.prop)
			dir := int64(1)
			if o.desc {
				dir = 2
			}
			om.Set("direction", dir)
		}
		addLeaves(m, leaves)
		b, err := parseQuery(m)
		if err != nil {
			return nil, err
		}
		// The same orders in every branch: parseQuery drops those on a
		// property only equality filters constrain, which changes no
		// answer; restoring them keeps the branches comparable. A
		// branch whose first order is on such a property reads just
		// that value's entries: the equality is a closed range there.
		b.orders, b.nProp = orders, q.nProp
		if len(orders) > 0 && !orders[0].key {
			if pf := b.byProp[orders[0].prop]; pf != nil && len(pf.eqs) == 1 && len(pf.ineqs) == 0 {
				pf.ineqs = []dsIneq{{opGreatEq, pf.eqs[0]}, {opLessEq, pf.eqs[0]}}
				pf.eqs = nil
			}
		}
		b.in, b.union, b.ord = m, q, i
		q.branches = append(q.branches, b)
	}
	return q, nil
}

// addLeaves adds a conjunction's filters (but HAS_ANCESTOR, already the
// query's ancestor) to a datastore_v3 Query.
func addLeaves(m pmsg, leaves []dsLeaf) {
	for _, l := range leaves {
		if l.op == opHasAncestor {
			continue
		}
		fm := m.AppendMsg("filter")
		fm.Set("op", l.op)
		p := fm.AppendMsg("property")
		p.Set("name", l.prop)
		p.Set("multiple", false)
		writeValue(p.Mutable("value"), l.v)
	}
}

// checkFiltered records and, with require-indexes, requires the composite
// indexes a query of parseFilteredQuery needs: each branch's, as
// production needs an index for each disjunction.
func (x *dsIndexes) checkFiltered(q *dsQuery) error {
	if q.branches == nil {
		if q.in.m == nil {
			return nil
		}
		return x.check(q.in, q)
	}
	for _, b := range q.branches {
		if err := x.check(b.in, b); err != nil {
			return err
		}
	}
	return nil
}

// matchesUnion reports whether a branch of q matches e.
func (q *dsQuery) matchesUnion(e *dsEntity) bool {
	return slices.ContainsFunc(q.branches, func(b *dsQuery) bool { return b.matches(e) })
}

// appendResults appends the results that entity e, which matches q's
// filters, gives q (appendEntryResults). With branches they are the union
// of those its matching branches give: an entity at the first place in
// the query's order, a projection result once. A branch (of a planned
// read) gives only the results that are the union's and that no earlier
// branch gives, so that each result comes from one branch.
func (q *dsQuery) appendResults(out []dsCand, e *dsEntity) ([]dsCand, error) {
	switch {
	case q.branches != nil:
		return q.unionResults(out, e, -1)
	case q.union != nil:
		return q.union.unionResults(out, e, q.ord)
	}
	return q.appendEntryResults(out, e)
}

// unionResults appends the results of e for q's branches; with own >= 0
// only those that branch own is the first to give.
func (q *dsQuery) unionResults(out []dsCand, e *dsEntity, own int) ([]dsCand, error) {
	var all []dsCand
	var from []int // the branch that first gave each of all
	for i, b := range q.branches {
		if !b.matches(e) {
			continue
		}
		b.start = q.start
		n := len(all)
		var err error
		if all, err = b.appendEntryResults(all, e); err != nil {
			return out, err
		}
		for range all[n:] {
			from = append(from, i)
		}
	}
	if len(all) == 0 {
		return out, nil
	}
	cmp := func(a, b dsCand) int { return q.compare(a.vals, a.e.path, b.vals, b.e.path) }
	if len(q.proj) == 0 {
		// One result: the lowest, from the first branch that gives it.
		best := 0
		for i := range all {
			if cmp(all[i], all[best]) < 0 {
				best = i
			}
		}
		if own >= 0 && from[best] != own {
			return out, nil
		}
		return append(out, all[best]), nil
	}
	for i, x := range all {
		first := true
		for j := range i {
			if cmp(all[j], x) == 0 {
				first = false
				break
			}
		}
		if first && (own < 0 || from[i] == own) {
			out = append(out, x)
		}
	}
	return out, nil
}

// planUnion plans each branch of q; nil if the planner does not answer
// one of them (then the query takes the full evaluation).
func planUnion(q *dsQuery, v dsView) *dsPlan {
	p := &dsPlan{}
	for _, b := range q.branches {
		bp := planQuery(b, v, nil)
		if bp == nil {
			return nil
		}
		p.ties = p.ties || bp.ties
		p.union = append(p.union, bp)
	}
	return p
}

// unionReadLocked prepares the reads of the branches of c's query by
// their plans p.union.
func (d *datastoreService) unionReadLocked(c *dsCursor, p *dsPlan) *planRead {
	r := &planRead{q: c.q, p: p, pos: c.pos, end: c.end, hook: d.planReadHook}
	for i, b := range c.q.branches {
		if br := d.planReadLocked(&dsCursor{q: b, pos: c.pos, end: c.end, view: c.view}, p.union[i]); br != nil {
			br.hook = nil
			r.union = append(r.union, br)
		}
	}
	return r
}

// readUnion returns up to n results of a query with branches: the first n
// of each branch's read, merged in the query's order. Each result comes
// from one branch only (appendResults), so the merge keeps them all.
//
// A distinct query's branches each read the first result of each
// combination of the group-by properties that the branch gives, but a
// combination may come from two branches (other entities, or other
// entries of one): the merge keeps the first in the query's order, which
// is the union's first, since the group-by properties lead the orders and
// a combination's results lie together. The first n combinations of the
// union are among the first n of the branch that gives each one first,
// so n results of each branch still make the first n of the union. The
// position after a result of a distinct query holds the combination's
// values only (posAfter), so every branch's next read starts after the
// whole combination, whichever branch gave it.
func (r *planRead) readUnion(n int64) ([]dsCand, error) {
	if r.hook != nil {
		r.hook()
	}
	var all []dsCand
	for _, br := range r.union {
		before := br.entries
		list, err := br.read(n)
		r.entries += br.entries - before
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
	}
	q := r.q
	slices.SortStableFunc(all, func(a, b dsCand) int { return q.compare(a.vals, a.e.path, b.vals, b.e.path) })
	if len(q.groupBy) > 0 {
		all = slices.CompactFunc(all, q.sameGroup)
	}
	if int64(len(all)) > n {
		all = all[:n]
	}
	return all, nil
}

// String renders a filter for test failures.
func (f *dsFilter) String() string {
	switch f.op {
	case opAnd, opOr:
		s := "AND("
		if f.op == opOr {
			s = "OR("
		}
		for i, x := range f.subs {
			if i > 0 {
				s += ", "
			}
			s += x.String()
		}
		return s + ")"
	case opIn, opNotIn:
		return fmt.Sprintf("%s op%d %v", f.prop, f.op, f.list)
	}
	return fmt.Sprintf("%s op%d %v", f.prop, f.op, f.v)
}
