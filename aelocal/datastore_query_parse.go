package aelocal

import (
	"slices"
	"sort"
)

// maxQueryComponents bounds filters, sort orders and the ancestor of one
// query, as the SDK's stub does (_MAX_QUERY_COMPONENTS).
const maxQueryComponents = 100

// parseQuery reads and checks a Query the way the SDK's datastore stub does
// (datastore_index.Normalize, CheckQuery, _GuessOrders): orders on
// properties with an equality filter are dropped, orders after one on
// __key__ too; without orders an inequality filter orders by its property;
// then every grouped, then every other projected or EXISTS-filtered
// property not yet ordered or filtered orders the results, by name, before
// the key. Those are the index columns production reads such a query
// from, so this order is production's too.
func parseQuery(in pmsg) (*dsQuery, error) {
	app := in.Str("app")
	if app == "" {
		return nil, noApp("query")
	}
	if in.Str("search_query") != "" {
		return nil, badRequest("search queries are not supported by aelocal")
	}
	if in.Has("distinct") {
		// Production serves datastore_v3 through Cloud Datastore, whose
		// converter refuses this field; distinct queries send
		// group_by_property_name instead (appengine/v2 never sets it).
		return nil, badRequest("distinct option not supported: send group_by_property_name (Query.Distinct, Query.DistinctOn)")
	}
	q := &dsQuery{
		sp:       nsKey{app: app, ns: in.Str("name_space")},
		kind:     in.Str("kind"),
		byProp:   make(map[string]*dsPropFilter),
		keysOnly: in.Bool("keys_only"),
		proj:     stringList(in, "property_name"),
		groupBy:  stringList(in, "group_by_property_name"),
	}
	if len(q.proj) > 0 && q.keysOnly {
		return nil, badRequest("projection and keys_only cannot both be set")
	}
	for i, name := range q.proj {
		if reserved(name) {
			return nil, badRequest("projections are not supported for the property: %s", name)
		}
		if slices.Contains(q.proj[:i], name) {
			return nil, badRequest("cannot project a property multiple times")
		}
	}
	switch q.kind {
	case "__namespace__", "__kind__", "__property__":
		q.meta = q.kind
	}
	if in.Has("ancestor") {
		sp, path, err := parseKey(in.Msg("ancestor"), "query ancestor", false)
		if err != nil {
			return nil, err
		}
		if sp != q.sp {
			return nil, badRequest("query ancestor is in app %q namespace %q, but the query is in app %q namespace %q",
				sp.app, sp.ns, q.sp.app, q.sp.ns)
		}
		q.ancestor = path
	}

	ineqProp := ""
	var exists []string // properties of EXISTS filters
	for i, f := range in.Msgs("filter") {
		op := f.Int("op")
		switch op {
		case opLess, opLessEq, opGreater, opGreatEq, opEqual, opIn, opExists:
		default:
			return nil, badRequest("filter %d: unknown operator %d", i, op)
		}
		props := f.Msgs("property")
		if len(props) != 1 {
			return nil, badRequest("filter %d has %d properties; want 1", i, len(props))
		}
		name := props[0].Str("name")
		if name == "" {
			return nil, badRequest("filter %d has an empty property name", i)
		}
		if q.kind == "" && name != keyProp {
			return nil, badRequest("kindless queries can only filter on __key__, not on %q", name)
		}
		if op == opExists {
			exists = append(exists, name)
			continue
		}
		if op == opIn {
			op = opEqual // an IN of one property is an equality, as the stub normalizes it
		}
		v := parseValue(props[0].Msg("value"))
		if name == keyProp {
			if v.typ() != vRef {
				return nil, badRequest("filter %d: a __key__ filter needs a key value", i)
			}
			if v.ref().app != q.sp.app || v.ref().ns != q.sp.ns {
				return nil, badRequest("filter %d: the __key__ filter's key is in app %q namespace %q, but the query is in app %q namespace %q",
					i, v.ref().app, v.ref().ns, q.sp.app, q.sp.ns)
			}
		}
		pf := q.byProp[name]
		if pf == nil {
			pf = &dsPropFilter{prop: name}
			q.byProp[name] = pf
			q.filters = append(q.filters, pf)
		}
		if op == opEqual {
			if slices.Contains(q.proj, name) {
				return nil, badRequest("cannot use projection on a property with an equality filter")
			}
			pf.eqs = append(pf.eqs, v)
			continue
		}
		if ineqProp != "" && ineqProp != name {
			return nil, badRequest("only one inequality filter property per query is supported; this query has inequality filters on %q and %q", ineqProp, name)
		}
		ineqProp = name
		pf.ineqs = append(pf.ineqs, dsIneq{op, v})
	}

	// Normalized orders: none on a property that only equality filters
	// constrain (every result has the same value there), none repeated,
	// none after __key__ (keys are unique), none at all with an equality
	// filter on __key__ (one result at most).
	eqOnly := func(name string) bool {
		f := q.byProp[name]
		return f != nil && len(f.eqs) > 0 && len(f.ineqs) == 0
	}
	seen := make(map[string]bool)
	for i, o := range in.Msgs("order") {
		name := o.Str("property")
		if name == "" {
			return nil, badRequest("sort order %d has an empty property name", i)
		}
		dir := o.Int("direction")
		if dir != 1 && dir != 2 {
			return nil, badRequest("sort order %d has unknown direction %d", i, dir)
		}
		if eqOnly(name) || seen[name] {
			continue
		}
		seen[name] = true
		q.orders = append(q.orders, dsOrder{prop: name, desc: dir == 2, key: name == keyProp})
		if name == keyProp {
			break
		}
	}
	if eqOnly(keyProp) {
		q.orders = nil
		clear(seen)
	}
	n := len(in.Msgs("filter")) + len(q.orders)
	if q.ancestor != nil {
		n++
	}
	if n > maxQueryComponents {
		return nil, badRequest("query is too large. may not have more than %d filters + sort orders ancestor total", maxQueryComponents)
	}

	if len(q.groupBy) > 0 {
		rest := make(map[string]bool)
		for _, g := range q.groupBy {
			rest[g] = true
		}
		for _, o := range q.orders {
			if len(rest) == 0 {
				break
			}
			if !rest[o.prop] {
				return nil, badRequest("items in the group by clause must be specified first in the ordering")
			}
			delete(rest, o.prop)
		}
		if ineqProp != "" && len(q.orders) == 0 && !slices.Contains(q.groupBy, ineqProp) {
			return nil, badRequest("Inequality filter on %s must also be a group by property when group by properties are set.", ineqProp)
		}
	}
	if ineqProp != "" && len(q.orders) > 0 && q.orders[0].prop != ineqProp {
		return nil, badRequest("the first sort order must be on the property of the inequality filter, %q, not on %q", ineqProp, q.orders[0].prop)
	}
	for _, o := range q.orders {
		switch {
		case q.kind != "":
		case !o.key:
			return nil, badRequest("kindless queries can only sort by __key__, not by %q", o.prop)
		case o.desc:
			return nil, badRequest("kindless queries can only sort by __key__ ascending")
		}
	}
	if q.meta != "" {
		if err := q.checkMetadataQuery(in, exists); err != nil {
			return nil, err
		}
	}

	// Guessed orders.
	if len(q.orders) == 0 && ineqProp != "" {
		q.orders = []dsOrder{{prop: ineqProp, key: ineqProp == keyProp}}
	}
	// Group-by properties count as projected even when they are not (the
	// client never sends such a query), as the index rules count them.
	// Orders dropped after __key__ do not count as ordered here, so a
	// property projected and sorted after the key still orders the
	// entries; the stub counts them and then projects every value of such
	// a property, which no index holds.
	//
	// The group-by properties come first, by name, then the others, by
	// name: production reads a distinct query from the index
	// CompositeIndexForQuery gives it (the equality properties, the sort
	// orders, then the group-by properties, then the other projected
	// ones; recommended with each set by name, as index checks ask for
	// it here), and the Cloud API documents that the distinct_on
	// properties come before the others in the order. So the results of
	// one combination lie together, and the planner seeks past them.
	var group, extra []string
	for _, names := range [][]string{q.groupBy, q.proj, exists} {
		for _, name := range names {
			if f := q.byProp[name]; f != nil || seen[name] || slices.Contains(group, name) || slices.Contains(extra, name) {
				continue
			}
			if slices.Contains(q.groupBy, name) {
				group = append(group, name)
			} else {
				extra = append(extra, name)
			}
		}
	}
	sort.Strings(group)
	sort.Strings(extra)
	for _, name := range slices.Concat(group, extra) {
		q.orders = append(q.orders, dsOrder{prop: name, key: name == keyProp})
	}
	for _, o := range q.orders {
		if !o.key {
			q.nProp++
		}
	}
	return q, nil
}

// stringList reads a repeated string field.
func stringList(in pmsg, field string) []string {
	var out []string
	for _, b := range in.BytesList(field) {
		out = append(out, string(b))
	}
	return out
}
