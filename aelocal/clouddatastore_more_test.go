package aelocal

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func cloudUpsert(project, kind, name string, n int64) *pb.CommitRequest {
	return &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{
		Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: cloudTestKey("", kind, name),
			Properties: map[string]*pb.Value{"N": {ValueType: &pb.Value_IntegerValue{IntegerValue: n}}}}}}}}
}

// TestCloudDatastoreReadOptions: a Lookup may begin its transaction
// (new_transaction) and answers it; a read_time is served while nothing
// was written since, refused otherwise, and in the future.
func TestCloudDatastoreReadOptions(t *testing.T) {
	s, c, _ := newCloudServer(t)
	project := s.CloudProjectID()
	bg := context.Background()
	if _, err := c.Commit(bg, cloudUpsert(project, "R", "r", 1)); err != nil {
		t.Fatal(err)
	}
	lr, err := c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey("", "R", "r")},
		ReadOptions: &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_NewTransaction{NewTransaction: &pb.TransactionOptions{}}}})
	if err != nil || len(lr.Transaction) == 0 || len(lr.Found) != 1 {
		t.Fatalf("new_transaction: %v %v", lr, err)
	}
	// The transaction read r: a write of it makes its commit fail.
	if _, err := c.Commit(bg, cloudUpsert(project, "R", "r", 2)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Commit(bg, &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_TRANSACTIONAL,
		TransactionSelector: &pb.CommitRequest_Transaction{Transaction: lr.Transaction}, Mutations: cloudUpsert(project, "R", "r", 3).Mutations})
	wantCode(t, err, codes.Aborted)
	// The client rolls back after a failed commit; that succeeds.
	if _, err := c.Rollback(bg, &pb.RollbackRequest{ProjectId: project, Transaction: lr.Transaction}); err != nil {
		t.Fatalf("rollback after a failed commit: %v", err)
	}
	// A second rollback names an ended transaction.
	_, err = c.Rollback(bg, &pb.RollbackRequest{ProjectId: project, Transaction: lr.Transaction})
	wantCode(t, err, codes.InvalidArgument)

	now := s.Now()
	at := func(t time.Time) *pb.ReadOptions {
		return &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_ReadTime{ReadTime: timestamppb.New(t)}}
	}
	if _, err := c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey("", "R", "r")}, ReadOptions: at(now)}); err != nil {
		t.Fatalf("read_time after the last write: %v", err)
	}
	_, err = c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey("", "R", "r")}, ReadOptions: at(now.Add(-time.Hour))})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey("", "R", "r")}, ReadOptions: at(now.Add(time.Hour))})
	wantCode(t, err, codes.InvalidArgument)
	// A read-only transaction at a read time.
	bt, err := c.BeginTransaction(bg, &pb.BeginTransactionRequest{ProjectId: project, TransactionOptions: &pb.TransactionOptions{
		Mode: &pb.TransactionOptions_ReadOnly_{ReadOnly: &pb.TransactionOptions_ReadOnly{ReadTime: timestamppb.New(now)}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Commit(bg, &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_TRANSACTIONAL,
		TransactionSelector: &pb.CommitRequest_Transaction{Transaction: bt.Transaction}, Mutations: cloudUpsert(project, "R", "r", 3).Mutations})
	wantCode(t, err, codes.InvalidArgument)
}

// TestCloudDatastoreLimits: production's limits, as production words
// them, and bad input that must fail cleanly.
func TestCloudDatastoreLimits(t *testing.T) {
	s, c, _ := newCloudServer(t)
	project := s.CloudProjectID()
	bg := context.Background()
	var keys []*pb.Key
	for i := 0; i <= maxGetKeys; i++ {
		keys = append(keys, &pb.Key{Path: []*pb.Key_PathElement{{Kind: "K", IdType: &pb.Key_PathElement_Id{Id: int64(i + 1)}}}})
	}
	_, err := c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: keys})
	wantCode(t, err, codes.InvalidArgument)
	if _, err := c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: keys[:maxGetKeys]}); err != nil {
		t.Fatalf("%d keys: %v", maxGetKeys, err)
	}
	// Entity values nested deeper than 20 levels.
	v := &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: 1}}
	for i := 0; i < 21; i++ {
		v = &pb.Value{ValueType: &pb.Value_EntityValue{EntityValue: &pb.Entity{Properties: map[string]*pb.Value{"x": v}}}}
	}
	_, err = c.Commit(bg, &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{
		Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: cloudTestKey("", "Deep", "d"), Properties: map[string]*pb.Value{"v": v}}}}}})
	wantCode(t, err, codes.InvalidArgument)
	// An indexed string past 1,500 bytes, a reserved property name, no project, another database, an empty key.
	for name, req := range map[string]*pb.CommitRequest{
		"long indexed string": {ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: cloudTestKey("", "L", "l"),
			Properties: map[string]*pb.Value{"s": {ValueType: &pb.Value_StringValue{StringValue: strings.Repeat("x", 1501)}}}}}}}},
		"reserved name": {ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: cloudTestKey("", "L", "l"),
			Properties: map[string]*pb.Value{"__x__": {ValueType: &pb.Value_StringValue{StringValue: "x"}}}}}}}},
		"empty property name": {ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: cloudTestKey("", "L", "l"),
			Properties: map[string]*pb.Value{"": {ValueType: &pb.Value_StringValue{StringValue: "x"}}}}}}}},
		"no project":     {Mutations: cloudUpsert(project, "L", "l", 1).Mutations},
		"database":       {ProjectId: project, DatabaseId: "other", Mutations: cloudUpsert(project, "L", "l", 1).Mutations},
		"empty key":      {ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: &pb.Key{}}}}}},
		"no operation":   {ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{}}},
		"no transaction": {ProjectId: project, Mutations: cloudUpsert(project, "L", "l", 1).Mutations},
		"bad handle":     {ProjectId: project, Mode: pb.CommitRequest_TRANSACTIONAL, TransactionSelector: &pb.CommitRequest_Transaction{Transaction: []byte("\xff")}},
		"bad timestamp": {ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: cloudTestKey("", "L", "l"),
			Properties: map[string]*pb.Value{"t": {ValueType: &pb.Value_TimestampValue{TimestampValue: &timestamppb.Timestamp{Nanos: -1}}}}}}}}},
		"bad geo point": {ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: []*pb.Mutation{{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: cloudTestKey("", "L", "l"),
			Properties: map[string]*pb.Value{"g": {ValueType: &pb.Value_GeoPointValue{GeoPointValue: &latlng.LatLng{Latitude: 91}}}}}}}}},
	} {
		if _, err := c.Commit(bg, req); err == nil {
			t.Errorf("%s: the commit succeeded", name)
		} else if got := codeOf(err); got != codes.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	lr, _ := c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey("", "L", "l")}})
	if len(lr.GetFound()) != 0 {
		t.Fatal("a refused commit wrote")
	}
}

func codeOf(err error) codes.Code { return status.Code(err) }

// TestCloudDatastoreShared: v1 calls are in Stats, the RPC log (with their
// failures), the datastore file, and the composite-index record.
func TestCloudDatastoreShared(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ds")
	opts := &Options{CloudDatastoreAddr: "127.0.0.1:0", DatastorePath: path, RequireIndexes: true, IndexYAML: filepath.Join(dir, "index.yaml")}
	writeFile(t, opts.IndexYAML, "indexes:\n")
	s := RunTOptions(t, opts)
	conn, err := grpc.NewClient(s.CloudDatastoreAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewDatastoreClient(conn)
	project := s.CloudProjectID()
	bg := context.Background()
	if _, err := c.Commit(bg, cloudUpsert(project, "P", "kept", 7)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Lookup(bg, &pb.LookupRequest{ProjectId: project})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Lookup(bg, &pb.LookupRequest{ProjectId: "", Keys: []*pb.Key{cloudTestKey("", "P", "kept")}})
	wantCode(t, err, codes.InvalidArgument)
	// A query that needs a composite index index.yaml lacks.
	_, err = c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, QueryType: &pb.RunQueryRequest_Query{Query: &pb.Query{
		Kind: []*pb.KindExpression{{Name: "P"}},
		Filter: &pb.Filter{FilterType: &pb.Filter_PropertyFilter{PropertyFilter: &pb.PropertyFilter{
			Property: &pb.PropertyReference{Name: "N"}, Op: pb.PropertyFilter_EQUAL, Value: &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: 7}}}}},
		Order: []*pb.PropertyOrder{{Property: &pb.PropertyReference{Name: "M"}}},
	}}})
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "index") {
		t.Errorf("the NEED_INDEX error does not say what to add: %v", err)
	}
	st := s.Stats()
	if st["cloud_datastore_v1.Commit"] != 1 || st["cloud_datastore_v1.Lookup"] != 2 || st["cloud_datastore_v1.RunQuery"] != 1 {
		t.Errorf("Stats %v", st)
	}
	if f := s.rpcs.failures(); f["cloud_datastore_v1.Lookup"] != 1 || f["cloud_datastore_v1.RunQuery"] != 1 || f[OtherCalls] != 0 {
		t.Errorf("RPC log failures %v", f)
	}
	recs := s.rpcs.latest(0, 10)
	if len(recs) != 4 || !strings.HasPrefix(recs[0].Name, "cloud_datastore_v1.") {
		t.Errorf("RPC log %v", recs)
	}
	// The console's RPC page lists them.
	resp, err := http.Get(s.URL() + "/rpcs")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "cloud_datastore_v1.Commit") {
		t.Errorf("the console's RPC page (%d) does not list cloud_datastore_v1.Commit", resp.StatusCode)
	}
	// FailNext and SetLatency reach the API too.
	s.FailNext("cloud_datastore_v1", "Lookup", 1)
	_, err = c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey("", "P", "kept")}})
	wantCode(t, err, codes.Internal)

	// The write is in the datastore file: a new server on it has it,
	// for either API.
	s.Close()
	s2 := RunTOptions(t, &Options{DatastorePath: path})
	ctx := middlewareContext(t, s2)
	var x struct{ N int64 }
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "P", "kept", 0, nil), &x); err != nil || x.N != 7 {
		t.Fatalf("after a restart: %v %v", x, err)
	}
}

// TestCloudDatastoreDeferredAndIDs: a Lookup past 2 MB of entities defers
// the rest of its keys, as the SDK's stub does; ReserveIds keeps an ID
// from the automatic IDs of both APIs.
func TestCloudDatastoreDeferredAndIDs(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	project := s.CloudProjectID()
	bg := context.Background()
	big := strings.Repeat("b", 900000)
	var keys []*pb.Key
	var muts []*pb.Mutation
	for _, name := range []string{"a", "b", "c"} {
		k := cloudTestKey("", "Big", name)
		keys = append(keys, k)
		muts = append(muts, &pb.Mutation{Operation: &pb.Mutation_Upsert{Upsert: &pb.Entity{Key: k,
			Properties: map[string]*pb.Value{"s": {ValueType: &pb.Value_StringValue{StringValue: big}, ExcludeFromIndexes: true}}}}})
	}
	if _, err := c.Commit(bg, &pb.CommitRequest{ProjectId: project, Mode: pb.CommitRequest_NON_TRANSACTIONAL, Mutations: muts}); err != nil {
		t.Fatal(err)
	}
	lr, err := c.Lookup(bg, &pb.LookupRequest{ProjectId: project, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Found) != 2 || len(lr.Deferred) != 1 || lr.Deferred[0].Path[0].GetName() != "c" {
		t.Fatalf("found %d, deferred %v", len(lr.Found), lr.Deferred)
	}

	// The first automatic ID, reserved, goes to neither API's Put.
	first := scatteredID(1)
	if _, err := c.ReserveIds(bg, &pb.ReserveIdsRequest{ProjectId: project, Keys: []*pb.Key{{Path: []*pb.Key_PathElement{{Kind: "Auto", IdType: &pb.Key_PathElement_Id{Id: first}}}}}}); err != nil {
		t.Fatal(err)
	}
	k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Auto", nil), &struct{ N int }{1})
	if err != nil {
		t.Fatal(err)
	}
	ar, err := c.AllocateIds(bg, &pb.AllocateIdsRequest{ProjectId: project, Keys: []*pb.Key{{Path: []*pb.Key_PathElement{{Kind: "Auto"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int64]bool{first: true}
	for _, id := range []int64{k.IntID(), ar.Keys[0].Path[0].GetId()} {
		if ids[id] {
			t.Fatalf("ID %d handed out twice (reserved %d, v2 Put %d, v1 AllocateIds %d)", id, first, k.IntID(), ar.Keys[0].Path[0].GetId())
		}
		ids[id] = true
	}
}

// TestCloudDatastoreCallsInFlight: past the bound on calls in flight a
// call fails at once with RESOURCE_EXHAUSTED, and every call that ends,
// answered or cancelled, gives its place back.
func TestCloudDatastoreCallsInFlight(t *testing.T) {
	s := RunTOptions(t, &Options{CloudDatastoreAddr: "127.0.0.1:0", cloudCalls: 3})
	conn, err := grpc.NewClient(s.CloudDatastoreAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewDatastoreClient(conn)
	project := s.CloudProjectID()
	lookup := func(ctx context.Context) error {
		_, err := c.Lookup(ctx, &pb.LookupRequest{ProjectId: project, Keys: []*pb.Key{cloudTestKey("", "K", "k")}})
		return err
	}
	s.SetLatency("cloud_datastore_v1.Lookup", time.Hour) // the calls wait until cancelled
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { errs <- lookup(ctx) }()
	}
	for len(s.cloud.slots) < 3 {
		time.Sleep(time.Millisecond)
	}
	wantCode(t, lookup(context.Background()), codes.ResourceExhausted)
	cancel()
	for i := 0; i < 3; i++ {
		wantCode(t, <-errs, codes.Canceled)
	}
	for len(s.cloud.slots) > 0 {
		time.Sleep(time.Millisecond)
	}
	s.SetLatency("cloud_datastore_v1.Lookup", 0)
	for i := 0; i < 10; i++ { // more calls than places, one after another
		if err := lookup(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Each call gives its place back as it ends, which may be just after
	// its answer reached the client; a place kept would hang here.
	for len(s.cloud.slots) > 0 {
		time.Sleep(time.Millisecond)
	}
}
