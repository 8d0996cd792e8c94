package aelocaltest

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"cloud.google.com/go/datastore"
	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
)

// TestAggregationQueries runs the newest Cloud client's aggregation
// queries (WithCount, WithSum, WithAvg) against aelocal, with the answers
// of the client's own integration tests (TestIntegration_AggregationQueries):
// several aggregations, a limit, non-numeric values, a default alias, an
// empty set, SUM overflowing to a double, filters of the Cloud API, and
// the refusal of __key__.
func TestAggregationQueries(t *testing.T) {
	c := filterClient(t)
	ctx := context.Background()
	parent := datastore.NameKey("SQParent", "aggregations", nil)
	type sq struct {
		I, T int64
		V    float64
		W    string
	}
	var keys []*datastore.Key
	var es []*sq
	for i := range int64(8) {
		keys = append(keys, datastore.NameKey("SQChild", fmt.Sprintf("c%d", i), parent))
		es = append(es, &sq{I: i, T: 1, V: 1.5, W: "str"})
	}
	if _, err := c.PutMulti(ctx, keys, es); err != nil {
		t.Fatal(err)
	}
	base := datastore.NewQuery("SQChild").Ancestor(parent).FilterField("T", "=", 1)
	intv := func(i int64) *pb.Value { return &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: i}} }
	dbl := func(f float64) *pb.Value { return &pb.Value{ValueType: &pb.Value_DoubleValue{DoubleValue: f}} }
	null := &pb.Value{ValueType: &pb.Value_NullValue{}}
	for _, tc := range []struct {
		name string
		aq   *datastore.AggregationQuery
		want map[string]*pb.Value
	}{
		{"count", base.FilterField("I", ">=", 3).NewAggregationQuery().WithCount("count"), map[string]*pb.Value{"count": intv(5)}},
		{"several", base.NewAggregationQuery().WithSum("I", "i_sum").WithAvg("I", "avg").WithSum("V", "v_sum"),
			map[string]*pb.Value{"i_sum": intv(28), "v_sum": dbl(12), "avg": dbl(3.5)}},
		{"limit", base.Limit(2).NewAggregationQuery().WithSum("I", "sum").WithAvg("I", "avg"),
			map[string]*pb.Value{"sum": intv(1), "avg": dbl(0.5)}},
		{"non-numeric", base.Limit(2).NewAggregationQuery().WithSum("W", "sum").WithAvg("W", "avg"),
			map[string]*pb.Value{"sum": intv(0), "avg": null}},
		{"default alias", base.NewAggregationQuery().WithSum("I", ""), map[string]*pb.Value{"property_1": intv(28)}},
		{"in", base.FilterField("I", "in", []any{1, 2, 7}).NewAggregationQuery().WithCount("n").WithSum("I", "s"),
			map[string]*pb.Value{"n": intv(3), "s": intv(10)}},
		{"or", base.FilterEntity(datastore.OrFilter{Filters: []datastore.EntityFilter{
			datastore.PropertyFilter{FieldName: "I", Operator: "<", Value: 2},
			datastore.PropertyFilter{FieldName: "I", Operator: ">", Value: 6},
		}}).NewAggregationQuery().WithCount("n").WithAvg("I", "a"), map[string]*pb.Value{"n": intv(3), "a": dbl(8.0 / 3)}},
		{"empty", datastore.NewQuery("Nothing").NewAggregationQuery().WithCount("n").WithSum("I", "s").WithAvg("I", "a"),
			map[string]*pb.Value{"n": intv(0), "s": intv(0), "a": null}},
	} {
		got, err := c.RunAggregationQuery(ctx, tc.aq)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
		for k, w := range tc.want {
			g, ok := got[k].(*pb.Value)
			if !ok || g.String() != w.String() {
				t.Errorf("%s: %s = %v, want %v", tc.name, k, got[k], w)
			}
		}
	}
	for _, aq := range []*datastore.AggregationQuery{base.NewAggregationQuery().WithSum("__key__", ""), base.NewAggregationQuery().WithAvg("__key__", "")} {
		if _, err := c.RunAggregationQuery(ctx, aq); err == nil || !strings.Contains(err.Error(), "Aggregations are not supported for the property") {
			t.Errorf("aggregation of __key__: err = %v", err)
		}
	}
	// SUM of integers past int64 is a double.
	big := datastore.NameKey("Big", "a", nil)
	big2 := datastore.NameKey("Big", "b", nil)
	type bigT struct{ X int64 }
	if _, err := c.PutMulti(ctx, []*datastore.Key{big, big2}, []*bigT{{math.MaxInt64}, {math.MaxInt64}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.RunAggregationQuery(ctx, datastore.NewQuery("Big").NewAggregationQuery().WithSum("X", "s"))
	if err != nil || got["s"].(*pb.Value).GetDoubleValue() != 2*float64(math.MaxInt64) {
		t.Errorf("overflow: %v, %v", got, err)
	}
}
