package aelocal

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Helpers that build v1 filters.

func v1Int(i int64) *pb.Value { return &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: i}} }

func v1Ints(is ...int64) *pb.Value {
	a := &pb.ArrayValue{}
	for _, i := range is {
		a.Values = append(a.Values, v1Int(i))
	}
	return &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: a}}
}

func v1Prop(name string, op pb.PropertyFilter_Operator, v *pb.Value) *pb.Filter {
	return &pb.Filter{FilterType: &pb.Filter_PropertyFilter{PropertyFilter: &pb.PropertyFilter{
		Property: &pb.PropertyReference{Name: name}, Op: op, Value: v}}}
}

func v1Comp(op pb.CompositeFilter_Operator, fs ...*pb.Filter) *pb.Filter {
	return &pb.Filter{FilterType: &pb.Filter_CompositeFilter{CompositeFilter: &pb.CompositeFilter{Op: op, Filters: fs}}}
}

// putFilterData writes kind SQ through appengine/v2: I = 0..7 (names
// i0..i7), and entities whose I is null, a string, two values (1 and 20),
// unindexed, or missing.
func putFilterData(t *testing.T, ctx context.Context) {
	t.Helper()
	put := func(name string, pl datastore.PropertyList) {
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "SQ", name, 0, nil), &pl); err != nil {
			t.Fatal(err)
		}
	}
	for i := range int64(8) {
		put(fmt.Sprintf("i%d", i), datastore.PropertyList{{Name: "I", Value: i}, {Name: "J", Value: 10 - i}})
	}
	put("null", datastore.PropertyList{{Name: "I", Value: nil}})
	put("str", datastore.PropertyList{{Name: "I", Value: "s"}})
	put("multi", datastore.PropertyList{{Name: "I", Value: int64(1), Multiple: true}, {Name: "I", Value: int64(20), Multiple: true}})
	put("noindex", datastore.PropertyList{{Name: "I", Value: int64(100), NoIndex: true}})
	put("none", datastore.PropertyList{{Name: "J", Value: int64(1)}})
}

// TestCloudQueryFilters runs the Cloud API's IN, NOT_IN, != and OR
// filters over gRPC and checks the keys each returns, in order, and that
// paging through them by cursors gives the same keys.
func TestCloudQueryFilters(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	putFilterData(t, ctx)
	project := s.CloudProjectID()
	bg := context.Background()
	run := func(q *pb.Query) ([]string, error) {
		var names []string
		for range 100 {
			r, err := c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, QueryType: &pb.RunQueryRequest_Query{Query: q}})
			if err != nil {
				return nil, err
			}
			for _, er := range r.Batch.EntityResults {
				names = append(names, er.Entity.Key.Path[0].GetName())
			}
			if r.Batch.MoreResults != pb.QueryResultBatch_NOT_FINISHED && r.Batch.MoreResults != pb.QueryResultBatch_MORE_RESULTS_AFTER_LIMIT ||
				len(r.Batch.EntityResults) == 0 {
				return names, nil
			}
			q.StartCursor = r.Batch.EndCursor
		}
		return names, fmt.Errorf("no end")
	}
	keys := func(names ...string) *pb.Value {
		a := &pb.ArrayValue{}
		for _, n := range names {
			a.Values = append(a.Values, &pb.Value{ValueType: &pb.Value_KeyValue{KeyValue: cloudTestKey(project, "SQ", n)}})
		}
		return &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: a}}
	}
	asc := []*pb.PropertyOrder{{Property: &pb.PropertyReference{Name: "I"}}}
	desc := []*pb.PropertyOrder{{Property: &pb.PropertyReference{Name: "I"}, Direction: pb.PropertyOrder_DESCENDING}}
	for _, tc := range []struct {
		name   string
		f      *pb.Filter
		orders []*pb.PropertyOrder
		want   string
	}{
		{"in", v1Prop("I", pb.PropertyFilter_IN, v1Ints(2, 4, 20)), nil, "i2 i4 multi"},
		{"in, by I", v1Prop("I", pb.PropertyFilter_IN, v1Ints(20, 4, 2)), asc, "i2 i4 multi"},
		{"in, by -I", v1Prop("I", pb.PropertyFilter_IN, v1Ints(2, 4, 1)), desc, "i4 i2 i1 multi"},
		// null and a string lie outside the list: != and NOT_IN take
		// every indexed value but the listed ones, in the index's
		// order of types (null, integers, strings); ranges span types
		// in that order too, as datastore_v3's do in aelocal.
		{"not in", v1Prop("I", pb.PropertyFilter_NOT_IN, v1Ints(1, 3, 5, 7)), nil, "null i0 i2 i4 i6 multi str"},
		{"not equal", v1Prop("I", pb.PropertyFilter_NOT_EQUAL, v1Int(3)), nil, "null i0 i1 multi i2 i4 i5 i6 i7 str"},
		{"not equal, by -I", v1Prop("I", pb.PropertyFilter_NOT_EQUAL, v1Int(1)), desc, "str multi i7 i6 i5 i4 i3 i2 i0 null"},
		{"or", v1Comp(pb.CompositeFilter_OR, v1Prop("I", pb.PropertyFilter_LESS_THAN, v1Int(2)), v1Prop("I", pb.PropertyFilter_GREATER_THAN_OR_EQUAL, v1Int(6))), nil,
			"null i0 i1 multi i6 i7 str"},
		{"or of equalities", v1Comp(pb.CompositeFilter_OR, v1Prop("I", pb.PropertyFilter_EQUAL, v1Int(3)), v1Prop("J", pb.PropertyFilter_EQUAL, v1Int(1))), nil,
			"i3 none"},
		{"key in", v1Prop("__key__", pb.PropertyFilter_IN, keys("i3", "i1", "zz")), nil, "i1 i3"},
		{"key not in", v1Prop("__key__", pb.PropertyFilter_NOT_IN, keys("i3", "i1", "multi", "noindex", "none", "null", "str")), nil, "i0 i2 i4 i5 i6 i7"},
		{"key !=, by -__key__", v1Prop("__key__", pb.PropertyFilter_NOT_EQUAL, keys("i7").GetArrayValue().Values[0]),
			[]*pb.PropertyOrder{{Property: &pb.PropertyReference{Name: "__key__"}, Direction: pb.PropertyOrder_DESCENDING}},
			"str null none noindex multi i6 i5 i4 i3 i2 i1 i0"},
		{"and of or", v1Comp(pb.CompositeFilter_AND,
			v1Comp(pb.CompositeFilter_OR, v1Prop("J", pb.PropertyFilter_EQUAL, v1Int(9)), v1Prop("J", pb.PropertyFilter_EQUAL, v1Int(5))),
			v1Prop("I", pb.PropertyFilter_IN, v1Ints(1, 5, 7))), nil, "i1 i5"},
	} {
		for _, limit := range []int32{0, 1, 2} {
			q := &pb.Query{Kind: []*pb.KindExpression{{Name: "SQ"}}, Filter: tc.f, Order: tc.orders}
			if limit > 0 {
				q.Limit = wrapperspb.Int32(limit)
			}
			got, err := run(q)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if limit > 0 {
				// From a cursor past an entity's first value of a
				// multi-valued sort property, it comes again at its
				// next value (production documents this of cursors).
				var seen []string
				got = slices.DeleteFunc(got, func(n string) bool {
					dup := slices.Contains(seen, n)
					seen = append(seen, n)
					return dup
				})
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("%s (pages of %d): got %q, want %q", tc.name, limit, strings.Join(got, " "), tc.want)
			}
		}
	}
	// Production's rules, as INVALID_ARGUMENT.
	many := make([]int64, 31)
	for i := range many {
		many[i] = int64(i)
	}
	for _, tc := range []struct {
		name   string
		f      *pb.Filter
		orders []*pb.PropertyOrder
		want   string
	}{
		{"empty in", v1Prop("I", pb.PropertyFilter_IN, v1Ints()), nil, "non-empty array"},
		{"in of a scalar", v1Prop("I", pb.PropertyFilter_IN, v1Int(1)), nil, "needs an array value"},
		{"31 in", v1Prop("I", pb.PropertyFilter_IN, v1Ints(many...)), nil, "limit is 30"},
		{"11 not in", v1Prop("I", pb.PropertyFilter_NOT_IN, v1Ints(many[:11]...)), nil, "at most 10 values"},
		{"6 by 6 in", v1Comp(pb.CompositeFilter_AND, v1Prop("I", pb.PropertyFilter_IN, v1Ints(many[:6]...)), v1Prop("J", pb.PropertyFilter_IN, v1Ints(many[:6]...))), nil, "limit is 30"},
		{"two not equal", v1Comp(pb.CompositeFilter_AND, v1Prop("I", pb.PropertyFilter_NOT_EQUAL, v1Int(1)), v1Prop("I", pb.PropertyFilter_NOT_EQUAL, v1Int(2))), nil, "at most one NOT_EQUAL"},
		{"not in and in", v1Comp(pb.CompositeFilter_AND, v1Prop("I", pb.PropertyFilter_NOT_IN, v1Ints(1)), v1Prop("J", pb.PropertyFilter_IN, v1Ints(2))), nil, "cannot be combined"},
		{"not in and or", v1Comp(pb.CompositeFilter_OR, v1Prop("I", pb.PropertyFilter_NOT_IN, v1Ints(1)), v1Prop("J", pb.PropertyFilter_EQUAL, v1Int(2))), nil, "cannot be combined"},
		{"not equal, ordered by another", v1Prop("I", pb.PropertyFilter_NOT_EQUAL, v1Int(1)), []*pb.PropertyOrder{{Property: &pb.PropertyReference{Name: "J"}}}, "first sort order"},
		{"two inequality properties", v1Comp(pb.CompositeFilter_OR, v1Prop("I", pb.PropertyFilter_NOT_EQUAL, v1Int(1)), v1Prop("J", pb.PropertyFilter_LESS_THAN, v1Int(2))), nil, "only one inequality"},
		{"empty or", v1Comp(pb.CompositeFilter_OR), nil, "at least one"},
		{"an ancestor in one disjunction", v1Comp(pb.CompositeFilter_OR, v1Prop("I", pb.PropertyFilter_EQUAL, v1Int(1)),
			v1Prop("__key__", pb.PropertyFilter_HAS_ANCESTOR, &pb.Value{ValueType: &pb.Value_KeyValue{KeyValue: cloudTestKey(project, "SQ", "i1")}})), nil, "same HAS_ANCESTOR"},
	} {
		_, err := c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, QueryType: &pb.RunQueryRequest_Query{Query: &pb.Query{Kind: []*pb.KindExpression{{Name: "SQ"}}, Filter: tc.f, Order: tc.orders}}})
		wantCode(t, err, codes.InvalidArgument)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestCloudQueryDisjunctionProjection: a projection and a distinct query
// with IN and OR filters: a result per index entry of the union, each
// once, sorted by the projected property as without the filter; and, as
// production documents, a property of an equality or IN filter cannot be
// projected.
func TestCloudQueryDisjunctionProjection(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	putFilterData(t, ctx)
	put := func(name string, pl datastore.PropertyList) {
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "SQ", name, 0, nil), &pl); err != nil {
			t.Fatal(err)
		}
	}
	put("jj", datastore.PropertyList{{Name: "I", Value: int64(2)}, {Name: "J", Value: int64(4), Multiple: true}, {Name: "J", Value: int64(9), Multiple: true}})
	project := s.CloudProjectID()
	run := func(q *pb.Query) ([]string, error) {
		r, err := c.RunQuery(context.Background(), &pb.RunQueryRequest{ProjectId: project, QueryType: &pb.RunQueryRequest_Query{Query: q}})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, er := range r.Batch.EntityResults {
			out = append(out, fmt.Sprintf("%s:%d", er.Entity.Key.Path[0].GetName(), er.Entity.Properties["J"].GetIntegerValue()))
		}
		return out, nil
	}
	kind := []*pb.KindExpression{{Name: "SQ"}}
	proj := []*pb.Projection{{Property: &pb.PropertyReference{Name: "J"}}}
	or := v1Comp(pb.CompositeFilter_OR, v1Prop("I", pb.PropertyFilter_IN, v1Ints(2, 1)), v1Prop("J", pb.PropertyFilter_GREATER_THAN, v1Int(8)))
	for _, tc := range []struct {
		name string
		q    *pb.Query
		want string
	}{
		// i1 (J 9), i2 (J 8), jj (I 2, J 4 and 9), i0 (J 10): jj's
		// entry 9 comes from both disjunctions, once.
		{"projection", &pb.Query{Kind: kind, Projection: proj, Filter: or}, "jj:4 i2:8 i1:9 jj:9 i0:10"},
		{"distinct", &pb.Query{Kind: kind, Projection: proj, DistinctOn: []*pb.PropertyReference{{Name: "J"}}, Filter: or}, "jj:4 i2:8 i1:9 i0:10"},
	} {
		got, err := run(tc.q)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("%s: %v, %v; want %s", tc.name, got, err, tc.want)
		}
	}
	_, err := run(&pb.Query{Kind: kind, Projection: []*pb.Projection{{Property: &pb.PropertyReference{Name: "I"}}}, Filter: v1Prop("I", pb.PropertyFilter_IN, v1Ints(2, 1))})
	wantCode(t, err, codes.InvalidArgument)
}

// TestCloudQueryDistinctOrPages: a distinct_on query with an OR filter,
// read a page of two at a time from each batch's end cursor, ascending
// and descending: each value once, from the first entity (by key) of
// either disjunction, though most values come from both; and the planner
// answers every page (each branch's index read, merged), not the full
// evaluation.
func TestCloudQueryDistinctOrPages(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	type E struct{ P, Q int64 }
	var keys []*datastore.Key
	var es []E
	for i := range 60 {
		keys = append(keys, datastore.NewKey(ctx, "DQ", fmt.Sprintf("e%02d", i), 0, nil))
		es = append(es, E{int64(i % 7), int64(i % 3)})
	}
	if _, err := datastore.PutMulti(ctx, keys, es); err != nil {
		t.Fatal(err)
	}
	// The test's own answer: each P's first entity with Q 0 or 1.
	first := map[int64]string{}
	for i, e := range es {
		if _, ok := first[e.P]; !ok && e.Q != 2 {
			first[e.P] = keys[i].StringID()
		}
	}
	d := s.datastore
	for _, dir := range []pb.PropertyOrder_Direction{pb.PropertyOrder_ASCENDING, pb.PropertyOrder_DESCENDING} {
		d.mu.Lock()
		evaluated := d.evaluated
		d.mu.Unlock()
		var got, want []string
		for p := range int64(7) {
			if dir == pb.PropertyOrder_DESCENDING {
				p = 6 - p
			}
			want = append(want, fmt.Sprintf("%s:%d", first[p], p))
		}
		var cursor []byte
		for page := 0; ; page++ {
			r, err := c.RunQuery(context.Background(), &pb.RunQueryRequest{ProjectId: s.CloudProjectID(), QueryType: &pb.RunQueryRequest_Query{Query: &pb.Query{
				Kind:        []*pb.KindExpression{{Name: "DQ"}},
				Projection:  []*pb.Projection{{Property: &pb.PropertyReference{Name: "P"}}},
				DistinctOn:  []*pb.PropertyReference{{Name: "P"}},
				Filter:      v1Comp(pb.CompositeFilter_OR, v1Prop("Q", pb.PropertyFilter_EQUAL, v1Int(0)), v1Prop("Q", pb.PropertyFilter_EQUAL, v1Int(1))),
				Order:       []*pb.PropertyOrder{{Property: &pb.PropertyReference{Name: "P"}, Direction: dir}},
				StartCursor: cursor,
				Limit:       wrapperspb.Int32(2),
			}}})
			if err != nil {
				t.Fatal(err)
			}
			for _, er := range r.Batch.EntityResults {
				got = append(got, fmt.Sprintf("%s:%d", er.Entity.Key.Path[0].GetName(), er.Entity.Properties["P"].GetIntegerValue()))
			}
			if len(r.Batch.EntityResults) < 2 || page > 10 {
				break
			}
			cursor = r.Batch.EndCursor
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v: pages of two give %v; want %v", dir, got, want)
		}
		d.mu.Lock()
		if d.evaluated != evaluated {
			t.Errorf("%v: %d batches took the full evaluation; want every one planned", dir, d.evaluated-evaluated)
		}
		d.mu.Unlock()
	}
}

// TestCloudQueryDisjunctionReadsItsBranches checks that an IN query with
// a limit on a large kind is answered by the planner (the merge of the
// branches' index reads), not by reading every entity.
func TestCloudQueryDisjunctionReadsItsBranches(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	keys := make([]*datastore.Key, 2000)
	type E struct{ N int64 }
	es := make([]E, len(keys))
	for i := range keys {
		keys[i] = datastore.NewKey(ctx, "Big", "", int64(i+1), nil)
		es[i] = E{int64(i % 100)}
	}
	for i := 0; i < len(keys); i += 500 {
		if _, err := datastore.PutMulti(ctx, keys[i:i+500], es[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	d := s.datastore
	d.mu.Lock()
	planned, evaluated := d.planned, d.evaluated
	d.mu.Unlock()
	r, err := c.RunQuery(context.Background(), &pb.RunQueryRequest{ProjectId: s.CloudProjectID(), QueryType: &pb.RunQueryRequest_Query{Query: &pb.Query{
		Kind: []*pb.KindExpression{{Name: "Big"}}, Filter: v1Prop("N", pb.PropertyFilter_IN, v1Ints(7, 3, 99)), Limit: wrapperspb.Int32(20)}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, er := range r.Batch.EntityResults {
		ids = append(ids, er.Entity.Key.Path[0].GetId())
	}
	want := []int64{4, 8, 100, 104, 108, 200, 204, 208, 300, 304, 308, 400, 404, 408, 500, 504, 508, 600, 604, 608}
	if !slices.Equal(ids, want) {
		t.Fatalf("got %v, want %v", ids, want)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.planned != planned+1 || d.evaluated != evaluated {
		t.Errorf("planned batches %d -> %d, full evaluations %d -> %d; want one planned batch and no evaluation", planned, d.planned, evaluated, d.evaluated)
	}
}

// TestCloudAggregationQuery runs COUNT, COUNT_UP_TO, SUM and AVG over
// gRPC, with production's rules for their values and requests.
func TestCloudAggregationQuery(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	putFilterData(t, ctx)
	project := s.CloudProjectID()
	bg := context.Background()
	count := func(alias string, upTo int64) *pb.AggregationQuery_Aggregation {
		a := &pb.AggregationQuery_Aggregation{Alias: alias, Operator: &pb.AggregationQuery_Aggregation_Count_{Count: &pb.AggregationQuery_Aggregation_Count{}}}
		if upTo >= 0 {
			a.GetCount().UpTo = wrapperspb.Int64(upTo)
		}
		return a
	}
	sum := func(alias, prop string) *pb.AggregationQuery_Aggregation {
		return &pb.AggregationQuery_Aggregation{Alias: alias, Operator: &pb.AggregationQuery_Aggregation_Sum_{Sum: &pb.AggregationQuery_Aggregation_Sum{Property: &pb.PropertyReference{Name: prop}}}}
	}
	avg := func(alias, prop string) *pb.AggregationQuery_Aggregation {
		return &pb.AggregationQuery_Aggregation{Alias: alias, Operator: &pb.AggregationQuery_Aggregation_Avg_{Avg: &pb.AggregationQuery_Aggregation_Avg{Property: &pb.PropertyReference{Name: prop}}}}
	}
	agg := func(q *pb.Query, aggs ...*pb.AggregationQuery_Aggregation) (map[string]*pb.Value, error) {
		r, err := c.RunAggregationQuery(bg, &pb.RunAggregationQueryRequest{ProjectId: project, QueryType: &pb.RunAggregationQueryRequest_AggregationQuery{
			AggregationQuery: &pb.AggregationQuery{QueryType: &pb.AggregationQuery_NestedQuery{NestedQuery: q}, Aggregations: aggs}}})
		if err != nil {
			return nil, err
		}
		if len(r.Batch.AggregationResults) != 1 || r.Batch.MoreResults != pb.QueryResultBatch_NO_MORE_RESULTS {
			t.Fatalf("batch %v", r.Batch)
		}
		return r.Batch.AggregationResults[0].AggregateProperties, nil
	}
	show := func(m map[string]*pb.Value) string {
		var parts []string
		for k, v := range m {
			switch x := v.ValueType.(type) {
			case *pb.Value_IntegerValue:
				parts = append(parts, fmt.Sprintf("%s=%d", k, x.IntegerValue))
			case *pb.Value_DoubleValue:
				parts = append(parts, fmt.Sprintf("%s=%gd", k, x.DoubleValue))
			case *pb.Value_NullValue:
				parts = append(parts, k+"=null")
			}
		}
		slices.Sort(parts)
		return strings.Join(parts, " ")
	}
	kind := func(k string) *pb.Query { return &pb.Query{Kind: []*pb.KindExpression{{Name: k}}} }
	withFilter := func(q *pb.Query, f *pb.Filter) *pb.Query { q.Filter = f; return q }
	withLimit := func(q *pb.Query, offset, limit int32) *pb.Query {
		q.Offset, q.Limit = offset, wrapperspb.Int32(limit)
		return q
	}
	for _, tc := range []struct {
		name string
		q    *pb.Query
		aggs []*pb.AggregationQuery_Aggregation
		want string
	}{
		// 13 entities; SUM and AVG of I take the integers 0..7 only
		// (not null, the string, the two values of multi, the
		// unindexed value or a missing one).
		{"all", kind("SQ"), []*pb.AggregationQuery_Aggregation{count("n", -1), sum("s", "I"), avg("a", "I"), count("", 5), sum("", "J")},
			"a=3.5d n=13 property_1=5 property_2=53 s=28"},
		{"up to 0", kind("SQ"), []*pb.AggregationQuery_Aggregation{count("n", 0)}, "n=0"},
		{"offset and limit", withLimit(kind("SQ"), 2, 3), []*pb.AggregationQuery_Aggregation{count("n", -1), sum("s", "I")}, "n=3 s=9"},
		{"in", withFilter(kind("SQ"), v1Prop("I", pb.PropertyFilter_IN, v1Ints(2, 4, 20))), []*pb.AggregationQuery_Aggregation{count("n", -1), sum("s", "I"), avg("a", "I")},
			"a=3d n=3 s=6"},
		{"not in", withFilter(kind("SQ"), v1Prop("I", pb.PropertyFilter_NOT_IN, v1Ints(1, 3, 5, 7))), []*pb.AggregationQuery_Aggregation{count("n", -1), sum("s", "I")}, "n=7 s=12"},
		{"empty", kind("Nothing"), []*pb.AggregationQuery_Aggregation{count("n", -1), sum("s", "I"), avg("a", "I")}, "a=null n=0 s=0"},
		{"strings only", withFilter(kind("SQ"), v1Prop("I", pb.PropertyFilter_EQUAL, &pb.Value{ValueType: &pb.Value_StringValue{StringValue: "s"}})),
			[]*pb.AggregationQuery_Aggregation{sum("s", "I"), avg("a", "I")}, "a=null s=0"},
	} {
		got, err := agg(tc.q, tc.aggs...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if show(got) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, show(got), tc.want)
		}
	}

	// Overflow to a double, doubles, NaN.
	put := func(name string, v any) {
		pl := datastore.PropertyList{{Name: "X", Value: v}}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Num", name, 0, nil), &pl); err != nil {
			t.Fatal(err)
		}
	}
	put("a", int64(math.MaxInt64))
	put("b", int64(math.MaxInt64))
	got, err := agg(kind("Num"), sum("s", "X"), avg("a", "X"))
	if err != nil {
		t.Fatal(err)
	}
	if s := got["s"].GetDoubleValue(); s != 2*float64(math.MaxInt64) || got["a"].GetDoubleValue() != float64(math.MaxInt64) {
		t.Errorf("overflow: got %s", show(got))
	}
	put("b", int64(-3))
	put("c", 0.5)
	if got, _ = agg(kind("Num"), sum("s", "X")); got["s"].GetDoubleValue() != float64(math.MaxInt64)-2.5 {
		t.Errorf("a double: got %s", show(got))
	}
	put("c", math.NaN())
	if got, _ = agg(kind("Num"), sum("s", "X"), avg("a", "X")); !math.IsNaN(got["s"].GetDoubleValue()) || !math.IsNaN(got["a"].GetDoubleValue()) {
		t.Errorf("NaN: got %s", show(got))
	}

	// Requests production refuses.
	six := []*pb.AggregationQuery_Aggregation{count("a", -1), count("b", -1), count("c", -1), count("d", -1), count("e", -1), count("f", -1)}
	for _, tc := range []struct {
		name string
		aggs []*pb.AggregationQuery_Aggregation
		want string
	}{
		{"none", nil, "1 to 5"},
		{"six", six, "1 to 5"},
		{"duplicate alias", []*pb.AggregationQuery_Aggregation{count("a", -1), sum("a", "I")}, "duplicate alias"},
		{"sum of __key__", []*pb.AggregationQuery_Aggregation{sum("", "__key__")}, "Aggregations are not supported for the property"},
		{"avg of __key__", []*pb.AggregationQuery_Aggregation{avg("", "__key__")}, "Aggregations are not supported for the property"},
		{"negative up_to", []*pb.AggregationQuery_Aggregation{count("", -2)}, ""},
		{"reserved alias", []*pb.AggregationQuery_Aggregation{count("__x__", -1)}, "reserved"},
	} {
		if tc.name == "negative up_to" {
			tc.aggs[0].GetCount().UpTo = wrapperspb.Int64(-1)
			tc.want = "non-negative"
		}
		_, err := agg(kind("SQ"), tc.aggs...)
		wantCode(t, err, codes.InvalidArgument)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A default alias skips the ones taken.
	got, err = agg(kind("SQ"), count("property_1", -1), count("", 2))
	if err != nil || show(got) != "property_1=13 property_2=2" {
		t.Errorf("aliases: %s, %v", show(got), err)
	}
}

// TestCloudAggregationInTransaction: an aggregation in a transaction
// counts the transaction's snapshot, and follows the rules of a query in
// one (an ancestor query).
func TestCloudAggregationInTransaction(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	project := s.CloudProjectID()
	bg := context.Background()
	parent := datastore.NewKey(ctx, "P", "p", 0, nil)
	type N struct{ N int64 }
	put := func(name string) {
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "C", name, 0, parent), &N{1}); err != nil {
			t.Fatal(err)
		}
	}
	put("a")
	put("b")
	ancestor := v1Prop("__key__", pb.PropertyFilter_HAS_ANCESTOR, &pb.Value{ValueType: &pb.Value_KeyValue{KeyValue: cloudTestKey(project, "P", "p")}})
	aggReq := func(f *pb.Filter, ro *pb.ReadOptions) *pb.RunAggregationQueryRequest {
		return &pb.RunAggregationQueryRequest{ProjectId: project, ReadOptions: ro, QueryType: &pb.RunAggregationQueryRequest_AggregationQuery{
			AggregationQuery: &pb.AggregationQuery{QueryType: &pb.AggregationQuery_NestedQuery{NestedQuery: &pb.Query{Kind: []*pb.KindExpression{{Name: "C"}}, Filter: f}},
				Aggregations: []*pb.AggregationQuery_Aggregation{{Alias: "n", Operator: &pb.AggregationQuery_Aggregation_Count_{Count: &pb.AggregationQuery_Aggregation_Count{}}}}}}}
	}
	r, err := c.RunAggregationQuery(bg, aggReq(ancestor, &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_NewTransaction{NewTransaction: &pb.TransactionOptions{}}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Transaction) == 0 || r.Batch.AggregationResults[0].AggregateProperties["n"].GetIntegerValue() != 2 {
		t.Fatalf("new transaction: %v", r)
	}
	put("c") // after the transaction's snapshot
	inTx := &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_Transaction{Transaction: r.Transaction}}
	r2, err := c.RunAggregationQuery(bg, aggReq(ancestor, inTx))
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.Batch.AggregationResults[0].AggregateProperties["n"].GetIntegerValue(); got != 2 {
		t.Errorf("in the transaction: COUNT %d, want its snapshot's 2", got)
	}
	r3, err := c.RunAggregationQuery(bg, aggReq(ancestor, nil))
	if err != nil || r3.Batch.AggregationResults[0].AggregateProperties["n"].GetIntegerValue() != 3 {
		t.Errorf("outside: %v, %v", r3, err)
	}
	// A read time: now reads the live data; one before the last write
	// is refused, as for RunQuery (aelocal keeps no past versions).
	r4, err := c.RunAggregationQuery(bg, aggReq(ancestor, &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_ReadTime{ReadTime: timestamppb.New(s.Now())}}))
	if err != nil || r4.Batch.AggregationResults[0].AggregateProperties["n"].GetIntegerValue() != 3 {
		t.Errorf("read time now: %v, %v", r4, err)
	}
	_, err = c.RunAggregationQuery(bg, aggReq(ancestor, &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_ReadTime{ReadTime: timestamppb.New(s.Now().Add(-time.Hour))}}))
	wantCode(t, err, codes.FailedPrecondition)
	// Firestore in Datastore mode runs a kind query in a transaction too
	// (Options.LegacyEntityGroups refuses it: TestCloudDatastoreTxQueryLegacy).
	if _, err = c.RunAggregationQuery(bg, aggReq(nil, inTx)); err != nil {
		t.Errorf("a kind query in a transaction: %v", err)
	}
}

// TestCloudQueryDisjunctionInTransaction: an ancestor query with IN and
// != in a transaction reads the transaction's snapshot (the full
// evaluation of its branches over the ancestor's range).
func TestCloudQueryDisjunctionInTransaction(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	project := s.CloudProjectID()
	bg := context.Background()
	parent := datastore.NewKey(ctx, "P", "p", 0, nil)
	type N struct{ N int64 }
	put := func(name string, n int64) {
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "C", name, 0, parent), &N{n}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range int64(6) {
		put(fmt.Sprintf("c%d", i), i)
	}
	f := v1Comp(pb.CompositeFilter_AND,
		v1Prop("__key__", pb.PropertyFilter_HAS_ANCESTOR, &pb.Value{ValueType: &pb.Value_KeyValue{KeyValue: cloudTestKey(project, "P", "p")}}),
		v1Prop("N", pb.PropertyFilter_IN, v1Ints(1, 3, 5)))
	run := func(ro *pb.ReadOptions) (string, []byte) {
		t.Helper()
		r, err := c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, ReadOptions: ro, QueryType: &pb.RunQueryRequest_Query{Query: &pb.Query{
			Kind: []*pb.KindExpression{{Name: "C"}}, Filter: f}}})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, er := range r.Batch.EntityResults {
			names = append(names, er.Entity.Key.Path[1].GetName())
		}
		return strings.Join(names, " "), r.Transaction
	}
	got, tx := run(&pb.ReadOptions{ConsistencyType: &pb.ReadOptions_NewTransaction{NewTransaction: &pb.TransactionOptions{}}})
	if got != "c1 c3 c5" || len(tx) == 0 {
		t.Fatalf("new transaction: %q, %q", got, tx)
	}
	put("c1", 2)
	put("c2", 3)
	if got, _ := run(&pb.ReadOptions{ConsistencyType: &pb.ReadOptions_Transaction{Transaction: tx}}); got != "c1 c3 c5" {
		t.Errorf("in the transaction: %q, want its snapshot's c1 c3 c5", got)
	}
	if got, _ := run(nil); got != "c2 c3 c5" {
		t.Errorf("outside: %q, want c2 c3 c5", got)
	}
}
