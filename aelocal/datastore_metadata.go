package aelocal

import (
	"math"
	"slices"
	"sort"

	"github.com/google/btree"
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
// ancestor names. Only indexed values count, as only they are in indexes:
// the properties are those the kind's single-property indexes hold, and
// their types are read from the index's range of each type (a seek per
// type), as production reads them from its indexes, not from the
// entities.
func (d *datastoreService) propertyEntitiesLocked(q *dsQuery, add func(*dsEntity)) {
	s := d.spaces[q.sp]
	if s == nil {
		return
	}
	for kind := range s.idx {
		if q.ancestor != nil && q.ancestor[0].name != kind {
			continue
		}
		ki := s.indexLocked(kind)
		if ki == nil {
			continue
		}
		names := make([]string, 0, len(ki.props))
		for name := range ki.props {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			path := dsPath{{kind: "__kind__", name: kind}, {kind: "__property__", name: name}}
			ep := metaEntityMsg(q.sp, path)
			if !q.keysOnly {
				for _, t := range indexTypes(ki.props[name], &d.stats.entries) {
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

// indexTypes returns the types of the values in a single-property index,
// in order: it seeks to the first entry of each type after the last found,
// so it reads an entry per type, not the index. count counts the entries
// read.
func indexTypes(t *btree.BTreeG[propEntry], count *int64) []int8 {
	var out []int8
	for typ := int8(vNull); typ < int8(len(propertyTypeNames)); {
		found := int8(-1)
		t.AscendGreaterOrEqual(entryAt(lowestOfType(typ), nil), func(x propEntry) bool {
			*count++
			found = x.v.t
			return false
		})
		if found < 0 {
			break
		}
		out = append(out, found)
		typ = found + 1
	}
	return out
}

// lowestOfType returns the value of type t that sorts before every other of
// that type (compareValue).
func lowestOfType(t int8) dsValue {
	lowest := math.Float64frombits(^uint64(0)) // floatIndexKey 0
	switch t {
	case vInt:
		return dsValue{t: t, i: math.MinInt64}
	case vDouble:
		return doubleValue(lowest)
	case vPoint:
		return pointValue(lowest, lowest)
	case vUser:
		return userValue("", "")
	case vRef:
		return dsValue{t: t, ref: &dsRef{}}
	}
	return dsValue{t: t}
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
