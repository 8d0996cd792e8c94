package aelocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2/datastore"
)

// TestPlannerMatchesFullEvaluation runs many random queries on random data
// (multi-valued, unindexed and mixed-type properties, ancestors, several
// key kinds), each once answered from the indexes and once by the full
// evaluation, and requires the same keys in the same order with the same
// cursor after each, and the same error. The data changes between rounds
// (overwrites, deletes, and a reload through SaveDatastore and
// LoadDatastore, which makes the indexes be rebuilt), so index
// maintenance is checked too.
func TestPlannerMatchesFullEvaluation(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	d := s.datastore
	r := rand.New(rand.NewPCG(25, 22))

	parents, randomKey := randomKeys(ctx, r, 4)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	randomEntity := func() datastore.PropertyList {
		var pl datastore.PropertyList
		for range r.IntN(4) {
			pl = append(pl, datastore.Property{Name: "A", Value: int64(r.IntN(6)), Multiple: true})
		}
		if r.IntN(5) > 0 {
			pl = append(pl, datastore.Property{Name: "B", Value: []string{"x", "y", "z"}[r.IntN(3)]})
		}
		if r.IntN(5) > 0 {
			pl = append(pl, datastore.Property{Name: "T", Value: base.Add(time.Duration(r.IntN(20)) * time.Hour)})
		}
		switch r.IntN(5) {
		case 0:
			pl = append(pl, datastore.Property{Name: "F", Value: int64(r.IntN(4))})
		case 1:
			pl = append(pl, datastore.Property{Name: "F", Value: []string{"a", "b"}[r.IntN(2)]})
		case 2:
			pl = append(pl, datastore.Property{Name: "F", Value: float64(r.IntN(3)) / 2})
		case 3:
			pl = append(pl, datastore.Property{Name: "F", Value: nil})
		}
		// An unindexed value of an indexed name: it has no index entry.
		if r.IntN(4) == 0 {
			pl = append(pl, datastore.Property{Name: "A", Value: int64(r.IntN(6)), NoIndex: true, Multiple: true})
		}
		pl = append(pl, datastore.Property{Name: "N", Value: "unindexed", NoIndex: true})
		return pl
	}
	write := func(n int) {
		for range n {
			k := randomKey()
			if r.IntN(6) == 0 {
				if err := datastore.Delete(ctx, k); err != nil {
					t.Fatal(err)
				}
				continue
			}
			pl := randomEntity()
			if r.IntN(5) == 0 {
				// Another kind, under the same parents: queries of no
				// kind merge the kinds' key indexes.
				k = datastore.NewKey(ctx, "S", k.StringID(), k.IntID(), k.Parent())
			}
			if _, err := datastore.Put(ctx, k, &pl); err != nil {
				t.Fatal(err)
			}
		}
	}

	// kindlessQuery is a query of no kind (every kind of the namespace in
	// key order), with __key__ filters.
	kindlessQuery := func() *datastore.Query {
		q := datastore.NewQuery("")
		if r.IntN(3) == 0 {
			q = q.Filter([]string{"__key__ >", "__key__ >=", "__key__ <", "__key__ <="}[r.IntN(4)], randomKey())
		}
		if r.IntN(4) == 0 {
			q = q.Ancestor(parents[r.IntN(len(parents))])
		}
		if r.IntN(2) == 0 {
			q = q.KeysOnly()
		}
		// Always a limit: the full evaluation these runs are compared
		// with evaluates the query again for every batch and cursor.
		q = q.Limit(r.IntN(40))
		if r.IntN(4) == 0 {
			q = q.Offset(r.IntN(15))
		}
		return q
	}
	// distinctQuery is a distinct projection, planned in every shape the
	// server accepts: its group-by properties lead its orders, also when
	// DistinctOn's properties sort after another projected one by name
	// (parseQuery puts them first, as production's index does), and a
	// group-by property an equality filter sets needs no order. It sets
	// distinctBase to the query without its limit and offset.
	var distinctBase *datastore.Query
	distinctQuery := func() *datastore.Query {
		q := datastore.NewQuery("R")
		switch r.IntN(8) {
		case 0:
			q = q.Project("A").Distinct()
		case 1:
			q = q.Project("A", "B").Distinct()
		case 2:
			q = q.Project("A", "B").DistinctOn("B").Order([]string{"B", "-B"}[r.IntN(2)])
		case 3:
			q = q.Project("A", "B").DistinctOn("B")
		case 4:
			q = q.Project("B", "T").DistinctOn("B", "T").Order("-T").Order("B")
		case 5:
			q = q.Project("B").DistinctOn("A", "B").Filter("A =", int64(r.IntN(6)))
		case 6:
			q = q.Project("T", "A").DistinctOn("T").Filter([]string{"T >", "T <="}[r.IntN(2)], base.Add(time.Duration(r.IntN(20))*time.Hour))
		case 7:
			q = q.Project("F", "B", "A").DistinctOn("F", "B").Order([]string{"F", "-F", "B", "-B"}[r.IntN(4)])
		}
		if r.IntN(3) == 0 {
			q = q.Filter("A =", int64(r.IntN(6)))
		}
		if r.IntN(3) == 0 {
			q = q.Order([]string{"A", "-A", "B"}[r.IntN(3)])
		}
		if r.IntN(3) == 0 {
			q = q.Ancestor(parents[r.IntN(len(parents))])
		}
		distinctBase = q
		q = q.Limit(r.IntN(12))
		if r.IntN(4) == 0 {
			q = q.Offset(r.IntN(4))
		}
		return q
	}

	randomQuery := func(start *datastore.Cursor) *datastore.Query {
		distinctBase = nil
		q := datastore.NewQuery("R")
		switch r.IntN(10) {
		case 0:
			return kindlessQuery()
		case 1:
			return distinctQuery()
		case 2:
			// Key order first: the kind index, each entity's entries
			// sorted after it.
			q = q.Project([][]string{{"A"}, {"A", "B"}}[r.IntN(2)]...).Order([]string{"__key__", "-__key__"}[r.IntN(2)])
			return q.Limit(r.IntN(40))
		}
		if r.IntN(6) == 0 {
			// A projection on one property, which reads its index, or
			// on two, whose results tie on the first and sort by the
			// second.
			q = q.Project([][]string{{"A"}, {"A"}, {"A", "T"}, {"A", "B"}}[r.IntN(4)]...)
			if r.IntN(2) == 0 {
				q = q.Filter("B =", []string{"x", "y", "z"}[r.IntN(3)])
			}
			if r.IntN(2) == 0 {
				q = q.Filter([]string{"A <", "A >="}[r.IntN(2)], int64(r.IntN(6)))
			}
			if r.IntN(2) == 0 {
				q = q.Order([]string{"A", "-A"}[r.IntN(2)])
				if r.IntN(2) == 0 {
					q = q.Order([]string{"T", "-T", "-__key__"}[r.IntN(3)])
				}
			}
			if r.IntN(2) == 0 {
				q = q.Limit(r.IntN(30))
			}
			if start != nil {
				q = q.Start(*start)
			}
			return q
		}
		if r.IntN(5) == 0 {
			q = q.Ancestor(parents[r.IntN(len(parents))])
		}
		if r.IntN(3) == 0 {
			q = q.Filter("A =", int64(r.IntN(6)))
		}
		if r.IntN(4) == 0 {
			q = q.Filter("B =", []string{"x", "y", "z"}[r.IntN(3)])
		}
		if r.IntN(5) == 0 {
			q = q.Filter("A =", int64(r.IntN(6))) // a second value of A, or the first
		}
		if r.IntN(10) == 0 {
			q = q.Filter("__key__ =", randomKey())
		}
		ops := []string{" <", " <=", " >", " >="}
		ineq := ""
		switch r.IntN(5) {
		case 0:
			ineq = "A"
			q = q.Filter("A"+ops[r.IntN(4)], int64(r.IntN(6)))
			if r.IntN(2) == 0 {
				q = q.Filter("A"+ops[r.IntN(4)], int64(r.IntN(6)))
			}
		case 1:
			ineq = "F"
			q = q.Filter("F"+ops[r.IntN(4)], []any{int64(1), "a", 0.5}[r.IntN(3)])
		case 2:
			ineq = "T"
			q = q.Filter("T"+ops[r.IntN(4)], base.Add(time.Duration(r.IntN(20))*time.Hour))
		case 3:
			ineq = "__key__"
			q = q.Filter("__key__"+ops[r.IntN(4)], randomKey())
		}
		dir := []string{"", "-"}[r.IntN(2)]
		props := []string{"A", "B", "T", "F", "__key__"}
		switch {
		case ineq != "" && r.IntN(2) == 0:
			q = q.Order(dir + ineq)
		case ineq == "" && r.IntN(4) > 0:
			q = q.Order(dir + props[r.IntN(len(props))])
		}
		// Further sort orders: ties of the first sort by them.
		for r.IntN(3) == 0 {
			q = q.Order([]string{"__key__", "-__key__", "B", "-B", "A", "-A", "T", "-T", "F"}[r.IntN(9)])
		}
		if r.IntN(3) == 0 {
			q = q.KeysOnly()
		}
		if r.IntN(2) == 0 {
			q = q.Limit(r.IntN(40))
		}
		if r.IntN(4) == 0 {
			q = q.Offset(r.IntN(15))
		}
		if start != nil {
			q = q.Start(*start)
		}
		return q
	}

	// run returns what the query answers: each key with the cursor after
	// it, then the error, and one of its cursors to start a later query.
	run := func(ctx context.Context, q *datastore.Query, plan bool) (string, *datastore.Cursor) {
		d.mu.Lock()
		d.noPlan = !plan
		d.mu.Unlock()
		var b bytes.Buffer
		var mid *datastore.Cursor
		it := q.Run(ctx)
		for i := 0; ; i++ {
			k, err := it.Next(nil)
			if err == datastore.Done {
				break
			}
			if err != nil {
				fmt.Fprintf(&b, "error %v", err)
				break
			}
			c, err := it.Cursor()
			if err != nil {
				fmt.Fprintf(&b, "cursor error %v", err)
				break
			}
			if i == 0 || r.IntN(8) == 0 {
				mid = &c
			}
			fmt.Fprintf(&b, "%v %v\n", k, c)
		}
		return b.String(), mid
	}

	// pages runs q in pages of size results, each from the cursor the
	// last one ended at, and returns each page's keys and end cursor.
	pages := func(q *datastore.Query, size int, plan bool) string {
		d.mu.Lock()
		d.noPlan = !plan
		d.mu.Unlock()
		var b bytes.Buffer
		var start *datastore.Cursor
		for range 200 {
			pq := q.Limit(size)
			if start != nil {
				pq = pq.Start(*start)
			}
			it := pq.Run(ctx)
			n := 0
			for ; ; n++ {
				k, err := it.Next(nil)
				if err == datastore.Done {
					break
				}
				if err != nil {
					fmt.Fprintf(&b, "error %v", err)
					return b.String()
				}
				fmt.Fprintf(&b, "%v ", k)
			}
			c, err := it.Cursor()
			if err != nil {
				fmt.Fprintf(&b, "cursor error %v", err)
				return b.String()
			}
			fmt.Fprintf(&b, "| %v\n", c)
			if n < size {
				return b.String()
			}
			start = &c
		}
		t.Fatalf("%v: more than 200 pages", q)
		return ""
	}

	var starts []*datastore.Cursor
	planned, nonEmpty, ties, comp, txNonEmpty, distinctPaged := 0, 0, 0, 0, 0, 0
	for round := range 4 {
		write(250)
		if round == 2 {
			var saved bytes.Buffer
			if err := s.SaveDatastore(&saved); err != nil {
				t.Fatal(err)
			}
			if err := s.LoadDatastore(&saved); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 {
			var start *datastore.Cursor
			if len(starts) > 0 && r.IntN(3) == 0 {
				start = starts[r.IntN(len(starts))]
			}
			q := randomQuery(start)
			d.mu.Lock()
			before, tiesBefore, compBefore := d.planned, d.tiesRead, d.stats.comp
			d.mu.Unlock()
			// The random draws of run must not differ between the two
			// runs, so the second run's cursor choice is discarded.
			state := *r
			d.mu.Lock()
			evaluated := d.evaluated
			d.mu.Unlock()
			got, mid := run(ctx, q, true)
			*r = state
			d.mu.Lock()
			if distinctBase != nil && d.evaluated != evaluated && !strings.Contains(got, "error") {
				t.Errorf("round %d: distinct query %v took the full evaluation", round, q)
			}
			d.mu.Unlock()
			want, _ := run(ctx, q, false)
			if got != want {
				t.Fatalf("round %d: query %v\nplanned:\n%s\nfull evaluation:\n%s", round, q, got, want)
			}
			if distinctBase != nil {
				// Page by page from cursors, as an app resumes: each
				// page starts after the last page's last combination.
				size := 1 + r.IntN(4)
				got, want := pages(distinctBase, size, true), pages(distinctBase, size, false)
				if got != want {
					t.Fatalf("round %d: distinct query %v in pages of %d\nplanned:\n%s\nfull evaluation:\n%s", round, distinctBase, size, got, want)
				}
				if !strings.Contains(got, "error") {
					distinctPaged++
				}
			}
			if r.IntN(4) == 0 {
				// Count: keys-only batches that skip up to 1,000 each.
				counts := [2]string{}
				for i, plan := range []bool{true, false} {
					d.mu.Lock()
					d.noPlan = !plan
					d.mu.Unlock()
					n, err := q.Count(ctx)
					counts[i] = fmt.Sprint(n, err)
				}
				if counts[0] != counts[1] {
					t.Fatalf("round %d: Count of %v: planned %s, full evaluation %s", round, q, counts[0], counts[1])
				}
			}
			d.mu.Lock()
			if d.planned > before {
				planned++
			}
			if d.tiesRead > tiesBefore {
				ties++
			}
			if d.stats.comp > compBefore {
				comp++
			}
			d.mu.Unlock()
			if got != "" {
				nonEmpty++
			}
			if mid != nil && !slices.Contains(starts, mid) {
				starts = append(starts, mid)
			}
		}
		// Ancestor queries in transactions, while other clients write:
		// they read the transaction's snapshot from the ancestor's range
		// of the kind index, or (noPlan) from every entity of the kind.
		for range 25 {
			q := randomQuery(nil)
			if r.IntN(4) == 0 {
				q = datastore.NewQuery("")
				if r.IntN(2) == 0 {
					q = q.KeysOnly()
				}
			}
			q = q.Ancestor(parents[r.IntN(len(parents))])
			err := datastore.RunInTransaction(ctx, func(tc context.Context) error {
				write(20) // after the snapshot, taken at BeginTransaction
				state := *r
				got, _ := run(tc, q, true)
				*r = state
				want, _ := run(tc, q, false)
				if got != want {
					t.Fatalf("round %d: query %v in a transaction\nancestor range:\n%s\nfull evaluation:\n%s", round, q, got, want)
				}
				if got != "" {
					txNonEmpty++
				}
				return errRollback
			}, nil)
			if err != errRollback {
				t.Fatal(err)
			}
		}
	}
	if txNonEmpty < 20 {
		t.Errorf("%d of 100 transactional queries returned results; want at least 20", txNonEmpty)
	}
	// Most random shapes are planned; the test fails if the planner stops
	// answering them, which would make the comparison empty.
	t.Logf("planned %d (%d sorting ties, %d from composite indexes), non-empty %d of 400 queries; %d distinct ones paged", planned, ties, comp, nonEmpty, distinctPaged)
	if distinctPaged < 15 {
		t.Errorf("%d distinct queries paged from cursors; want 15", distinctPaged)
	}
	if planned < 200 || nonEmpty < 200 || ties+comp < 30 || comp < 30 {
		t.Errorf("planned %d (%d sorting ties, %d from composite indexes) and non-empty %d of 400 queries; want most, and 30 from composite indexes", planned, ties, comp, nonEmpty)
	}
}

// errRollback makes RunInTransaction roll back.
var errRollback = errors.New("roll back")

// TestPlannedQueryLetsWritesThrough checks that a planned query reads its
// index without the datastore's lock: a Put made while the read runs goes
// through, and the read answers from the index as it was when it began.
func TestPlannedQueryLetsWritesThrough(t *testing.T) {
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
	d.mu.Lock()
	d.planReadHook = func() {
		reads++
		if !d.mu.TryLock() {
			t.Error("a planned read runs with the datastore's lock held")
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
	got, err := datastore.NewQuery("W").KeysOnly().Limit(20).GetAll(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if reads != 1 || puts != 1 {
		t.Fatalf("%d planned reads and %d puts during them; want 1 and 1", reads, puts)
	}
	// The Put's key sorts first, but the query's read began before it.
	if len(got) != 20 || got[0].IntID() != 100 {
		t.Errorf("got %d keys from %v; want 20 from /W,100", len(got), got[0])
	}
	n, err := datastore.NewQuery("W").KeysOnly().Count(ctx)
	if err != nil || n != 51 {
		t.Errorf("Count = %d, %v; want 51", n, err)
	}
}

// TestNextRefusedWhileCursorBusy checks that a Next on a cursor whose
// batch is being read (without the lock) is refused, not run at once on
// the same cursor.
func TestNextRefusedWhileCursorBusy(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	d := s.datastore
	type W struct{ N int64 }
	keys := make([]*datastore.Key, 30)
	for i := range keys {
		keys[i] = datastore.NewKey(ctx, "W", "", int64(1+i), nil)
	}
	if _, err := datastore.PutMulti(ctx, keys, make([]W, 30)); err != nil {
		t.Fatal(err)
	}
	var refused error
	d.mu.Lock()
	d.planReadHook = func() {
		d.mu.Lock()
		var busy uint64
		for h, c := range d.cursors {
			if c.busy {
				busy = h
			}
		}
		d.mu.Unlock()
		if busy == 0 || refused != nil {
			return // the first batch: no cursor is registered yet
		}
		in, _ := newMsg("appengine.v2.NextRequest")
		out, _ := newMsg("appengine.v2.QueryResult")
		in.Mutable("cursor").Set("cursor", busy)
		refused = dsNext(s, in, out)
	}
	d.mu.Unlock()
	// Batches of 20 (the default): the second is a Next.
	n := 0
	for it := datastore.NewQuery("W").KeysOnly().Run(ctx); ; n++ {
		if _, err := it.Next(nil); err == datastore.Done {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if n != 30 {
		t.Errorf("the query returned %d keys; want 30", n)
	}
	if refused == nil || !strings.Contains(refused.Error(), "busy") {
		t.Errorf("a concurrent Next on the busy cursor returned %v; want it refused as busy", refused)
	}
}

// TestCountAndLongIterationsArePlanned checks that Count (the client's
// keys-only query of limit 0 and offset MaxInt32, which skips at most
// 1,000 results per batch) and an iteration past many batches are
// answered by the planner batch after batch: no full evaluation, no
// result cache, whatever how many results they pass.
func TestCountAndLongIterationsArePlanned(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	d := s.datastore
	type C struct {
		G int64
		T int64
		B string
	}
	const n = 2500
	for lo := 0; lo < n; lo += 500 {
		keys := make([]*datastore.Key, 500)
		vals := make([]C, 500)
		for i := range keys {
			id := lo + i
			keys[i] = datastore.NewKey(ctx, "C", "", int64(1+id), nil)
			vals[i] = C{G: int64(id % 10), T: int64(id * 7919 % n), B: []string{"x", "y"}[id%2]}
		}
		if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
			t.Fatal(err)
		}
	}
	counts := []struct {
		q    *datastore.Query
		want int
	}{
		{datastore.NewQuery("C"), n},
		{datastore.NewQuery("C").Filter("G =", int64(3)), n / 10},
		{datastore.NewQuery("C").Order("-T"), n},
		{datastore.NewQuery("C").Filter("T >=", int64(100)).Order("T"), n - 100},
		{datastore.NewQuery("C").Order("B").Order("-T"), n},
	}
	for _, c := range counts {
		d.mu.Lock()
		planned, evaluated := d.planned, d.evaluated
		d.mu.Unlock()
		got, err := c.q.Count(ctx)
		if err != nil || got != c.want {
			t.Errorf("%v: Count = %d, %v; want %d", c.q, got, err, c.want)
		}
		d.mu.Lock()
		// A batch per 1,000 skipped, and one for the rest.
		if batches := d.planned - planned; batches != (c.want+999)/1000 || d.evaluated != evaluated {
			t.Errorf("%v: Count took %d planned batches, %d full evaluations; want %d, 0",
				c.q, batches, d.evaluated-evaluated, (c.want+999)/1000)
		}
		d.mu.Unlock()
	}
	// A long iteration in batches of 20, in an order with ties.
	d.mu.Lock()
	planned, evaluated := d.planned, d.evaluated
	d.mu.Unlock()
	seen := 0
	var last C
	for it := datastore.NewQuery("C").Order("B").Order("-T").Run(ctx); ; seen++ {
		var x C
		_, err := it.Next(&x)
		if err == datastore.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if seen > 0 && (x.B < last.B || x.B == last.B && x.T > last.T) {
			t.Fatalf("result %d %+v after %+v: out of order", seen, x, last)
		}
		last = x
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if seen != n || d.planned-planned < n/20 || d.evaluated != evaluated {
		t.Errorf("iteration: %d results in %d planned batches, %d full evaluations; want %d results, at least %d batches, 0, 0",
			seen, d.planned-planned, d.evaluated-evaluated, n, n/20)
	}
}

// randomKeys returns nParents parent keys and a generator of random keys
// of kind "R" for the planner's oracle tests: IDs and names from small
// ranges (so that writes overwrite), a quarter of them under a parent.
func randomKeys(ctx context.Context, r *rand.Rand, nParents int) ([]*datastore.Key, func() *datastore.Key) {
	var parents []*datastore.Key
	for i := range nParents {
		parents = append(parents, datastore.NewKey(ctx, "R", "", int64(1000+i), nil))
	}
	return parents, func() *datastore.Key {
		var parent *datastore.Key
		if r.IntN(4) == 0 {
			parent = parents[r.IntN(len(parents))]
		}
		if r.IntN(3) == 0 {
			return datastore.NewKey(ctx, "R", fmt.Sprintf("n%d", r.IntN(40)), 0, parent)
		}
		return datastore.NewKey(ctx, "R", "", int64(1+r.IntN(200)), parent)
	}
}
