package aelocal

// The query planner (issue 25): it answers the common shapes of query from
// the sorted indexes (datastore_index_store.go), reading about as many
// index entries as the batch returns and skips, whatever the kind's size.
// It works on dsQuery, the query as parseQuery made it from the
// datastore_v3 request, and never on protobufs, so that a second API over
// the same engine (the Cloud Datastore API, issue 22) can build a dsQuery
// and share it.
//
// Shapes it plans, on the live data and on a transaction's snapshot (the
// live indexes with the changes since the snapshot undone, in the read's
// own clones: datastore_txsnap.go):
//
//   - a composite index (declared in index.yaml or recorded from a query,
//     datastore_index_comp.go) whose properties are the query's equality
//     properties, in any order, then its sort orders: read the range of
//     its ancestor and equality values, bounded by the inequality on its
//     first sort order, in the query's order (readComp). This answers
//     equality + sort, equalities + inequality, ancestor + sort, two or
//     more sort orders, and their projections and Distinct;
//   - without one, key order, ascending or descending (no sort order, or
//     __key__), with or without an ancestor and any filters: read the
//     kind index, from the ancestor or the start position on;
//   - key order with an equality filter: read the single-property index
//     of its property, the entries of that value, which lie in key order;
//     with several (ascending), merge-join the entries of each by key
//     (readJoin), as production does without a composite index;
//   - one sort order on a property (then the implicit key order), with
//     any filters: read that property's index ascending, or value by
//     value downwards for a descending order; inequality filters on the
//     property bound where the read starts and stops;
//   - two or more sort orders, or one and key order descending, and
//     projections (of one property or several): read the first order's
//     index the same way and sort each value's results by the other
//     orders (readTies);
//   - key order first and the properties a projection adds after it: the
//     kind index, each entity's results sorted;
//   - no kind: the key indexes of every kind, merged by key
//     (readKindless).
//
// Every entry read is checked against the whole query (q.matches), and an
// entity counts only at the entry where the full evaluation places it
// (q.appendResults: its first entry after the start cursor), so a
// multi-valued property yields each entity once and the answer is the
// full evaluation's, in the same order with the same cursors. Filters the
// index does not answer cost entries read, not correctness. A projection
// reads its index the same way, a result per entry. A cursor holds a
// position (the sort values and key of its last result), which each batch
// seeks to: no results are kept between batches. Distinct keeps the
// first result of each combination of its group-by properties, which lead
// its orders (parseQuery puts them first, as production's index for the
// query has them), and seeks past the combination's other entries; with
// branches (OR, IN, != or NOT_IN), the merge of the branches' reads keeps
// the first of each combination (readUnion). A distinct query's position
// holds only the combination's values, so the next batch starts after
// the whole combination.
//
// Queries in a transaction are planned like the rest: they read the live
// indexes with the versions their snapshot sees put back at the keys
// written since (datastore_txsnap.go). Metadata queries read a snapshot of
// the namespaces, kinds and single-property indexes (datastore_metadata.go).
// The rare query no plan answers (a projection of no kind) takes the full
// evaluation, remainingLocked, batch by batch.

import (
	"slices"

	"github.com/icza/gaesession/v2/aelocal/internal/btree"
)

// dsPlan is how the indexes answer a query.
type dsPlan struct {
	prop string   // the property whose index is read; "" reads the kind index
	eq   *dsValue // read only the entries of prop with this value (key order)
	desc bool     // read downwards: keys for the kind index or eq, values otherwise
	// With two or more equality filters (key order, ascending), the
	// entries of each, merge-joined by key as production does without a
	// composite index; prop and eq are then unset.
	join []eqTerm
	// ties: the query has sort orders after prop's (other than key order
	// ascending), so the results of each value of prop are sorted by
	// them in memory before they are returned (readTies).
	ties bool
	// union: the plans of a query's branches, whose reads are merged
	// (datastore_disjunction.go).
	union []*dsPlan
	// comp: read this composite index, whose entries are in the query's
	// order (datastore_index_comp.go).
	comp *dsIndex
	// kindless: a query of no kind, read from the key index of every kind
	// of the namespace, merged by key (readKindless).
	kindless bool
}

// eqTerm is one equality filter: the entries of value v of prop's index.
type eqTerm struct {
	prop string
	v    dsValue
}

// planQuery returns the plan for q read through view v, or nil if the
// indexes do not answer it: metadata queries (datastore_metadata.go), the
// distinct queries groupsLead refuses and the rare projections of a query
// of no kind. comp is the composite index that serves q, if any
// (dsIndexes.serving).
func planQuery(q *dsQuery, v dsView, comp *dsIndex) *dsPlan {
	if q.meta != "" || !q.groupsLead() {
		return nil
	}
	if q.branches != nil {
		return planUnion(q, v)
	}
	if q.kind == "" {
		// parseQuery allows a query of no kind key order ascending only,
		// but a projection adds its properties as orders.
		if q.nProp > 0 {
			return nil
		}
		return &dsPlan{kindless: true}
	}
	if comp != nil {
		return &dsPlan{comp: comp}
	}
	// byValues reads the first sort order's index; ties sorts each of its
	// values' results by the other orders unless key order ascending is
	// all that follows.
	byValues := func() *dsPlan {
		o := q.orders[0]
		return &dsPlan{prop: o.prop, desc: o.desc,
			ties: len(q.orders) > 2 || len(q.orders) == 2 && (!q.orders[1].key || q.orders[1].desc)}
	}
	switch {
	case len(q.orders) > 0 && !q.orders[0].key:
		// Sorted by a property first: read its index, a value at a time.
		// A projection (parseQuery makes every projected property a sort
		// order) has a result per entry, each at its first value.
		return byValues()
	case len(q.orders) > 1:
		// Key order first, then the properties a projection (or an
		// EXISTS filter) adds after it: the kind index in key order,
		// each entity's results sorted by the rest (planRead.results).
		return &dsPlan{desc: q.orders[0].desc}
	}
	p := &dsPlan{desc: len(q.orders) == 1 && q.orders[0].desc}
	var terms []eqTerm
	for _, f := range q.filters {
		if f.prop == keyProp {
			continue
		}
		for _, v := range f.eqs {
			terms = append(terms, eqTerm{f.prop, v})
		}
	}
	switch {
	case len(terms) >= 2 && !p.desc:
		p.join = terms
	case len(terms) >= 1:
		// Downwards, the first equality filter's entries; the others
		// are checked on each entity.
		p.prop, p.eq = terms[0].prop, &terms[0].v
	}
	return p
}

// planRead is one read of an index by a plan: what it reads, taken under
// the datastore's lock, and read without it. It reads a clone of the
// index's B-tree: internal/btree clones lazily (copy-on-write, O(1)), and
// a clone may be read while the original is written, so a query reads a
// consistent snapshot of the index while Puts go on; a write after the
// clone copies the few nodes it changes.
type planRead struct {
	q      *dsQuery
	p      *dsPlan
	pos    dsPos  // the start position
	end    *dsPos // the end position, if any
	byKey  *btree.Tree[*dsEntity]
	byProp *btree.Tree[propEntry] // nil if no entity has the property
	join   []joinTerm             // the terms of a merge join
	union  []*planRead            // the reads of a query's branches
	comp   *compIndex             // the composite index read (its tree a clone)
	// build: the composite index to build, without the lock, before
	// reading it (then kept, finishBuildLocked); fallback reads the
	// single-property indexes instead if it holds an entity past the
	// entry limit.
	build    *compBuild
	fallback *planRead
	kinds    []*btree.Tree[*dsEntity]
	hook     func() // tests: runs during the read
	// In a transaction, the changes since its snapshot that read applies
	// to the clones first (datastore_txsnap.go): to keys (the kind
	// index), props (the single-property indexes read) and comp, or to
	// kinds, each with its own.
	changes     []snapChange
	keys        *btree.Tree[*dsEntity]
	props       map[string]*btree.Tree[propEntry]
	kindChanges [][]snapChange

	entries int64 // index entries read
	skip    bool  // a distinct query has its combination's result (readValues, readComp)
}

// planReadLocked prepares the read of c's results after its position by
// plan p; nil if nothing can match (no entity of the kind, or of a
// property of a merge join). In a transaction the read also takes the
// changes since its snapshot, which it applies to its clones
// (datastore_txsnap.go).
func (d *datastoreService) planReadLocked(c *dsCursor, p *dsPlan) *planRead {
	if p.union != nil {
		return d.unionReadLocked(c, p)
	}
	q := c.q
	s := d.spaces[q.sp]
	if s == nil {
		if c.view.tx == 0 {
			return nil
		}
		s = &dsSpace{} // every entity of the snapshot was written since
	}
	r := &planRead{q: q, p: p, pos: c.pos, end: c.end, hook: d.planReadHook}
	if p.kindless {
		for kind, ki := range s.idx {
			r.kinds = append(r.kinds, ki.byKey.Clone())
			r.kindChanges = append(r.kindChanges, d.snapChangesLocked(c.view, q.sp, kind))
		}
		for _, kind := range d.snapKindsLocked(c.view, q.sp) {
			r.kinds = append(r.kinds, btree.New(lessByKey))
			r.kindChanges = append(r.kindChanges, d.snapChangesLocked(c.view, q.sp, kind))
		}
		for _, chs := range r.kindChanges {
			d.stats.changes += int64(len(chs))
		}
		return r
	}
	ki := s.indexLocked(q.kind)
	changes := d.snapChangesLocked(c.view, q.sp, q.kind)
	d.stats.changes += int64(len(changes))
	if changes != nil {
		if ki == nil {
			ki = newKindIndex()
		}
		r.changes, r.keys = changes, ki.byKey.Clone()
		r.props = make(map[string]*btree.Tree[propEntry])
	}
	if ki == nil {
		return nil
	}
	// clone returns the clone of the index of prop this read reads, nil
	// if no entity has the property (in the snapshot, an empty index).
	clones := make(map[string]*btree.Tree[propEntry])
	if r.props != nil {
		clones = r.props
	}
	clone := func(prop string) *btree.Tree[propEntry] {
		if t := clones[prop]; t != nil {
			return t
		}
		t := ki.props[prop]
		switch {
		case t != nil:
			t = t.Clone()
		case changes != nil:
			t = btree.New(lessEntry)
		default:
			return nil
		}
		clones[prop] = t
		return t
	}
	if p.comp != nil {
		// The single-property indexes answer if the index is not kept
		// (maxCompPerKind, or another query builds it) or holds an
		// entity past the entry limit, and if the index this read
		// builds turns out to.
		fallback := func() *planRead {
			d.stats.compFallback++
			return d.planReadLocked(c, planQuery(q, c.view, nil))
		}
		var ix *compIndex
		var build *compBuild
		if c.view.tx == 0 {
			ix, build = ki.compLocked(q.kind, *p.comp)
		} else {
			// A transaction reads an index kept already: a build
			// reads the live kind (datastore_txsnap.go).
			ix = ki.comps[p.comp.yaml()]
		}
		switch {
		case build != nil:
			r.build = build
			if r.fallback = fallback(); r.fallback != nil {
				r.fallback.hook = nil
			}
			d.stats.compFallback-- // counted if the build needs it
		case ix == nil || ix.exploded > 0:
			return fallback()
		default:
			r.comp = &compIndex{def: ix.def, tree: ix.tree.Clone()}
			if changes != nil {
				// In case a version the snapshot puts back has
				// too many entries for the index.
				if r.fallback = fallback(); r.fallback != nil {
					r.fallback.hook = nil
					d.stats.changes -= int64(len(r.fallback.changes))
				}
				d.stats.compFallback-- // counted if needed
			}
		}
		return r
	}
	for _, tm := range p.join {
		t := clone(tm.prop)
		if t == nil {
			return nil // no entity has the property: none matches
		}
		r.join = append(r.join, joinTerm{t: t, v: tm.v, count: &r.entries})
	}
	switch {
	case p.join != nil:
	case p.prop == "":
		if r.byKey = r.keys; r.byKey == nil {
			r.byKey = ki.byKey.Clone()
		}
	default:
		r.byProp = clone(p.prop)
	}
	return r
}

// read returns up to n results; it needs no lock.
func (r *planRead) read(n int64) ([]dsCand, error) {
	if r.p.union != nil {
		return r.readUnion(n)
	}
	if r.hook != nil {
		r.hook()
	}
	if (r.changes != nil || r.kindChanges != nil) && !r.applySnapshot() {
		r.comp = nil
		if r.fallback == nil {
			return nil, nil
		}
		out, err := r.fallback.read(n)
		r.entries += r.fallback.entries
		return out, err
	}
	if r.build != nil {
		// The index as of the snapshot is a consistent view to read;
		// the writes since are replayed on it before it is kept.
		if ix := r.build.run(); ix.exploded > 0 {
			r.comp = nil
			if r.fallback == nil {
				return nil, nil
			}
			out, err := r.fallback.read(n)
			r.entries += r.fallback.entries
			return out, err
		}
		r.comp = r.build.ix
	}
	q, p := r.q, r.p
	var out []dsCand
	var err error
	var last *dsCand // the last result of a distinct query
	// oneGroup: a distinct query whose group-by properties all have
	// their value set by equality filters has one combination, one
	// result.
	oneGroup := len(q.groupBy) > 0 && q.groupLen() == 0
	// emit adds a result in the query's order; it reports whether to
	// read on.
	emit := func(x dsCand) bool {
		if r.end != nil && !q.beforeEnd(x, *r.end) {
			return false
		}
		if len(q.groupBy) > 0 {
			// Distinct: the first result of each combination of the
			// group-by properties, which lead the orders, so that the
			// results of a combination lie together.
			if last != nil && q.sameGroup(*last, x) {
				return !oneGroup
			}
			last = &x
			r.skip = true // the read may seek past the combination
		}
		out = append(out, x)
		return int64(len(out)) < n
	}
	// results appends to buf the results of the entry of entity e read
	// that come after the start position: the entity at the entry where
	// the full evaluation places it, or with a projection each result
	// whose values are the entry's. ev holds the entry's values for q's
	// first orders (nil for the kind index and the entries of one
	// value, which place every result of the entity).
	// It reports false on an error (in err).
	results := func(buf []dsCand, e *dsEntity, ev []*dsValue) ([]dsCand, bool) {
		if !q.matches(e) {
			return buf, true
		}
		var cs []dsCand
		if cs, err = q.appendResults(nil, e); err != nil || len(cs) == 0 {
			return buf, err == nil
		}
		if ev == nil && len(cs) > 1 {
			slices.SortFunc(cs, func(a, b dsCand) int { return q.compare(a.vals, a.e.path, b.vals, b.e.path) })
		}
	next:
		for _, x := range cs {
			for i, v := range ev {
				if compareValue(x.vals[i], *v) != 0 {
					continue next
				}
			}
			if !r.pos.set || q.afterStart(x, r.pos) {
				buf = append(buf, x)
			}
		}
		return buf, true
	}
	// visit takes an entry of the index read; it reports whether to read
	// on.
	var one []dsCand
	visitVals := func(e *dsEntity, ev []*dsValue) bool {
		var ok bool
		if one, ok = results(one[:0], e, ev); !ok {
			return false
		}
		for _, x := range one {
			if !emit(x) {
				return false
			}
		}
		return true
	}
	visit := func(e *dsEntity, v *dsValue) bool {
		if v == nil || p.eq != nil {
			return visitVals(e, nil)
		}
		return visitVals(e, []*dsValue{v})
	}
	if n <= 0 || oneGroup && r.pos.set && !r.pos.before {
		// (A position after the one combination has no result after it.)
		return nil, nil
	}
	var from dsPath // the key to start from, in key order
	if r.pos.set {
		from = r.pos.key
	}
	switch {
	case p.kindless:
		readKindless(r.kinds, q.byProp[keyProp], q.ancestor, from, &r.entries, visitVals)
	case r.comp != nil:
		readComp(r.comp, r.comp.tree, q, r.pos, &r.entries, &r.skip, visitVals)
	case p.join != nil:
		readJoin(r.join, from, visit)
	case p.prop == "":
		readKeys(r.byKey, q.byProp[keyProp], q.ancestor, from, p.desc, &r.entries, visit)
	case r.byProp == nil:
	case p.eq != nil:
		readEqual(r.byProp, *p.eq, from, p.desc, &r.entries, visit)
	case p.ties:
		r.readTies(n, results, emit)
	default:
		readValues(r.byProp, q, r.pos, p.desc, &r.entries, &r.skip, visit)
	}
	return out, err
}

// groupsLead reports whether q is not distinct, or its group-by properties
// are its first sort orders (in any order), so that the results of one
// combination of their values lie together. parseQuery orders every
// accepted distinct query so, but for a group-by property that only
// equality filters constrain: it has no order (its value is the filter's
// in every result), and the combination is that of the others, as
// dsQuery.distinct and sameGroup take it.
func (q *dsQuery) groupsLead() bool {
	n := q.groupLen()
	for _, o := range q.orders[:n] {
		if o.key || !slices.Contains(q.groupBy, o.prop) {
			return false
		}
	}
	for _, g := range q.groupBy {
		if slices.ContainsFunc(q.orders, func(o dsOrder) bool { return !o.key && o.prop == g }) {
			continue
		}
		if f := q.byProp[g]; f == nil || len(f.eqs) == 0 || len(f.ineqs) > 0 {
			return false
		}
	}
	return true
}

// groupLen returns how many of q's sort orders are on its group-by
// properties: with groupsLead, the first groupLen orders make a result's
// combination.
func (q *dsQuery) groupLen() int {
	n := 0
	for _, o := range q.orders {
		if !o.key && slices.Contains(q.groupBy, o.prop) {
			n++
		}
	}
	return n
}

// sameGroup reports whether results a and b have the same values of q's
// group-by properties.
func (q *dsQuery) sameGroup(a, b dsCand) bool {
	for i, o := range q.orders {
		if !o.key && slices.Contains(q.groupBy, o.prop) && compareValue(a.vals[i], b.vals[i]) != 0 {
			return false
		}
	}
	return true
}

// readTies reads the index of the query's first sort order value by value,
// and sorts each value's results by the query's other orders before it
// emits them: the answer to a query of two or more sort orders (or of one
// and key order descending), without a composite index.
//
// It serves when no composite index is declared or recorded for the query
// (the console's queries record none, and a kind keeps maxCompPerKind at
// most): the first order's index bounds where a query starts (a cursor
// seeks to its first value) and stops (the first value past the batch),
// so a batch costs the entries of the values it touches, which is the
// rows returned when the first order is selective and the size of a
// value's group when it is not. Memory stays bounded by the batch: a
// value's results are kept sorted and cut to the n that can still be
// returned whenever they reach twice that.
func (r *planRead) readTies(n int64, results func([]dsCand, *dsEntity, []*dsValue) ([]dsCand, bool), emit func(dsCand) bool) {
	q := r.q
	var group []dsCand // the current value's results
	var cur *dsValue   // the current value
	left := n          // results that may still be returned
	cut := func() {
		slices.SortFunc(group, func(a, b dsCand) int { return q.compare(a.vals, a.e.path, b.vals, b.e.path) })
		if len(q.groupBy) > 0 {
			// Distinct: the group-by properties lead the orders, so a
			// combination's results lie together; keep the first.
			group = slices.CompactFunc(group, q.sameGroup)
		}
		if int64(len(group)) > left {
			group = group[:left]
		}
	}
	// flush emits the current value's results; it reports whether to
	// read on.
	flush := func() bool {
		cut()
		for _, x := range group {
			if !emit(x) {
				return false
			}
			left--
		}
		group = group[:0]
		return true
	}
	more := true
	visit := func(e *dsEntity, v *dsValue) bool {
		if cur != nil && compareValue(*cur, *v) != 0 {
			if more = flush(); !more {
				return false
			}
		}
		cur = v
		var ok bool
		if group, ok = results(group, e, []*dsValue{v}); !ok {
			more = false
			return false
		}
		if int64(len(group)) >= 2*max(left, 1) {
			cut()
		}
		return true
	}
	// The start position's value is read from its first entry: its ties
	// sort by the other orders, not by key.
	pos := r.pos
	pos.key = nil
	readValues(r.byProp, q, pos, q.orders[0].desc, &r.entries, nil, visit)
	if more && len(group) > 0 {
		flush()
	}
}

// planFor returns the plan for c's query, or nil where it takes the full
// evaluation (remainingLocked).
func (d *datastoreService) planFor(c *dsCursor) *dsPlan {
	if d.noPlan {
		return nil
	}
	return planQuery(c.q, c.view, c.comp)
}

// planStats counts what queries read, exactly, for tests to assert: a
// query's cost follows these, not the kind's size.
type planStats struct {
	// entries counts the index entries planned reads visited: every
	// entry a B-tree iteration passed to a read, seeks and the entry
	// that ends a range included.
	entries int64
	// loaded counts entities whose body a query read: the whole entities
	// batches return (not keys-only, projection or skipped results, nor
	// Count's), and every entity a full evaluation read.
	loaded int64
	// comp counts the planned batches a composite index answered, and
	// compFallback those that found their composite index unusable.
	comp, compFallback int
	// changes counts the keys written since a transaction's snapshot
	// that its planned reads put back (datastore_txsnap.go): a seek and
	// an update each, beside the entries.
	changes int64
}
