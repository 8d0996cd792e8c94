package aelocal

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Non-ancestor queries in transactions (datastore_txquery.go), through the
// appengine/v2 client, which sends them as they are.

// sumCounters runs a non-ancestor query of kind Counter in tc and returns
// how many it found and the sum of their N.
func sumCounters(tc context.Context) (n, sum int, err error) {
	var cs []counter
	if _, err := datastore.NewQuery("Counter").GetAll(tc, &cs); err != nil {
		return 0, 0, err
	}
	for _, c := range cs {
		sum += c.N
	}
	return len(cs), sum, nil
}

// putTwoCounters stores Counter a (1) and b (2), two entity groups.
func putTwoCounters(t *testing.T, ctx context.Context) {
	t.Helper()
	putN(t, ctx, datastore.NewKey(ctx, "Counter", "a", 0, nil), 1)
	putN(t, ctx, datastore.NewKey(ctx, "Counter", "b", 0, nil), 2)
}

func TestDatastoreTxQuery(t *testing.T) { runTxCases(t, txQueryCases) }

var txQueryCases = []txCase{
	{"a non-ancestor query reads the snapshot", func(t *testing.T, s *Server, ctx context.Context) {
		putTwoCounters(t, ctx)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			n, sum, err := sumCounters(tc)
			if err != nil || n != 2 || sum != 3 {
				t.Fatalf("first query: %d rows summing to %d, %v; want 2, 3", n, sum, err)
			}
			putN(t, ctx, datastore.NewKey(ctx, "Counter", "c", 0, nil), 30)
			putN(t, ctx, datastore.NewKey(ctx, "Counter", "a", 0, nil), 10)
			if err := datastore.Delete(ctx, datastore.NewKey(ctx, "Counter", "b", 0, nil)); err != nil {
				t.Fatal(err)
			}
			n, sum, err = sumCounters(tc)
			if err != nil || n != 2 || sum != 3 {
				t.Fatalf("after other writes: %d rows summing to %d, %v; want the snapshot's 2, 3", n, sum, err)
			}
			return nil
		}, &datastore.TransactionOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
	}},
	{"a write to the query's kind conflicts", func(t *testing.T, s *Server, ctx context.Context) {
		putTwoCounters(t, ctx)
		total := datastore.NewKey(ctx, "Total", "t", 0, nil)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			// The filter matches nothing, and the new entity would not
			// match it either: aelocal tracks the kind, coarser than
			// production's range, so this still conflicts.
			if _, err := datastore.NewQuery("Counter").Filter("N >", 100).Count(tc); err != nil {
				return err
			}
			putN(t, ctx, datastore.NewKey(ctx, "Counter", "c", 0, nil), 3)
			_, err := datastore.Put(tc, total, &counter{N: 1})
			return err
		}, &datastore.TransactionOptions{Attempts: 1})
		if err != datastore.ErrConcurrentTransaction {
			t.Fatalf("got %v, want ErrConcurrentTransaction", err)
		}
		if getN(t, ctx, total) != 0 {
			t.Fatal("the conflicting transaction's write landed")
		}
		// RunInTransaction's retry sees the new entity and commits.
		attempt := 0
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			attempt++
			_, sum, err := sumCounters(tc)
			if err != nil {
				return err
			}
			if attempt == 1 {
				putN(t, ctx, datastore.NewKey(ctx, "Counter", "d", 0, nil), 4)
			}
			_, err = datastore.Put(tc, total, &counter{N: sum})
			return err
		}, nil)
		if err != nil || attempt != 2 || getN(t, ctx, total) != 10 {
			t.Fatalf("retry: %v after %d attempts, total %d; want 2 attempts, 10", err, attempt, getN(t, ctx, total))
		}
	}},
	{"a write to another kind or namespace does not conflict", func(t *testing.T, s *Server, ctx context.Context) {
		putTwoCounters(t, ctx)
		other, err := appengine.Namespace(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		total := datastore.NewKey(ctx, "Total", "t", 0, nil)
		// Not XG: the query takes no entity group, Total is the only one.
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			_, sum, err := sumCounters(tc)
			if err != nil {
				return err
			}
			putN(t, ctx, datastore.NewKey(ctx, "Other", "o", 0, nil), 5)
			putN(t, other, datastore.NewKey(other, "Counter", "c", 0, nil), 6)
			_, err = datastore.Put(tc, total, &counter{N: sum})
			return err
		}, &datastore.TransactionOptions{Attempts: 1})
		if err != nil || getN(t, ctx, total) != 3 {
			t.Fatalf("got %v, total %d; want a commit, 3", err, getN(t, ctx, total))
		}
	}},
	{"a kindless query conflicts with a write of any kind", func(t *testing.T, s *Server, ctx context.Context) {
		putTwoCounters(t, ctx)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			keys, err := datastore.NewQuery("").KeysOnly().GetAll(tc, nil)
			if err != nil || len(keys) != 2 {
				t.Fatalf("kindless query: %d keys, %v", len(keys), err)
			}
			putN(t, ctx, datastore.NewKey(ctx, "Other", "o", 0, nil), 5)
			_, err = datastore.Put(tc, datastore.NewKey(ctx, "Total", "t", 0, nil), &counter{N: 1})
			return err
		}, &datastore.TransactionOptions{Attempts: 1})
		if err != datastore.ErrConcurrentTransaction {
			t.Fatalf("got %v, want ErrConcurrentTransaction", err)
		}
	}},
	{"a query of several batches continues on the snapshot", func(t *testing.T, s *Server, ctx context.Context) {
		keys := make([]*datastore.Key, 50) // more than one batch of 20
		cs := make([]counter, 50)
		for i := range keys {
			keys[i] = datastore.NewKey(ctx, "Counter", "", int64(i+1), nil)
			cs[i].N = 1
		}
		if _, err := datastore.PutMulti(ctx, keys, cs); err != nil {
			t.Fatal(err)
		}
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			it := datastore.NewQuery("Counter").Run(tc)
			n, sum := 0, 0
			for {
				var c counter
				_, err := it.Next(&c)
				if err == datastore.Done {
					break
				}
				if err != nil {
					return err
				}
				if n == 0 {
					// Between batches, another client changes every entity.
					for i := range cs {
						cs[i].N = 100
					}
					if _, err := datastore.PutMulti(ctx, keys, cs); err != nil {
						t.Fatal(err)
					}
				}
				n++
				sum += c.N
			}
			if n != 50 || sum != 50 {
				t.Fatalf("read %d entities summing to %d, want the snapshot's 50 and 50", n, sum)
			}
			return nil
		}, &datastore.TransactionOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
	}},
	{"metadata queries stay refused", func(t *testing.T, s *Server, ctx context.Context) {
		putTwoCounters(t, ctx)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			_, err := datastore.NewQuery("__kind__").KeysOnly().GetAll(tc, nil)
			return err
		}, nil)
		wantAPIError(t, err, "BAD_REQUEST", `transactional queries on "__kind__" not allowed`)
	}},
}

// TestDatastoreTxQueryLegacy: Options.LegacyEntityGroups restores the
// legacy Datastore's two rules.
func TestDatastoreTxQueryLegacy(t *testing.T) {
	legacy := func(t *testing.T) *Options { return &Options{LegacyEntityGroups: true} }
	bothPathsWith(t, legacy, func(t *testing.T, s *Server, ctx context.Context) {
		putTwoCounters(t, ctx)
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			_, err := datastore.NewQuery("Counter").Count(tc)
			return err
		}, nil)
		wantAPIError(t, err, "BAD_REQUEST", "only ancestor queries are allowed inside transactions")
		// An ancestor query still runs.
		a := datastore.NewKey(ctx, "Counter", "a", 0, nil)
		err = datastore.RunInTransaction(ctx, func(tc context.Context) error {
			n, err := datastore.NewQuery("Counter").Ancestor(a).Count(tc)
			if err == nil && n != 1 {
				t.Fatalf("ancestor query: %d, want 1", n)
			}
			return err
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// 25 entity groups in an XG transaction, not 26.
		groups := func(n int) error {
			return datastore.RunInTransaction(ctx, func(tc context.Context) error {
				for i := 0; i < n; i++ {
					if _, err := datastore.Put(tc, datastore.NewKey(ctx, "G", "", int64(i+1), nil), &counter{N: n}); err != nil {
						return err
					}
				}
				return nil
			}, &datastore.TransactionOptions{XG: true})
		}
		if err := groups(25); err != nil {
			t.Fatalf("25 groups: %v", err)
		}
		wantAPIError(t, groups(26), "BAD_REQUEST", "operating on too many entity groups in a single transaction.")
		if getN(t, ctx, datastore.NewKey(ctx, "G", "", 1, nil)) != 25 {
			t.Fatal("the refused transaction changed an entity")
		}
		s.datastore.mu.Lock()
		open := len(s.datastore.txs)
		s.datastore.mu.Unlock()
		if open != 0 {
			t.Fatalf("%d transactions left open", open)
		}
	})
}

// Through the Cloud Datastore API, with the generated gRPC stub.

// newCloudServerOptions is newCloudServer with more options.
func newCloudServerOptions(t *testing.T, o Options) (*Server, datastorepb.DatastoreClient, context.Context) {
	t.Helper()
	o.CloudDatastoreAddr = "127.0.0.1:0"
	s := RunTOptions(t, &o)
	conn, err := grpc.NewClient(s.CloudDatastoreAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, datastorepb.NewDatastoreClient(conn), middlewareContext(t, s)
}

// cloudTxQuery runs a query of kind in the transaction tx and returns its
// entities' N.
func cloudTxQuery(c datastorepb.DatastoreClient, project string, tx []byte, kind string) ([]int64, error) {
	r, err := c.RunQuery(context.Background(), &datastorepb.RunQueryRequest{ProjectId: project,
		ReadOptions: &datastorepb.ReadOptions{ConsistencyType: &datastorepb.ReadOptions_Transaction{Transaction: tx}},
		QueryType:   &datastorepb.RunQueryRequest_Query{Query: &datastorepb.Query{Kind: []*datastorepb.KindExpression{{Name: kind}}}}})
	if err != nil {
		return nil, err
	}
	var ns []int64
	for _, e := range r.Batch.EntityResults {
		ns = append(ns, e.Entity.Properties["N"].GetIntegerValue())
	}
	return ns, nil
}

// cloudUpsertCommit commits tx with an upsert of kind/name.
func cloudUpsertCommit(c datastorepb.DatastoreClient, project string, tx []byte, keys ...*datastorepb.Key) error {
	var ms []*datastorepb.Mutation
	for _, k := range keys {
		ms = append(ms, &datastorepb.Mutation{Operation: &datastorepb.Mutation_Upsert{Upsert: &datastorepb.Entity{Key: k,
			Properties: map[string]*datastorepb.Value{"N": {ValueType: &datastorepb.Value_IntegerValue{IntegerValue: 1}}}}}})
	}
	_, err := c.Commit(context.Background(), &datastorepb.CommitRequest{ProjectId: project, Mode: datastorepb.CommitRequest_TRANSACTIONAL,
		TransactionSelector: &datastorepb.CommitRequest_Transaction{Transaction: tx}, Mutations: ms})
	return err
}

// TestCloudDatastoreTxQuery: a v1 transaction runs a non-ancestor query on
// its snapshot, and conflicts with a v2 write of the query's kind only.
func TestCloudDatastoreTxQuery(t *testing.T) {
	s, c, ctx := newCloudServerOptions(t, Options{})
	project := s.CloudProjectID()
	bg := context.Background()
	putTwoCounters(t, ctx)
	begin := func() []byte {
		t.Helper()
		bt, err := c.BeginTransaction(bg, &datastorepb.BeginTransactionRequest{ProjectId: project})
		if err != nil {
			t.Fatal(err)
		}
		return bt.Transaction
	}

	tx := begin()
	if ns, err := cloudTxQuery(c, project, tx, "Counter"); err != nil || len(ns) != 2 {
		t.Fatalf("query in a transaction: %v, %v", ns, err)
	}
	putN(t, ctx, datastore.NewKey(ctx, "Counter", "c", 0, nil), 3)
	if ns, err := cloudTxQuery(c, project, tx, "Counter"); err != nil || len(ns) != 2 {
		t.Fatalf("after a v2 write: %v, %v; want the snapshot's 2 rows", ns, err)
	}
	wantCode(t, cloudUpsertCommit(c, project, tx, cloudTestKey("", "Total", "t")), codes.Aborted)

	tx = begin()
	if _, err := cloudTxQuery(c, project, tx, "Counter"); err != nil {
		t.Fatal(err)
	}
	putN(t, ctx, datastore.NewKey(ctx, "Other", "o", 0, nil), 5)
	if err := cloudUpsertCommit(c, project, tx, cloudTestKey("", "Total", "t")); err != nil {
		t.Fatalf("a write to another kind: %v, want a commit", err)
	}
}

func wantCloudMessage(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	wantCode(t, err, code)
	if got := status.Convert(err).Message(); !strings.Contains(got, msg) {
		t.Fatalf("message %q, want it to contain %q", got, msg)
	}
}

// TestCloudDatastoreTxQueryLegacy: LegacyEntityGroups holds the Cloud API
// to the same two rules.
func TestCloudDatastoreTxQueryLegacy(t *testing.T) {
	s, c, _ := newCloudServerOptions(t, Options{LegacyEntityGroups: true})
	project := s.CloudProjectID()
	bg := context.Background()
	bt, err := c.BeginTransaction(bg, &datastorepb.BeginTransactionRequest{ProjectId: project})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cloudTxQuery(c, project, bt.Transaction, "Counter")
	wantCloudMessage(t, err, codes.InvalidArgument, "only ancestor queries are allowed inside transactions")
	if _, err := c.Rollback(bg, &datastorepb.RollbackRequest{ProjectId: project, Transaction: bt.Transaction}); err != nil {
		t.Fatal(err)
	}
	var keys []*datastorepb.Key
	for i := 0; i < 26; i++ {
		keys = append(keys, cloudTestKey("", "G", string(rune('a'+i))))
	}
	for _, n := range []int{25, 26} {
		bt, err := c.BeginTransaction(bg, &datastorepb.BeginTransactionRequest{ProjectId: project})
		if err != nil {
			t.Fatal(err)
		}
		err = cloudUpsertCommit(c, project, bt.Transaction, keys[:n]...)
		if n == 25 && err != nil {
			t.Fatalf("25 groups: %v", err)
		}
		if n == 26 {
			wantCloudMessage(t, err, codes.InvalidArgument, "operating on too many entity groups in a single transaction.")
		}
	}
}
