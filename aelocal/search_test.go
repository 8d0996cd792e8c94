package aelocal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/search"
)

// searchProduct is the document type most search tests store.
type searchProduct struct {
	Name     string
	Code     search.Atom
	Body     search.HTML
	Price    float64
	Released time.Time
	Where    appengine.GeoPoint
}

func openIndex(t *testing.T, name string) *search.Index {
	t.Helper()
	idx, err := search.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// listIDs lists an index with opts and returns the IDs.
func listIDs(t *testing.T, ctx context.Context, idx *search.Index, opts *search.ListOptions) []string {
	t.Helper()
	var ids []string
	for it := idx.List(ctx, opts); ; {
		id, err := it.Next(nil)
		if err == search.Done {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
}

// searchIDs runs a search and returns the IDs in order.
func searchIDs(ctx context.Context, idx *search.Index, query string, opts *search.SearchOptions) ([]string, error) {
	var ids []string
	for it := idx.Search(ctx, query, opts); ; {
		id, err := it.Next(nil)
		if err == search.Done {
			return ids, nil
		}
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
}

func TestSearchPutGetDeleteList(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		idx := openIndex(t, "products")
		released := time.Date(2020, 5, 17, 10, 30, 0, 0, time.UTC)
		want := searchProduct{
			Name: "Blue guitar", Code: "BG-1", Body: "<p>A <b>fine</b> guitar</p>",
			Price: 99.5, Released: released, Where: appengine.GeoPoint{Lat: 52.5, Lng: 13.4},
		}
		id, err := idx.Put(ctx, "g1", &want)
		if err != nil || id != "g1" {
			t.Fatalf("Put: %q, %v", id, err)
		}
		var got searchProduct
		if err := idx.Get(ctx, "g1", &got); err != nil {
			t.Fatal(err)
		}
		got.Released = got.Released.UTC()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Get: %+v, want %+v", got, want)
		}
		// An ID the service makes.
		auto, err := idx.Put(ctx, "", &searchProduct{Name: "Auto"})
		if err != nil || auto == "" {
			t.Fatalf("Put without ID: %q, %v", auto, err)
		}
		if err := idx.Get(ctx, "nosuch", &got); err != search.ErrNoSuchDocument {
			t.Fatalf("Get of a missing document: %v", err)
		}
		if err := idx.Get(ctx, auto, &got); err != nil || got.Name != "Auto" {
			t.Fatalf("Get of %q: %+v, %v", auto, got, err)
		}
		if err := idx.Delete(ctx, auto); err != nil {
			t.Fatal(err)
		}
		// A put replaces.
		want.Name = "Red guitar"
		if _, err := idx.Put(ctx, "g1", &want); err != nil {
			t.Fatal(err)
		}
		if err := idx.Get(ctx, "g1", &got); err != nil || got.Name != "Red guitar" {
			t.Fatalf("Get after replace: %+v, %v", got, err)
		}
		for _, id := range []string{"a", "b", "c", "d"} {
			if _, err := idx.Put(ctx, id, &searchProduct{Name: id}); err != nil {
				t.Fatal(err)
			}
		}
		all := listIDs(t, ctx, idx, nil)
		if !reflect.DeepEqual(all, []string{"a", "b", "c", "d", "g1"}) {
			t.Fatalf("List: %v", all)
		}
		if ids := listIDs(t, ctx, idx, &search.ListOptions{StartID: "b", Limit: 2}); !reflect.DeepEqual(ids, []string{"b", "c"}) {
			t.Fatalf("List from b, limit 2: %v", ids)
		}
		// IDsOnly returns no fields.
		it := idx.List(ctx, &search.ListOptions{StartID: "g1", IDsOnly: true})
		var p searchProduct
		if id, err := it.Next(&p); err != nil || id != "g1" || p.Name != "" {
			t.Fatalf("List IDsOnly: %q %+v %v", id, p, err)
		}
		// Delete, also of a document that is not there.
		if err := idx.DeleteMulti(ctx, []string{"a", "nosuch"}); err != nil {
			t.Fatal(err)
		}
		if err := idx.Get(ctx, "a", &got); err != search.ErrNoSuchDocument {
			t.Fatalf("Get after Delete: %v", err)
		}
		// Indexes are per namespace. (The client binds an *Index to the
		// first namespace other than "" it is used in, so each namespace
		// gets its own.)
		other, err := appengine.Namespace(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		otherIdx := openIndex(t, "products")
		if ids := listIDs(t, other, otherIdx, nil); len(ids) != 0 {
			t.Fatalf("namespace other sees %v", ids)
		}
		if _, err := otherIdx.Put(other, "b", &searchProduct{Name: "elsewhere"}); err != nil {
			t.Fatal(err)
		}
		if err := idx.Get(ctx, "b", &got); err != nil || got.Name != "b" {
			t.Fatalf("default namespace b: %+v %v", got, err)
		}
	})
}

// searchDoc1 is a document with facets and a rank, through FieldLoadSaver.
type searchFLS struct {
	fields []search.Field
	meta   *search.DocumentMetadata
}

func (d *searchFLS) Load(f []search.Field, m *search.DocumentMetadata) error {
	d.fields, d.meta = f, m
	return nil
}

func (d *searchFLS) Save() ([]search.Field, *search.DocumentMetadata, error) {
	return d.fields, d.meta, nil
}

func TestSearchRankFacetsLanguageRoundTrip(t *testing.T) {
	s := RunT(t)
	ctx := middlewareContext(t, s)
	idx := openIndex(t, "meta")
	in := &searchFLS{
		fields: []search.Field{
			{Name: "title", Value: "Bonjour", Language: "fr"},
			{Name: "tag", Value: search.Atom("x")},
			{Name: "tag", Value: search.Atom("y")},
		},
		meta: &search.DocumentMetadata{Rank: 42, Facets: []search.Facet{
			{Name: "type", Value: search.Atom("book")}, {Name: "pages", Value: 120.0},
		}},
	}
	if _, err := idx.Put(ctx, "d", in); err != nil {
		t.Fatal(err)
	}
	var out searchFLS
	if err := idx.Get(ctx, "d", &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.fields, in.fields) || out.meta.Rank != 42 || !reflect.DeepEqual(out.meta.Facets, in.meta.Facets) {
		t.Fatalf("round trip: %+v %+v", out.fields, out.meta)
	}
}

func TestSearchPutErrors(t *testing.T) {
	s := RunT(t)
	ctx := middlewareContext(t, s)
	idx := openIndex(t, "errs")
	cases := []struct {
		name string
		doc  *searchFLS
		want string
	}{
		{"no fields", &searchFLS{}, "Empty list of fields"},
		{"long atom", &searchFLS{fields: []search.Field{{Name: "a", Value: search.Atom(strings.Repeat("x", 501))}}}, "atom fields must be under 500 bytes"},
		{"long text", &searchFLS{fields: []search.Field{{Name: "t", Value: strings.Repeat("x", 1<<20+1)}}}, "text and HTML fields must be under"},
		{"empty facet", &searchFLS{fields: []search.Field{{Name: "t", Value: "x"}}, meta: &search.DocumentMetadata{Facets: []search.Facet{{Name: "f", Value: search.Atom("")}}}}, "Facet value is empty"},
	}
	for _, c := range cases {
		_, err := idx.Put(ctx, "x", c.doc)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "INVALID_REQUEST") {
			t.Errorf("%s: %v, want INVALID_REQUEST %q", c.name, err, c.want)
		}
	}
	if ids := listIDs(t, ctx, idx, nil); len(ids) != 0 {
		t.Fatalf("refused puts stored %v", ids)
	}
	// One refused document in a batch leaves the others stored.
	docs := []any{&searchFLS{fields: []search.Field{{Name: "t", Value: "ok"}}}, &searchFLS{}}
	_, err := idx.PutMulti(ctx, []string{"good", "bad"}, docs)
	var me appengine.MultiError
	if !errors.As(err, &me) || me[0] != nil || me[1] == nil {
		t.Fatalf("PutMulti: %v", err)
	}
	if ids := listIDs(t, ctx, idx, nil); !reflect.DeepEqual(ids, []string{"good"}) {
		t.Fatalf("after a batch with one refused document: %v", ids)
	}
}

// TestSearchMemoryBound: documents that would pass the server's search
// budget are refused and change nothing.
func TestSearchMemoryBound(t *testing.T) {
	s := RunT(t)
	s.search.limit = 512 << 10
	ctx := middlewareContext(t, s)
	idx := openIndex(t, "big")
	body := strings.Repeat("word ", 2000) // 10 kB of text, 2000 tokens
	var stored int
	var lastErr error
	for i := 0; i < 50; i++ {
		if _, err := idx.Put(ctx, fmt.Sprint("d", i), &searchFLS{fields: []search.Field{{Name: "t", Value: body}}}); err != nil {
			lastErr = err
			break
		}
		stored++
	}
	if stored == 0 || lastErr == nil || !strings.Contains(lastErr.Error(), "memory limit") {
		t.Fatalf("after %d documents: %v", stored, lastErr)
	}
	if ids := listIDs(t, ctx, idx, nil); len(ids) != stored {
		t.Fatalf("%d stored, list has %d", stored, len(ids))
	}
	// In one batch, the documents past the room left are refused, before
	// the server holds them all tokenized.
	ids, docs := []string{}, []any{}
	for i := 0; i < 5; i++ {
		ids = append(ids, fmt.Sprint("b", i))
		docs = append(docs, &searchFLS{fields: []search.Field{{Name: "t", Value: body}}})
	}
	_, err := idx.PutMulti(ctx, ids, docs)
	var me appengine.MultiError
	if !errors.As(err, &me) || me[0] == nil || !strings.Contains(me[0].Error(), "memory limit") {
		t.Fatalf("batch past the budget: %v", err)
	}
	// Deleting frees the budget.
	if err := idx.Delete(ctx, "d0"); err != nil {
		t.Fatal(err)
	}
	if _, err := idx.Put(ctx, "d0", &searchFLS{fields: []search.Field{{Name: "t", Value: body}}}); err != nil {
		t.Fatalf("put after a delete: %v", err)
	}
}

// Indexes and their schemas stay after their documents are deleted, as in
// production, so their names count against the limit: putting and
// deleting a document in ever new indexes, with ever new field names,
// cannot grow memory past it. DeleteSchema gives the field names back.
func TestSearchMemoryBoundCountsNames(t *testing.T) {
	s := RunT(t)
	s.search.limit = 64 << 10
	ctx := middlewareContext(t, s)
	var err error
	n := 0
	for ; n < 5000 && err == nil; n++ {
		idx := openIndex(t, fmt.Sprint("index-", n))
		doc := &searchFLS{fields: []search.Field{{Name: fmt.Sprint("field", n), Value: "x"}}}
		if _, err = idx.Put(ctx, "d", doc); err == nil {
			err = idx.Delete(ctx, "d")
		}
	}
	if err == nil || !strings.Contains(err.Error(), "memory limit") {
		t.Fatalf("after %d indexes: %v, want the memory limit", n, err)
	}
	s.search.mu.RLock()
	cost, limit := s.search.cost, s.search.limit
	s.search.mu.RUnlock()
	if cost > limit {
		t.Fatalf("cost %d past the limit %d", cost, limit)
	}
}
