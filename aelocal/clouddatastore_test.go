package aelocal

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// These tests speak the Cloud Datastore API's real protocol with the
// generated gRPC stub (the Cloud client itself is tested in the cloud/
// module, cloud/aelocaltest), and check what they do through appengine/v2.

// newCloudServer starts a server with the Cloud Datastore API and returns
// it with a v1 client stub and an appengine/v2 context on it.
func newCloudServer(t *testing.T) (*Server, pb.DatastoreClient, context.Context) {
	t.Helper()
	s := RunTOptions(t, &Options{CloudDatastoreAddr: "127.0.0.1:0"})
	conn, err := grpc.NewClient(s.CloudDatastoreAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, pb.NewDatastoreClient(conn), middlewareContext(t, s)
}

func cloudTestKey(project, kind, name string) *pb.Key {
	return &pb.Key{PartitionId: &pb.PartitionId{ProjectId: project}, Path: []*pb.Key_PathElement{{Kind: kind, IdType: &pb.Key_PathElement_Name{Name: name}}}}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("err = %v, want code %v", err, code)
	}
}

func TestCloudDatastoreProject(t *testing.T) {
	s, _, _ := newCloudServer(t)
	if got := s.CloudProjectID(); got != projectOf(getenvApp()) {
		t.Errorf("CloudProjectID = %q", got)
	}
	for app, project := range map[string]string{"s~foo": "foo", "dev~foo": "foo", "e~bar": "bar", "plain": "plain"} {
		if got := projectOf(app); got != project {
			t.Errorf("projectOf(%q) = %q, want %q", app, got, project)
		}
	}
}

// TestCloudDatastoreCrossAPI writes through each API and reads through
// the other: keys, namespaces and every value type map as production maps
// them.
func TestCloudDatastoreCrossAPI(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	project := s.CloudProjectID()
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

	// v1 writes, v2 reads.
	ent := &pb.Entity{Key: cloudTestKey(project, "Thing", "a"), Properties: map[string]*pb.Value{
		"S":    {ValueType: &pb.Value_StringValue{StringValue: "str"}},
		"Long": {ValueType: &pb.Value_StringValue{StringValue: strings.Repeat("x", 2000)}, ExcludeFromIndexes: true},
		"B":    {ValueType: &pb.Value_BlobValue{BlobValue: []byte{0, 1, 2}}, ExcludeFromIndexes: true},
		"I":    {ValueType: &pb.Value_IntegerValue{IntegerValue: 42}},
		"F":    {ValueType: &pb.Value_DoubleValue{DoubleValue: 1.5}},
		"T":    {ValueType: &pb.Value_BooleanValue{BooleanValue: true}},
		"W":    {ValueType: &pb.Value_TimestampValue{TimestampValue: timestamppb.New(when)}},
		"K":    {ValueType: &pb.Value_KeyValue{KeyValue: cloudTestKey("", "Other", "o")}},
		"L":    {ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: []*pb.Value{{ValueType: &pb.Value_IntegerValue{IntegerValue: 1}}, {ValueType: &pb.Value_IntegerValue{IntegerValue: 2}}}}}},
	}}
	resp, err := c.Commit(context.Background(), &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL,
		Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Insert{Insert: ent}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.MutationResults) != 1 || resp.MutationResults[0].Version == 0 {
		t.Fatalf("mutation results %v", resp.MutationResults)
	}
	var got struct {
		S    string
		Long string `datastore:",noindex"`
		B    []byte `datastore:",noindex"`
		I    int64
		F    float64
		T    bool
		W    time.Time
		K    *datastore.Key
		L    []int64
	}
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "Thing", "a", 0, nil), &got); err != nil {
		t.Fatal(err)
	}
	if got.S != "str" || len(got.Long) != 2000 || string(got.B) != "\x00\x01\x02" || got.I != 42 || got.F != 1.5 || !got.T ||
		!got.W.Equal(when.Truncate(time.Microsecond)) || got.K == nil || got.K.StringID() != "o" || got.K.Kind() != "Other" || len(got.L) != 2 {
		t.Fatalf("v2 read %+v", got)
	}

	// v2 writes, v1 reads.
	type T2 struct {
		Name string
		Text string `datastore:",noindex"`
		At   time.Time
		Geo  appengine.GeoPoint
		Nums []int64
	}
	k2, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "T2", nil), &T2{Name: "n", Text: "t", At: when, Geo: appengine.GeoPoint{Lat: 1, Lng: 2}, Nums: []int64{3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	lr, err := c.Lookup(context.Background(), &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{
		{Path: []*pb.Key_PathElement{{Kind: "T2", IdType: &pb.Key_PathElement_Id{Id: k2.IntID()}}}},
		cloudTestKey("", "T2", "missing"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Found) != 1 || len(lr.Missing) != 1 {
		t.Fatalf("found %d, missing %d", len(lr.Found), len(lr.Missing))
	}
	p := lr.Found[0].Entity.Properties
	if p["Name"].GetStringValue() != "n" || p["Text"].GetStringValue() != "t" || !p["Text"].ExcludeFromIndexes ||
		!p["At"].GetTimestampValue().AsTime().Equal(when.Truncate(time.Microsecond)) ||
		p["Geo"].GetGeoPointValue().GetLatitude() != 1 || len(p["Nums"].GetArrayValue().GetValues()) != 2 {
		t.Fatalf("v1 read %v", p)
	}
	if lr.Found[0].Entity.Key.PartitionId.ProjectId != project {
		t.Errorf("project %q", lr.Found[0].Entity.Key.PartitionId.ProjectId)
	}
}

// TestCloudDatastoreMutations checks insert, update, upsert, delete and
// base_version, and that a refused commit writes nothing.
func TestCloudDatastoreMutations(t *testing.T) {
	s, c, _ := newCloudServer(t)
	project := s.CloudProjectID()
	bg := context.Background()
	e := func(name string, n int64) *pb.Entity {
		return &pb.Entity{Key: cloudTestKey(project, "M", name), Properties: map[string]*pb.Value{"N": {ValueType: &pb.Value_IntegerValue{IntegerValue: n}}}}
	}
	commit := func(muts ...*pb.Mutation) (*pb.CommitResponse, error) {
		return c.Commit(bg, &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: muts})
	}
	r, err := commit(&pb.Mutation{Operation: &pb.Mutation_Insert{Insert: e("a", 1)}})
	if err != nil {
		t.Fatal(err)
	}
	v1 := r.MutationResults[0].Version
	_, err = commit(&pb.Mutation{Operation: &pb.Mutation_Upsert{Upsert: e("b", 1)}}, &pb.Mutation{Operation: &pb.Mutation_Insert{Insert: e("a", 2)}})
	wantCode(t, err, codes.AlreadyExists)
	_, err = commit(&pb.Mutation{Operation: &pb.Mutation_Update{Update: e("nope", 1)}})
	wantCode(t, err, codes.NotFound)
	lr, _ := c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey(project, "M", "b")}})
	if len(lr.Found) != 0 {
		t.Fatal("a refused commit wrote an entity")
	}
	// A stale base_version is skipped and reported.
	r, err = commit(&pb.Mutation{Operation: &pb.Mutation_Update{Update: e("a", 3)}, ConflictDetectionStrategy: &pb.Mutation_BaseVersion{BaseVersion: v1 + 100}})
	if err != nil || !r.MutationResults[0].ConflictDetected {
		t.Fatalf("stale base_version: %v %v", r, err)
	}
	r, err = commit(&pb.Mutation{Operation: &pb.Mutation_Update{Update: e("a", 3)}, ConflictDetectionStrategy: &pb.Mutation_BaseVersion{BaseVersion: v1}})
	if err != nil || r.MutationResults[0].ConflictDetected || r.MutationResults[0].Version <= v1 {
		t.Fatalf("current base_version: %v %v", r, err)
	}
	_, err = commit(&pb.Mutation{Operation: &pb.Mutation_Delete{Delete: cloudTestKey(project, "M", "a")}}, &pb.Mutation{Operation: &pb.Mutation_Upsert{Upsert: e("a", 1)}})
	wantCode(t, err, codes.InvalidArgument) // the same entity twice, outside a transaction
	// An automatic ID comes back in the result.
	inc := &pb.Entity{Key: &pb.Key{Path: []*pb.Key_PathElement{{Kind: "M"}}}}
	r, err = commit(&pb.Mutation{Operation: &pb.Mutation_Insert{Insert: inc}})
	if err != nil || r.MutationResults[0].Key.GetPath()[0].GetId() == 0 {
		t.Fatalf("automatic ID: %v %v", r, err)
	}
	if n := s.Stats()["cloud_datastore_v1.Commit"]; n != 7 {
		t.Errorf("Stats counted %d commits, want 7", n)
	}
	// In a transaction a key may be written twice; its base_version is
	// checked on its first mutation only, as the SDK's v1 stub checks it.
	lr, err = c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey(project, "M", "a")}})
	if err != nil || len(lr.Found) != 1 {
		t.Fatal(lr, err)
	}
	cur := lr.Found[0].Version
	base := &pb.Mutation_BaseVersion{BaseVersion: cur}
	r, err = c.Commit(bg, &pb.CommitRequest{ProjectId: project, TransactionSelector: &pb.CommitRequest_SingleUseTransaction{SingleUseTransaction: &pb.TransactionOptions{}},
		Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Update{Update: e("a", 5)}, ConflictDetectionStrategy: base}, {Operation: &pb.Mutation_Update{Update: e("a", 6)}, ConflictDetectionStrategy: base}}})
	if err != nil || r.MutationResults[0].ConflictDetected || r.MutationResults[1].ConflictDetected {
		t.Fatalf("one key twice in a transaction: %v %v", r, err)
	}
}

// TestCloudDatastoreTransactionConflict: a v1 transaction that read an
// entity conflicts with a v2 write of it, and the other way round.
func TestCloudDatastoreTransactionConflict(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	project := s.CloudProjectID()
	bg := context.Background()
	type X struct{ N int64 }
	k := datastore.NewKey(ctx, "X", "x", 0, nil)
	if _, err := datastore.Put(ctx, k, &X{1}); err != nil {
		t.Fatal(err)
	}
	bt, err := c.BeginTransaction(bg, &pb.BeginTransactionRequest{ProjectId: project})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey("", "X", "x")},
		ReadOptions: &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_Transaction{Transaction: bt.Transaction}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := datastore.Put(ctx, k, &X{2}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Commit(bg, &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_TRANSACTIONAL,
		TransactionSelector: &pb.CommitRequest_Transaction{Transaction: bt.Transaction},
		Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: cloudTestKey("", "X", "x"),
			Properties: map[string]*pb.Value{"N": {ValueType: &pb.Value_IntegerValue{IntegerValue: 3}}}}}}}})
	wantCode(t, err, codes.Aborted)

	// v2 transaction, v1 write in between.
	err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
		var x X
		if err := datastore.Get(tc, k, &x); err != nil {
			return err
		}
		if _, err := c.Commit(bg, &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL,
			Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Delete{Delete: cloudTestKey("", "X", "x")}}}}); err != nil {
			return err
		}
		_, err := datastore.Put(tc, k, &X{x.N + 1})
		return err
	}, &datastore.TransactionOptions{Attempts: 1})
	if err != datastore.ErrConcurrentTransaction {
		t.Fatalf("v2 transaction after a v1 write: %v", err)
	}
}

// TestCloudDatastoreQuery runs a query with filters, orders, a limit and
// cursors over entities the v2 client wrote.
func TestCloudDatastoreQuery(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	project := s.CloudProjectID()
	bg := context.Background()
	type Q struct{ N int64 }
	for i := int64(0); i < 10; i++ {
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Q", "", i+1, nil), &Q{i}); err != nil {
			t.Fatal(err)
		}
	}
	query := &pb.Query{
		Kind: []*pb.KindExpression{{Name: "Q"}},
		Filter: &pb.Filter{FilterType: &pb.Filter_PropertyFilter{PropertyFilter: &pb.PropertyFilter{
			Property: &pb.PropertyReference{Name: "N"}, Op: pb.PropertyFilter_GREATER_THAN_OR_EQUAL,
			Value: &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: 3}}}}},
		Order: []*pb.PropertyOrder{{Property: &pb.PropertyReference{Name: "N"}, Direction: pb.PropertyOrder_DESCENDING}},
		Limit: wrapperspb.Int32(4),
	}
	run := func(q *pb.Query) *pb.QueryResultBatch {
		t.Helper()
		r, err := c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, QueryType: &pb.RunQueryRequest_Query{Query: q}})
		if err != nil {
			t.Fatal(err)
		}
		return r.Batch
	}
	b := run(query)
	var ns []int64
	for _, r := range b.EntityResults {
		ns = append(ns, r.Entity.Properties["N"].GetIntegerValue())
	}
	if len(ns) != 4 || ns[0] != 9 || ns[3] != 6 || b.MoreResults != pb.QueryResultBatch_MORE_RESULTS_AFTER_LIMIT {
		t.Fatalf("got %v, %v", ns, b.MoreResults)
	}
	// Resume from the second result's cursor.
	query.StartCursor = b.EntityResults[1].Cursor
	b = run(query)
	if got := b.EntityResults[0].Entity.Properties["N"].GetIntegerValue(); got != 7 {
		t.Fatalf("from the cursor: first N = %d, want 7", got)
	}
	// Keys only.
	b = run(&pb.Query{Kind: []*pb.KindExpression{{Name: "Q"}}, Projection: []*pb.Projection{{Property: &pb.PropertyReference{Name: "__key__"}}}})
	if len(b.EntityResults) != 10 || b.EntityResultType != pb.EntityResult_KEY_ONLY || b.EntityResults[0].Entity.Properties != nil {
		t.Fatalf("keys only: %d results, %v", len(b.EntityResults), b.EntityResultType)
	}
	// Not served yet: a clear UNIMPLEMENTED.
	gql := &pb.GqlQuery{QueryString: "SELECT * FROM Q"}
	_, err := c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, QueryType: &pb.RunQueryRequest_GqlQuery{GqlQuery: gql}})
	wantCode(t, err, codes.Unimplemented)
	q := &pb.Query{Kind: []*pb.KindExpression{{Name: "Q"}}}
	_, err = c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, QueryType: &pb.RunQueryRequest_Query{Query: q}, ExplainOptions: &pb.ExplainOptions{}})
	wantCode(t, err, codes.Unimplemented)
	_, err = c.RunAggregationQuery(bg, &pb.RunAggregationQueryRequest{ProjectId: project, QueryType: &pb.RunAggregationQueryRequest_GqlQuery{GqlQuery: gql}})
	wantCode(t, err, codes.Unimplemented)
	count := &pb.AggregationQuery{QueryType: &pb.AggregationQuery_NestedQuery{NestedQuery: q}, Aggregations: []*pb.AggregationQuery_Aggregation{{Operator: &pb.AggregationQuery_Aggregation_Count_{Count: &pb.AggregationQuery_Aggregation_Count{}}}}}
	_, err = c.RunAggregationQuery(bg, &pb.RunAggregationQueryRequest{ProjectId: project, QueryType: &pb.RunAggregationQueryRequest_AggregationQuery{AggregationQuery: count}, ExplainOptions: &pb.ExplainOptions{}})
	wantCode(t, err, codes.Unimplemented)
	// A partition of another database is refused by both.
	other := &pb.PartitionId{ProjectId: project, DatabaseId: "other"}
	_, err = c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, PartitionId: other, QueryType: &pb.RunQueryRequest_Query{Query: q}})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.RunAggregationQuery(bg, &pb.RunAggregationQueryRequest{ProjectId: project, PartitionId: other, QueryType: &pb.RunAggregationQueryRequest_AggregationQuery{AggregationQuery: count}})
	wantCode(t, err, codes.InvalidArgument)
}

// TestCloudDatastoreHTTP: the emulator's HTTP conveniences, and the
// refusal of a web page's POST.
func TestCloudDatastoreHTTP(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	base := "http://" + s.CloudDatastoreAddr()
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "Ok" {
		t.Fatalf("GET /: %d %q", resp.StatusCode, body)
	}
	type R struct{ N int }
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "R", "r", 0, nil), &R{1}); err != nil {
		t.Fatal(err)
	}
	// A GET changes nothing; a page's POST is refused.
	if resp, err := http.Get(base + "/reset"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /reset: %v %v", resp.Status, err)
	}
	req, _ := http.NewRequest("POST", base+"/reset", nil)
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST /reset from a page: %v %v", resp.Status, err)
	}
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "R", "r", 0, nil), &R{}); err != nil {
		t.Fatalf("refused resets changed the datastore: %v", err)
	}
	if resp, err := http.Post(base+"/reset", "", nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /reset: %v %v", resp.Status, err)
	}
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "R", "r", 0, nil), &R{}); err != datastore.ErrNoSuchEntity {
		t.Fatalf("after /reset: %v", err)
	}
	select {
	case <-s.ShutdownRequested():
		t.Fatal("shutdown requested early")
	default:
	}
	if resp, err := http.Post(base+"/shutdown", "", nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /shutdown: %v %v", resp.Status, err)
	}
	<-s.ShutdownRequested()
	// gRPC still works on the same port.
	if _, err := c.AllocateIds(context.Background(), &pb.AllocateIdsRequest{ProjectId: s.CloudProjectID(), Keys: []*pb.Key{{Path: []*pb.Key_PathElement{{Kind: "A"}}}}}); err != nil {
		t.Fatal(err)
	}
}
