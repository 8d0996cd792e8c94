package aelocal

import (
	"slices"
	"sort"
)

// Metadata queries: the kinds __namespace__, __kind__ and __property__,
// which production answers from the datastore's own statistics and the SDK's
// stub from the stored entities (NamespacePseudoKind, KindPseudoKind,
// PropertyPseudoKind). Their results are keys: /__namespace__,NAME (ID 1
// for the default namespace), /__kind__,KIND and
// /__kind__,KIND/__property__,NAME. A __property__ entity also lists the
// types its property's indexed values have (property_representation),
// unless the query is keys-only.

// propertyTypeNames are the names of property_representation, by value
// type; dsValue types sort as the stub sorts these (by field number).
var propertyTypeNames = [...]string{
	vNull:   "NULL",
	vInt:    "INT64",
	vBool:   "BOOLEAN",
	vString: "STRING",
	vDouble: "DOUBLE",
	vPoint:  "POINT",
	vUser:   "USER",
	vRef:    "REFERENCE",
}

// metaEntity makes the entity a metadata query returns.
func metaEntity(sp nsKey, kind, name string, id int64) *dsEntity {
	return metaEntityPath(sp, dsPath{{kind: kind, name: name, id: id}})
}

func metaEntityPath(sp nsKey, path dsPath) *dsEntity {
	return metaEntityOf(sp, path, metaEntityMsg(sp, path))
}

// metaEntityOf makes the metadata entity ep: without indexed values, as
// metadata queries filter and sort by key only.
func metaEntityOf(sp nsKey, path dsPath, ep pmsg) *dsEntity {
	raw, _ := encodeEntity(ep)
	return &dsEntity{sp: sp, path: path, props: dsProps{raw: raw}}
}

// metaEntityMsg is the EntityProto of a metadata entity, without
// properties.
func metaEntityMsg(sp nsKey, path dsPath) pmsg {
	ep, _ := newMsg("appengine.v2.EntityProto")
	writeRef(ep.Mutable("key"), sp.app, sp.ns, path)
	eg := ep.Mutable("entity_group").AppendMsg("element")
	eg.Set("type", path[0].kind)
	if path[0].name != "" {
		eg.Set("name", path[0].name)
	} else {
		eg.Set("id", path[0].id)
	}
	return ep
}

// propertyEntitiesLocked calls add with the __property__ entity of every
// indexed property of every kind in q's namespace, or of the kind its
// ancestor names. Only indexed values count, as only they are in indexes.
func (d *datastoreService) propertyEntitiesLocked(q *dsQuery, add func(*dsEntity)) {
	s := d.spaces[q.sp]
	if s == nil {
		return
	}
	for kind, ents := range s.kinds {
		if q.ancestor != nil && q.ancestor[0].name != kind {
			continue
		}
		types := s.propertyTypes(kind, ents)
		names := make([]string, 0, len(types))
		for name := range types {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			path := dsPath{{kind: "__kind__", name: kind}, {kind: "__property__", name: name}}
			ep := metaEntityMsg(q.sp, path)
			if !q.keysOnly {
				for t, ok := range types[name] {
					if !ok {
						continue
					}
					p := ep.AppendMsg("property")
					p.Set("name", "property_representation")
					p.Set("multiple", true)
					p.Mutable("value").Set("stringValue", propertyTypeNames[t])
				}
			}
			add(metaEntityOf(q.sp, path, ep))
		}
	}
}

// propTypes are the value types each indexed property of a kind has.
type propTypes map[string][len(propertyTypeNames)]bool

// propMemo keeps what propertyTypes found for the kinds of a namespace
// while no write changes it: finding the types reads every entity of the
// kind, and a console (or an app) asks again and again of data that does
// not change in between.
type propMemo struct {
	version uint64 // the namespace's version it is valid for
	kinds   map[string]propTypes
}

// propertyTypes returns the types of the properties of the entities ents
// of kind, from the memo while the namespace has not changed. The caller
// holds the datastore's lock and must not change the result.
func (s *dsSpace) propertyTypes(kind string, ents map[string]*dsEntity) propTypes {
	if s.props == nil || s.props.version != s.version {
		s.props = &propMemo{version: s.version, kinds: make(map[string]propTypes)}
	}
	if types, ok := s.props.kinds[kind]; ok {
		return types
	}
	types := make(propTypes)
	for _, e := range ents {
		for name, vals := range e.props.all() {
			t := types[name]
			for _, v := range vals {
				t[v.t] = true
			}
			types[name] = t
		}
	}
	s.props.kinds[kind] = types
	return types
}

// checkMetadataQuery refuses what the stub refuses of a metadata query
// (ParseKeyFilteredQuery and its callers): filters other than comparisons
// of __key__ with a key of the metadata table, orders other than __key__
// ascending, and an ancestor except a __kind__ or __property__ key for
// __property__.
func (q *dsQuery) checkMetadataQuery(in pmsg, exists []string) error {
	if len(exists) > 0 {
		return badRequest("Only comparison filters on %s supported", keyProp)
	}
	for _, f := range q.filters {
		if f.prop != keyProp {
			return badRequest("Only comparison filters on %s supported", keyProp)
		}
		for _, v := range slices.Concat(f.eqs, ineqValues(f.ineqs)) {
			if !q.metaKeyOK(v.ref.path) {
				return badRequest("invalid Key for %s table", q.meta)
			}
		}
	}
	for _, o := range q.orders {
		if !o.key || o.desc {
			return badRequest("Only ascending order on %s supported", keyProp)
		}
	}
	if q.ancestor != nil {
		if q.meta != "__property__" {
			return badRequest("ancestor queries on %s not allowed", q.meta)
		}
		if !q.metaKeyOK(q.ancestor) {
			return badRequest("invalid Key for %s table", q.meta)
		}
	}
	return nil
}

func ineqValues(ineqs []dsIneq) []dsValue {
	out := make([]dsValue, len(ineqs))
	for i, x := range ineqs {
		out[i] = x.v
	}
	return out
}

// metaKeyOK reports whether path is a key of q's metadata table.
func (q *dsQuery) metaKeyOK(path dsPath) bool {
	switch q.meta {
	case "__namespace__":
		return len(path) == 1 && path[0].kind == q.meta && (path[0].name != "" || path[0].id == 1)
	case "__kind__":
		return len(path) == 1 && path[0].kind == q.meta && path[0].name != ""
	case "__property__":
		switch len(path) {
		case 1:
			return path[0].kind == "__kind__" && path[0].name != ""
		case 2:
			return path[0].kind == "__kind__" && path[0].name != "" && path[1].kind == "__property__" && path[1].name != ""
		}
	}
	return false
}
