package aelocal

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

// pItem is stored for the projection tests; pRow receives projections.
type pItem struct {
	A    int
	B    string
	Tags []string
	W    time.Time
	F    float64
	BS   datastore.ByteString
	K    *datastore.Key
	G    appengine.GeoPoint
	Bo   bool
	Note string `datastore:",noindex"`
}

type pRow struct {
	A    int
	B    string
	Tags string
	W    time.Time
	F    float64
	BS   []byte
	K    *datastore.Key
	G    appengine.GeoPoint
	Bo   bool
	Note string
}

// putPItems stores P,1..P,4: A 1 2 3 2, B x y x z, Tags [a b a] [c] [] [b d].
func putPItems(t *testing.T, ctx context.Context) {
	t.Helper()
	items := []pItem{
		{A: 1, B: "x", Tags: []string{"a", "b", "a"}, W: time.Unix(100, 5000), F: 1.5, BS: datastore.ByteString("bs"), Bo: true,
			K: datastore.NewKey(ctx, "R", "r", 0, nil), G: appengine.GeoPoint{Lat: 1, Lng: 2}, Note: "n"},
		{A: 2, B: "y", Tags: []string{"c"}, W: time.Unix(200, 0), F: math.Inf(1)},
		{A: 3, B: "x", F: -1},
		{A: 2, B: "z", Tags: []string{"b", "d"}},
	}
	for i := range items {
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "P", "", int64(i+1), nil), &items[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// projected runs q and renders each result as "id:field=value,...".
func projected(t *testing.T, ctx context.Context, q *datastore.Query) string {
	t.Helper()
	var pls []datastore.PropertyList
	keys, err := q.GetAll(ctx, &pls)
	if err != nil {
		t.Fatalf("GetAll: %v", err)
	}
	var out []string
	for i, k := range keys {
		var row pRow
		if err := datastore.LoadStruct(&row, pls[i]); err != nil {
			t.Fatalf("LoadStruct: %v", err)
		}
		var fields []string
		for _, p := range pls[i] {
			if p.Multiple {
				t.Fatalf("result %d: projected property %s is marked multiple", i, p.Name)
			}
			switch p.Name {
			case "A":
				fields = append(fields, fmt.Sprintf("A=%d", row.A))
			case "B":
				fields = append(fields, "B="+row.B)
			case "Tags":
				fields = append(fields, "Tags="+row.Tags)
			default:
				fields = append(fields, p.Name)
			}
		}
		out = append(out, fmt.Sprintf("%d:%s", k.IntID(), strings.Join(fields, ",")))
	}
	return strings.Join(out, " ")
}

func TestDatastoreProjection(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putPItems(t, ctx)
		check := func(name string, q *datastore.Query, want string) {
			t.Helper()
			if got := projected(t, ctx, q); got != want {
				t.Fatalf("%s:\n got %s\nwant %s", name, got, want)
			}
		}
		// Ordered by the projected property (its index), then key.
		check("one property", datastore.NewQuery("P").Project("A"), "1:A=1 2:A=2 4:A=2 3:A=3")
		// One result per distinct value; an entity without one gives none.
		check("multi-valued", datastore.NewQuery("P").Project("Tags"), "1:Tags=a 1:Tags=b 4:Tags=b 2:Tags=c 4:Tags=d")
		check("multi-valued desc", datastore.NewQuery("P").Project("Tags").Order("-Tags"), "4:Tags=d 2:Tags=c 1:Tags=b 4:Tags=b 1:Tags=a")
		check("two properties", datastore.NewQuery("P").Project("A", "Tags"), "1:A=1,Tags=a 1:A=1,Tags=b 4:A=2,Tags=b 2:A=2,Tags=c 4:A=2,Tags=d")
		check("by name, then key", datastore.NewQuery("P").Project("B", "A"), "1:B=x,A=1 2:B=y,A=2 4:B=z,A=2 3:B=x,A=3")
		check("explicit order", datastore.NewQuery("P").Project("B").Order("-A"), "3:B=x 2:B=y 4:B=z 1:B=x")
		check("filter on another property", datastore.NewQuery("P").Project("A").Filter("B =", "x"), "1:A=1 3:A=3")
		// An inequality on a projected multi-valued property filters
		// index entries, not entities.
		check("inequality", datastore.NewQuery("P").Project("Tags").Filter("Tags >", "a").Filter("Tags <", "d"), "1:Tags=b 4:Tags=b 2:Tags=c")
		check("unindexed", datastore.NewQuery("P").Project("Note"), "")
		check("missing", datastore.NewQuery("P").Project("Nope"), "")
		check("ancestor", datastore.NewQuery("P").Project("A").Ancestor(datastore.NewKey(ctx, "P", "", 2, nil)), "2:A=2")
		check("limit offset", datastore.NewQuery("P").Project("Tags").Offset(1).Limit(3), "1:Tags=b 4:Tags=b 2:Tags=c")

		// Distinct: the first entry of each value combination.
		check("distinct", datastore.NewQuery("P").Project("A").Distinct(), "1:A=1 2:A=2 3:A=3")
		check("distinct multi-valued", datastore.NewQuery("P").Project("Tags").Distinct(), "1:Tags=a 1:Tags=b 2:Tags=c 4:Tags=d")
		check("distinct two", datastore.NewQuery("P").Project("A", "B").Distinct(), "1:A=1,B=x 2:A=2,B=y 4:A=2,B=z 3:A=3,B=x")
		check("distinct on", datastore.NewQuery("P").Project("A", "B").DistinctOn("B"), "1:A=1,B=x 2:A=2,B=y 4:A=2,B=z")
		// DistinctOn's properties sort first, as production's index for
		// the query (Tags, then F) has them: the first F of each tag.
		check("distinct on, sorted first", datastore.NewQuery("P").Project("F", "Tags").DistinctOn("Tags"), "1:F,Tags=a 4:F,Tags=b 2:F,Tags=c 4:F,Tags=d")
		check("distinct on, ordered", datastore.NewQuery("P").Project("A", "B").DistinctOn("B").Order("B").Order("-A"), "3:A=3,B=x 2:A=2,B=y 4:A=2,B=z")

		for _, c := range []struct {
			q    *datastore.Query
			want int
		}{
			{datastore.NewQuery("P").Project("Tags"), 5},
			{datastore.NewQuery("P").Project("Tags").Distinct(), 4},
			{datastore.NewQuery("P").Project("A").Distinct(), 3},
			{datastore.NewQuery("P").Project("A").Offset(1), 3},
		} {
			if n, err := c.q.Count(ctx); err != nil || n != c.want {
				t.Fatalf("Count = %d, %v; want %d", n, err, c.want)
			}
		}

		// Values come back as the index holds them and load into the
		// fields' types.
		var rows []pRow
		if _, err := datastore.NewQuery("P").Project("W", "F", "BS", "K", "G", "Bo").Filter("A =", 1).GetAll(ctx, &rows); err != nil {
			t.Fatal(err)
		}
		want := pRow{W: time.Unix(100, 5000), F: 1.5, BS: []byte("bs"), K: datastore.NewKey(ctx, "R", "r", 0, nil), G: appengine.GeoPoint{Lat: 1, Lng: 2}, Bo: true}
		if len(rows) != 1 || !rows[0].W.Equal(want.W) || rows[0].F != want.F || string(rows[0].BS) != "bs" ||
			!rows[0].K.Equal(want.K) || rows[0].G != want.G || !rows[0].Bo {
			t.Fatalf("typed projection = %+v, want %+v", rows, want)
		}
		// A projection into the stored struct fails on nothing but the
		// fields left out.
		var items []pItem
		if _, err := datastore.NewQuery("P").Project("A", "B").Filter("Bo =", true).GetAll(ctx, &items); err != nil || len(items) != 1 || items[0].A != 1 || items[0].B != "x" {
			t.Fatalf("projection into the stored type = %+v, %v", items, err)
		}
	})
}

func TestDatastoreProjectionCursors(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putPItems(t, ctx)
		q := datastore.NewQuery("P").Project("Tags")
		it := q.Run(ctx)
		var first []string
		for i := 0; i < 2; i++ {
			var row pRow
			if _, err := it.Next(&row); err != nil {
				t.Fatal(err)
			}
			first = append(first, row.Tags)
		}
		cur, err := it.Cursor()
		if err != nil {
			t.Fatal(err)
		}
		if got := projected(t, ctx, q.Start(cur)); got != "4:Tags=b 2:Tags=c 4:Tags=d" || strings.Join(first, ",") != "a,b" {
			t.Fatalf("resumed after %v: %s", first, got)
		}
		if got := projected(t, ctx, q.End(cur)); got != "1:Tags=a 1:Tags=b" {
			t.Fatalf("to the cursor: %s", got)
		}
		// The same position read in the other direction starts at the
		// entry it was taken after (keys stay ascending among equal
		// values, as in the stub).
		if got := projected(t, ctx, q.Order("-Tags").Start(cur)); got != "1:Tags=b 4:Tags=b 1:Tags=a" {
			t.Fatalf("descending from the cursor: %s", got)
		}
		// Batches of one, and a cursor in the middle of a batch.
		var tags []string
		it = q.BatchSize(1).Run(ctx)
		for {
			var row pRow
			_, err := it.Next(&row)
			if err == datastore.Done {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			tags = append(tags, row.Tags)
		}
		if strings.Join(tags, ",") != "a,b,b,c,d" {
			t.Fatalf("in batches of one: %v", tags)
		}
		it = q.BatchSize(4).Run(ctx)
		for i := 0; i < 3; i++ {
			it.Next(&pRow{})
		}
		if cur, err = it.Cursor(); err != nil {
			t.Fatal(err)
		}
		if got := projected(t, ctx, q.Start(cur)); got != "2:Tags=c 4:Tags=d" {
			t.Fatalf("from a mid-batch cursor: %s", got)
		}

		// A distinct query's cursor holds only the grouped values.
		dq := datastore.NewQuery("P").Project("A").Distinct()
		it = dq.Run(ctx)
		it.Next(&pRow{})
		if cur, err = it.Cursor(); err != nil {
			t.Fatal(err)
		}
		if got := projected(t, ctx, dq.Start(cur)); got != "2:A=2 3:A=3" {
			t.Fatalf("distinct from a cursor: %s", got)
		}
		_, err = datastore.NewQuery("P").Project("A").Start(cur).GetAll(ctx, &[]pRow{})
		wantAPIError(t, err, "BAD_REQUEST", "Cursor does not match query: missing values for __key__")
	})
}

func TestDatastoreProjectionRefused(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		putPItems(t, ctx)
		var rows []pRow
		_, err := datastore.NewQuery("P").Project("A").Filter("A =", 1).GetAll(ctx, &rows)
		wantAPIError(t, err, "BAD_REQUEST", "cannot use projection on a property with an equality filter")
		_, err = datastore.NewQuery("P").Project("A", "A").GetAll(ctx, &rows)
		wantAPIError(t, err, "BAD_REQUEST", "cannot project a property multiple times")
		_, err = datastore.NewQuery("P").Project("__key__").GetAll(ctx, &rows)
		wantAPIError(t, err, "BAD_REQUEST", "projections are not supported for the property: __key__")
		_, err = datastore.NewQuery("P").Project("A", "B").DistinctOn("B").Order("A").GetAll(ctx, &rows)
		wantAPIError(t, err, "BAD_REQUEST", "items in the group by clause must be specified first in the ordering")

		// The client refuses keys-only projections itself; the server
		// does too.
		app := datastore.NewKey(ctx, "P", "", 1, nil).AppID()
		_, err = rawCall(ctx, "RunQuery", "appengine.v2.Query", "appengine.v2.QueryResult", func(q pmsg) {
			q.Set("app", app)
			q.Set("kind", "P")
			q.Append("property_name", "A")
			q.Set("keys_only", true)
		})
		wantAPIError(t, err, "BAD_REQUEST", "projection and keys_only cannot both be set")
		_, err = rawCall(ctx, "RunQuery", "appengine.v2.Query", "appengine.v2.QueryResult", func(q pmsg) {
			q.Set("app", app)
			q.Set("kind", "P")
			q.Append("property_name", "A")
			q.Append("group_by_property_name", "A")
			f := q.AppendMsg("filter")
			f.Set("op", opGreater)
			p := f.AppendMsg("property")
			p.Set("name", "B")
			p.Set("multiple", false)
			p.Mutable("value").Set("stringValue", "a")
		})
		wantAPIError(t, err, "BAD_REQUEST", "Inequality filter on B must also be a group by property")
	})
}

// An entity whose projected values would make more index entries than
// production keeps for one entity fails the query instead of flooding it.
func TestDatastoreProjectionExplodingIndex(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	type wide struct{ X, Y []int }
	var w wide
	for i := 0; i < 150; i++ {
		w.X = append(w.X, i)
		w.Y = append(w.Y, i)
	}
	if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "W", "w", 0, nil), &w); err != nil {
		t.Fatal(err)
	}
	_, err := datastore.NewQuery("W").Project("X", "Y").GetAll(ctx, &[]datastore.PropertyList{})
	wantAPIError(t, err, "BAD_REQUEST", "more than 20000 index entries")
	if n, err := datastore.NewQuery("W").Project("X").Count(ctx); err != nil || n != 150 {
		t.Fatalf("one multi-valued property: %d, %v", n, err)
	}
	if !slices.Equal(w.X[:2], []int{0, 1}) {
		t.Fatal("unreachable")
	}
}

// An equality filter on __key__ drops the sort orders; the projected
// property still orders the entries.
func TestDatastoreProjectionKeyEquality(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	putPItems(t, ctx)
	q := datastore.NewQuery("P").Project("Tags").Order("-Tags").Filter("__key__ =", datastore.NewKey(ctx, "P", "", 1, nil))
	if got := projected(t, ctx, q); got != "1:Tags=a 1:Tags=b" {
		t.Fatalf("got %s", got)
	}
}
