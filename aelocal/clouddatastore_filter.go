package aelocal

import (
	"fmt"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
)

// The Cloud API's filters that datastore_v3 has no words for (OR, IN,
// NOT_IN, !=) reach the engine as a filter tree (dsFilter,
// datastore_disjunction.go) beside the datastore_v3 Query of the rest of
// the query; an AND of the others stays a datastore_v3 filter list
// (v3Filter), as before.

// cloudOnlyFilter reports whether f uses a filter only the Cloud API has.
func cloudOnlyFilter(f *pb.Filter) bool {
	switch t := f.GetFilterType().(type) {
	case *pb.Filter_CompositeFilter:
		if t.CompositeFilter.GetOp() == pb.CompositeFilter_OR {
			return true
		}
		for _, sub := range t.CompositeFilter.GetFilters() {
			if cloudOnlyFilter(sub) {
				return true
			}
		}
	case *pb.Filter_PropertyFilter:
		switch t.PropertyFilter.GetOp() {
		case pb.PropertyFilter_IN, pb.PropertyFilter_NOT_IN, pb.PropertyFilter_NOT_EQUAL:
			return true
		}
	}
	return false
}

// cloudQuery converts a v1 query in partition sp: the datastore_v3 Query
// of v3Query, and the filter tree when its filter needs one (nil
// otherwise), for parseFilteredQuery.
func (c *cloudScope) cloudQuery(sp nsKey, query *pb.Query) (pmsg, *dsFilter, error) {
	in, err := c.v3Query(sp, query)
	if err != nil || !cloudOnlyFilter(query.GetFilter()) {
		return in, nil, err
	}
	f, err := c.filterTree(sp, query.GetFilter(), 0)
	return in, f, err
}

// filterTree converts a v1 filter into the engine's filter tree. depth
// counts the composite filters around f.
func (c *cloudScope) filterTree(sp nsKey, f *pb.Filter, depth int) (*dsFilter, error) {
	if depth > maxNesting {
		return nil, badRequest("filters are nested more than %d levels deep", maxNesting)
	}
	switch t := f.GetFilterType().(type) {
	case *pb.Filter_CompositeFilter:
		cf := t.CompositeFilter
		out := &dsFilter{op: opAnd}
		switch cf.GetOp() {
		case pb.CompositeFilter_AND:
		case pb.CompositeFilter_OR:
			out.op = opOr
		default:
			return nil, badRequest("unknown composite filter operator %v", cf.GetOp())
		}
		if len(cf.GetFilters()) == 0 {
			return nil, badRequest("a composite filter needs at least one filter")
		}
		for _, sub := range cf.GetFilters() {
			s, err := c.filterTree(sp, sub, depth+1)
			if err != nil {
				return nil, err
			}
			out.subs = append(out.subs, s)
		}
		return out, nil
	case *pb.Filter_PropertyFilter:
		return c.propertyFilterTree(sp, t.PropertyFilter)
	}
	return nil, badRequest("a filter needs a composite or a property filter")
}

// cloudTreeOps maps v1 property filter operators onto the engine's.
var cloudTreeOps = map[pb.PropertyFilter_Operator]int64{
	pb.PropertyFilter_LESS_THAN:             opLess,
	pb.PropertyFilter_LESS_THAN_OR_EQUAL:    opLessEq,
	pb.PropertyFilter_GREATER_THAN:          opGreater,
	pb.PropertyFilter_GREATER_THAN_OR_EQUAL: opGreatEq,
	pb.PropertyFilter_EQUAL:                 opEqual,
	pb.PropertyFilter_IN:                    opIn,
	pb.PropertyFilter_NOT_EQUAL:             opNotEqual,
	pb.PropertyFilter_NOT_IN:                opNotIn,
	pb.PropertyFilter_HAS_ANCESTOR:          opHasAncestor,
}

func (c *cloudScope) propertyFilterTree(sp nsKey, pf *pb.PropertyFilter) (*dsFilter, error) {
	name := pf.GetProperty().GetName()
	if name == "" {
		return nil, badRequest("a property filter needs a property name")
	}
	op, ok := cloudTreeOps[pf.GetOp()]
	if !ok {
		return nil, badRequest("unknown property filter operator %v", pf.GetOp())
	}
	out := &dsFilter{op: op, prop: name}
	if op == opHasAncestor {
		if name != keyProp {
			return nil, badRequest("HAS_ANCESTOR filters the property __key__, not %q", name)
		}
		k := pf.GetValue().GetKeyValue()
		if k == nil {
			return nil, badRequest("a HAS_ANCESTOR filter needs a key value")
		}
		asp, path, err := c.key(k, "the ancestor", false)
		if err != nil {
			return nil, err
		}
		if asp != sp {
			return nil, badRequest("the ancestor is in namespace %q, the query in %q", asp.ns, sp.ns)
		}
		out.v = refValue(&dsRef{app: asp.app, ns: asp.ns, path: path})
		return out, nil
	}
	arr, isArr := pf.GetValue().GetValueType().(*pb.Value_ArrayValue)
	if op == opIn || op == opNotIn {
		if !isArr {
			return nil, badRequest("the %v filter on %q needs an array value", pf.GetOp(), name)
		}
		for _, v := range arr.ArrayValue.GetValues() {
			x, err := c.treeValue(name, v)
			if err != nil {
				return nil, err
			}
			out.list = append(out.list, x)
		}
		return out, nil
	}
	if isArr {
		return nil, badRequest("the filter on %q: an array value is allowed only with IN and NOT_IN", name)
	}
	x, err := c.treeValue(name, pf.GetValue())
	out.v = x
	return out, err
}

// treeValue converts a filter's value as v3PropertyFilter does, then
// reads it as the engine compares it.
func (c *cloudScope) treeValue(name string, v *pb.Value) (dsValue, error) {
	if _, arr := v.GetValueType().(*pb.Value_ArrayValue); arr {
		return dsValue{}, badRequest("the filter on %q: an array value cannot hold an array", name)
	}
	p, err := newMsg("appengine.v2.Property")
	if err != nil {
		return dsValue{}, err
	}
	if err := c.v3FilterValue(p, name, v); err != nil {
		return dsValue{}, fmt.Errorf("filter on %q: %w", name, err)
	}
	x := parseValue(p.Msg("value"))
	if name == keyProp && x.typ() != vRef {
		return dsValue{}, badRequest("a __key__ filter needs a key value")
	}
	return x, nil
}
