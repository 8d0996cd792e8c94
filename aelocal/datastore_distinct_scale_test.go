package aelocal

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Distinct queries with OR, IN, != and NOT_IN filters at scale: the
// Cloud API's, whose branches' reads the planner merges keeping the first
// result of each combination (readUnion). appengine/v2 has no such
// filters, so these speak the Cloud API's protocol with its generated
// stub, on the rows of scaleRows.

// distinctShape is a Cloud API query of a planned distinct shape.
type distinctShape struct {
	name string
	q    *pb.Query
}

// cloudScaleSetup starts a server with the Cloud API and n rows
// (scaleRows), and returns it, a client stub on it, and the distinct
// shapes (without a limit).
func cloudScaleSetup(t testing.TB, n int) (*Server, pb.DatastoreClient, []distinctShape) {
	t.Helper()
	s := RunTOptions(t, &Options{CloudDatastoreAddr: "127.0.0.1:0"})
	conn, err := grpc.NewClient(s.CloudDatastoreAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	scaleRows(t, s, s.cloudApp, n)
	distinct := func(prop string, f *pb.Filter, desc bool) *pb.Query {
		o := &pb.PropertyOrder{Property: &pb.PropertyReference{Name: prop}}
		if desc {
			o.Direction = pb.PropertyOrder_DESCENDING
		}
		return &pb.Query{
			Kind:       []*pb.KindExpression{{Name: "Row"}},
			Projection: []*pb.Projection{{Property: &pb.PropertyReference{Name: prop}}},
			DistinctOn: []*pb.PropertyReference{{Name: prop}},
			Filter:     f,
			Order:      []*pb.PropertyOrder{o},
		}
	}
	str := func(s string) *pb.Value { return &pb.Value{ValueType: &pb.Value_StringValue{StringValue: s}} }
	return s, pb.NewDatastoreClient(conn), []distinctShape{
		{"distinct, OR of two ranges", distinct("Group", v1Comp(pb.CompositeFilter_OR,
			v1Prop("Group", pb.PropertyFilter_LESS_THAN, v1Int(30)), v1Prop("Group", pb.PropertyFilter_GREATER_THAN_OR_EQUAL, v1Int(60))), false)},
		{"distinct, OR of two ranges, descending", distinct("Group", v1Comp(pb.CompositeFilter_OR,
			v1Prop("Group", pb.PropertyFilter_LESS_THAN, v1Int(30)), v1Prop("Group", pb.PropertyFilter_GREATER_THAN_OR_EQUAL, v1Int(60))), true)},
		{"distinct, !=", distinct("City", v1Prop("City", pb.PropertyFilter_NOT_EQUAL, str("c1")), false)},
		{"distinct, NOT_IN", distinct("Group", v1Prop("Group", pb.PropertyFilter_NOT_IN, v1Ints(1, 5, 9)), false)},
	}
}

// runDistinct runs q with limit 20 from cursor (nil: the start) and
// returns the results, the end cursor, and what the query read.
func runDistinct(t testing.TB, s *Server, c pb.DatastoreClient, q *pb.Query, cursor []byte) (int, []byte, queryCost) {
	t.Helper()
	d := s.datastore
	d.mu.Lock()
	before, evaluated := d.stats, d.evaluated
	d.mu.Unlock()
	q.Limit, q.StartCursor = wrapperspb.Int32(20), cursor
	r, err := c.RunQuery(context.Background(), &pb.RunQueryRequest{ProjectId: s.CloudProjectID(), QueryType: &pb.RunQueryRequest_Query{Query: q}})
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.evaluated != evaluated {
		t.Errorf("%v: %d full evaluations; want it planned", q, d.evaluated-evaluated)
	}
	n := len(r.Batch.EntityResults)
	return n, r.Batch.EndCursor, queryCost{d.stats.entries - before.entries, d.stats.loaded - before.loaded, n}
}

// TestDistinctQueryCostFollowsRows checks, with the exact counters, that
// a limit-20 distinct query with OR, != or NOT_IN filters, and its page
// after the first page's end cursor, read the same index entries at
// 2,000 and at 200,000 rows: each branch reads the results it returns and
// seeks past each combination's other entries, and the second page starts
// past the first page's last combination. With -short or the race
// detector the larger size is 8,000 (as TestQueryCostFollowsRows):
//
//	go test -count=1 -run TestDistinctQueryCostFollowsRows -v ./aelocal
func TestDistinctQueryCostFollowsRows(t *testing.T) {
	sizes := []int{2000, 200000}
	if testing.Short() || raceDetector {
		sizes = []int{2000, 8000}
	}
	costs := make([]map[string]queryCost, len(sizes))
	var names []string
	for si, n := range sizes {
		s, c, shapes := cloudScaleSetup(t, n)
		costs[si] = make(map[string]queryCost)
		for _, sh := range shapes {
			got, cursor, cost := runDistinct(t, s, c, sh.q, nil)
			_, _, next := runDistinct(t, s, c, sh.q, cursor)
			if got != 20 || next.results != 20 {
				t.Errorf("n=%d: %s: %d and %d results; want 20 and 20", n, sh.name, got, next.results)
			}
			costs[si][sh.name] = cost
			costs[si][sh.name+", page 2"] = next
			if si == 0 {
				names = append(names, sh.name, sh.name+", page 2")
			}
		}
	}
	for _, name := range names {
		small, large := costs[0][name], costs[1][name]
		t.Logf("%-50s %4d entries, %2d entities loaded", name, large.entries, large.loaded)
		if small != large {
			t.Errorf("%s: %+v at %d rows, %+v at %d; want the same", name, small, sizes[0], large, sizes[1])
		}
		// Each branch reads 21 results, an entry and a seek each.
		if large.entries > 2*2*21+10 || large.loaded != 0 {
			t.Errorf("%s: %d index entries read, %d entities loaded for 20 results; want about 2 per result and branch, none loaded", name, large.entries, large.loaded)
		}
	}
}

// BenchmarkPlannedDistinct measures the distinct shapes of
// TestDistinctQueryCostFollowsRows, limit 20, through the Cloud API's
// protocol in process, at 2,000 and 200,000 rows (BENCH_PLAN_SIZES sets
// them, as for BenchmarkPlannedQueries): latency, and the index entries
// read per query (an exact counter):
//
//	go test -run '^$' -bench PlannedDistinct -benchtime 100x ./aelocal
func BenchmarkPlannedDistinct(b *testing.B) {
	sizes := "2000,200000"
	if s := os.Getenv("BENCH_PLAN_SIZES"); s != "" {
		sizes = s
	}
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("n="+f, func(b *testing.B) {
			s, c, shapes := cloudScaleSetup(b, n)
			d := s.datastore
			for _, sh := range shapes {
				b.Run(strings.ReplaceAll(sh.name, " ", "_"), func(b *testing.B) {
					d.mu.Lock()
					before := d.stats
					d.mu.Unlock()
					for range b.N {
						q := sh.q
						q.Limit, q.StartCursor = wrapperspb.Int32(20), nil
						if _, err := c.RunQuery(context.Background(), &pb.RunQueryRequest{ProjectId: s.CloudProjectID(), QueryType: &pb.RunQueryRequest_Query{Query: q}}); err != nil {
							b.Fatal(err)
						}
					}
					d.mu.Lock()
					after := d.stats
					d.mu.Unlock()
					b.ReportMetric(float64(after.entries-before.entries)/float64(b.N), "entries/op")
				})
			}
		})
	}
}
