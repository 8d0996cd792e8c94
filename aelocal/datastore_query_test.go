package aelocal

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// putQItems stores n entities of kind Q with names q000.., N = i, S by
// parity, Tags and Exp = base + i minutes.
func putQItems(t *testing.T, ctx context.Context, kind string, n int, base time.Time, parent *datastore.Key) {
	t.Helper()
	var keys []*datastore.Key
	var items []qItem
	for i := 0; i < n; i++ {
		keys = append(keys, datastore.NewKey(ctx, kind, fmt.Sprintf("q%03d", i), 0, parent))
		s := "even"
		if i%2 == 1 {
			s = "odd"
		}
		items = append(items, qItem{N: i, S: s, Tags: []string{fmt.Sprintf("t%d", i%3), "all"}, Exp: base.Add(time.Duration(i) * time.Minute)})
	}
	for len(keys) > 0 {
		m := min(len(keys), 500)
		if _, err := datastore.PutMulti(ctx, keys[:m], items[:m]); err != nil {
			t.Fatal(err)
		}
		keys, items = keys[m:], items[m:]
	}
}

func ns(items []qItem) []int {
	out := make([]int, len(items))
	for i, it := range items {
		out[i] = it.N
	}
	return out
}

func keyNs(t *testing.T, ctx context.Context, keys []*datastore.Key) []int {
	t.Helper()
	out := make([]int, len(keys))
	for i, k := range keys {
		if _, err := fmt.Sscanf(k.StringID(), "q%03d", &out[i]); err != nil {
			t.Fatalf("key %v: %v", k, err)
		}
	}
	return out
}

func seq(from, to, step int) []int {
	var out []int
	if step > 0 {
		for i := from; i < to; i += step {
			out = append(out, i)
		}
	} else {
		for i := from; i > to; i += step {
			out = append(out, i)
		}
	}
	return out
}

func TestDatastoreQueries(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		putQItems(t, ctx, "Q", 50, base, nil)
		parent := datastore.NewKey(ctx, "Owner", "o", 0, nil)
		putQItems(t, ctx, "Q", 5, base, parent) // q000..q004 under the parent: N 0..4 again
		putQItems(t, ctx, "Other", 3, base, nil)

		getAll := func(q *datastore.Query) []int {
			t.Helper()
			var items []qItem
			if _, err := q.GetAll(ctx, &items); err != nil {
				t.Fatalf("GetAll: %v", err)
			}
			return ns(items)
		}
		check := func(name string, got, want []int) {
			t.Helper()
			if !slices.Equal(got, want) {
				t.Fatalf("%s: got %v, want %v", name, got, want)
			}
		}

		// Kind, key order: q000 (root) < q000 under Owner? No: Owner < Q
		// by kind of the first path element, so parented ones come first.
		all := getAll(datastore.NewQuery("Q"))
		check("kind", all, append(seq(0, 5, 1), seq(0, 50, 1)...))
		check("ancestor", getAll(datastore.NewQuery("Q").Ancestor(parent)), seq(0, 5, 1))
		check("eq", getAll(datastore.NewQuery("Q").Filter("N =", 7)), []int{7})
		check("eq string", getAll(datastore.NewQuery("Q").Ancestor(parent).Filter("S =", "odd")), []int{1, 3})
		check("lt", getAll(datastore.NewQuery("Q").Filter("N <", 3)), []int{0, 0, 1, 1, 2, 2})
		check("range desc", getAll(datastore.NewQuery("Q").Filter("N >=", 45).Filter("N <", 48).Order("-N")), []int{47, 46, 45})
		check("gt", getAll(datastore.NewQuery("Q").Filter("N >", 47)), []int{48, 49})
		check("order asc", getAll(datastore.NewQuery("Q").Filter("S =", "odd").Order("N").Limit(3)), []int{1, 1, 3})
		check("order desc", getAll(datastore.NewQuery("Q").Order("-N").Limit(3)), []int{49, 48, 47})
		check("limit offset", getAll(datastore.NewQuery("Q").Order("-N").Offset(2).Limit(3)), []int{47, 46, 45})
		check("multi-valued", getAll(datastore.NewQuery("Q").Filter("Tags =", "t2").Filter("N <", 12)), []int{2, 2, 5, 8, 11})
		check("multi-valued and", getAll(datastore.NewQuery("Q").Filter("Tags =", "t1").Filter("Tags =", "all").Filter("N >", 40)), []int{43, 46, 49})
		check("time", getAll(datastore.NewQuery("Q").Filter("Exp <", base.Add(2*time.Minute))), []int{0, 0, 1, 1})
		check("time order", getAll(datastore.NewQuery("Q").Filter("Exp >", base.Add(47*time.Minute)).Order("-Exp")), []int{49, 48})
		check("key filter", keyNs(t, ctx, must(datastore.NewQuery("Q").Filter("__key__ >", datastore.NewKey(ctx, "Q", "q045", 0, nil)).KeysOnly().GetAll(ctx, nil))), seq(46, 50, 1))
		check("key order desc", keyNs(t, ctx, must(datastore.NewQuery("Q").Order("-__key__").KeysOnly().Limit(3).GetAll(ctx, nil))), []int{49, 48, 47})

		// Multi-valued sort: an entity sorts by its smallest value
		// ascending and its largest descending.
		mk := func(name string, tags ...string) {
			if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "MV", name, 0, nil), &qItem{Tags: tags}); err != nil {
				t.Fatal(err)
			}
		}
		mk("a", "m", "z")
		mk("b", "n")
		mk("c", "a", "o")
		var mv []qItem
		keys, err := datastore.NewQuery("MV").Order("Tags").GetAll(ctx, &mv)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(keys); got != "c,a,b" {
			t.Fatalf("multi-valued asc: %s", got)
		}
		keys, _ = datastore.NewQuery("MV").Order("-Tags").KeysOnly().GetAll(ctx, nil)
		if got := names(keys); got != "a,c,b" {
			t.Fatalf("multi-valued desc: %s", got)
		}
		// Inequality on a multi-valued property: one value must satisfy
		// every inequality.
		keys, _ = datastore.NewQuery("MV").Filter("Tags >", "b").Filter("Tags <", "n").KeysOnly().GetAll(ctx, nil)
		if got := names(keys); got != "a" {
			t.Fatalf("multi-valued range: %s", got)
		}

		// Keys only, Count.
		keys, err = datastore.NewQuery("Q").Filter("S =", "even").KeysOnly().GetAll(ctx, nil)
		if err != nil || len(keys) != 28 {
			t.Fatalf("keys only: %d keys, %v", len(keys), err)
		}
		for _, q := range []struct {
			q    *datastore.Query
			want int
		}{
			{datastore.NewQuery("Q"), 55},
			{datastore.NewQuery("Q").Filter("N <", 10), 15},
			{datastore.NewQuery("Q").Offset(50), 5},
			{datastore.NewQuery("Q").Offset(10).Limit(20), 20},
			{datastore.NewQuery("Other"), 3},
			{datastore.NewQuery("None"), 0},
		} {
			n, err := q.q.Count(ctx)
			if err != nil || n != q.want {
				t.Fatalf("Count = %d, %v; want %d", n, err, q.want)
			}
		}

		// Kindless ancestor query: the ancestor itself is not stored, its
		// children are.
		keys, err = datastore.NewQuery("").Ancestor(parent).KeysOnly().GetAll(ctx, nil)
		if err != nil || len(keys) != 5 {
			t.Fatalf("kindless: %v, %v", keys, err)
		}

		// Unindexed properties are neither filtered nor sorted on.
		type withNote struct {
			Note string `datastore:",noindex"`
			N    int
		}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "MV", "noted", 0, nil), &withNote{Note: "x", N: 1}); err != nil {
			t.Fatal(err)
		}
		if keys, err := datastore.NewQuery("MV").Filter("Note =", "x").KeysOnly().GetAll(ctx, nil); err != nil || len(keys) != 0 {
			t.Fatalf("filter on an unindexed property: %v, %v", keys, err)
		}
		if keys, err := datastore.NewQuery("MV").Order("Note").KeysOnly().GetAll(ctx, nil); err != nil || len(keys) != 0 {
			t.Fatalf("order on an unindexed property: %v, %v", keys, err)
		}
		if keys, err := datastore.NewQuery("MV").Filter("N =", 1).KeysOnly().GetAll(ctx, nil); err != nil || names(keys) != "noted" {
			t.Fatalf("filter on an indexed property: %v, %v", keys, err)
		}

		// Metadata.
		kinds, err := datastore.Kinds(ctx)
		if err != nil || strings.Join(kinds, ",") != "MV,Other,Q" {
			t.Fatalf("Kinds = %v, %v", kinds, err)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func names(keys []*datastore.Key) string {
	var s []string
	for _, k := range keys {
		s = append(s, k.StringID())
	}
	return strings.Join(s, ",")
}

func TestDatastoreIterationAcrossBatches(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putQItems(t, ctx, "Big", 1234, time.Now(), nil)
		s.ResetStats()
		it := datastore.NewQuery("Big").Order("N").Run(ctx)
		n := 0
		for {
			var x qItem
			_, err := it.Next(&x)
			if err == datastore.Done {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if x.N != n {
				t.Fatalf("result %d has N=%d", n, x.N)
			}
			n++
		}
		if n != 1234 {
			t.Fatalf("iterated %d results", n)
		}
		st := s.Stats()
		if st["datastore_v3.RunQuery"] != 1 || st["datastore_v3.Next"] < 10 {
			t.Fatalf("stats %v: want 1 RunQuery and many Next batches", st)
		}

		// Batch size, limit and offset across batches.
		var items []qItem
		if _, err := datastore.NewQuery("Big").Order("-N").Offset(1100).Limit(100).BatchSize(7).GetAll(ctx, &items); err != nil {
			t.Fatal(err)
		}
		if len(items) != 100 || items[0].N != 133 || items[99].N != 34 {
			t.Fatalf("got %d items, first %v", len(items), ns(items[:min(3, len(items))]))
		}
		// Count beyond the 1000 results a batch skips.
		if n, err := datastore.NewQuery("Big").Count(ctx); err != nil || n != 1234 {
			t.Fatalf("Count = %d, %v", n, err)
		}
		// The purge query of gaesession.
		keys, err := datastore.NewQuery("Big").Filter("Exp <", time.Now().Add(10000*time.Hour)).KeysOnly().Limit(500).GetAll(ctx, nil)
		if err != nil || len(keys) != 500 {
			t.Fatalf("purge query: %d keys, %v", len(keys), err)
		}
		if err := datastore.DeleteMulti(ctx, keys); err != nil {
			t.Fatal(err)
		}
		if n, err := datastore.NewQuery("Big").Count(ctx); err != nil || n != 734 {
			t.Fatalf("Count after purge = %d, %v", n, err)
		}
	})
}

func TestDatastoreCursors(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putQItems(t, ctx, "C", 30, time.Now(), nil)
		q := datastore.NewQuery("C").Filter("N >=", 2).Order("N")

		read := func(it *datastore.Iterator, n int) []int {
			t.Helper()
			var out []int
			for i := 0; i < n; i++ {
				var x qItem
				if _, err := it.Next(&x); err == datastore.Done {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				out = append(out, x.N)
			}
			return out
		}

		// Cursor in the middle of a batch, then resume.
		it := q.Run(ctx)
		if got := read(it, 5); !slices.Equal(got, seq(2, 7, 1)) {
			t.Fatalf("first page %v", got)
		}
		cur, err := it.Cursor()
		if err != nil {
			t.Fatal(err)
		}
		// Through its string form, as an app would.
		cur, err = datastore.DecodeCursor(cur.String())
		if err != nil {
			t.Fatal(err)
		}
		if got := read(q.Start(cur).Run(ctx), 5); !slices.Equal(got, seq(7, 12, 1)) {
			t.Fatalf("resumed page %v", got)
		}

		// Cursor at the end of a limited page.
		it = q.Limit(4).Run(ctx)
		read(it, 10)
		cur4, err := it.Cursor()
		if err != nil {
			t.Fatal(err)
		}
		if got := read(q.Start(cur4).Limit(3).Run(ctx), 10); !slices.Equal(got, []int{6, 7, 8}) {
			t.Fatalf("after limit page %v", got)
		}
		// End cursor.
		if got := read(q.End(cur4).Run(ctx), 100); !slices.Equal(got, []int{2, 3, 4, 5}) {
			t.Fatalf("end cursor %v", got)
		}
		if got := read(q.Start(cur).End(cur4).Run(ctx), 100); got != nil {
			t.Fatalf("start after end: %v", got)
		}
		// The start cursor of a fresh iterator is the beginning.
		start, err := q.Run(ctx).Cursor()
		if err != nil {
			t.Fatal(err)
		}
		if got := read(q.Start(start).Run(ctx), 3); !slices.Equal(got, []int{2, 3, 4}) {
			t.Fatalf("from start cursor %v", got)
		}
		if got := read(q.End(start).Run(ctx), 3); got != nil {
			t.Fatalf("to start cursor %v", got)
		}

		// Deleting entities already seen, and adding one before the
		// cursor, does not move it; one after it is found.
		var del []*datastore.Key
		for i := 2; i < 7; i++ {
			del = append(del, datastore.NewKey(ctx, "C", fmt.Sprintf("q%03d", i), 0, nil))
		}
		if err := datastore.DeleteMulti(ctx, del); err != nil {
			t.Fatal(err)
		}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "C", "early", 0, nil), &qItem{N: 3}); err != nil {
			t.Fatal(err)
		}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "C", "late", 0, nil), &qItem{N: 8}); err != nil {
			t.Fatal(err)
		}
		if got := read(q.Start(cur).Run(ctx), 4); !slices.Equal(got, []int{7, 8, 8, 9}) {
			t.Fatalf("after deletes %v", got)
		}

		// A cursor of a query with other sort properties is refused.
		_, err = datastore.NewQuery("C").Order("S").Start(cur).GetAll(ctx, &[]qItem{})
		wantAPIError(t, err, "BAD_REQUEST", "Cursor does not match query: extra value N")

		// Writes between batches of one iterator are seen, in order.
		it = datastore.NewQuery("C").Filter("N >=", 20).Order("N").BatchSize(2).Run(ctx)
		first := read(it, 2)
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "C", "new", 0, nil), &qItem{N: 25}); err != nil {
			t.Fatal(err)
		}
		if err := datastore.Delete(ctx, datastore.NewKey(ctx, "C", "q023", 0, nil)); err != nil {
			t.Fatal(err)
		}
		rest := read(it, 100)
		if got := append(first, rest...); !slices.Equal(got, []int{20, 21, 22, 24, 25, 25, 26, 27, 28, 29}) {
			t.Fatalf("live iteration %v", got)
		}
	})
}

func TestDatastoreRefusedQueries(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putQItems(t, ctx, "U", 3, time.Now(), nil)
		var dst []qItem
		_, err := datastore.NewQuery("U").Filter("N >", 1).Filter("S >", "a").GetAll(ctx, &dst)
		wantAPIError(t, err, "BAD_REQUEST", "only one inequality filter")
		_, err = datastore.NewQuery("U").Filter("N >", 1).Order("S").GetAll(ctx, &dst)
		wantAPIError(t, err, "BAD_REQUEST", "first sort order")
		_, err = datastore.NewQuery("").Filter("N =", 1).KeysOnly().GetAll(ctx, nil)
		wantAPIError(t, err, "BAD_REQUEST", "kindless")
	})
}

func TestDatastoreMixedTypeOrder(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		// Values in App Engine's order: null < integers and times <
		// booleans < strings < doubles (NaN last) < points < keys.
		values := []any{
			nil,
			int64(-5), time.Unix(0, 1000), int64(7),
			false, true,
			"abc", datastore.ByteString("abd"),
			-1.5, 2.5, math.NaN(),
			appengine.GeoPoint{Lat: 1, Lng: 2}, appengine.GeoPoint{Lat: 1, Lng: 3},
			datastore.NewKey(ctx, "A", "", 1, nil), datastore.NewKey(ctx, "A", "x", 0, nil), datastore.NewKey(ctx, "B", "", 1, nil),
		}
		// Store them in scrambled key order.
		var want []string
		for i, v := range values {
			name := fmt.Sprintf("m%02d", (i*7)%len(values))
			want = append(want, name)
			pl := datastore.PropertyList{{Name: "V", Value: v}}
			if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Mixed", name, 0, nil), &pl); err != nil {
				t.Fatal(err)
			}
		}
		keys, err := datastore.NewQuery("Mixed").Order("V").KeysOnly().GetAll(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(keys); got != strings.Join(want, ",") {
			t.Fatalf("ascending:\n got %s\nwant %s", got, strings.Join(want, ","))
		}
		keys, _ = datastore.NewQuery("Mixed").Order("-V").KeysOnly().GetAll(ctx, nil)
		slices.Reverse(want)
		if got := names(keys); got != strings.Join(want, ",") {
			t.Fatalf("descending:\n got %s\nwant %s", got, strings.Join(want, ","))
		}
		slices.Reverse(want)

		// A cursor after each value resumes at the next one.
		q := datastore.NewQuery("Mixed").Order("V").KeysOnly()
		it := q.BatchSize(1).Run(ctx)
		for i := range want {
			k, err := it.Next(nil)
			if err != nil || k.StringID() != want[i] {
				t.Fatalf("result %d: %v, %v", i, k, err)
			}
			cur, err := it.Cursor()
			if err != nil {
				t.Fatal(err)
			}
			cur, _ = datastore.DecodeCursor(cur.String())
			next, err := q.Start(cur).Limit(1).GetAll(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if i+1 < len(want) && (len(next) != 1 || next[0].StringID() != want[i+1]) {
				t.Fatalf("after %s: %v, want %s", want[i], next, want[i+1])
			}
			if i+1 == len(want) && len(next) != 0 {
				t.Fatalf("after the last: %v", next)
			}
		}
		// Equality on each type finds exactly its entity, NaN too.
		for i, v := range values {
			if b, ok := v.(datastore.ByteString); ok {
				v = string(b) // not a filter value type of the client; strings equal it
			}
			keys, err := datastore.NewQuery("Mixed").Filter("V =", v).KeysOnly().GetAll(ctx, nil)
			if err != nil || names(keys) != want[i] {
				t.Fatalf("V = %v: %v, %v; want %s", v, keys, err, want[i])
			}
		}
	})
}

func TestDatastoreDeleteCursor(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putQItems(t, ctx, "D", 10, time.Now(), nil)
		res, err := rawCall(ctx, "RunQuery", "appengine.v2.Query", "appengine.v2.QueryResult", func(q pmsg) {
			q.Set("app", datastore.NewKey(ctx, "K", "k", 0, nil).AppID())
			q.Set("kind", "D")
			q.Set("count", 3)
		})
		if err != nil || !res.Bool("more_results") || res.Len("result") != 3 {
			t.Fatalf("RunQuery: %v %v", err, res.m)
		}
		cur := res.Msg("cursor")
		if _, err := rawCall(ctx, "DeleteCursor", "appengine.v2.Cursor", "appengine.base.v2.VoidProto", func(c pmsg) { c.CopyFrom(cur) }); err != nil {
			t.Fatal(err)
		}
		_, err = rawCall(ctx, "Next", "appengine.v2.NextRequest", "appengine.v2.QueryResult", func(r pmsg) { r.Mutable("cursor").CopyFrom(cur) })
		wantAPIError(t, err, "BAD_REQUEST", "unknown")
	})
}

func TestDatastoreCursorsAreBounded(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	putQItems(t, ctx, "B", 30, time.Now(), nil)
	d := s.datastore
	var mu sync.Mutex
	now := time.Now()
	d.mu.Lock()
	d.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	d.mu.Unlock()
	advance := func(dt time.Duration) { mu.Lock(); now = now.Add(dt); mu.Unlock() }

	// Abandoned iterators leave open cursors behind, up to the cap.
	for i := 0; i < maxOpenCursors+50; i++ {
		it := datastore.NewQuery("B").BatchSize(5).Run(ctx)
		if _, err := it.Next(nil); err != nil {
			t.Fatal(err)
		}
		advance(time.Millisecond)
	}
	d.mu.Lock()
	n := len(d.cursors)
	d.mu.Unlock()
	if n > maxOpenCursors {
		t.Fatalf("%d open cursors (cap %d)", n, maxOpenCursors)
	}
	// They expire when idle.
	advance(cursorIdle + time.Minute)
	datastore.NewQuery("B").BatchSize(5).Run(ctx).Next(nil)
	d.mu.Lock()
	n = len(d.cursors)
	d.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d open cursors after expiry, want 1", n)
	}
	// A finished query keeps nothing.
	if _, err := datastore.NewQuery("B").GetAll(ctx, &[]qItem{}); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	n = len(d.cursors)
	d.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d open cursors after a finished query, want 1", n)
	}

	// An expired iterator fails clearly on its next batch.
	it := datastore.NewQuery("B").BatchSize(5).Run(ctx)
	for i := 0; i < 5; i++ {
		it.Next(nil)
	}
	advance(cursorIdle + time.Minute)
	datastore.NewQuery("B").BatchSize(5).Run(ctx).Next(nil) // sweeps
	_, err := it.Next(nil)
	wantAPIError(t, err, "BAD_REQUEST", "expired")
}
