package aelocaltest

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"cloud.google.com/go/datastore"
	"google.golang.org/api/iterator"
)

type item struct {
	N     int64
	Tag   string
	Group string
}

func putItems(t *testing.T, c *datastore.Client, n int) {
	t.Helper()
	var keys []*datastore.Key
	var items []*item
	for i := 0; i < n; i++ {
		keys = append(keys, datastore.IDKey("Item", int64(i+1), nil))
		items = append(items, &item{N: int64(i), Tag: fmt.Sprintf("t%d", i%3), Group: fmt.Sprintf("g%d", i%2)})
	}
	for len(keys) > 0 {
		n := min(len(keys), 500) // production's limit per call
		if _, err := c.PutMulti(context.Background(), keys[:n], items[:n]); err != nil {
			t.Fatal(err)
		}
		keys, items = keys[n:], items[n:]
	}
}

func ns(items []item) []int64 {
	var out []int64
	for _, it := range items {
		out = append(out, it.N)
	}
	return out
}

// TestQueries: filters, orders, limit, offset, projection, distinct and
// keys-only queries of the Cloud client.
func TestQueries(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx, c := context.Background(), tg.Cloud
		putItems(t, c, 30)
		for _, tc := range []struct {
			name string
			q    *datastore.Query
			want []int64
		}{
			{"equality", datastore.NewQuery("Item").FilterField("Tag", "=", "t1").Order("N").Limit(3), []int64{1, 4, 7}},
			{"range", datastore.NewQuery("Item").FilterField("N", ">=", 10).FilterField("N", "<", 13), []int64{10, 11, 12}},
			{"range desc", datastore.NewQuery("Item").FilterField("N", ">", 26).Order("-N"), []int64{29, 28, 27}},
			{"and", datastore.NewQuery("Item").FilterEntity(datastore.AndFilter{Filters: []datastore.EntityFilter{
				datastore.PropertyFilter{FieldName: "Tag", Operator: "=", Value: "t0"},
				datastore.PropertyFilter{FieldName: "N", Operator: "<=", Value: 6},
			}}), []int64{0, 3, 6}},
			{"offset", datastore.NewQuery("Item").Order("N").Offset(25), []int64{25, 26, 27, 28, 29}},
			{"key filter", datastore.NewQuery("Item").FilterField("__key__", ">", datastore.IDKey("Item", 28, nil)), []int64{28, 29}},
			{"offset and limit", datastore.NewQuery("Item").Order("-N").Offset(2).Limit(2), []int64{27, 26}},
		} {
			var got []item
			if _, err := c.GetAll(ctx, tc.q, &got); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !reflect.DeepEqual(ns(got), tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, ns(got), tc.want)
			}
		}
		// Keys only.
		keys, err := c.GetAll(ctx, datastore.NewQuery("Item").KeysOnly().FilterField("N", "<", 3), nil)
		if err != nil || len(keys) != 3 || keys[0].ID != 1 {
			t.Fatalf("keys only: %v %v", keys, err)
		}
		// Projection and distinct.
		var proj []item
		if _, err := c.GetAll(ctx, datastore.NewQuery("Item").Project("Tag").DistinctOn("Tag").Order("Tag"), &proj); err != nil {
			t.Fatal(err)
		}
		if len(proj) != 3 || proj[0].Tag != "t0" || proj[2].Tag != "t2" || proj[0].N != 0 {
			t.Fatalf("distinct projection: %+v", proj)
		}
		// A long query: more than one batch.
		putItems(t, c, 700)
		it := c.Run(ctx, datastore.NewQuery("Item").KeysOnly())
		total := 0
		for {
			if _, err := it.Next(nil); err == iterator.Done {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			total++
		}
		if total != 700 {
			t.Fatalf("iterated %d keys, want 700", total)
		}
	})
}

// TestCursors: a query resumes from Iterator.Cursor, also after the
// cursor went through its string form, and stops at an end cursor.
func TestCursors(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx, c := context.Background(), tg.Cloud
		putItems(t, c, 20)
		q := datastore.NewQuery("Item").Order("N")
		it := c.Run(ctx, q.Limit(5))
		for {
			var x item
			if _, err := it.Next(&x); err == iterator.Done {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		cur, err := it.Cursor()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := datastore.DecodeCursor(cur.String())
		if err != nil {
			t.Fatal(err)
		}
		var next []item
		if _, err := c.GetAll(ctx, q.Start(dec).Limit(3), &next); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ns(next), []int64{5, 6, 7}) {
			t.Fatalf("from the cursor: %v", ns(next))
		}
		// A cursor taken in the middle of a batch.
		it = c.Run(ctx, q)
		for i := 0; i < 2; i++ {
			if _, err := it.Next(&item{}); err != nil {
				t.Fatal(err)
			}
		}
		mid, err := it.Cursor()
		if err != nil {
			t.Fatal(err)
		}
		// End at mid, start at mid.
		var head, tail []item
		if _, err := c.GetAll(ctx, q.End(mid), &head); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetAll(ctx, q.Start(mid).Limit(2), &tail); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ns(head), []int64{0, 1}) || !reflect.DeepEqual(ns(tail), []int64{2, 3}) {
			t.Fatalf("end at the cursor: %v; start at it: %v", ns(head), ns(tail))
		}
	})
}
