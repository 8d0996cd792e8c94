package aelocal

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/search"
)

// consoleSearchDoc is a document with a rank and facets, as an app saves
// one through search.FieldLoadSaver.
type consoleSearchDoc struct {
	fields []search.Field
	meta   *search.DocumentMetadata
}

func (d *consoleSearchDoc) Load(f []search.Field, m *search.DocumentMetadata) error {
	d.fields, d.meta = f, m
	return nil
}

func (d *consoleSearchDoc) Save() ([]search.Field, *search.DocumentMetadata, error) {
	return d.fields, d.meta, nil
}

func TestConsoleSearch(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	books := openIndex(t, "books")
	long := strings.Repeat("A desert planet and its spice. ", 200) // past what a page shows
	dune := &consoleSearchDoc{
		fields: []search.Field{
			{Name: "Title", Value: "Dune"},
			{Name: "Author", Value: search.Atom("Frank Herbert")},
			{Name: "Year", Value: float64(1965)},
			{Name: "Published", Value: time.Date(1965, 8, 1, 0, 0, 0, 0, time.UTC)},
			{Name: "Shelf", Value: appengine.GeoPoint{Lat: 47.5, Lng: 19.04}},
			{Name: "Blurb", Value: long, Language: "en"},
		},
		meta: &search.DocumentMetadata{Rank: 42, Facets: []search.Facet{{Name: "genre", Value: search.Atom("sf")}, {Name: "pages", Value: float64(412)}}},
	}
	neuromancer := &consoleSearchDoc{fields: []search.Field{{Name: "Title", Value: "Neuromancer"}, {Name: "Year", Value: float64(1984)}}}
	if _, err := books.PutMulti(ctx, []string{"dune", "neuromancer"}, []interface{}{dune, neuromancer}); err != nil {
		t.Fatal(err)
	}
	nsCtx, err := appengine.Namespace(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openIndex(t, "notes").Put(nsCtx, "n1", &consoleSearchDoc{fields: []search.Field{{Name: "Text", Value: "hello"}}}); err != nil {
		t.Fatal(err)
	}

	// The section lists the indexes of the default namespace, and the
	// namespaces that have any.
	code, page := getPage(t, s, "/")
	mustContain(t, page, `<a href="/search">Search</a>`)
	code, page = getPage(t, s, "/search")
	if code != http.StatusOK {
		t.Fatalf("GET /search: %d\n%s", code, page)
	}
	mustContain(t, page, `href="/search?ns=tenant-a"`, `<a href="/search/index?index=books">books</a>`, `<td data-label="Documents" class="num">2</td>`, `<td data-label="Storage used" class="num">`)
	if strings.Contains(page, "notes") {
		t.Fatalf("the default namespace lists tenant-a's index:\n%s", page)
	}
	_, page = getPage(t, s, "/search?ns=tenant-a")
	mustContain(t, page, `<a href="/search/index?index=notes&amp;ns=tenant-a">notes</a>`)

	// The index's documents, each value on one short line.
	_, page = getPage(t, s, "/search/index?index=books")
	mustContain(t, page, `href="/search/document?id=dune&amp;index=books"`, `href="/search/document?id=neuromancer&amp;index=books"`,
		`<td data-label="Rank" class="num">42</td>`, "A desert planet and its spice. A desert…", "1965-08-01T00:00:00Z",
		`<span class="note">Year:</span> 1984`)

	// A query finds the right document.
	_, page = getPage(t, s, "/search/index?index=books&q="+url.QueryEscape("Title:dune"))
	mustContain(t, page, "Matches 1–1 of 1", `href="/search/document?id=dune&amp;index=books"`)
	if strings.Contains(page, "id=neuromancer") {
		t.Fatalf("Title:dune matched neuromancer:\n%s", page)
	}
	_, page = getPage(t, s, "/search/index?index=books&q="+url.QueryEscape("Year > 1970"))
	mustContain(t, page, "Matches 1–1 of 1", "id=neuromancer")
	_, page = getPage(t, s, "/search/index?index=books&q="+url.QueryEscape("Title:solaris"))
	mustContain(t, page, "No document matches.")

	// A bad query says why, and the way back to the index.
	code, page = getPage(t, s, "/search/index?index=books&q="+url.QueryEscape("Title:(dune"))
	if code != http.StatusBadRequest {
		t.Fatalf("a bad query: %d\n%s", code, page)
	}
	mustContain(t, page, "Failed to parse search request", `<a href="/search/index?index=books">the index books</a>`)

	// One document: fields with their types, facets, rank, a long value cut.
	_, page = getPage(t, s, "/search/document?index=books&id=dune")
	mustContain(t, page, `<dd id="doc-rank">42</dd>`, `<td data-label="Type">atom</td>`, "Frank Herbert", "47.5, 19.04",
		`<td data-label="Facet">genre</td><td data-label="Type">atom</td><td data-label="Value" class="value"><span class="text">sf</span>`,
		`<td data-label="Facet">pages</td><td data-label="Type">number</td><td data-label="Value" class="value"><span class="text">412</span>`,
		fmt.Sprintf("… %s more (%s in all).", fmtSize(len(long)-entityTextShown), fmtSize(len(long))))
	if code, page := getPage(t, s, "/search/document?index=books&id=solaris"); code != http.StatusNotFound {
		t.Fatalf("a missing document: %d\n%s", code, page)
	}

	// Deleting takes the page's POST with its token; a GET, or a POST
	// without the token or from another site, changes nothing.
	token := tokenFor(t, page, "/search/delete")
	form := url.Values{"index": {"books"}, "id": {"dune"}}
	if code, _ := getPage(t, s, "/search/delete?"+form.Encode()); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET of the delete URL: %d", code)
	}
	withToken := url.Values{"index": {"books"}, "id": {"dune"}, "csrf": {token}}
	for _, tc := range []struct {
		name   string
		form   url.Values
		header http.Header
	}{
		{"no token", form, nil},
		{"another form's token", url.Values{"index": {"books"}, "id": {"dune"}, "csrf": {s.console.token("/memcache/flush")}}, nil},
		{"cross-site", withToken, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"other origin", withToken, http.Header{"Origin": {"http://evil.example"}}},
	} {
		if resp := postForm(t, s, "/search/delete", tc.form, tc.header); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", tc.name, resp.StatusCode)
		}
	}
	var got consoleSearchDoc
	if err := books.Get(ctx, "dune", &got); err != nil {
		t.Fatalf("dune after the refused deletes: %v", err)
	}
	resp := postForm(t, s, "/search/delete", withToken, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/search/index?done=docdeleted&index=books" {
		t.Fatalf("delete: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if err := books.Get(ctx, "dune", &got); err != search.ErrNoSuchDocument {
		t.Fatalf("dune after the delete: %v", err)
	}
	_, page = getPage(t, s, "/search/index?done=docdeleted&index=books")
	mustContain(t, page, "Document deleted.", "id=neuromancer")
}

// TestConsoleSearchPages pages through an index's documents and a search's
// matches.
func TestConsoleSearchPages(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	idx := openIndex(t, "many")
	n := searchDocsPerPage + 5
	ids := make([]string, n)
	docs := make([]interface{}, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%02d", i)
		docs[i] = &consoleSearchDoc{fields: []search.Field{{Name: "Text", Value: "word"}}, meta: &search.DocumentMetadata{Rank: n - i}}
	}
	if _, err := idx.PutMulti(ctx, ids, docs); err != nil {
		t.Fatal(err)
	}
	_, page := getPage(t, s, "/search/index?index=many")
	next := fmt.Sprintf(`href="/search/index?index=many&amp;start=d%02d" rel="next"`, searchDocsPerPage)
	mustContain(t, page, "id=d00&amp;", "id=d19&amp;", next)
	if strings.Contains(page, "id=d20&amp;") {
		t.Fatalf("the first page shows more than %d documents", searchDocsPerPage)
	}
	_, page = getPage(t, s, fmt.Sprintf("/search/index?index=many&start=d%02d", searchDocsPerPage))
	mustContain(t, page, "id=d20&amp;", "id=d24&amp;", `href="/search/index?index=many">« First</a>`)
	if strings.Contains(page, "id=d19&amp;") || strings.Contains(page, `rel="next"`) {
		t.Fatalf("the last page:\n%s", page)
	}

	// An empty query is a search too, and its pages stay searches.
	_, page = getPage(t, s, "/search/index?index=many&q=")
	mustContain(t, page, fmt.Sprintf("Matches 1–%d of %d", searchResultsPerPage, n), `href="/search/index?index=many&amp;offset=20&amp;q=" rel="next"`)
	_, page = getPage(t, s, "/search/index?index=many&offset=20&q=")
	mustContain(t, page, fmt.Sprintf("Matches 21–%d of %d", n, n), "id=d24&amp;", `rel="prev"`)
}
