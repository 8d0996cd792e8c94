package aelocal

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/search"
)

func TestSearchSortAndExpressions(t *testing.T) {
	s := RunT(t)
	ctx := middlewareContext(t, s)
	idx := openIndex(t, "corpus")
	searchCorpus(t, ctx, idx)
	sorted := func(opts *search.SortOptions) string {
		t.Helper()
		ids, err := searchIDs(ctx, idx, "", &search.SearchOptions{Sort: opts})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(ids, " ")
	}
	cases := []struct {
		sort *search.SortOptions
		want string
	}{
		// Descending is the default; Reverse sorts ascending.
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "price"}}}, "p3 p2 p1 p4"},
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "price", Reverse: true}}}, "p4 p1 p2 p3"},
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "price * -1"}}}, "p4 p1 p2 p3"},
		// A document without the field sorts by the default.
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "released", Reverse: true, Default: 0.0}}}, "p4 p3 p1 p2"},
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "code", Reverse: true, Default: "zzz"}}}, "p3 p1 p2 p4"},
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "name", Reverse: true, Default: ""}}}, "p3 p2 p1 p4"},
		// Several dimensions.
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "max(price, 20)", Reverse: true}, {Expr: "price"}}}, "p1 p4 p2 p3"},
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "_rank", Default: 0.0}}}, "p1 p2 p3 p4"},
		{&search.SortOptions{Expressions: []search.SortExpression{{Expr: "distance(where, geopoint(51.5, 0))", Reverse: true, Default: 1e9}}}, "p3 p2 p1 p4"},
	}
	for _, c := range cases {
		if got := sorted(c.sort); got != c.want {
			t.Errorf("sort %+v: %s, want %s", c.sort.Expressions, got, c.want)
		}
	}
	// Production refuses an ascending _rank and count() in a sort.
	for _, e := range []search.SortExpression{{Expr: "_rank", Reverse: true}, {Expr: "count(name)"}, {Expr: "price +"}} {
		if _, err := searchIDs(ctx, idx, "", &search.SearchOptions{Sort: &search.SortOptions{Expressions: []search.SortExpression{e}}}); err == nil || !strings.Contains(err.Error(), "INVALID_REQUEST") {
			t.Errorf("sort %q: %v", e.Expr, err)
		}
	}
	// The match scorer puts documents with more of the query's words first.
	if _, err := idx.Put(ctx, "p5", &searchFLS{fields: []search.Field{{Name: "name", Value: "brown brown brown"}}}); err != nil {
		t.Fatal(err)
	}
	ids, err := searchIDs(ctx, idx, "brown", &search.SearchOptions{Sort: &search.SortOptions{Scorer: search.MatchScorer}})
	if err != nil || strings.Join(ids, " ") != "p5 p1 p4" {
		t.Fatalf("scored: %v %v", ids, err)
	}
	if err := idx.Delete(ctx, "p5"); err != nil {
		t.Fatal(err)
	}

	// Field expressions, snippets and returned fields.
	it := idx.Search(ctx, "quick", &search.SearchOptions{
		Fields: []string{"price"},
		Expressions: []search.FieldExpression{
			{Name: "double", Expr: "price * 2"},
			{Name: "snip", Expr: `snippet("quick fox", name)`},
			{Name: "n", Expr: "count(name)"},
			{Name: "missing", Expr: "nosuch + 1"},
			{Name: "km", Expr: "distance(where, geopoint(52.52, 13.405)) / 1000"},
		},
	})
	var got searchFLS
	if _, err := it.Next(&got); err != nil {
		t.Fatal(err)
	}
	fields := map[string]any{}
	for _, f := range got.fields {
		fields[f.Name] = f.Value
		if f.Name != "price" && !f.Derived {
			t.Errorf("field %s returned though not asked for", f.Name)
		}
	}
	want := map[string]any{"price": 10.0, "double": 20.0, "snip": search.HTML("The <b>quick</b> brown <b>fox</b>"), "n": 1.0, "km": 0.0}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields: %#v, want %#v", fields, want)
	}
	// A long text is cut around the first match.
	long := strings.Repeat("lorem ipsum ", 30) + "needle " + strings.Repeat("dolor sit ", 30)
	if _, err := idx.Put(ctx, "long", &searchFLS{fields: []search.Field{{Name: "body", Value: long}}}); err != nil {
		t.Fatal(err)
	}
	it = idx.Search(ctx, "needle", &search.SearchOptions{Expressions: []search.FieldExpression{{Name: "s", Expr: `snippet("needle", body, 40)`}}})
	if _, err := it.Next(&got); err != nil {
		t.Fatal(err)
	}
	snip := string(got.fields[len(got.fields)-1].Value.(search.HTML))
	if !strings.HasPrefix(snip, "...") || !strings.HasSuffix(snip, "...") || !strings.Contains(snip, "<b>needle</b>") || len(snip) > 40+6+7 {
		t.Errorf("snippet: %q", snip)
	}

	// IDsOnly returns no fields.
	it = idx.Search(ctx, "quick", &search.SearchOptions{IDsOnly: true})
	if id, err := it.Next(&got); err != nil || id != "p1" {
		t.Fatalf("IDsOnly: %q %v", id, err)
	}
}

func TestSearchCursorsOffsetsCounts(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		idx := openIndex(t, "many")
		var ids []string
		var docs []any
		for i := 0; i < 45; i++ {
			ids = append(ids, fmt.Sprintf("d%02d", i))
			docs = append(docs, &searchFLS{fields: []search.Field{{Name: "n", Value: float64(i)}, {Name: "t", Value: "common"}}, meta: &search.DocumentMetadata{Rank: 100 - i}})
		}
		if _, err := idx.PutMulti(ctx, ids, docs); err != nil {
			t.Fatal(err)
		}
		// No limit: the iterator pages on per-result cursors through all 45.
		all, err := searchIDs(ctx, idx, "common", nil)
		if err != nil || !reflect.DeepEqual(all, ids) {
			t.Fatalf("all: %v %v", all, err)
		}
		// Limit, Count and the cursor of the last result.
		it := idx.Search(ctx, "common", &search.SearchOptions{Limit: 10})
		var page []string
		for {
			id, err := it.Next(nil)
			if err == search.Done {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			page = append(page, id)
		}
		if !reflect.DeepEqual(page, ids[:10]) || it.Count() != 45 {
			t.Fatalf("page 1: %v, count %d", page, it.Count())
		}
		next, err := searchIDs(ctx, idx, "common", &search.SearchOptions{Limit: 10, Cursor: it.Cursor()})
		if err != nil || !reflect.DeepEqual(next, ids[10:20]) {
			t.Fatalf("page 2: %v %v", next, err)
		}
		// Offset.
		off, err := searchIDs(ctx, idx, "common", &search.SearchOptions{Limit: 5, Offset: 40})
		if err != nil || !reflect.DeepEqual(off, ids[40:]) {
			t.Fatalf("offset 40: %v %v", off, err)
		}
		// A cursor whose document was deleted resumes where it was.
		if err := idx.Delete(ctx, "d09"); err != nil {
			t.Fatal(err)
		}
		next, err = searchIDs(ctx, idx, "common", &search.SearchOptions{Limit: 3, Cursor: it.Cursor()})
		if err != nil || !reflect.DeepEqual(next, ids[10:13]) {
			t.Fatalf("after the cursor's document left: %v %v", next, err)
		}
		// A cursor belongs to its query, and must be one.
		for _, c := range []search.Cursor{it.Cursor(), "not a cursor!"} {
			if _, err := searchIDs(ctx, idx, "n > 3", &search.SearchOptions{Cursor: c}); err == nil || !strings.Contains(err.Error(), "INVALID_REQUEST") {
				t.Errorf("cursor %q on another query: %v", c, err)
			}
		}
		// CountAccuracy: the local count is exact whatever the accuracy.
		it = idx.Search(ctx, "n >= 4", &search.SearchOptions{Limit: 1, CountAccuracy: 5})
		if _, err := it.Next(nil); err != nil || it.Count() != 40 {
			t.Fatalf("count: %d %v", it.Count(), err)
		}
		tooMany := make([]string, 101)
		for i := range tooMany {
			tooMany[i] = fmt.Sprint("f", i)
		}
		for _, o := range []*search.SearchOptions{{Limit: 1001}, {Offset: 1001}, {CountAccuracy: 25001}, {Sort: &search.SortOptions{Limit: 10001}}, {Fields: tooMany}} {
			if _, err := searchIDs(ctx, idx, "common", o); err == nil || !strings.Contains(err.Error(), "INVALID_REQUEST") {
				t.Errorf("options %+v: %v", o, err)
			}
		}
		// An injected failure is the service's transient error.
		s.FailNext("search", "Search", 1)
		if _, err := searchIDs(ctx, idx, "common", nil); err == nil || !strings.Contains(err.Error(), "TRANSIENT_ERROR") {
			t.Fatalf("injected failure: %v", err)
		}
		// An index nobody put to is empty.
		if ids, err := searchIDs(ctx, openIndex(t, "none"), "x", nil); err != nil || len(ids) != 0 {
			t.Fatalf("empty index: %v %v", ids, err)
		}
	})
}

func TestSearchFacets(t *testing.T) {
	s := RunT(t)
	ctx := middlewareContext(t, s)
	idx := openIndex(t, "shop")
	items := []struct {
		id, typ string
		ram     float64
	}{{"a", "computer", 4}, {"b", "computer", 8}, {"c", "printer", 0}, {"d", "computer", 16}, {"e", "phone", 8}}
	for i, it := range items {
		doc := &searchFLS{fields: []search.Field{{Name: "name", Value: "item"}}, meta: &search.DocumentMetadata{
			Rank: 10 - i, Facets: []search.Facet{{Name: "type", Value: search.Atom(it.typ)}, {Name: "ram", Value: it.ram}}}}
		if _, err := idx.Put(ctx, it.id, doc); err != nil {
			t.Fatal(err)
		}
	}
	facets := func(opts *search.SearchOptions) ([]string, [][]search.FacetResult) {
		t.Helper()
		it := idx.Search(ctx, "item", opts)
		var ids []string
		for {
			id, err := it.Next(nil)
			if err == search.Done {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		fr, err := it.Facets()
		if err != nil {
			t.Fatal(err)
		}
		return ids, fr
	}
	// Discovery: the facets, each with its values by count; a number facet
	// as one range from its least to its greatest value.
	_, fr := facets(&search.SearchOptions{Facets: []search.FacetSearchOption{search.AutoFacetDiscovery(0, 0)}})
	if len(fr) != 2 || fr[0][0].Name != "type" || fr[0][0].Value != search.Atom("computer") || fr[0][0].Count != 3 ||
		len(fr[0]) != 3 || fr[1][0].Name != "ram" || fr[1][0].Count != 5 {
		t.Fatalf("discovery: %+v", fr)
	}
	// Named facets with values or ranges.
	_, fr = facets(&search.SearchOptions{Facets: []search.FacetSearchOption{
		search.FacetDiscovery("type", search.Atom("phone"), search.Atom("printer")),
		search.FacetDiscovery("ram", search.LessThan(8), search.AtLeast(8)),
	}})
	counts := func(rs []search.FacetResult) map[string]int {
		m := map[string]int{}
		for _, r := range rs {
			m[fmt.Sprint(r.Value)] = r.Count
		}
		return m
	}
	if got := counts(fr[0]); !reflect.DeepEqual(got, map[string]int{"phone": 1, "printer": 1}) {
		t.Errorf("type values: %v", got)
	}
	if len(fr[1]) != 2 || fr[1][0].Count != 3 || fr[1][1].Count != 2 {
		t.Errorf("ram ranges: %+v", fr[1])
	}
	// Refinements: alternatives within a facet, all facets apply.
	ids, _ := facets(&search.SearchOptions{Refinements: []search.Facet{
		{Name: "type", Value: search.Atom("computer")}, {Name: "type", Value: search.Atom("phone")},
		{Name: "ram", Value: search.AtLeast(8)},
	}})
	if strings.Join(ids, " ") != "b d e" {
		t.Errorf("refined: %v", ids)
	}
	ids, _ = facets(&search.SearchOptions{Refinements: []search.Facet{{Name: "ram", Value: search.Range{Start: 4, End: 8}}}})
	if strings.Join(ids, " ") != "a" {
		t.Errorf("refined by [4,8): %v", ids)
	}
	// Search results carry no facets (Get and List do), as in the SDK stub.
	var doc searchFLS
	if _, err := idx.Search(ctx, "item", nil).Next(&doc); err != nil || doc.meta == nil || len(doc.meta.Facets) != 0 || doc.meta.Rank != 10 {
		t.Errorf("search result: %+v %v", doc.meta, err)
	}
	// The depth bounds the documents counted.
	_, fr = facets(&search.SearchOptions{Facets: []search.FacetSearchOption{search.FacetDiscovery("type"), search.FacetDocumentDepth(2)}})
	if len(fr) != 1 || len(fr[0]) != 1 || fr[0][0].Count != 2 {
		t.Errorf("depth 2: %+v", fr)
	}
}

// TestSearchRawRequestLimits sends what the client would refuse, as
// another client could: the server applies production's limits itself.
func TestSearchRawRequestLimits(t *testing.T) {
	s := RunT(t)
	ctx := middlewareContext(t, s)
	put := func(ids ...string) (pmsg, error) {
		req, _ := newMsg("search.v2.IndexDocumentRequest")
		p := req.Mutable("params")
		p.Mutable("index_spec").Set("name", "raw")
		for _, id := range ids {
			d := p.AppendMsg("document")
			if id != "" {
				d.Set("id", id)
			}
			f := d.AppendMsg("field")
			f.Set("name", "n")
			v := f.Mutable("value")
			v.Set("type", int64(sfNumber))
			v.Set("string_value", "3e9")
		}
		resp, _ := newMsg("search.v2.IndexDocumentResponse")
		return resp, appengine.APICall(ctx, "search", "IndexDocument", protoV1(req), protoV1(resp))
	}
	resp, err := put("!bang", "has space", strings.Repeat("x", 501), "ok")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`must not start with "!"`, "visible printable ASCII", "under 500 bytes", "values must be between"} {
		st := resp.Msgs("status")[i]
		if st.Int("code") != searchInvalidRequest || !strings.Contains(st.Str("error_detail"), want) {
			t.Errorf("document %d: %d %q, want %q", i, st.Int("code"), st.Str("error_detail"), want)
		}
	}
	ids := make([]string, 201)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	if _, err := put(ids...); err == nil || !strings.Contains(err.Error(), "too many documents") {
		t.Fatalf("201 documents: %v", err)
	}
	if len(s.search.indexes) != 0 {
		t.Fatalf("refused puts made an index")
	}
}

// TestSearchListIndexesAndDeleteSchema drives the two administrative
// methods the Go client does not expose, as another client would.
func TestSearchListIndexesAndDeleteSchema(t *testing.T) {
	s := RunT(t)
	ctx := middlewareContext(t, s)
	for _, name := range []string{"b", "a"} {
		if _, err := openIndex(t, name).Put(ctx, "d", &searchFLS{fields: []search.Field{{Name: "t", Value: "x"}, {Name: "t", Value: search.Atom("y")}, {Name: "n", Value: 1.0}}}); err != nil {
			t.Fatal(err)
		}
	}
	other, _ := appengine.Namespace(ctx, "other")
	if _, err := openIndex(t, "c").Put(other, "d", &searchFLS{fields: []search.Field{{Name: "t", Value: "x"}}}); err != nil {
		t.Fatal(err)
	}
	list := func() pmsg {
		req, _ := newMsg("search.v2.ListIndexesRequest")
		req.Mutable("params").Set("fetch_schema", true)
		resp, _ := newMsg("search.v2.ListIndexesResponse")
		if err := appengine.APICall(ctx, "search", "ListIndexes", protoV1(req), protoV1(resp)); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := list()
	md := resp.Msgs("index_metadata")
	if len(md) != 2 || md[0].Msg("index_spec").Str("name") != "a" || md[1].Msg("index_spec").Str("name") != "b" {
		t.Fatalf("indexes of the default namespace: %v", resp.m)
	}
	fields := md[0].Msgs("field")
	if len(fields) != 2 || fields[0].Str("name") != "n" || !reflect.DeepEqual(fields[1].IntList("type"), []int64{sfText, sfAtom}) {
		t.Fatalf("schema: %v", md[0].m)
	}
	if md[0].Msg("storage").Int("amount_used") <= 0 || md[0].Msg("storage").Int("limit") != DefaultSearchLimit {
		t.Fatalf("storage: %v", md[0].m)
	}
	req, _ := newMsg("search.v2.DeleteSchemaRequest")
	req.Mutable("params").AppendMsg("index_spec").Set("name", "a")
	dresp, _ := newMsg("search.v2.DeleteSchemaResponse")
	if err := appengine.APICall(ctx, "search", "DeleteSchema", protoV1(req), protoV1(dresp)); err != nil || dresp.Msgs("status")[0].Int("code") != searchOK {
		t.Fatalf("DeleteSchema: %v %v", err, dresp.m)
	}
	if f := list().Msgs("index_metadata")[0].Msgs("field"); len(f) != 0 {
		t.Fatalf("schema after DeleteSchema: %d fields", len(f))
	}
}

// TestSearchListPagesAndConcurrency lists an index of more documents than
// a ListDocuments call returns, while other goroutines put and search.
func TestSearchListPagesAndConcurrency(t *testing.T) {
	s := RunT(t)
	ctx := middlewareContext(t, s)
	idx := openIndex(t, "pages")
	var ids []string
	var docs []any
	for i := 0; i < 250; i++ {
		ids = append(ids, fmt.Sprintf("d%03d", i))
		docs = append(docs, &searchFLS{fields: []search.Field{{Name: "t", Value: "hello"}}})
	}
	if _, err := idx.PutMulti(ctx, ids[:200], docs[:200]); err != nil {
		t.Fatal(err)
	}
	if _, err := idx.PutMulti(ctx, ids[200:], docs[200:]); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() {
		for i := 0; i < 20; i++ {
			if _, err := openIndex(t, "pages").Put(ctx, fmt.Sprint("z", i), &searchFLS{fields: []search.Field{{Name: "t", Value: "other"}}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for i := 0; i < 20; i++ {
			if _, err := searchIDs(ctx, openIndex(t, "pages"), "hello", &search.SearchOptions{Limit: 5}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if got := listIDs(t, ctx, idx, nil); len(got) < 250 || !reflect.DeepEqual(got[:250], ids) {
		t.Fatalf("list of 250: %d ids", len(got))
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
