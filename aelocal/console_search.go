package aelocal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The search pages: the indexes of each namespace, an index's documents in
// pages, one document, a search box that runs a query in the query
// language against an index, and a button that deletes a document.
//
// The documents, searches and deletes go through the search service's own
// methods (consoleCall), so the pages show what the app would get and a
// bad query fails with the service's own words. Only the index list reads
// the service's state: ListIndexes answers one namespace at a time and has
// no document count, and production's console shows both.

const (
	searchDocsPerPage    = 20
	searchResultsPerPage = 20
)

// searchTypeNames name the field and facet types as the Go client does.
var searchTypeNames = map[int64]string{sfText: "text", sfHTML: "HTML", sfAtom: "atom", sfDate: "date", sfNumber: "number", sfGeo: "geo"}

type searchIndexRow struct {
	Name  string
	Docs  int
	Bytes int
}

type searchIndexesPage struct {
	NS         string
	Namespaces []string // namespaces with a non-empty index
	Indexes    []searchIndexRow
	Used       int // bytes all indexes take
	Limit      int // bytes they may take
}

// searchFieldView is one field or facet of a document, its value cut for
// the page.
type searchFieldView struct {
	Name, Type, Language string
	Value                string
	Size, Cut            int // bytes of the value, and of it left out
}

type searchDocView struct {
	ID       string
	Rank     int64
	Language string
	Fields   []searchFieldView
	Facets   []searchFieldView
}

// searchIndexPage is an index's documents, or the matches of a query.
type searchIndexPage struct {
	NS, Index string
	Docs      []searchDocView

	// Listing by ID.
	Start, Next string // the first ID of this page and of the next ("" if none)

	// A search.
	Query    string
	Searched bool
	Matched  int
	Offset   int
}

// End is the 1-based number of the last match shown.
func (p *searchIndexPage) End() int { return p.Offset + len(p.Docs) }

// Prev is the offset of the previous page of matches, -1 on the first.
func (p *searchIndexPage) Prev() int {
	if p.Offset == 0 {
		return -1
	}
	return max(0, p.Offset-searchResultsPerPage)
}

// More reports whether a next page of matches can be shown: production's
// offset stops at searchMaxOffset.
func (p *searchIndexPage) More() bool { return p.End() < p.Matched && p.End() <= searchMaxOffset }

// Page is the URL of the matches from offset.
func (p *searchIndexPage) Page(offset int) string {
	// Not queryString: an empty query is still a search.
	q := url.Values{"index": {p.Index}, "q": {p.Query}, "offset": {strconv.Itoa(max(0, offset))}}
	if p.NS != "" {
		q.Set("ns", p.NS)
	}
	return "/search/index?" + q.Encode()
}

func (c *console) searchRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /search", c.serveSearchIndexes)
	mux.HandleFunc("GET /search/index", c.serveSearchIndex)
	mux.HandleFunc("GET /search/document", c.serveSearchDocument)
	c.post(mux, "/search/delete", c.postSearchDelete)
}

// consoleIndexes lists the namespaces that have documents and the indexes
// of namespace ns that have any, by name.
func (x *searchService) consoleIndexes(ns string) (namespaces []string, rows []searchIndexRow, used, limit int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	seen := map[string]bool{}
	for k, idx := range x.indexes {
		if len(idx.docs) == 0 {
			continue // as ListIndexes: an emptied index is not listed
		}
		if !seen[k.namespace] {
			seen[k.namespace] = true
			namespaces = append(namespaces, k.namespace)
		}
		if k.namespace == ns {
			rows = append(rows, searchIndexRow{Name: k.name, Docs: len(idx.docs), Bytes: idx.cost})
		}
	}
	sort.Strings(namespaces)
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return namespaces, rows, x.cost, x.limit
}

func (c *console) serveSearchIndexes(w http.ResponseWriter, r *http.Request) {
	d := &searchIndexesPage{NS: r.URL.Query().Get("ns")}
	d.Namespaces, d.Indexes, d.Used, d.Limit = c.s.search.consoleIndexes(d.NS)
	c.render(w, r, http.StatusOK, "search", &consolePage{Title: "Search", Section: "Search", Data: d})
}

// searchIndexLink is the URL of an index's documents.
func searchIndexLink(ns, index string) string {
	return "/search/index" + string(queryString("ns", ns, "index", index))
}

// fillSpec names the index ns/index in an IndexSpec.
func fillSpec(spec pmsg, ns, index string) {
	spec.Set("name", index)
	if ns != "" {
		spec.Set("namespace", ns)
	}
}

// searchStatus is the error of a failed RequestStatus, nil for OK.
func searchStatus(st pmsg) error {
	if st.Int("code") == searchOK {
		return nil
	}
	return errors.New(st.Str("error_detail"))
}

func (c *console) serveSearchIndex(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &searchIndexPage{NS: q.Get("ns"), Index: q.Get("index"), Query: q.Get("q"), Start: q.Get("start")}
	d.Searched = q.Has("q")
	back := []consoleLink{{"the index " + d.Index, searchIndexLink(d.NS, d.Index)}}
	if d.Searched {
		d.Offset, _ = strconv.Atoi(q.Get("offset"))
		d.Offset = max(0, min(d.Offset, searchMaxOffset))
		out, err := c.s.consoleCall("search", "Search", func(in pmsg) {
			p := in.Mutable("params")
			fillSpec(p.Mutable("index_spec"), d.NS, d.Index)
			p.Set("query", d.Query)
			p.Set("limit", int64(searchResultsPerPage))
			p.Set("offset", int64(d.Offset))
		})
		if err == nil {
			err = searchStatus(out.Msg("status"))
		}
		if err != nil {
			c.failBack(w, r, http.StatusBadRequest, fmt.Errorf("the query %q cannot run: %v", d.Query, err), back)
			return
		}
		d.Matched = int(out.Int("matched_count"))
		for _, res := range out.Msgs("result") {
			d.Docs = append(d.Docs, viewSearchDoc(res.Msg("document"), true))
		}
	} else {
		out, err := c.s.consoleCall("search", "ListDocuments", func(in pmsg) {
			p := in.Mutable("params")
			fillSpec(p.Mutable("index_spec"), d.NS, d.Index)
			if d.Start != "" {
				p.Set("start_doc_id", d.Start)
			}
			p.Set("limit", int64(searchDocsPerPage+1))
		})
		if err == nil {
			err = searchStatus(out.Msg("status"))
		}
		if err != nil {
			c.failBack(w, r, http.StatusBadRequest, err, nil)
			return
		}
		docs := out.Msgs("document")
		if len(docs) > searchDocsPerPage {
			d.Next = docs[searchDocsPerPage].Str("id")
			docs = docs[:searchDocsPerPage]
		}
		for _, doc := range docs {
			d.Docs = append(d.Docs, viewSearchDoc(doc, true))
		}
	}
	c.render(w, r, http.StatusOK, "searchindex", &consolePage{Title: "Index " + d.Index, Section: "Search", Data: d})
}

// searchDocPage is one document.
type searchDocPage struct {
	NS, Index string
	Doc       searchDocView
}

func (c *console) serveSearchDocument(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &searchDocPage{NS: q.Get("ns"), Index: q.Get("index")}
	id := q.Get("id")
	// ListDocuments from the ID, one document: the one asked for if it is
	// there (the client's Get does the same).
	out, err := c.s.consoleCall("search", "ListDocuments", func(in pmsg) {
		p := in.Mutable("params")
		fillSpec(p.Mutable("index_spec"), d.NS, d.Index)
		p.Set("start_doc_id", id)
		p.Set("limit", int64(1))
	})
	if err == nil {
		err = searchStatus(out.Msg("status"))
	}
	back := []consoleLink{{"the index " + d.Index, searchIndexLink(d.NS, d.Index)}}
	if err != nil {
		c.failBack(w, r, http.StatusBadRequest, err, back)
		return
	}
	docs := out.Msgs("document")
	if len(docs) == 0 || docs[0].Str("id") != id {
		c.failBack(w, r, http.StatusNotFound, fmt.Errorf("the index %q has no document %q", d.Index, id), back)
		return
	}
	d.Doc = viewSearchDoc(docs[0], false)
	c.render(w, r, http.StatusOK, "searchdoc", &consolePage{Title: "Document " + id, Section: "Search", Data: d})
}

func (c *console) postSearchDelete(w http.ResponseWriter, r *http.Request) {
	ns, index, id := r.PostForm.Get("ns"), r.PostForm.Get("index"), r.PostForm.Get("id")
	out, err := c.s.consoleCall("search", "DeleteDocument", func(in pmsg) {
		p := in.Mutable("params")
		fillSpec(p.Mutable("index_spec"), ns, index)
		p.Append("doc_id", id)
	})
	if err == nil {
		for _, st := range out.Msgs("status") {
			if err = searchStatus(st); err != nil {
				break
			}
		}
	}
	if err != nil {
		c.failBack(w, r, http.StatusBadRequest, err, []consoleLink{{"the index " + index, searchIndexLink(ns, index)}})
		return
	}
	back := url.Values{"index": {index}}
	if ns != "" {
		back.Set("ns", ns)
	}
	redirect(w, r, "/search/index", back, "docdeleted")
}

// viewSearchDoc prepares a search.v2.Document for a page: for a list,
// each value on one short line; for the document's own page, cut as the
// entity page cuts text.
func viewSearchDoc(doc pmsg, short bool) searchDocView {
	v := searchDocView{ID: doc.Str("id"), Rank: doc.Int("order_id"), Language: doc.Str("language")}
	for _, f := range doc.Msgs("field") {
		fv := f.Msg("value")
		typ := fv.Int("type")
		val := fv.Str("string_value")
		switch typ {
		case sfNumber:
			val = searchNumberText(val)
		case sfDate:
			if ms, err := strconv.ParseInt(val, 10, 64); err == nil {
				val = time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
			}
		case sfGeo:
			g := fv.Msg("geo")
			val = strconv.FormatFloat(g.Float("lat"), 'g', -1, 64) + ", " + strconv.FormatFloat(g.Float("lng"), 'g', -1, 64)
		}
		v.Fields = append(v.Fields, cutSearchValue(searchFieldView{Name: f.Str("name"), Type: searchTypeNames[typ], Language: fv.Str("language"), Value: val}, short))
	}
	for _, f := range doc.Msgs("facet") {
		fv := f.Msg("value")
		val := fv.Str("string_value")
		if fv.Int("type") == sfNumber {
			val = searchNumberText(val)
		}
		v.Facets = append(v.Facets, cutSearchValue(searchFieldView{Name: f.Str("name"), Type: searchTypeNames[fv.Int("type")], Value: val}, short))
	}
	return v
}

// searchNumberText shows a number as people write it: the Go client sends
// 1984 as "1.984e+03".
func searchNumberText(s string) string {
	if x, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return s
}

// cutSearchValue cuts a value as the datastore pages do: to one short
// line in a list (shorten), to entityTextShown bytes and entityLinesShown
// lines on a document's page.
func cutSearchValue(f searchFieldView, short bool) searchFieldView {
	f.Size = len(f.Value)
	if short {
		f.Value = shorten(strings.Join(strings.Fields(f.Value), " "))
		return f
	}
	shown, _ := cutText(f.Value, entityTextShown)
	if i := nthIndex(shown, '\n', entityLinesShown); i >= 0 {
		shown = shown[:i]
	}
	f.Value, f.Cut = shown, len(f.Value)-len(shown)
	return f
}
