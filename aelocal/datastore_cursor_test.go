package aelocal

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

type cItem struct {
	A    int
	B    string
	Tags []string
}

// putCItems stores C,1..C,6 with A = i%3, B = i and Tags [t<i>, u<7-i>].
func putCItems(t *testing.T, ctx context.Context) {
	t.Helper()
	for i := 1; i <= 6; i++ {
		it := cItem{A: i % 3, B: fmt.Sprint(i), Tags: []string{fmt.Sprint("t", i), fmt.Sprint("u", 7-i)}}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "C", "", int64(i), nil), &it); err != nil {
			t.Fatal(err)
		}
	}
}

// ids runs q keys-only and lists the IDs.
func ids(t *testing.T, ctx context.Context, q *datastore.Query) string {
	t.Helper()
	keys, err := q.KeysOnly().GetAll(ctx, nil)
	if err != nil {
		t.Fatalf("GetAll: %v", err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprint(k.IntID()))
	}
	return strings.Join(out, " ")
}

// cursorAfter runs q and returns the cursor after its first n results.
func cursorAfter(t *testing.T, ctx context.Context, q *datastore.Query, n int) datastore.Cursor {
	t.Helper()
	it := q.Run(ctx)
	for i := 0; i < n; i++ {
		if _, err := it.Next(nil); err != nil {
			t.Fatal(err)
		}
	}
	c, err := it.Cursor()
	if err != nil {
		t.Fatal(err)
	}
	c, err = datastore.DecodeCursor(c.String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A cursor is a position between index entries: it fits every query with
// the same index columns, whatever their directions, as in the stub.
func TestDatastoreCursorsArePositions(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putCItems(t, ctx)
		check := func(name string, q *datastore.Query, c datastore.Cursor, start, end string) {
			t.Helper()
			if got := ids(t, ctx, q.Start(c)); got != start {
				t.Fatalf("%s, from the cursor: got %q, want %q", name, got, start)
			}
			if got := ids(t, ctx, q.End(c)); got != end {
				t.Fatalf("%s, to the cursor: got %q, want %q", name, got, end)
			}
		}
		// By A ascending: 3 6 | 1 4 2 5. The cursor lies after (A=1, C1).
		byA := datastore.NewQuery("C").Order("A")
		c := cursorAfter(t, ctx, byA, 3)
		check("same order", byA, c, "4 2 5", "3 6 1")
		// Descending (2: 2 5, 1: 1 4, 0: 3 6, keys ascending among equal
		// values), the same position starts at C1.
		check("descending", datastore.NewQuery("C").Order("-A"), c, "1 4 3 6", "2 5")
		check("key descending too", datastore.NewQuery("C").Order("A").Order("-__key__"), c, "5 2", "6 3 4 1")
		check("both descending", datastore.NewQuery("C").Order("-A").Order("-__key__"), c, "1 6 3", "5 2 4")
		// An inequality orders by its property: the same columns.
		check("inequality", datastore.NewQuery("C").Filter("A >", 0), c, "4 2 5", "1")
		check("another kind", datastore.NewQuery("D").Order("A"), c, "", "")
		for _, q := range []*datastore.Query{
			datastore.NewQuery("C").Order("B"),
			datastore.NewQuery("C").Filter("A =", 1),
			datastore.NewQuery("C"),
		} {
			_, err := q.Start(c).KeysOnly().GetAll(ctx, nil)
			wantAPIError(t, err, "BAD_REQUEST", "Cursor does not match query: extra value A")
		}
		_, err := datastore.NewQuery("C").Order("A").Order("B").Start(c).KeysOnly().GetAll(ctx, nil)
		wantAPIError(t, err, "BAD_REQUEST", "Cursor does not match query: missing values for B")

		// A key cursor fits every query ordered by key alone.
		kc := cursorAfter(t, ctx, datastore.NewQuery("C"), 2)
		check("keys", datastore.NewQuery("C"), kc, "3 4 5 6", "1 2")
		check("keys descending", datastore.NewQuery("C").Order("-__key__"), kc, "2 1", "6 5 4 3")
		check("keys with an equality", datastore.NewQuery("C").Filter("A =", 1), kc, "4", "1")
		check("kindless", datastore.NewQuery(""), kc, "3 4 5 6", "1 2")
		_, err = datastore.NewQuery("C").Order("A").Start(kc).KeysOnly().GetAll(ctx, nil)
		wantAPIError(t, err, "BAD_REQUEST", "Cursor does not match query: missing values for A")

		// A cursor taken on a descending order, read ascending.
		dc := cursorAfter(t, ctx, datastore.NewQuery("C").Order("-A"), 3)
		check("descending cursor", datastore.NewQuery("C").Order("-A"), dc, "4 3 6", "2 5 1")
		check("descending cursor read ascending", byA, dc, "1 4 2 5", "3 6")
	})
}

// An entity with several values of a sort property is one result of a
// query, at its first index entry after the start; from a cursor it may
// come again at a later value, as production documents ("the same result
// may be returned more than once"). The stub refuses such cursors.
func TestDatastoreCursorsOnMultiValuedProperties(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putCItems(t, ctx)
		// Entries: t1 C1 .. t6 C6, then u1 C6 .. u6 C1.
		q := datastore.NewQuery("C").Order("Tags")
		if got := ids(t, ctx, q); got != "1 2 3 4 5 6" {
			t.Fatalf("by smallest value: %s", got)
		}
		if got := ids(t, ctx, q.BatchSize(1)); got != "1 2 3 4 5 6" {
			t.Fatalf("in batches of one, each entity once: %s", got)
		}
		c := cursorAfter(t, ctx, q, 3)
		if got := ids(t, ctx, q.Start(c)); got != "4 5 6 3 2 1" {
			t.Fatalf("from after t3: %s", got)
		}
		if got := ids(t, ctx, q.End(c)); got != "1 2 3" {
			t.Fatalf("to after t3: %s", got)
		}
		if got := ids(t, ctx, datastore.NewQuery("C").Order("-Tags").Start(c)); got != "3 2 1" {
			t.Fatalf("descending from t3: %s", got)
		}
		// Filters pick the entries: above t5 they are t6 C6, then u1 C6
		// to u6 C1, so C6 sorts by t6 and the others by their u value.
		fq := datastore.NewQuery("C").Filter("Tags >", "t5")
		if got := ids(t, ctx, fq); got != "6 5 4 3 2 1" {
			t.Fatalf("with an inequality: %s", got)
		}
		if got := ids(t, ctx, fq.Start(cursorAfter(t, ctx, fq, 2))); got != "4 3 2 1" {
			t.Fatalf("with an inequality, from after u2: %s", got)
		}
	})
}

// Production's index encoding sorts NaN above +Inf, so NaN never matches
// P < x or P <= x, matches P > x, and equals itself.
func TestDatastoreNaNOrder(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		for i, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, 1, -1, math.Copysign(0, -1)} {
			if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "N", "", int64(i+1), nil), &struct{ F float64 }{f}); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			q    *datastore.Query
			want string
		}{
			{datastore.NewQuery("N").Order("F"), "3 6 7 4 5 2 1"},
			{datastore.NewQuery("N").Order("-F"), "1 2 5 4 7 6 3"},
			{datastore.NewQuery("N").Filter("F <", 0.0), "3 6 7"},
			{datastore.NewQuery("N").Filter("F <=", math.Inf(1)), "3 6 7 4 5 2"},
			{datastore.NewQuery("N").Filter("F >", 0.0), "5 2 1"},
			{datastore.NewQuery("N").Filter("F >", math.Inf(1)), "1"},
			{datastore.NewQuery("N").Filter("F =", math.NaN()), "1"},
			{datastore.NewQuery("N").Filter("F <", math.NaN()), "3 6 7 4 5 2"},
			// -0 sorts just below +0 and differs from it, as encoded.
			{datastore.NewQuery("N").Filter("F =", 0.0), "4"},
		} {
			if got := ids(t, ctx, c.q); got != c.want {
				t.Fatalf("%v: got %s, want %s", c.q, got, c.want)
			}
		}
		// A cursor after NaN is the end.
		c := cursorAfter(t, ctx, datastore.NewQuery("N").Order("F"), 7)
		if got := ids(t, ctx, datastore.NewQuery("N").Order("F").Start(c)); got != "" {
			t.Fatalf("after NaN: %s", got)
		}
	})
}
