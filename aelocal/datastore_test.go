package aelocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

type dsItem struct {
	Name  string
	N     int
	Tags  []string
	When  time.Time
	Blob  []byte
	Notes string `datastore:",noindex"`
	F     float64
	B     bool
	Ref   *datastore.Key
	Geo   appengine.GeoPoint
}

func wantAPIError(t *testing.T, err error, code string, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s containing %q", code, substr)
	}
	if !strings.Contains(err.Error(), code) || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got %v, want %s containing %q", err, code, substr)
	}
}

func TestDatastorePutGetDelete(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		when := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
		parent := datastore.NewKey(ctx, "Parent", "p", 0, nil)
		k := datastore.NewKey(ctx, "Item", "a", 0, parent)
		in := dsItem{
			Name: "alpha", N: 7, Tags: []string{"x", "y"}, When: when,
			Blob: []byte{0, 1, 2, 255}, Notes: strings.Repeat("n", 5000), F: 2.5, B: true,
			Ref: parent, Geo: appengine.GeoPoint{Lat: 1.5, Lng: -2.25},
		}
		got, err := datastore.Put(ctx, k, &in)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(k) {
			t.Fatalf("Put returned key %v, want %v", got, k)
		}
		var out dsItem
		if err := datastore.Get(ctx, k, &out); err != nil {
			t.Fatal(err)
		}
		if !out.When.Equal(when) {
			t.Fatalf("When = %v, want %v", out.When, when)
		}
		out.When = when
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("got %+v\nwant %+v", out, in)
		}

		// Overwrite.
		in.N = 8
		if _, err := datastore.Put(ctx, k, &in); err != nil {
			t.Fatal(err)
		}
		out = dsItem{}
		if err := datastore.Get(ctx, k, &out); err != nil || out.N != 8 {
			t.Fatalf("after overwrite: N=%d err=%v", out.N, err)
		}

		if err := datastore.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := datastore.Get(ctx, k, &out); err != datastore.ErrNoSuchEntity {
			t.Fatalf("Get after Delete: %v, want ErrNoSuchEntity", err)
		}
		// Deleting what is not there is fine.
		if err := datastore.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDatastoreMulti(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		keys := []*datastore.Key{
			datastore.NewKey(ctx, "M", "", 1, nil),
			datastore.NewKey(ctx, "M", "", 2, nil),
			datastore.NewKey(ctx, "M", "three", 0, nil),
		}
		src := []dsItem{{N: 1}, {N: 2}, {N: 3}}
		if _, err := datastore.PutMulti(ctx, keys, src); err != nil {
			t.Fatal(err)
		}
		getKeys := []*datastore.Key{keys[2], datastore.NewKey(ctx, "M", "missing", 0, nil), keys[0]}
		dst := make([]dsItem, 3)
		err := datastore.GetMulti(ctx, getKeys, dst)
		var me appengine.MultiError
		if !errors.As(err, &me) || len(me) != 3 {
			t.Fatalf("GetMulti: %v, want a MultiError of 3", err)
		}
		if me[0] != nil || me[1] != datastore.ErrNoSuchEntity || me[2] != nil {
			t.Fatalf("MultiError = %v", me)
		}
		if dst[0].N != 3 || dst[2].N != 1 {
			t.Fatalf("dst = %+v", dst)
		}
		if err := datastore.DeleteMulti(ctx, keys[:2]); err != nil {
			t.Fatal(err)
		}
		dst = make([]dsItem, 3)
		err = datastore.GetMulti(ctx, keys, dst)
		if !errors.As(err, &me) || me[0] != datastore.ErrNoSuchEntity || me[1] != datastore.ErrNoSuchEntity || me[2] != nil {
			t.Fatalf("GetMulti after DeleteMulti: %v", err)
		}
	})
}

func TestDatastorePropertyList(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "PL", "x", 0, nil)
		in := datastore.PropertyList{
			{Name: "I", Value: int64(42)},
			{Name: "S", Value: "str"},
			{Name: "Multi", Value: "a", Multiple: true},
			{Name: "Multi", Value: "b", Multiple: true},
			{Name: "Raw", Value: []byte("raw"), NoIndex: true},
			{Name: "BS", Value: datastore.ByteString("bs")},
			{Name: "Nil", Value: nil},
			{Name: "F", Value: 1.25},
			{Name: "T", Value: time.Unix(1700000000, 5000).UTC()},
		}
		if _, err := datastore.Put(ctx, k, &in); err != nil {
			t.Fatal(err)
		}
		var out datastore.PropertyList
		if err := datastore.Get(ctx, k, &out); err != nil {
			t.Fatal(err)
		}
		if len(out) != len(in) {
			t.Fatalf("got %d properties, want %d: %+v", len(out), len(in), out)
		}
		byName := func(pl datastore.PropertyList) map[string][]any {
			m := map[string][]any{}
			for _, p := range pl {
				v := p.Value
				if tm, ok := v.(time.Time); ok {
					v = tm.UnixMicro()
				}
				m[p.Name] = append(m[p.Name], v)
			}
			return m
		}
		if a, b := byName(in), byName(out); !reflect.DeepEqual(a, b) {
			t.Fatalf("got %v, want %v", b, a)
		}
	})
}

func TestDatastoreIncompleteKeysAndAllocateIDs(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		parent := datastore.NewKey(ctx, "P", "root", 0, nil)
		keys := []*datastore.Key{
			datastore.NewIncompleteKey(ctx, "Inc", nil),
			datastore.NewIncompleteKey(ctx, "Inc", nil),
			datastore.NewIncompleteKey(ctx, "Inc", parent),
		}
		got, err := datastore.PutMulti(ctx, keys, []dsItem{{N: 1}, {N: 2}, {N: 3}})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int64]bool{}
		for i, k := range got {
			if k.Incomplete() || k.IntID() <= 0 || seen[k.IntID()] {
				t.Fatalf("key %d = %v: want a fresh ID", i, k)
			}
			seen[k.IntID()] = true
		}
		if !got[2].Parent().Equal(parent) {
			t.Fatalf("parent lost: %v", got[2])
		}
		var it dsItem
		if err := datastore.Get(ctx, got[2], &it); err != nil || it.N != 3 {
			t.Fatalf("Get %v: %+v %v", got[2], it, err)
		}

		low, high, err := datastore.AllocateIDs(ctx, "Inc", nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		if high-low != 10 || low <= 0 {
			t.Fatalf("AllocateIDs = [%d, %d)", low, high)
		}
		for id := range seen {
			if id >= low && id < high {
				t.Fatalf("allocated range [%d,%d) holds used ID %d", low, high, id)
			}
		}
		k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Inc", nil), &it)
		if err != nil {
			t.Fatal(err)
		}
		if k.IntID() >= low && k.IntID() < high {
			t.Fatalf("automatic ID %d is in the allocated range [%d,%d)", k.IntID(), low, high)
		}
		// A range above the counter is free; one below it is contended.
		if err := datastore.AllocateIDRange(ctx, "Inc", nil, high+100, high+200); err != nil {
			t.Fatalf("AllocateIDRange: %v", err)
		}
		k, err = datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Inc", nil), &it)
		if err != nil || k.IntID() <= high+200 {
			t.Fatalf("after AllocateIDRange: key %v, err %v", k, err)
		}
		if err := datastore.AllocateIDRange(ctx, "Inc", nil, 1, 2); err == nil {
			t.Fatal("AllocateIDRange over used IDs: no error")
		}
		// An explicit ID pushes automatic IDs past it.
		explicit := datastore.NewKey(ctx, "Inc", "", 1000000, nil)
		if _, err := datastore.Put(ctx, explicit, &it); err != nil {
			t.Fatal(err)
		}
		k, err = datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "Inc", nil), &it)
		if err != nil || k.IntID() <= 1000000 {
			t.Fatalf("after explicit ID: key %v, err %v", k, err)
		}
	})
}

type qItem struct {
	N    int
	S    string
	Tags []string
	Exp  time.Time
}

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

func TestDatastoreNamespaces(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		nsA, err := appengine.Namespace(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		nsB, _ := appengine.Namespace(ctx, "b")
		for i, c := range []context.Context{ctx, nsA, nsB} {
			k := datastore.NewKey(c, "K", "same", 0, nil)
			if _, err := datastore.Put(c, k, &qItem{N: i}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := datastore.Put(nsA, datastore.NewKey(nsA, "K", "onlyA", 0, nil), &qItem{N: 10}); err != nil {
			t.Fatal(err)
		}
		for i, c := range []context.Context{ctx, nsA, nsB} {
			var x qItem
			if err := datastore.Get(c, datastore.NewKey(c, "K", "same", 0, nil), &x); err != nil || x.N != i {
				t.Fatalf("namespace %d: %+v %v", i, x, err)
			}
		}
		counts := []int{1, 2, 1}
		for i, c := range []context.Context{ctx, nsA, nsB} {
			if n, err := datastore.NewQuery("K").Count(c); err != nil || n != counts[i] {
				t.Fatalf("namespace %d: Count %d, %v", i, n, err)
			}
		}
		var x qItem
		if err := datastore.Get(nsB, datastore.NewKey(nsB, "K", "onlyA", 0, nil), &x); err != datastore.ErrNoSuchEntity {
			t.Fatalf("cross-namespace Get: %v", err)
		}
		got, err := datastore.Namespaces(ctx)
		if err != nil || strings.Join(got, ",") != ",a,b" {
			t.Fatalf("Namespaces = %q, %v", got, err)
		}
	})
}

func TestDatastoreLimits(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		var x qItem
		ok := datastore.NewKey(ctx, "L", strings.Repeat("k", 1500), 0, nil)
		if _, err := datastore.Put(ctx, ok, &x); err != nil {
			t.Fatalf("1500-byte name: %v", err)
		}
		if err := datastore.Get(ctx, ok, &x); err != nil {
			t.Fatal(err)
		}
		_, err := datastore.Put(ctx, datastore.NewKey(ctx, "L", strings.Repeat("k", 1501), 0, nil), &x)
		wantAPIError(t, err, "BAD_REQUEST", "key name is 1501 bytes long; the limit is 1500 bytes")

		type big struct {
			B []byte
		}
		k := datastore.NewKey(ctx, "L", "big", 0, nil)
		if _, err := datastore.Put(ctx, k, &big{B: make([]byte, maxEntityBytes-200)}); err != nil {
			t.Fatalf("entity just under the limit: %v", err)
		}
		_, err = datastore.Put(ctx, k, &big{B: make([]byte, maxEntityBytes)})
		wantAPIError(t, err, "BAD_REQUEST", "is too big")
		var b big
		if err := datastore.Get(ctx, k, &b); err != nil || len(b.B) != maxEntityBytes-200 {
			t.Fatalf("the failed Put changed the entity: %d bytes, %v", len(b.B), err)
		}

		_, err = datastore.Put(ctx, datastore.NewKey(ctx, "L", "s", 0, nil), &qItem{S: strings.Repeat("s", 1501)})
		wantAPIError(t, err, "BAD_REQUEST", "the limit is 1500 bytes")

		keys := make([]*datastore.Key, 501)
		for i := range keys {
			keys[i] = datastore.NewKey(ctx, "L", "", int64(i+1), nil)
		}
		_, err = datastore.PutMulti(ctx, keys, make([]qItem, 501))
		wantAPIError(t, err, "BAD_REQUEST", "cannot write more than 500 entities")
		wantAPIError(t, datastore.DeleteMulti(ctx, keys), "BAD_REQUEST", "cannot delete more than 500")
		if _, err := datastore.PutMulti(ctx, keys[:500], make([]qItem, 500)); err != nil {
			t.Fatal(err)
		}
		keys = make([]*datastore.Key, 1001)
		for i := range keys {
			keys[i] = datastore.NewKey(ctx, "L", "", int64(i+1), nil)
		}
		wantAPIError(t, datastore.GetMulti(ctx, keys, make([]qItem, 1001)), "BAD_REQUEST", "cannot get more than 1000 keys")
		err = datastore.GetMulti(ctx, keys[:1000], make([]qItem, 1000))
		var me appengine.MultiError
		if !errors.As(err, &me) || me[0] != nil || me[999] != datastore.ErrNoSuchEntity {
			t.Fatalf("GetMulti of 1000: %v", err)
		}

		_, err = datastore.Put(ctx, datastore.NewKey(ctx, "__Reserved__", "x", 0, nil), &x)
		wantAPIError(t, err, "BAD_REQUEST", "reserved")
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

// rawCall makes one datastore_v3 call with messages built by name.
func rawCall(ctx context.Context, method, reqName, respName string, fill func(pmsg)) (pmsg, error) {
	req, err := newMsg(reqName)
	if err != nil {
		panic(err)
	}
	fill(req)
	resp, err := newMsg(respName)
	if err != nil {
		panic(err)
	}
	return resp, appengine.APICall(ctx, "datastore_v3", method, protoV1(req), protoV1(resp))
}

func TestDatastoreOddRequests(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		app := datastore.NewKey(ctx, "K", "k", 0, nil).AppID()
		query := func(extra func(q pmsg)) error {
			_, err := rawCall(ctx, "RunQuery", "appengine.v2.Query", "appengine.v2.QueryResult", func(q pmsg) {
				q.Set("app", app)
				q.Set("kind", "X")
				extra(q)
			})
			return err
		}
		// IN of one value is an equality, as the stub normalizes it.
		if err := query(func(q pmsg) {
			f := q.AppendMsg("filter")
			f.Set("op", 6)
			p := f.AppendMsg("property")
			p.Set("name", "N")
			p.Set("multiple", false)
			p.Mutable("value").Set("int64Value", 1)
		}); err != nil {
			t.Fatalf("IN of one value: %v", err)
		}
		// An operator the enum does not define does not survive decoding
		// (proto2 keeps it as an unknown field), so the request fails to
		// parse.
		if err := query(func(q pmsg) {
			f := q.AppendMsg("filter")
			f.Set("op", 99)
			p := f.AppendMsg("property")
			p.Set("name", "N")
			p.Set("multiple", false)
			p.Mutable("value")
		}); err == nil {
			t.Fatal("operator 99: no error")
		}
		wantAPIError(t, query(func(q pmsg) { q.AppendMsg("filter").Set("op", 5) }), "BAD_REQUEST", "has 0 properties")
		wantAPIError(t, query(func(q pmsg) { q.Set("offset", -1) }), "BAD_REQUEST", "negative offset")
		wantAPIError(t, query(func(q pmsg) { q.Set("limit", -5) }), "BAD_REQUEST", "negative limit")
		wantAPIError(t, query(func(q pmsg) { q.Set("count", -5) }), "BAD_REQUEST", "negative count")
		wantAPIError(t, query(func(q pmsg) { q.Set("distinct", true) }), "BAD_REQUEST", "distinct")
		wantAPIError(t, query(func(q pmsg) { q.Set("search_query", "x") }), "BAD_REQUEST", "search")
		wantAPIError(t, query(func(q pmsg) { q.Mutable("ancestor").Set("app", app); q.Mutable("ancestor").Mutable("path") }), "BAD_REQUEST", "empty path")
		wantAPIError(t, query(func(q pmsg) {
			q.Mutable("compiled_cursor").Mutable("position").Set("start_key", "opaque")
		}), "BAD_REQUEST", "not made by aelocal")
		// Absurd but valid numbers are fine.
		if err := query(func(q pmsg) { q.Set("offset", 1<<31-1); q.Set("limit", 1<<31-1); q.Set("count", 1<<31-1) }); err != nil {
			t.Fatal(err)
		}

		// Keys with empty or incomplete paths.
		_, err := rawCall(ctx, "Get", "appengine.v2.GetRequest", "appengine.v2.GetResponse", func(r pmsg) {
			k := r.AppendMsg("key")
			k.Set("app", app)
			k.Mutable("path")
		})
		wantAPIError(t, err, "BAD_REQUEST", "empty path")
		_, err = rawCall(ctx, "Delete", "appengine.v2.DeleteRequest", "appengine.v2.DeleteResponse", func(r pmsg) {
			k := r.AppendMsg("key")
			k.Set("app", app)
			k.Mutable("path").AppendMsg("element").Set("type", "K")
		})
		wantAPIError(t, err, "BAD_REQUEST", "incomplete")
		_, err = rawCall(ctx, "Put", "appengine.v2.PutRequest", "appengine.v2.PutResponse", func(r pmsg) {
			e := r.AppendMsg("entity")
			k := e.Mutable("key")
			k.Set("app", app)
			el := k.Mutable("path").AppendMsg("element")
			el.Set("type", "K")
			el.Set("id", 5)
			el.Set("name", "both")
			e.Mutable("entity_group")
		})
		wantAPIError(t, err, "BAD_REQUEST", "both an ID and a name")

		_, err = rawCall(ctx, "Next", "appengine.v2.NextRequest", "appengine.v2.QueryResult", func(r pmsg) {
			r.Mutable("cursor").Set("cursor", uint64(123456789))
		})
		wantAPIError(t, err, "BAD_REQUEST", "unknown")
		_, err = rawCall(ctx, "Commit", "appengine.v2.Transaction", "appengine.v2.CommitResponse", func(r pmsg) {
			r.Set("handle", uint64(987654321))
			r.Set("app", app)
		})
		wantAPIError(t, err, "BAD_REQUEST", "unknown")
		_, err = rawCall(ctx, "AllocateIds", "appengine.v2.AllocateIdsRequest", "appengine.v2.AllocateIdsResponse", func(r pmsg) {
			k := r.Mutable("model_key")
			k.Set("app", app)
			k.Mutable("path").AppendMsg("element").Set("type", "K")
			r.Set("size", -1)
		})
		wantAPIError(t, err, "BAD_REQUEST", "size")

		// The server still works.
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "X", "ok", 0, nil), &qItem{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDatastoreFailNextAndStats(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		k := datastore.NewKey(ctx, "F", "x", 0, nil)
		s.FailNext("datastore_v3", "Put", 1)
		_, err := datastore.Put(ctx, k, &qItem{N: 1})
		wantAPIError(t, err, "INTERNAL_ERROR", "injected")
		if _, err := datastore.Put(ctx, k, &qItem{N: 2}); err != nil {
			t.Fatal(err)
		}
		if err := datastore.Get(ctx, k, &qItem{}); err != nil {
			t.Fatal(err)
		}
		putQItems(t, ctx, "F", 30, time.Now(), nil)
		if _, err := datastore.NewQuery("F").GetAll(ctx, &[]qItem{}); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if st["datastore_v3.Put"] != 3 || st["datastore_v3.Get"] != 1 || st["datastore_v3.RunQuery"] != 1 || st["datastore_v3.Next"] < 1 {
			t.Fatalf("stats %v", st)
		}
	})
}

func TestDatastoreSaveLoad(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		nsA, _ := appengine.Namespace(ctx, "a")
		putQItems(t, ctx, "S", 25, time.Unix(1e9, 0), nil)
		putQItems(t, nsA, "S", 3, time.Unix(1e9, 0), nil)
		ik, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "S", nil), &qItem{N: 99, Tags: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := s.SaveDatastore(&buf); err != nil {
			t.Fatal(err)
		}
		saved := buf.Bytes()
		var again bytes.Buffer
		if err := s.SaveDatastore(&again); err != nil || !bytes.Equal(again.Bytes(), saved) {
			t.Fatalf("SaveDatastore is not deterministic (err %v)", err)
		}

		s2 := newTestServer(t)
		if err := s2.LoadDatastore(bytes.NewReader(saved)); err != nil {
			t.Fatal(err)
		}
		if err := s.LoadDatastore(strings.NewReader("garbage")); err == nil {
			t.Fatal("loading garbage: no error")
		}
		var buf2 bytes.Buffer
		if err := s2.SaveDatastore(&buf2); err != nil || !bytes.Equal(buf2.Bytes(), saved) {
			t.Fatalf("reloaded datastore saves differently (err %v)", err)
		}
		// Replace s's datastore with an empty one and load back, then
		// query through ctx.
		var empty bytes.Buffer
		if err := newServer().SaveDatastore(&empty); err != nil {
			t.Fatal(err)
		}
		if err := s.LoadDatastore(&empty); err != nil {
			t.Fatal(err)
		}
		if n, _ := datastore.NewQuery("S").Count(ctx); n != 0 {
			t.Fatalf("after loading an empty datastore: %d entities", n)
		}
		if err := s.LoadDatastore(bytes.NewReader(saved)); err != nil {
			t.Fatal(err)
		}
		if n, err := datastore.NewQuery("S").Count(ctx); err != nil || n != 26 {
			t.Fatalf("Count = %d, %v", n, err)
		}
		if n, err := datastore.NewQuery("S").Count(nsA); err != nil || n != 3 {
			t.Fatalf("Count in namespace = %d, %v", n, err)
		}
		var x qItem
		if err := datastore.Get(ctx, ik, &x); err != nil || x.N != 99 {
			t.Fatalf("Get %v: %+v %v", ik, x, err)
		}
		// The loaded datastore gives the automatic ID that comes after
		// ik's: scattered IDs do not grow, so compare with the next one.
		k, err := datastore.Put(ctx, datastore.NewIncompleteKey(ctx, "S", nil), &x)
		if c := int64(bits.Reverse64(uint64(ik.IntID())) >> scatterShift); err != nil || k.IntID() != scatteredID(c+1) {
			t.Fatalf("ID counter not restored: new key %v after %v (%v)", k, ik, err)
		}
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
	n, cached := len(d.cursors), d.cached
	d.mu.Unlock()
	if n > maxOpenCursors || cached > maxCachedResults {
		t.Fatalf("%d open cursors (cap %d), %d cached results", n, maxOpenCursors, cached)
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

func TestDatastoreConcurrentUse(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				k := datastore.NewKey(ctx, "CC", fmt.Sprintf("g%d-%d", g, i), 0, nil)
				if _, err := datastore.Put(ctx, k, &qItem{N: i, Tags: []string{"a", "b"}}); err != nil {
					t.Error(err)
					return
				}
				var items []qItem
				if _, err := datastore.NewQuery("CC").Filter("N >=", i-2).Order("N").BatchSize(3).GetAll(ctx, &items); err != nil {
					t.Error(err)
					return
				}
				if i%5 == 0 {
					if err := datastore.Delete(ctx, k); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	n, err := datastore.NewQuery("CC").Count(ctx)
	if err != nil || n != 8*24 {
		t.Fatalf("Count = %d, %v; want %d", n, err, 8*24)
	}
	var buf bytes.Buffer
	if err := s.SaveDatastore(&buf); err != nil {
		t.Fatal(err)
	}
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
