package aelocal

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// engineQuery builds a query of the Cloud API's filters on kind in the
// app and namespace of ctx: the datastore_v3 Query of everything but the
// filter, then parseFilteredQuery.
func engineQuery(ctx context.Context, kind string, f *dsFilter, orders ...string) (*dsQuery, error) {
	return engineProjection(ctx, kind, f, nil, orders...)
}

// engineProjection is engineQuery of a projection on proj.
func engineProjection(ctx context.Context, kind string, f *dsFilter, proj []string, orders ...string) (*dsQuery, error) {
	return engineDistinct(ctx, kind, f, proj, nil, orders...)
}

// engineDistinct is engineProjection distinct on groupBy (none: not
// distinct), as the Cloud API's distinct_on sends it.
func engineDistinct(ctx context.Context, kind string, f *dsFilter, proj, groupBy []string, orders ...string) (*dsQuery, error) {
	in, _ := newMsg("appengine.v2.Query")
	in.Set("app", datastore.NewKey(ctx, kind, "", 1, nil).AppID())
	in.Set("kind", kind)
	for _, p := range proj {
		in.Append("property_name", p)
	}
	for _, g := range groupBy {
		in.Append("group_by_property_name", g)
	}
	for _, o := range orders {
		om := in.AppendMsg("order")
		dir := int64(1)
		if strings.HasPrefix(o, "-") {
			o, dir = o[1:], 2
		}
		om.Set("property", o)
		om.Set("direction", dir)
	}
	return parseFilteredQuery(in, f)
}

// enginePages runs q to its end in pages of size results, each page a new
// cursor from the position the last one ended at (as a client resumes
// from a cursor), and returns each result's key with the position after
// it.
func enginePages(t *testing.T, d *datastoreService, q *dsQuery, size int64, plan bool) string {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.noPlan = !plan
	defer func() { d.noPlan = false }()
	var b strings.Builder
	pos := dsPos{}
	for range 1000 {
		q.start = pos
		c := &dsCursor{q: q, pos: pos, remaining: -1}
		res, _, more, err := d.batchLocked(c, 0, size)
		if err != nil {
			fmt.Fprintf(&b, "error %v", err)
			return b.String()
		}
		for _, x := range res {
			fmt.Fprintf(&b, "%v %v|", x.e.path, x.vals)
		}
		b.WriteString("\n")
		pos = c.pos
		if !more {
			return b.String()
		}
	}
	t.Fatal("query did not end")
	return ""
}

// leafHolds is the test's own reading of a property filter on one value:
// != and NOT_IN directly, not as the ranges the engine reads.
func leafHolds(f *dsFilter, v dsValue) bool {
	c := compareValue(v, f.v)
	switch f.op {
	case opEqual:
		return c == 0
	case opNotEqual:
		return c != 0
	case opIn:
		return slices.ContainsFunc(f.list, func(w dsValue) bool { return compareValue(v, w) == 0 })
	case opNotIn:
		return !slices.ContainsFunc(f.list, func(w dsValue) bool { return compareValue(v, w) == 0 })
	}
	return ineqHolds(f.op, c)
}

// oracleMatches is the test's own evaluation of a filter tree on an
// entity: an OR of its disjunctive normal form, where a conjunction holds
// if each equality (or IN value) matches one value of its property and one
// value satisfies all the other filters on the property at once, as one
// index entry must; and it has a value of each sort property (orders).
func oracleMatches(f *dsFilter, orders []string, e *dsEntity) bool {
	var conjs [][]*dsFilter
	var dnf func(f *dsFilter) [][]*dsFilter
	dnf = func(f *dsFilter) [][]*dsFilter {
		switch f.op {
		case opOr:
			var out [][]*dsFilter
			for _, s := range f.subs {
				out = append(out, dnf(s)...)
			}
			return out
		case opAnd:
			out := [][]*dsFilter{nil}
			for _, s := range f.subs {
				var next [][]*dsFilter
				for _, a := range out {
					for _, b := range dnf(s) {
						next = append(next, append(slices.Clip(a), b...))
					}
				}
				out = next
			}
			return out
		case opIn:
			var out [][]*dsFilter
			for _, v := range f.list {
				out = append(out, []*dsFilter{{op: opEqual, prop: f.prop, v: v}})
			}
			return out
		}
		return [][]*dsFilter{{f}}
	}
	conjs = dnf(f)
	values := func(prop string) []dsValue {
		if prop == keyProp {
			return []dsValue{refValue(&dsRef{app: e.space().app, ns: e.space().ns, path: e.path})}
		}
		return e.props.get(prop)
	}
	for _, c := range conjs {
		ok := true
		byProp := map[string][]*dsFilter{}
		for _, l := range c {
			if l.op == opEqual {
				ok = ok && slices.ContainsFunc(values(l.prop), func(v dsValue) bool { return leafHolds(l, v) })
				continue
			}
			byProp[l.prop] = append(byProp[l.prop], l)
		}
		for prop, ls := range byProp {
			ok = ok && slices.ContainsFunc(values(prop), func(v dsValue) bool {
				for _, l := range ls {
					if !leafHolds(l, v) {
						return false
					}
				}
				return true
			})
		}
		// Each sort property needs a value that passes all of the
		// conjunction's filters on it at once: the entity's entry in
		// that property's index (sortVals).
		for _, o := range orders {
			ok = ok && slices.ContainsFunc(values(o), func(v dsValue) bool {
				for _, l := range c {
					if l.prop == o && !leafHolds(l, v) {
						return false
					}
				}
				return true
			})
		}
		if ok {
			return true
		}
	}
	return false
}

// oracleF returns the integer value of F of the entity at path p (as
// dsPath.String writes it), nil if it has none.
func oracleF(d *datastoreService, q *dsQuery, p string) *int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	for e := range d.spaces[q.sp].kindEntities(q.kind) {
		if e.path.String() == p {
			if vs := e.props.get("F"); len(vs) == 1 && vs[0].typ() == vInt {
				i := vs[0].int()
				return &i
			}
		}
	}
	return nil
}

// TestDisjunctionPlannerMatchesFullEvaluation runs random queries of the
// Cloud API's filters (OR, IN, NOT_IN, !=, with equalities, ranges, sort
// orders and an ancestor) on random multi-valued, mixed-type data, each
// read page by page from cursors once by the planner (a merge of the
// branches' index reads) and once by the full evaluation, and requires
// the same results in the same order with the same positions; and the
// set of results is the test's own evaluation of the filter (oracleMatches).
// Aggregations (COUNT, COUNT_UP_TO, SUM) over each query, with an offset
// and a limit, give what its results give, planned or not.
func TestDisjunctionPlannerMatchesFullEvaluation(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	d := s.datastore
	r := rand.New(rand.NewPCG(22, 3))

	parents, randomKey := randomKeys(ctx, r, 3)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 300 {
		var pl datastore.PropertyList
		for range r.IntN(4) {
			pl = append(pl, datastore.Property{Name: "A", Value: int64(r.IntN(6)), Multiple: true})
		}
		if r.IntN(5) > 0 {
			pl = append(pl, datastore.Property{Name: "B", Value: []string{"x", "y", "z"}[r.IntN(3)]})
		}
		if r.IntN(5) > 0 {
			pl = append(pl, datastore.Property{Name: "T", Value: base.Add(time.Duration(r.IntN(20)) * time.Hour)})
		}
		switch r.IntN(4) {
		case 0:
			pl = append(pl, datastore.Property{Name: "F", Value: int64(r.IntN(4))})
		case 1:
			pl = append(pl, datastore.Property{Name: "F", Value: "a"})
		case 2:
			pl = append(pl, datastore.Property{Name: "F", Value: nil})
		}
		if r.IntN(4) == 0 {
			pl = append(pl, datastore.Property{Name: "A", Value: int64(r.IntN(6)), NoIndex: true, Multiple: true})
		}
		if _, err := datastore.Put(ctx, randomKey(), &pl); err != nil {
			t.Fatal(err)
		}
	}

	intv := func(i int) dsValue { return intValue(int64(i)) }
	randomValue := func(prop string) dsValue {
		switch prop {
		case "A":
			return intv(r.IntN(7) - 1)
		case "B":
			return stringValue([]string{"w", "x", "y", "z"}[r.IntN(4)])
		case "F":
			return []dsValue{intv(r.IntN(4)), stringValue("a"), nullValue()}[r.IntN(3)]
		case keyProp:
			k := randomKey()
			path := dsPath{{kind: "R", id: k.IntID(), name: k.StringID()}}
			if p := k.Parent(); p != nil {
				path = append(dsPath{{kind: "R", id: p.IntID()}}, path...)
			}
			return refValue(&dsRef{app: k.AppID(), path: path})
		}
		return intv(int(base.Add(time.Duration(r.IntN(20)) * time.Hour).UnixMicro()))
	}
	list := func(prop string) []dsValue {
		var vs []dsValue
		for range 1 + r.IntN(4) {
			vs = append(vs, randomValue(prop))
		}
		return vs
	}
	// randomQuery draws a filter with at most one inequality property,
	// and orders that fit it; the rules of combining NOT_IN and != are
	// left to chance, so some queries are refused (by both runs alike).
	randomQuery := func() (*dsFilter, []string) {
		props := []string{"A", "B", "F", "T", keyProp}
		ineq := props[r.IntN(len(props))]
		leaf := func() *dsFilter {
			p := props[r.IntN(len(props))]
			switch r.IntN(6) {
			case 0, 1:
				return &dsFilter{op: opEqual, prop: p, v: randomValue(p)}
			case 2:
				return &dsFilter{op: opIn, prop: p, list: list(p)}
			case 3:
				return &dsFilter{op: opNotEqual, prop: ineq, v: randomValue(ineq)}
			case 4:
				if r.IntN(3) == 0 {
					return &dsFilter{op: opNotIn, prop: ineq, list: list(ineq)}
				}
			}
			return &dsFilter{op: []int64{opLess, opLessEq, opGreater, opGreatEq}[r.IntN(4)], prop: ineq, v: randomValue(ineq)}
		}
		var node func(depth int) *dsFilter
		node = func(depth int) *dsFilter {
			if depth > 1 || r.IntN(3) == 0 {
				return leaf()
			}
			f := &dsFilter{op: []int64{opAnd, opOr}[r.IntN(2)]}
			for range 1 + r.IntN(3) {
				f.subs = append(f.subs, node(depth+1))
			}
			return f
		}
		f := node(0)
		if r.IntN(5) == 0 {
			anc := parents[r.IntN(len(parents))]
			f = &dsFilter{op: opAnd, subs: []*dsFilter{f, {op: opHasAncestor, prop: keyProp,
				v: refValue(&dsRef{app: anc.AppID(), path: dsPath{{kind: "R", id: anc.IntID()}}})}}}
		}
		var orders []string
		dir := []string{"", "-"}[r.IntN(2)]
		switch r.IntN(3) {
		case 0:
			orders = append(orders, dir+ineq)
		case 1:
			orders = append(orders, dir+props[r.IntN(len(props))])
		}
		if r.IntN(3) == 0 {
			orders = append(orders, []string{"B", "-A", "__key__", "-__key__"}[r.IntN(4)])
		}
		return f, orders
	}

	planned, nonEmpty, refused, distinct := 0, 0, 0, 0
	for range 450 {
		f, orders := randomQuery()
		var proj, groupBy []string
		switch r.IntN(6) {
		case 0:
			proj = [][]string{{"A"}, {"B"}, {"A", "T"}}[r.IntN(3)]
		case 1, 2:
			// Distinct: on every projected property, or on the second
			// of two, which sorts first all the same (the group-by
			// properties lead the orders); ordered by a group-by
			// property, either way, or not at all.
			proj = [][]string{{"A"}, {"B"}, {"A", "T"}, {"A", "B"}, {"T", "B"}}[r.IntN(5)]
			groupBy = proj
			if len(proj) == 2 && r.IntN(2) == 0 {
				groupBy = proj[1:]
			}
			orders = nil
			if r.IntN(2) == 0 {
				orders = []string{[]string{"", "-"}[r.IntN(2)] + groupBy[r.IntN(len(groupBy))]}
			}
		}
		q, err := engineDistinct(ctx, "R", f, proj, groupBy, orders...)
		if err != nil {
			refused++
			continue
		}
		size := int64(1 + r.IntN(12))
		d.mu.Lock()
		before := d.planned
		d.mu.Unlock()
		got := enginePages(t, d, q, size, true)
		want := enginePages(t, d, q, size, false)
		if got != want {
			t.Fatalf("filter %v orders %v projection %v (pages of %d):\nplanned:\n%s\nfull evaluation:\n%s", f, orders, proj, size, got, want)
		}
		d.mu.Lock()
		if d.planned > before && len(q.branches) > 0 {
			planned++
			if len(groupBy) > 0 {
				distinct++
			}
		}
		// The results as a set: the test's own evaluation, each once.
		var keys []string
		for m := range d.spaces[q.sp].kindEntities("R") {
			if q.ancestor != nil && !m.path.hasPrefix(q.ancestor) {
				continue
			}
			var props []string
			for _, o := range q.orders {
				if !o.key {
					props = append(props, o.prop)
				}
			}
			if oracleMatches(f, props, m) {
				keys = append(keys, m.path.String())
			}
		}
		d.mu.Unlock()
		var gotKeys []string
		for _, line := range strings.Split(got, "\n") {
			for _, res := range strings.Split(line, "|") {
				if res != "" {
					gotKeys = append(gotKeys, strings.Fields(res)[0])
				}
			}
		}
		if len(gotKeys) > 0 {
			nonEmpty++
		}
		slices.Sort(keys)
		// An entity with several values of a sort property comes again
		// after a cursor past its first one, as in production (see
		// appendEntryResults): the pages start from cursors.
		sorted := slices.Compact(slices.Sorted(slices.Values(gotKeys)))
		if len(groupBy) > 0 {
			// Distinct: the first entity of each combination, a
			// subset (the full evaluation is the oracle of which).
			sorted = slices.DeleteFunc(sorted, func(k string) bool { return slices.Contains(keys, k) })
			keys = nil
		}
		if !slices.Equal(sorted, keys) {
			d.mu.Lock()
			for m := range d.spaces[q.sp].kindEntities("R") {
				if slices.Contains(keys, m.path.String()) != slices.Contains(sorted, m.path.String()) {
					t.Logf("%v: %v matches %v %v", m.path, m.props, q.matches(m), q.ancestor)
				}
			}
			d.mu.Unlock()
			t.Fatalf("filter %v orders %v: results %v\nwant (oracle) %v", f, orders, sorted, keys)
		}

		// Aggregations over the same query, with an offset and a limit,
		// planned and not: what the results in one batch give.
		offset, limit := int64(r.IntN(5)), int64(r.IntN(30))-5
		q.start = dsPos{}
		all := enginePages(t, d, q, maxBatch, true)
		var n, isum int64
		for _, res := range strings.Split(strings.TrimSpace(all), "|") {
			if res == "" {
				continue
			}
			if n++; n <= offset || limit >= 0 && n > offset+limit {
				continue
			}
			if v := oracleF(d, q, strings.Fields(res)[0]); v != nil {
				isum += *v
			}
		}
		n = max(0, n-offset)
		if limit >= 0 {
			n = min(n, limit)
		}
		for _, plan := range []bool{true, false} {
			d.mu.Lock()
			d.noPlan = !plan
			d.mu.Unlock()
			q.start = dsPos{}
			aggs := []dsAgg{{alias: "n", op: aggCount, upTo: -1}, {alias: "s", op: aggSum, prop: "F"}, {alias: "u", op: aggCount, upTo: 3}}
			vals, err := d.aggregate(q, pmsg{}, nil, offset, limit, aggs)
			if err != nil {
				t.Fatal(err)
			}
			if vals[0].i != n || vals[1].i != isum || vals[2].i != min(n, 3) {
				t.Fatalf("filter %v orders %v offset %d limit %d (planned %v): COUNT %d SUM(F) %d COUNT_UP_TO(3) %d; want %d, %d, %d",
					f, orders, offset, limit, plan, vals[0].i, vals[1].i, vals[2].i, n, isum, min(n, 3))
			}
		}
		d.mu.Lock()
		d.noPlan = false
		d.mu.Unlock()
	}
	t.Logf("%d queries refused, %d planned with branches (%d distinct), %d non-empty", refused, planned, distinct, nonEmpty)
	if planned < 60 || nonEmpty < 100 || distinct < 10 {
		t.Errorf("%d planned with branches (%d distinct), %d non-empty of 450; want 60 (10) and 100", planned, distinct, nonEmpty)
	}
}
