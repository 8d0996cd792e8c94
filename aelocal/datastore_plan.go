package aelocal

// The query planner (issue 25): it answers the common shapes of query from
// the sorted indexes (datastore_index_store.go), reading about as many
// index entries as the batch returns and skips, whatever the kind's size.
// It works on dsQuery, the query as parseQuery made it from the
// datastore_v3 request, and never on protobufs, so that a second API over
// the same engine (the Cloud Datastore API, issue 22) can build a dsQuery
// and share it.
//
// Shapes it plans, on the live data (not a transaction's snapshot):
//
//   - key order, ascending or descending (no sort order, or __key__),
//     with or without an ancestor and any filters: read
//     the kind index, from the ancestor or the start position on;
//   - key order with an equality filter: read the single-property index
//     of its property, the entries of that value, which lie in key order;
//     with several (ascending), merge-join the entries of each by key
//     (readJoin), as production does without a composite index;
//   - one sort order on a property (then the implicit key order), with
//     any filters: read that property's index ascending, or value by
//     value downwards for a descending order; inequality filters on the
//     property bound where the read starts and stops.
//
// Every entry read is checked against the whole query (q.matches), and an
// entity counts only at the entry where the full evaluation places it
// (q.appendResults: its first entry after the start cursor), so a
// multi-valued property yields each entity once and the answer is the
// full evaluation's, in the same order with the same cursors. Filters the
// index does not answer cost entries read, not correctness. A projection
// on the one property it sorts by reads that property's index the same
// way, a result per entry. Other shapes (metadata, kindless and distinct
// queries, projections of several properties, two sort orders, queries
// in transactions) still
// take the full evaluation, remainingLocked.

import (
	"slices"

	"github.com/google/btree"
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
}

// eqTerm is one equality filter: the entries of value v of prop's index.
type eqTerm struct {
	prop string
	v    dsValue
}

// planQuery returns the plan for q read through view v, or nil if the
// indexes do not answer it yet.
func planQuery(q *dsQuery, v dsView) *dsPlan {
	if v.tx != 0 || q.meta != "" || q.kind == "" || len(q.groupBy) > 0 {
		return nil
	}
	switch {
	case len(q.proj) > 0:
		// A projection on the one property it sorts by (parseQuery makes
		// a projected property a sort order) reads that property's index:
		// a result per entry.
		if len(q.proj) == 1 && q.nProp == 1 && !q.orders[0].key && q.orders[0].prop == q.proj[0] &&
			(len(q.orders) == 1 || (len(q.orders) == 2 && q.orders[1].key && !q.orders[1].desc)) {
			return &dsPlan{prop: q.orders[0].prop, desc: q.orders[0].desc}
		}
		return nil
	case len(q.orders) == 0 || (len(q.orders) == 1 && q.orders[0].key):
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
			return p
		case len(terms) >= 1:
			// Downwards, the first equality filter's entries; the
			// others are checked on each entity.
			p.prop, p.eq = terms[0].prop, &terms[0].v
			return p
		}
		return p
	case !q.orders[0].key && (len(q.orders) == 1 || (len(q.orders) == 2 && q.orders[1].key && !q.orders[1].desc)):
		return &dsPlan{prop: q.orders[0].prop, desc: q.orders[0].desc}
	}
	return nil
}

// planRead is one read of an index by a plan: what it reads, taken under
// the datastore's lock, and read without it. It reads a clone of the
// index's B-tree: google/btree clones lazily (copy-on-write, O(1)), and a
// clone may be read while the original is written, so a query reads a
// consistent snapshot of the index while Puts go on; a write after the
// clone copies the few nodes it changes.
type planRead struct {
	q      *dsQuery
	p      *dsPlan
	pos    dsPos  // the start position
	end    *dsPos // the end position, if any
	byKey  *btree.BTreeG[*dsEntity]
	byProp *btree.BTreeG[propEntry] // nil if no entity has the property
	join   []joinTerm               // the terms of a merge join
	hook   func()                   // tests: runs during the read
}

// planReadLocked prepares the read of c's results after its position by
// plan p; nil if the query's kind has no entity.
func (d *datastoreService) planReadLocked(c *dsCursor, p *dsPlan) *planRead {
	q := c.q
	s := d.spaces[q.sp]
	if s == nil {
		return nil
	}
	ki := s.indexLocked(q.kind)
	if ki == nil {
		return nil
	}
	r := &planRead{q: q, p: p, pos: c.pos, end: c.end, hook: d.planReadHook}
	clones := make(map[string]*btree.BTreeG[propEntry])
	for _, tm := range p.join {
		t := ki.props[tm.prop]
		if t == nil {
			return nil // no entity has the property: none matches
		}
		if clones[tm.prop] == nil {
			clones[tm.prop] = t.Clone()
		}
		r.join = append(r.join, joinTerm{clones[tm.prop], tm.v})
	}
	switch {
	case p.join != nil:
	case p.prop == "":
		r.byKey = ki.byKey.Clone()
	default:
		if t := ki.props[p.prop]; t != nil {
			r.byProp = t.Clone()
		}
	}
	return r
}

// read returns up to n results; it needs no lock.
func (r *planRead) read(n int64) ([]dsCand, error) {
	if r.hook != nil {
		r.hook()
	}
	q, p := r.q, r.p
	var out []dsCand
	var err error
	// visit takes the entry (v, e) of the index read; it reports whether
	// to read on.
	visit := func(e *dsEntity, v *dsValue) bool {
		if !q.matches(e) {
			return true
		}
		var cs []dsCand
		if cs, err = q.appendResults(nil, e); err != nil {
			return false
		}
		if len(cs) == 0 {
			return true
		}
		x := cs[0]
		if v != nil && p.eq == nil {
			// Without a projection the entity counts at one of its
			// entries; with one, at each, and this is one of them.
			i := slices.IndexFunc(cs, func(c dsCand) bool { return compareValue(c.vals[0], *v) == 0 })
			if i < 0 {
				return true
			}
			x = cs[i]
		}
		if r.pos.set && !q.afterStart(x, r.pos) {
			return true
		}
		if r.end != nil && !q.beforeEnd(x, *r.end) {
			return false
		}
		out = append(out, x)
		return int64(len(out)) < n
	}
	if n <= 0 {
		return nil, nil
	}
	var from dsPath // the key to start from, in key order
	if r.pos.set {
		from = r.pos.key
	}
	switch {
	case p.join != nil:
		readJoin(r.join, from, visit)
	case p.prop == "":
		readKeys(r.byKey, q.byProp[keyProp], q.ancestor, from, p.desc, visit)
	case r.byProp == nil:
	case p.eq != nil:
		readEqual(r.byProp, *p.eq, from, p.desc, visit)
	default:
		readValues(r.byProp, q, r.pos, p.desc, visit)
	}
	return out, err
}

// planFor returns the plan for c's query, or nil where it takes the full
// evaluation (remainingLocked).
func (d *datastoreService) planFor(c *dsCursor) *dsPlan {
	if d.noPlan {
		return nil
	}
	return planQuery(c.q, c.view)
}
