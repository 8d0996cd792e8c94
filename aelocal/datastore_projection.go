package aelocal

import (
	"encoding/binary"
	"math"
	"slices"
)

// Projection and distinct queries. Production answers them from index
// entries alone: an entity has one entry per distinct combination of the
// values of the properties the index holds, and none if one of them is
// missing or unindexed. So a projection query yields one result per value
// of a multi-valued projected (or sorted) property, each with exactly one
// value per projected property, as the index stores it (meaning
// INDEX_VALUE, which appengine/v2 converts back into the field's type: a
// time from its microseconds, a []byte from its string). A distinct query
// keeps the first result of each combination of its group-by properties.
// This is what the SDK's stub does (_CreateIndexEntities, LoadEntity,
// _GetGroupByKey).

// maxIndexEntries bounds the results one entity may give a projection
// query: production refuses to index an entity with more than 20,000
// index entries, which an "exploding" composite index reaches first.
const maxIndexEntries = 20000

// meaningIndexValue is Property.Meaning INDEX_VALUE, which marks a
// projected value.
const meaningIndexValue = 18

// appendEntryResults appends the results that entity e, which matches q's
// filters, gives q, a query without branches (appendResults). Without a projection an entity is one result, at its
// first index entry after the start position: normally the entry of its
// smallest (ascending) or largest (descending) values, but one of its later
// entries if the start cursor lies past that. So, as production documents,
// an entity with several values of a sort property may come again after a
// cursor at one of its other values.
func (q *dsQuery) appendEntryResults(out []dsCand, e *dsEntity) ([]dsCand, error) {
	if len(q.proj) == 0 {
		vals, ok := q.sortVals(e)
		if !ok {
			return out, nil
		}
		c := dsCand{e, vals}
		if q.nProp == 0 || q.afterStart(c, q.start) {
			return append(out, c), nil
		}
		var best *dsCand
		err := q.eachEntry(e, func(vals []dsValue) {
			c := dsCand{e, vals}
			if q.afterStart(c, q.start) && (best == nil || q.compare(c.vals, e.path, best.vals, e.path) < 0) {
				best = &c
			}
		})
		if err != nil || best == nil {
			return out, err
		}
		return append(out, *best), nil
	}
	err := q.eachEntry(e, func(vals []dsValue) { out = append(out, dsCand{e, vals}) })
	return out, err
}

// eachEntry calls f with the sort values of each index entry of e for q:
// each combination of the distinct values of its sort properties that
// pass the filters on them.
func (q *dsQuery) eachEntry(e *dsEntity, f func(vals []dsValue)) error {
	choices := make([][]dsValue, len(q.orders))
	n := 1
	for i, o := range q.orders {
		if o.key {
			continue
		}
		vs := q.indexValues(o.prop, e.props.get(o.prop))
		if len(vs) == 0 {
			return nil
		}
		choices[i] = vs
		if n *= len(vs); n > maxIndexEntries {
			return badRequest("an entity of kind %q has more than %d index entries for this query, more than production keeps for one entity; sort or project on fewer multi-valued properties", q.kind, maxIndexEntries)
		}
	}
	at := make([]int, len(q.orders))
	for {
		vals := make([]dsValue, len(q.orders))
		for i, vs := range choices {
			if vs != nil {
				vals[i] = vs[at[i]]
			}
		}
		f(vals)
		i := len(at) - 1
		for ; i >= 0; i-- {
			if choices[i] == nil {
				continue
			}
			if at[i]++; at[i] < len(choices[i]) {
				break
			}
			at[i] = 0
		}
		if i < 0 {
			return nil
		}
	}
}

// indexValues returns the distinct values among vals that the filters on
// prop let through, in order: the index entries of one property.
func (q *dsQuery) indexValues(prop string, vals []dsValue) []dsValue {
	f := q.byProp[prop]
	var out []dsValue
	for _, v := range vals {
		if f == nil || f.valueOK(v) {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, compareValue)
	return slices.CompactFunc(out, func(a, b dsValue) bool { return compareValue(a, b) == 0 })
}

// valueOK reports whether the single value v satisfies every filter on the
// property, as one index entry must.
func (f *dsPropFilter) valueOK(v dsValue) bool {
	for _, eq := range f.eqs {
		if compareValue(v, eq) != 0 {
			return false
		}
	}
	return f.ineqOK(v)
}

// distinct keeps the first of the results, sorted, that share the values
// of q's group-by properties.
func (q *dsQuery) distinct(res []dsCand) []dsCand {
	seen := make(map[string]bool)
	out := res[:0]
	var b []byte
	for _, c := range res {
		b = b[:0]
		for i, o := range q.orders {
			if !o.key && slices.Contains(q.groupBy, o.prop) {
				b = appendValueKey(b, c.vals[i])
			}
		}
		if !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, c)
		}
	}
	return out
}

// appendValueKey appends an encoding of v that equals another's exactly
// when compareValue finds the two values equal.
func appendValueKey(b []byte, v dsValue) []byte {
	str := func(b []byte, s string) []byte {
		b = binary.AppendUvarint(b, uint64(len(s)))
		return append(b, s...)
	}
	b = append(b, byte(v.typ()))
	switch v.typ() {
	case vInt, vBool:
		b = binary.AppendVarint(b, v.int())
	case vString:
		b = str(b, v.str())
	case vDouble:
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v.float()))
	case vPoint:
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v.float()))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v.pointY()))
	case vUser:
		b = str(str(b, v.email()), v.authDomain())
	case vRef:
		b = str(str(str(b, v.ref().app), v.ref().ns), v.ref().path.encode())
	}
	return b
}

// writeProjected fills an empty EntityProto with projection result c: its
// key, an empty entity group, as the stub answers, and one INDEX_VALUE
// property per projected property.
func (q *dsQuery) writeProjected(r pmsg, c dsCand) {
	r.Mutable("key").CopyFrom(c.e.keyMsg())
	r.Mutable("entity_group")
	for _, name := range q.proj {
		i := slices.IndexFunc(q.orders, func(o dsOrder) bool { return !o.key && o.prop == name })
		p := r.AppendMsg("property")
		p.Set("meaning", meaningIndexValue)
		p.Set("name", name)
		p.Set("multiple", false)
		writeValue(p.Mutable("value"), c.vals[i])
	}
}
