package aelocal

import "strconv"

// Aggregation queries of the Cloud Datastore API (RunAggregationQuery,
// issue 22): COUNT, COUNT_UP_TO, SUM and AVG over the results of a query,
// with its offset and limit, as Firestore in Datastore mode answers them
// (google.datastore.v1 AggregationQuery):
//
//   - one to five aggregations per query, each with a unique alias; one
//     without an alias is named property_1, property_2, ... in order;
//   - COUNT_UP_TO(n) counts at most n results (n >= 0), and the query
//     reads no more results than its counts need;
//   - SUM and AVG take only numeric values: an integer or a double, a
//     property of one value; null, other types (a timestamp too), arrays
//     and entities without the property are skipped. SUM is an integer
//     while every value is one and the sum fits in 64 bits, else a
//     double; over no value it is the integer 0. AVG is always a double,
//     null over no value. NaN and infinities follow IEEE 754;
//   - SUM and AVG are refused on __key__.
//
// The results are read batch by batch as RunQuery reads them, from the
// indexes where the planner answers the query, so a count reads index
// entries and entity pointers only, never an entity's bytes. Values are
// taken from the indexed properties (production reads them from the index
// entries the query scans); an unindexed property has none.

// Aggregation operators.
const (
	aggCount = iota
	aggSum
	aggAvg
)

// maxAggregations bounds the aggregations of one query, as production.
const maxAggregations = 5

// dsAgg is one aggregation of an aggregation query.
type dsAgg struct {
	alias string
	op    int
	prop  string // SUM and AVG
	upTo  int64  // COUNT_UP_TO's bound; -1 for COUNT
}

// dsAggValue is the result of one aggregation: null, an integer or a
// double.
type dsAggValue struct {
	null  bool
	isInt bool
	i     int64
	f     float64
}

// checkAggregations applies production's rules on the aggregations and
// names those without an alias.
func checkAggregations(aggs []dsAgg) error {
	if len(aggs) == 0 || len(aggs) > maxAggregations {
		return badRequest("an aggregation query needs 1 to %d aggregations; it has %d", maxAggregations, len(aggs))
	}
	used := make(map[string]bool)
	for i, a := range aggs {
		if a.alias == "" {
			continue
		}
		if used[a.alias] {
			return badRequest("duplicate alias %q: the aliases of an aggregation query must be unique", a.alias)
		}
		if reserved(a.alias) {
			return badRequest("the alias %q of aggregation %d is a reserved property name", a.alias, i)
		}
		used[a.alias] = true
	}
	next := 1
	for i := range aggs {
		a := &aggs[i]
		switch a.op {
		case aggCount:
			if a.upTo < -1 {
				return badRequest("COUNT_UP_TO needs a non-negative bound; it has %d", a.upTo)
			}
		case aggSum, aggAvg:
			if a.prop == "" {
				return badRequest("aggregation %d has no property", i)
			}
			if a.prop == keyProp {
				return badRequest("Aggregations are not supported for the property: %s", keyProp)
			}
		default:
			return badRequest("aggregation %d has an unknown operator", i)
		}
		if a.alias == "" {
			for used["property_"+strconv.Itoa(next)] {
				next++
			}
			a.alias = "property_" + strconv.Itoa(next)
			used[a.alias] = true
			next++
		}
	}
	return nil
}

// aggState accumulates one SUM or AVG.
type aggState struct {
	n     int64   // values taken
	isum  int64   // their sum, while every one is an integer and it fits
	float bool    // a value was a double or isum overflowed: fsum holds the sum
	fsum  float64 // their sum as a double
}

func (s *aggState) add(v dsValue) {
	s.n++
	if v.typ() == vInt && !s.float {
		if sum, overflow := addInt64(s.isum, v.int()); !overflow {
			s.isum = sum
			return
		}
	}
	if !s.float {
		s.float, s.fsum = true, float64(s.isum)
	}
	if v.typ() == vInt {
		s.fsum += float64(v.int())
	} else {
		s.fsum += v.float()
	}
}

// addInt64 adds two integers and reports whether the sum overflowed.
func addInt64(a, b int64) (int64, bool) {
	s := a + b
	return s, (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0)
}

// result is the value of the aggregation op (aggSum or aggAvg).
func (s *aggState) result(op int) dsAggValue {
	switch {
	case op == aggSum && !s.float:
		return dsAggValue{isInt: true, i: s.isum}
	case op == aggSum:
		return dsAggValue{f: s.fsum}
	case s.n == 0:
		return dsAggValue{null: true}
	case !s.float:
		return dsAggValue{f: float64(s.isum) / float64(s.n)}
	}
	return dsAggValue{f: s.fsum / float64(s.n)}
}

// numericValue returns the value SUM and AVG take from property prop of e:
// an integer (not a timestamp) or a double, of a property with one value.
func numericValue(e *dsEntity, prop string) (dsValue, bool) {
	var got dsValue
	n := 0
	for _, p := range e.msg().Msgs("property") {
		if p.Str("name") != prop {
			continue
		}
		if n++; n > 1 || p.Bool("multiple") {
			return dsValue{}, false // an array
		}
		v := p.Msg("value")
		switch {
		case v.Has("int64Value") && p.Int("meaning") != meaningGDWhen:
			got = intValue(v.Int("int64Value"))
		case v.Has("doubleValue"):
			got = doubleValue(v.Float("doubleValue"))
		default:
			return dsValue{}, false
		}
	}
	return got, n == 1
}

// aggregate answers an aggregation query: aggs (checked by
// checkAggregations) over the results of q between its start position
// (q.start) and end (nil: none), after offset, at most limit of them (-1:
// no limit), in the transaction tx names (a datastore_v3 Transaction;
// none if unset), by the rules of a query in a transaction.
func (d *datastoreService) aggregate(q *dsQuery, tx pmsg, end *dsPos, offset, limit int64, aggs []dsAgg) ([]dsAggValue, error) {
	if offset < 0 {
		return nil, badRequest("negative offset %d", offset)
	}
	// The most results the counts need, if every aggregation is a
	// COUNT_UP_TO: the query stops there.
	bound := int64(-1)
	for _, a := range aggs {
		if a.op != aggCount || a.upTo < 0 {
			bound = -1
			break
		}
		bound = max(bound, a.upTo)
	}
	if bound >= 0 && (limit < 0 || bound < limit) {
		limit = bound
	}
	if len(q.proj) == 0 {
		q.keysOnly = true // no result is encoded; no batch is cut by bytes
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := &dsCursor{q: q, pos: q.start, end: end, remaining: limit}
	if tx.m != nil {
		if err := d.txCursorLocked(c, tx); err != nil {
			return nil, err
		}
	}
	var n int64
	states := make([]aggState, len(aggs))
	for {
		res, skipped, more, err := d.batchLocked(c, offset, maxBatch)
		if err != nil {
			return nil, err
		}
		offset -= skipped
		for _, x := range res {
			n++
			for i, a := range aggs {
				if a.op == aggCount {
					continue
				}
				if v, ok := numericValue(x.e, a.prop); ok {
					states[i].add(v)
				}
			}
		}
		if !more || len(res) == 0 && skipped == 0 {
			break
		}
	}
	out := make([]dsAggValue, len(aggs))
	for i, a := range aggs {
		if a.op == aggCount {
			k := n
			if a.upTo >= 0 {
				k = min(k, a.upTo)
			}
			out[i] = dsAggValue{isInt: true, i: k}
			continue
		}
		out[i] = states[i].result(a.op)
	}
	return out, nil
}
