package aelocal

import (
	"cmp"
	"slices"

	"github.com/icza/gaesession/v2/aelocal/internal/btree"
)

// Composite indexes as sorted structures (issue 25). A composite index that
// index.yaml declares, or that a query needed (and aelocal recorded, as
// dev_appserver does), is kept per kind as a B-tree of entries once a
// query it serves runs, and from then on on every write, as production
// keeps its indexes. Its entries follow production's rules:
//
//   - an entity has an entry per combination of the distinct indexed
//     values of the index's properties (a multi-valued property gives one
//     per value, two give the cross product: an "exploding" index), and
//     none if one of the properties has no indexed value (missing, or
//     only unindexed values, which are never in dsEntity.props);
//   - an ancestor index has those entries once per ancestor of the entity,
//     the entity itself included, so each ancestor's descendants lie
//     together;
//   - entries sort by the ancestor, then by each property's value in the
//     index's direction (production's order of types and values,
//     compareValue), then by key ascending;
//   - an entity with more than maxIndexEntries entries in an index is one
//     production refuses to store ("too many indexed properties"). aelocal
//     stores it (refusing would change what today's Puts answer, and the
//     indexes an app declares may change after it wrote) but gives it no
//     entries, and the index serves no query while it holds such an
//     entity: queries then take the single-property indexes, with the same
//     answers.

// maxCompPerKind bounds the composite indexes kept for one kind: an app
// declares a few dozen, and a client sending ever new query shapes must
// not make the server keep an index per shape. Past it, queries that
// another index would serve take the single-property indexes.
const maxCompPerKind = 64

// compIndex is one composite index of one kind, kept sorted.
type compIndex struct {
	def      dsIndex
	tree     *btree.Tree[compEntry]
	exploded int // entities with more than maxIndexEntries entries (none kept)
}

// compEntry is an entry of a composite index: an ancestor (ancestor indexes
// only), a value per property, and the entity. vals point into the
// entity's own props, which never change once stored. In a probe (for
// seeks) vals may be a prefix, and e nil: the probe sorts before every
// entry it prefixes, or after them all if top is set.
type compEntry struct {
	anc  dsPath
	vals []*dsValue
	e    *dsEntity
	top  bool
}

func newCompIndex(def dsIndex) *compIndex {
	ix := &compIndex{def: def}
	ix.tree = btree.New(func(a, b compEntry) bool { return ix.compare(a, b) < 0 })
	return ix
}

// compare orders entries and probes of ix.
func (ix *compIndex) compare(a, b compEntry) int {
	if ix.def.ancestor {
		if c := comparePath(a.anc, b.anc); c != 0 {
			return c
		}
	}
	for i := 0; i < len(a.vals) && i < len(b.vals); i++ {
		c := compareValue(*a.vals[i], *b.vals[i])
		if ix.def.props[i].dir == dirDesc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	// A probe without a key lies before (or with top after) the entries
	// it prefixes.
	tail := func(x compEntry) int {
		switch {
		case x.top:
			return 1
		case x.e == nil || len(x.vals) < len(ix.def.props):
			return -1
		}
		return 0
	}
	if ta, tb := tail(a), tail(b); ta != 0 || tb != 0 {
		return cmp.Compare(ta, tb)
	}
	return comparePath(a.e.path, b.e.path)
}

// entries calls f with every entry of e in ix; it returns false, calling f
// for none, if e has more than maxIndexEntries of them.
func (ix *compIndex) entries(e *dsEntity, f func(compEntry)) bool {
	choices := make([][]*dsValue, len(ix.def.props))
	n := 1
	if ix.def.ancestor {
		n = len(e.path)
	}
	for i, p := range ix.def.props {
		vs := entryValues(e.props.get(p.name))
		if len(vs) == 0 {
			return true // no entry
		}
		choices[i] = vs
		if n *= len(vs); n > maxIndexEntries {
			return false
		}
	}
	ancs := []dsPath{nil}
	if ix.def.ancestor {
		ancs = ancs[:0]
		for k := 1; k <= len(e.path); k++ {
			ancs = append(ancs, e.path[:k])
		}
	}
	at := make([]int, len(choices))
	for {
		vals := make([]*dsValue, len(choices))
		for i, vs := range choices {
			vals[i] = vs[at[i]]
		}
		for _, anc := range ancs {
			f(compEntry{anc: anc, vals: vals, e: e})
		}
		i := len(at) - 1
		for ; i >= 0; i-- {
			if at[i]++; at[i] < len(choices[i]) {
				break
			}
			at[i] = 0
		}
		if i < 0 {
			return true
		}
	}
}

func (ix *compIndex) add(e *dsEntity) {
	if !ix.entries(e, func(x compEntry) { ix.tree.ReplaceOrInsert(x) }) {
		ix.exploded++
	}
}

func (ix *compIndex) remove(e *dsEntity) {
	if !ix.entries(e, func(x compEntry) { ix.tree.Delete(x) }) {
		ix.exploded--
	}
}

// compBuild is a composite index being built without the datastore's
// lock, from a snapshot (a clone) of the kind index: the writes to the
// kind meanwhile are logged, and replayed on the index before it is kept
// (finishBuildLocked), so that a first query of a new index does not make
// writes wait for the build.
type compBuild struct {
	ki   *kindIndex
	kind string
	def  dsIndex
	snap *btree.Tree[*dsEntity]
	ix   *compIndex // the index built from snap
	log  []compOp   // the kind's writes since snap
}

// compOp is a write to a kind while one of its indexes is built: e added,
// or removed.
type compOp struct {
	e   *dsEntity
	add bool
}

// compLocked returns the kept composite index def of the kind; if it is not
// kept yet, a build of it to run without the lock, or nil if the kind
// keeps maxCompPerKind indexes already or the index is being built by
// another query.
func (ki *kindIndex) compLocked(kind string, def dsIndex) (*compIndex, *compBuild) {
	key := def.yaml()
	if ix := ki.comps[key]; ix != nil {
		return ix, nil
	}
	if len(ki.comps)+len(ki.building) >= maxCompPerKind || ki.building[key] != nil {
		return nil, nil
	}
	b := &compBuild{ki: ki, kind: kind, def: def, snap: ki.byKey.Clone()}
	if ki.building == nil {
		ki.building = make(map[string]*compBuild)
	}
	ki.building[key] = b
	return nil, b
}

// run builds the index from the snapshot; it needs no lock. The entries
// are collected, sorted and built into a tree of full nodes in one go
// (btree.Build), which is faster and smaller than inserting them one by
// one.
func (b *compBuild) run() *compIndex {
	ix := newCompIndex(b.def)
	var xs []compEntry
	b.snap.Ascend(func(e *dsEntity) bool {
		if !ix.entries(e, func(x compEntry) { xs = append(xs, x) }) {
			ix.exploded++
		}
		return true
	})
	slices.SortFunc(xs, ix.compare)
	ix.tree = btree.Build(func(a, b compEntry) bool { return ix.compare(a, b) < 0 }, xs)
	b.ix = ix
	return ix
}

// finishBuildLocked replays the writes logged during build b on its index
// and keeps it, unless the kind's indexes were replaced meanwhile (the kind
// emptied, or a load).
func (s *dsSpace) finishBuildLocked(b *compBuild) {
	key := b.def.yaml()
	if b.ki.building[key] == b {
		delete(b.ki.building, key)
	}
	if b.ix == nil || s == nil || s.idx[b.kind] != b.ki || b.ki.comps[key] != nil {
		return
	}
	for _, op := range b.log {
		if op.add {
			b.ix.add(op.e)
		} else {
			b.ix.remove(op.e)
		}
	}
	if b.ki.comps == nil {
		b.ki.comps = make(map[string]*compIndex)
	}
	b.ki.comps[key] = b.ix
}

// compShape is what a composite index must hold, in order, to serve a
// query: the properties of its equality filters in any order, then its
// sort orders on properties, in order and direction.
type compShape struct {
	eqs    []string // sorted
	orders []dsIndexProp
}

// compShapeOf returns the shape of composite index that serves q, and
// false if none serves it better than the built-in indexes: queries of no
// kind, metadata queries, sort orders past a key order or a descending
// key order (which a composite index would need as a property), and
// queries with neither a sort order on a property nor an ancestor.
func compShapeOf(q *dsQuery) (compShape, bool) {
	var sh compShape
	if q.kind == "" || q.meta != "" {
		return sh, false
	}
	for i, o := range q.orders {
		if o.key {
			if o.desc || i != len(q.orders)-1 {
				return sh, false
			}
			break
		}
		dir := dirAsc
		if o.desc {
			dir = dirDesc
		}
		sh.orders = append(sh.orders, dsIndexProp{o.prop, dir})
	}
	for _, f := range q.filters {
		if f.prop != keyProp && len(f.eqs) > 0 && len(f.ineqs) == 0 {
			sh.eqs = append(sh.eqs, f.prop)
		}
	}
	slices.Sort(sh.eqs)
	if len(sh.orders) == 0 && (q.ancestor == nil || len(sh.eqs) == 0) {
		return sh, false
	}
	return sh, true
}

// serves reports whether index ix, of q's kind, serves a query of shape sh
// (with an ancestor if anc).
func (sh compShape) serves(ix dsIndex, anc bool) bool {
	if ix.ancestor != anc || len(ix.props) != len(sh.eqs)+len(sh.orders) {
		return false
	}
	pre := make([]string, len(sh.eqs))
	for i, p := range ix.props[:len(sh.eqs)] {
		pre[i] = p.name
	}
	slices.Sort(pre)
	return slices.Equal(pre, sh.eqs) && slices.Equal(ix.props[len(sh.eqs):], sh.orders)
}

// serving returns a composite index, declared in index.yaml or recorded
// from a query, that serves q; nil if none does. It reads index.yaml as
// last read (check reads it again when indexes are required).
func (x *dsIndexes) serving(q *dsQuery) *dsIndex {
	sh, ok := compShapeOf(q)
	if !ok {
		return nil
	}
	anc := q.ancestor != nil
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, ix := range x.file.declared {
		if ix.kind == q.kind && sh.serves(ix, anc) {
			return &ix
		}
	}
	for _, u := range x.history {
		if u.index.kind == q.kind && sh.serves(u.index, anc) {
			ix := u.index
			return &ix
		}
	}
	return nil
}

// readComp reads composite index ix (a clone of its tree in t) for q in
// q's order: the entries of q's ancestor and equality values, within the
// bounds of the inequality filters on q's first sort order, from the
// start position pos. visit gets each entry's entity and its values for
// q's sort orders (index ix's properties past the equality ones); it
// returns false to stop. count counts the entries read.
//
// A distinct query's read sets *skip once it has the result of a
// combination of the group-by properties (the first sort orders): the read
// then seeks past the combination's other entries.
func readComp(ix *compIndex, t *btree.Tree[compEntry], q *dsQuery, pos dsPos, count *int64, skip *bool, visit func(e *dsEntity, vals []*dsValue) bool) {
	nEq := len(ix.def.props) - q.nProp // compShapeOf: the sort orders follow the equalities
	pre := make([]*dsValue, nEq)
	for i, p := range ix.def.props[:nEq] {
		pre[i] = &q.byProp[p.name].eqs[0]
	}
	start := compEntry{anc: q.ancestor, vals: pre}
	later := func(p compEntry) {
		if ix.compare(p, start) > 0 {
			start = p
		}
	}
	// The first sort order's bounds: the one the read starts from, and
	// the one it stops at (in the index's direction).
	var stop func(v dsValue) bool
	if nEq < len(ix.def.props) {
		col := ix.def.props[nEq]
		if f := q.byProp[col.name]; f != nil && len(f.ineqs) > 0 {
			from, to := [2]int64{opGreater, opGreatEq}, [2]int64{opLess, opLessEq}
			if col.dir == dirDesc {
				from, to = to, from
			}
			for _, in := range f.ineqs {
				if in.op == from[0] || in.op == from[1] {
					// A strict bound starts after the value's entries.
					v := in.v
					later(compEntry{anc: q.ancestor, vals: append(slices.Clone(pre), &v), top: in.op == from[0]})
				}
			}
			stop = func(v dsValue) bool {
				return !boundOK(f, func(w dsValue) int { return compareValue(v, w) }, to[0], to[1])
			}
		}
	}
	if pos.set {
		// The position's values, as far as it has them: a distinct
		// query's position has only its group-by properties, which lead
		// the orders, and lies before or after every entry they prefix.
		p := compEntry{anc: q.ancestor, vals: slices.Clone(pre)}
		rest := true // the position has no value past those in p
		for j := range q.nProp {
			if pos.has != nil && !pos.has[j] {
				rest = !slices.Contains(pos.has[j:], true)
				break
			}
			v := pos.vals[j]
			p.vals = append(p.vals, &v)
		}
		switch {
		case !rest:
		case pos.key != nil && len(p.vals) == len(ix.def.props):
			p.e = pathProbe(pos.key)
		case pos.key == nil:
			p.top = !pos.before
		}
		later(p)
	}
	for {
		var past *compEntry // a probe past the group to skip
		t.AscendGreaterOrEqual(start, func(x compEntry) bool {
			*count++
			if ix.def.ancestor && comparePath(x.anc, q.ancestor) != 0 {
				return false
			}
			for i, v := range pre {
				if compareValue(*x.vals[i], *v) != 0 {
					return false
				}
			}
			if stop != nil && stop(*x.vals[nEq]) || !visit(x.e, x.vals[nEq:]) {
				return false
			}
			if skip != nil && *skip {
				*skip = false
				past = &compEntry{anc: q.ancestor, vals: x.vals[:nEq+q.groupLen()], top: true}
				return false
			}
			return true
		})
		if past == nil {
			return
		}
		start = *past
	}
}
