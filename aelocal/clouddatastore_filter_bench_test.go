package aelocal_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"github.com/icza/gaesession/v2/aelocal"
	"google.golang.org/appengine/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkCloudQueryScale measures, over the Cloud Datastore API (the
// generated gRPC stub, in process), an IN query with a limit and COUNT
// aggregations at 1,000 and 100,000 entities of BenchmarkQueryScale's
// rows (loaded through appengine/v2):
//
//	go test -run '^$' -bench CloudQueryScale -benchtime 20x ./aelocal
//
// BENCH_SCALE_MAX (default 100000) caps the sizes run.
func BenchmarkCloudQueryScale(b *testing.B) {
	maxN := 100000
	if s := os.Getenv("BENCH_SCALE_MAX"); s != "" {
		maxN, _ = strconv.Atoi(s)
	}
	for _, n := range []int{1000, 100000} {
		if n > maxN {
			break
		}
		s := aelocal.RunTOptions(b, &aelocal.Options{CloudDatastoreAddr: "127.0.0.1:0"})
		loadScaleRows(b, appengine.NewContext(s.NewRequest("GET", "/", nil)), n)
		conn, err := grpc.NewClient(s.CloudDatastoreAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		c := pb.NewDatastoreClient(conn)
		ctx := context.Background()
		groupIn := &pb.Filter{FilterType: &pb.Filter_PropertyFilter{PropertyFilter: &pb.PropertyFilter{
			Property: &pb.PropertyReference{Name: "Group"}, Op: pb.PropertyFilter_IN,
			Value: &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: []*pb.Value{
				{ValueType: &pb.Value_IntegerValue{IntegerValue: 7}},
				{ValueType: &pb.Value_IntegerValue{IntegerValue: 13}},
				{ValueType: &pb.Value_IntegerValue{IntegerValue: 42}},
			}}}}}}}
		kind := []*pb.KindExpression{{Name: "Row"}}
		b.Run(fmt.Sprintf("in-3-limit-20/n=%d", n), func(b *testing.B) {
			for range b.N {
				r, err := c.RunQuery(ctx, &pb.RunQueryRequest{ProjectId: s.CloudProjectID(), QueryType: &pb.RunQueryRequest_Query{Query: &pb.Query{
					Kind: kind, Filter: groupIn, Limit: wrapperspb.Int32(20)}}})
				if err != nil || len(r.Batch.EntityResults) != 20 {
					b.Fatalf("%v, %v", r, err)
				}
			}
		})
		count := func(name string, f *pb.Filter, want int64) {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				for range b.N {
					r, err := c.RunAggregationQuery(ctx, &pb.RunAggregationQueryRequest{ProjectId: s.CloudProjectID(), QueryType: &pb.RunAggregationQueryRequest_AggregationQuery{
						AggregationQuery: &pb.AggregationQuery{QueryType: &pb.AggregationQuery_NestedQuery{NestedQuery: &pb.Query{Kind: kind, Filter: f}},
							Aggregations: []*pb.AggregationQuery_Aggregation{{Alias: "n", Operator: &pb.AggregationQuery_Aggregation_Count_{Count: &pb.AggregationQuery_Aggregation_Count{}}}}}}})
					if err != nil || r.Batch.AggregationResults[0].AggregateProperties["n"].GetIntegerValue() != want {
						b.Fatalf("%v, %v", r, err)
					}
				}
			})
		}
		count("count", nil, int64(n))
		count("count-in-3", groupIn, int64(3*n/100))
		conn.Close()
		s.Close()
	}
}
