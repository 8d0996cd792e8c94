package aelocal

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestTxQueryPlannedMatchesSnapshot is the oracle of queries in
// transactions (datastore_txsnap.go): random writes interleave with
// transactions' queries of random shapes (ancestor or not, kindless,
// filters, sort orders, projections, distinct, keys-only, offsets, start
// cursors), and each query, read page by page, answers the same keys,
// entities and cursors planned (the live indexes with the changes since
// the snapshot put back) as by the full evaluation over the snapshot.
// Other clients write before the first page, during every planned read
// (planReadHook, without the lock) and between pages; another transaction
// stays open with an older snapshot, so the history holds versions the
// query's snapshot must skip.
func TestTxQueryPlannedMatchesSnapshot(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	d := s.datastore
	r := rand.New(rand.NewPCG(25, 3))
	parents, randomKey := randomKeys(ctx, r, 3)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	randomEntity := func() datastore.PropertyList {
		var pl datastore.PropertyList
		for range r.IntN(3) {
			pl = append(pl, datastore.Property{Name: "A", Value: int64(r.IntN(5)), Multiple: true})
		}
		if r.IntN(4) > 0 {
			pl = append(pl, datastore.Property{Name: "B", Value: []string{"x", "y", "z"}[r.IntN(3)]})
		}
		if r.IntN(4) > 0 {
			pl = append(pl, datastore.Property{Name: "T", Value: base.Add(time.Duration(r.IntN(12)) * time.Hour)})
		}
		pl = append(pl, datastore.Property{Name: "N", Value: r.Int64(), NoIndex: true})
		return pl
	}
	write := func(n int) {
		for range n {
			k := randomKey()
			if r.IntN(5) == 0 {
				if err := datastore.Delete(ctx, k); err != nil {
					t.Error(err)
				}
				continue
			}
			if r.IntN(6) == 0 {
				k = datastore.NewKey(ctx, "S", k.StringID(), k.IntID(), k.Parent())
			}
			pl := randomEntity()
			if _, err := datastore.Put(ctx, k, &pl); err != nil {
				t.Error(err)
			}
		}
	}
	randomQuery := func() *datastore.Query {
		if r.IntN(8) == 0 {
			q := datastore.NewQuery("")
			if r.IntN(2) == 0 {
				q = q.Filter([]string{"__key__ >", "__key__ <="}[r.IntN(2)], randomKey())
			}
			return q
		}
		q := datastore.NewQuery("R")
		switch r.IntN(8) {
		case 0:
			q = q.Project("A")
		case 1:
			q = q.Project("A", "B").Distinct()
		case 2:
			q = q.KeysOnly()
		}
		if r.IntN(5) == 0 {
			q = q.Ancestor(parents[r.IntN(len(parents))])
		}
		if r.IntN(3) == 0 {
			q = q.Filter("A =", int64(r.IntN(5)))
		}
		if r.IntN(4) == 0 {
			q = q.Filter("B =", []string{"x", "y", "z"}[r.IntN(3)])
		}
		switch r.IntN(4) {
		case 0:
			q = q.Filter([]string{"A <", "A >="}[r.IntN(2)], int64(r.IntN(5)))
			q = q.Order([]string{"A", "-A"}[r.IntN(2)])
		case 1:
			q = q.Filter([]string{"T <", "T >"}[r.IntN(2)], base.Add(time.Duration(r.IntN(12))*time.Hour))
		}
		if r.IntN(2) == 0 {
			q = q.Order([]string{"T", "-T", "B", "-__key__", "__key__"}[r.IntN(5)])
		}
		if r.IntN(4) == 0 {
			q = q.Offset(r.IntN(6))
		}
		return q
	}
	// run reads q page by page (page results each, from the last cursor),
	// with writes by others between pages, and returns every result with
	// its entity and the cursor after it.
	run := func(tc context.Context, q *datastore.Query, plan bool, page int) string {
		d.mu.Lock()
		d.noPlan = !plan
		d.mu.Unlock()
		var b bytes.Buffer
		var start *datastore.Cursor
		for range 50 {
			pq := q.Limit(page)
			if start != nil {
				pq = pq.Start(*start)
			}
			it := pq.Run(tc)
			n := 0
			for {
				var pl datastore.PropertyList
				k, err := it.Next(&pl)
				if err == datastore.Done {
					break
				}
				if err != nil {
					fmt.Fprintf(&b, "error %v\n", err)
					return b.String()
				}
				n++
				fmt.Fprintf(&b, "%v", k)
				for _, p := range pl {
					// A projection's values are the client's raw
					// index values; the cursors hold them.
					v := fmt.Sprintf("%T", p.Value)
					if !strings.HasSuffix(v, "indexValue") {
						v = fmt.Sprint(p.Value)
					}
					fmt.Fprintf(&b, " %s=%s", p.Name, v)
				}
				fmt.Fprintln(&b)
			}
			c, err := it.Cursor()
			if err != nil {
				fmt.Fprintf(&b, "cursor error %v\n", err)
				return b.String()
			}
			fmt.Fprintf(&b, "page %v\n", c)
			if n < page {
				break
			}
			start = &c
			write(2)
		}
		return b.String()
	}

	// other holds an older snapshot open, renewed now and then.
	var other uint64
	renew := func() {
		d.mu.Lock()
		d.dropTxLocked(other)
		d.mu.Unlock()
		other = d.beginTx(parents[0].AppID(), true, true)
	}
	// With -short or the race detector (which the repository's one test
	// command uses), a third of the rounds.
	rounds := 150
	if testing.Short() || raceDetector {
		rounds = 50
	}
	write(300)
	planned, nonEmpty, changed := 0, 0, 0
	for i := range rounds {
		if i%10 == 0 {
			renew()
		}
		write(8)
		q := randomQuery()
		// A live run first: it builds the composite index the query
		// needs, which a transaction reads only once kept.
		it := q.Limit(5).Run(ctx)
		for {
			var pl datastore.PropertyList
			if _, err := it.Next(&pl); err != nil {
				break
			}
		}
		err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
			write(1 + r.IntN(10)) // after the snapshot
			d.mu.Lock()
			d.planReadHook = func() { write(1) }
			before := d.planned
			if len(d.histKind) > 0 {
				changed++
			}
			d.mu.Unlock()
			page := 1 + r.IntN(12)
			got := run(tc, q, true, page)
			d.mu.Lock()
			d.planReadHook = nil
			if d.planned > before {
				planned++
			}
			d.mu.Unlock()
			want := run(tc, q, false, page)
			if got != want {
				t.Fatalf("query %d %v in a transaction\nplanned:\n%s\nfull evaluation over the snapshot:\n%s", i, q, got, want)
			}
			if strings.Contains(got, "/R,") {
				nonEmpty++
			}
			return errRollback
		}, &datastore.TransactionOptions{XG: true})
		if err != errRollback {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	d.noPlan = false
	d.mu.Unlock()
	t.Logf("planned %d, non-empty %d, with changes since the snapshot %d of %d", planned, nonEmpty, changed, rounds)
	if planned < rounds*2/3 || nonEmpty < rounds/2 || changed < rounds*9/10 {
		t.Errorf("planned %d, non-empty %d, with changes %d of %d; want most", planned, nonEmpty, changed, rounds)
	}
}

// TestTxQueryLetsWritesThrough checks that a query in a transaction, not
// an ancestor query, reads its snapshot without the datastore's lock: a
// Put made while the read runs goes through, the query answers the
// snapshot (neither that Put nor one made after the snapshot and before
// the query), and the commit still conflicts by the query's kind.
func TestTxQueryLetsWritesThrough(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	d := s.datastore
	type W struct{ N int64 }
	keys := make([]*datastore.Key, 50)
	vals := make([]W, 50)
	for i := range keys {
		keys[i] = datastore.NewKey(ctx, "W", "", int64(100+i), nil)
		vals[i] = W{int64(i)}
	}
	if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
		t.Fatal(err)
	}
	reads, puts := 0, 0
	err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
		// After the snapshot: an entity that sorts first, and the first
		// row deleted.
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "W", "", 2, nil), &W{-2}); err != nil {
			return err
		}
		if err := datastore.Delete(ctx, keys[0]); err != nil {
			return err
		}
		d.mu.Lock()
		d.planReadHook = func() {
			reads++
			if !d.mu.TryLock() {
				t.Error("a transaction's planned read runs with the datastore's lock held")
				return
			}
			d.mu.Unlock()
			if puts == 0 {
				puts++
				if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "W", "", 1, nil), &W{-1}); err != nil {
					t.Error(err)
				}
			}
		}
		d.mu.Unlock()
		var got []W
		ks, err := datastore.NewQuery("W").Order("N").Limit(20).GetAll(tc, &got)
		d.mu.Lock()
		d.planReadHook = nil
		d.mu.Unlock()
		if err != nil {
			return err
		}
		if reads != 1 || puts != 1 {
			t.Fatalf("%d planned reads and %d puts during them; want 1 and 1", reads, puts)
		}
		if len(ks) != 20 || ks[0].IntID() != 100 || got[0].N != 0 || got[19].N != 19 {
			t.Errorf("got %d rows from %v (N %v); want the snapshot's 20 from /W,100", len(ks), ks[0], got)
		}
		_, err = datastore.Put(tc, datastore.NewKey(tc, "Total", "t", 0, nil), &W{1})
		return err
	}, &datastore.TransactionOptions{Attempts: 1})
	if err != datastore.ErrConcurrentTransaction {
		t.Errorf("commit after others wrote the kind the query read: %v; want %v", err, datastore.ErrConcurrentTransaction)
	}
}

// TestTxQueryCostFollowsRows checks, with the exact counters, that a
// limit-20 query of each planned shape in a transaction reads the same
// index entries at 2,000 and at 200,000 entities, as a live query does
// (TestQueryCostFollowsRows), while others wrote the kind after the
// transaction's snapshot: the read puts back the versions of the keys
// written since (counted apart, the same at both sizes), and the answer is
// the snapshot's. With -short or the race detector the larger size is
// 8,000. The 200,000 run:
//
//	go test -count=1 -run TestTxQueryCostFollowsRows -v ./aelocal
func TestTxQueryCostFollowsRows(t *testing.T) {
	sizes := []int{2000, 200000}
	if testing.Short() || raceDetector {
		sizes = []int{2000, 8000}
	}
	type cost struct {
		queryCost
		changes int64
	}
	costs := make([]map[string]cost, len(sizes))
	var names []string
	for si, n := range sizes {
		s, ctx, shapes := scaleSetup(t, n)
		d := s.datastore
		costs[si] = make(map[string]cost)
		for _, sh := range shapes {
			live := measure(t, ctx, d, sh.q.Limit(20)) // builds its composite index
			err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
				// Others overwrite the first ten rows, delete the next
				// ten and add ten, after the snapshot.
				row := func(id int64) *datastore.Key {
					return datastore.NewKey(ctx, "Row", "", id, datastore.NewKey(ctx, "P", "", (id-1)%scaleParents+1, nil))
				}
				var put, del []*datastore.Key
				for i := range int64(10) {
					put = append(put, row(1+i), row(int64(n)+1+i))
					del = append(del, row(11+i))
				}
				// Values the shapes select and sort first.
				pl := datastore.PropertyList{{Name: "Name", Value: "row"}, {Name: "Group", Value: int64(7)},
					{Name: "Team", Value: int64(7)}, {Name: "City", Value: "c7"}, {Name: "Created", Value: scaleBase.Add(time.Hour)},
					{Name: "Tags", Value: "t3", Multiple: true}}
				if _, err := datastore.PutMulti(ctx, put, slices.Repeat([]datastore.PropertyList{pl}, len(put))); err != nil {
					return err
				}
				if err := datastore.DeleteMulti(ctx, del); err != nil {
					return err
				}
				d.mu.Lock()
				before := d.stats.changes
				d.mu.Unlock()
				c := measure(t, tc, d, sh.q.Limit(20))
				d.mu.Lock()
				changes := d.stats.changes - before
				d.mu.Unlock()
				if c != live {
					t.Errorf("n=%d: %s in a transaction: %+v; live before the writes %+v; want the same", n, sh.name, c, live)
				}
				costs[si][sh.name] = cost{c, changes}
				return errRollback
			}, &datastore.TransactionOptions{XG: true})
			if err != errRollback {
				t.Fatal(err)
			}
			if si == 0 {
				names = append(names, sh.name)
			}
		}
	}
	for _, name := range names {
		small, large := costs[0][name], costs[1][name]
		t.Logf("%-45s %4d entries, %2d entities loaded, %2d keys put back", name, large.entries, large.loaded, large.changes)
		if small != large {
			t.Errorf("%s: %+v at %d entities, %+v at %d; want the same", name, small, sizes[0], large, sizes[1])
		}
	}
}

// TestCloudTxQueryPlannedMatchesSnapshot runs the Cloud API's filters (IN,
// NOT_IN, !=, OR: a union of branches, each read from the snapshot) in a
// transaction after others changed the kind, page by page with writes
// between pages, planned and by the full evaluation over the snapshot,
// and requires the same answers, and the snapshot's.
func TestCloudTxQueryPlannedMatchesSnapshot(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	d := s.datastore
	putFilterData(t, ctx)
	project := s.CloudProjectID()
	bg := context.Background()
	put := func(name string, i int64) {
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "SQ", name, 0, nil), &datastore.PropertyList{{Name: "I", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	run := func(tx []byte, f *pb.Filter, orders []*pb.PropertyOrder, plan bool) string {
		d.mu.Lock()
		d.noPlan = !plan
		d.mu.Unlock()
		q := &pb.Query{Kind: []*pb.KindExpression{{Name: "SQ"}}, Filter: f, Order: orders, Limit: wrapperspb.Int32(2)}
		var out []string
		for page := range 20 {
			r, err := c.RunQuery(bg, &pb.RunQueryRequest{ProjectId: project, QueryType: &pb.RunQueryRequest_Query{Query: q},
				ReadOptions: &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_Transaction{Transaction: tx}}})
			if err != nil {
				return fmt.Sprint(out, err)
			}
			for _, er := range r.Batch.EntityResults {
				out = append(out, fmt.Sprintf("%s=%v", er.Entity.Key.Path[0].GetName(), er.Entity.Properties["I"]))
			}
			if len(r.Batch.EntityResults) < 2 {
				break
			}
			q.StartCursor = r.Batch.EndCursor
			put(fmt.Sprintf("p%d", page), int64(page%4)) // others write between pages
		}
		return strings.Join(out, "; ")
	}
	desc := []*pb.PropertyOrder{{Property: &pb.PropertyReference{Name: "I"}, Direction: pb.PropertyOrder_DESCENDING}}
	for i, tc := range []struct {
		f      *pb.Filter
		orders []*pb.PropertyOrder
		want   string // the snapshot's names
	}{
		{v1Prop("I", pb.PropertyFilter_IN, v1Ints(2, 4, 20)), nil, "i2 i4 multi"},
		{v1Prop("I", pb.PropertyFilter_NOT_IN, v1Ints(1, 3, 5, 7)), nil, "null i0 i2 i4 i6 multi str"},
		{v1Prop("I", pb.PropertyFilter_NOT_EQUAL, v1Int(1)), desc, "str multi i7 i6 i5 i4 i3 i2 i0 null"},
		{v1Comp(pb.CompositeFilter_OR, v1Prop("I", pb.PropertyFilter_LESS_THAN, v1Int(2)), v1Prop("I", pb.PropertyFilter_GREATER_THAN_OR_EQUAL, v1Int(6))), nil, "null i0 i1 multi i6 i7 str"},
		{v1Comp(pb.CompositeFilter_OR, v1Prop("I", pb.PropertyFilter_EQUAL, v1Int(3)), v1Prop("J", pb.PropertyFilter_EQUAL, v1Int(1))), nil, "i3 none"},
	} {
		bt, err := c.BeginTransaction(bg, &pb.BeginTransactionRequest{ProjectId: project,
			TransactionOptions: &pb.TransactionOptions{Mode: &pb.TransactionOptions_ReadOnly_{ReadOnly: &pb.TransactionOptions_ReadOnly{}}}})
		if err != nil {
			t.Fatal(err)
		}
		// After the snapshot: what each filter selects changes.
		put("i2", 9)
		put("i3", 8)
		put("i6", 2)
		put("new", 1)
		if err := datastore.Delete(ctx, datastore.NewKey(ctx, "SQ", "i4", 0, nil)); err != nil {
			t.Fatal(err)
		}
		d.mu.Lock()
		planned := d.planned
		d.mu.Unlock()
		got := run(bt.Transaction, tc.f, tc.orders, true)
		d.mu.Lock()
		if d.planned == planned {
			t.Errorf("filter %d: not planned", i)
		}
		d.mu.Unlock()
		if want := run(bt.Transaction, tc.f, tc.orders, false); got != want {
			t.Errorf("filter %d in a transaction:\nplanned:         %s\nfull evaluation: %s", i, got, want)
		}
		var names []string
		for _, r := range strings.Split(got, "; ") {
			// From a cursor past an entity's first value of a
			// multi-valued sort property, it comes again at its next
			// (TestCloudQueryFilters).
			if name, _, _ := strings.Cut(r, "="); !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
		if n := strings.Join(names, " "); n != tc.want {
			t.Errorf("filter %d in a transaction: %s; want the snapshot's %s", i, n, tc.want)
		}
		if _, err := c.Rollback(bg, &pb.RollbackRequest{ProjectId: project, Transaction: bt.Transaction}); err != nil {
			t.Fatal(err)
		}
		// Back as the snapshots of the next filters expect.
		d.mu.Lock()
		d.noPlan = false
		d.mu.Unlock()
		put("i2", 2)
		put("i3", 3)
		put("i6", 6)
		put("i4", 4)
		for page := range 20 {
			if err := datastore.Delete(ctx, datastore.NewKey(ctx, "SQ", fmt.Sprintf("p%d", page), 0, nil)); err != nil {
				t.Fatal(err)
			}
		}
		if err := datastore.Delete(ctx, datastore.NewKey(ctx, "SQ", "new", 0, nil)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTxAggregationEndsWithItsTransaction: an aggregation in a
// transaction reads batch after batch, each without the lock; if the
// transaction ends between two (here: it is ended during the first read,
// as the history bound or an expiry would end it), the next batch fails
// rather than read a snapshot whose versions may be gone.
func TestTxAggregationEndsWithItsTransaction(t *testing.T) {
	s, c, ctx := newCloudServer(t)
	d := s.datastore
	project := s.CloudProjectID()
	bg := context.Background()
	type N struct{ N int64 }
	keys := make([]*datastore.Key, 1500) // two batches of a count
	for i := range keys {
		keys[i] = datastore.NewKey(ctx, "C", "", int64(i+1), nil)
	}
	for lo := 0; lo < len(keys); lo += 500 {
		if _, err := datastore.PutMulti(ctx, keys[lo:lo+500], make([]N, 500)); err != nil {
			t.Fatal(err)
		}
	}
	count := func(tx []byte) (int64, error) {
		r, err := c.RunAggregationQuery(bg, &pb.RunAggregationQueryRequest{ProjectId: project,
			ReadOptions: &pb.ReadOptions{ConsistencyType: &pb.ReadOptions_Transaction{Transaction: tx}},
			QueryType: &pb.RunAggregationQueryRequest_AggregationQuery{AggregationQuery: &pb.AggregationQuery{
				QueryType:    &pb.AggregationQuery_NestedQuery{NestedQuery: &pb.Query{Kind: []*pb.KindExpression{{Name: "C"}}}},
				Aggregations: []*pb.AggregationQuery_Aggregation{{Alias: "n", Operator: &pb.AggregationQuery_Aggregation_Count_{Count: &pb.AggregationQuery_Aggregation_Count{}}}}}}})
		if err != nil {
			return 0, err
		}
		return r.Batch.AggregationResults[0].AggregateProperties["n"].GetIntegerValue(), nil
	}
	begin := func() []byte {
		bt, err := c.BeginTransaction(bg, &pb.BeginTransactionRequest{ProjectId: project})
		if err != nil {
			t.Fatal(err)
		}
		return bt.Transaction
	}
	if n, err := count(begin()); n != 1500 || err != nil {
		t.Fatalf("count in a transaction: %d, %v; want 1500", n, err)
	}
	tx := begin()
	d.mu.Lock()
	d.planReadHook = func() {
		d.mu.Lock()
		for h := range d.txs {
			d.dropTxLocked(h)
		}
		d.planReadHook = nil
		d.mu.Unlock()
	}
	d.mu.Unlock()
	if n, err := count(tx); err == nil || !strings.Contains(err.Error(), "no longer valid") {
		t.Errorf("count in a transaction ended meanwhile: %d, %v; want the transaction's end", n, err)
	}
}
