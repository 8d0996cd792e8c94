package aelocal

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// searchResult is a matched document with its score and sort keys.
type searchResult struct {
	doc   *searchDoc
	score float64
	keys  []searchSortKey
}

// searchSortKey is the value of one sort expression for one document: like
// the SDK stub, a text and a numeric part, compared in that order, each the
// expression's value if it has that type and the default otherwise.
type searchSortKey struct {
	text string
	num  float64
}

// searchSortSpec is a parsed sort expression.
type searchSortSpec struct {
	expr    *xnode
	src     string
	desc    bool
	defText string
	defNum  float64
}

// searchRequest is a Search call's parameters, checked.
type searchRequest struct {
	query    string
	q        *qnode
	limit    int
	offset   int
	cursor   string
	cursorOK bool
	perRes   bool // PER_RESULT cursors
	single   bool // a SINGLE cursor for the page
	score    bool
	sorts    []searchSortSpec
	names    map[string]bool // fields to return; nil: all
	keysOnly bool
	exprs    []struct {
		name string
		expr *xnode
	}
}

// Cursor types (SearchParams.CursorType).
const (
	searchCursorSingle    = 1
	searchCursorPerResult = 2
)

// parseSearchRequest checks what a search asks before it runs; the error
// is the detail of an INVALID_REQUEST status.
func parseSearchRequest(p pmsg) (*searchRequest, error) {
	r := &searchRequest{query: p.Str("query"), limit: 20}
	fail := func(format string, args ...any) (*searchRequest, error) {
		return nil, fmt.Errorf(format, args...)
	}
	if len(r.query) > searchMaxQueryBytes {
		return fail("query must be under %d bytes.", searchMaxQueryBytes)
	}
	if p.Has("limit") {
		r.limit = int(p.Int("limit"))
	}
	if r.limit < 0 || r.limit > searchMaxLimit {
		return fail("limit must be between 0 and %d, got %d", searchMaxLimit, r.limit)
	}
	r.offset = int(p.Int("offset"))
	if r.offset < 0 || r.offset > searchMaxOffset {
		return fail("offset must be between 0 and %d, got %d", searchMaxOffset, r.offset)
	}
	if a := p.Int("matched_count_accuracy"); a < 0 || a > searchMaxCountAccuracy {
		return fail("matched_count_accuracy must be between 0 and %d, got %d", searchMaxCountAccuracy, a)
	}
	r.cursor, r.cursorOK = p.Str("cursor"), p.Has("cursor")
	if r.cursorOK && p.Has("offset") && r.offset > 0 {
		return fail("cannot set cursor and offset together")
	}
	r.perRes = p.Int("cursor_type") == searchCursorPerResult
	r.single = p.Int("cursor_type") == searchCursorSingle
	if p.Has("scorer_spec") {
		sc := p.Msg("scorer_spec")
		r.score = sc.Has("scorer")
		if l := sc.Int("limit"); sc.Has("limit") && (l < 0 || l > searchMaxSortLimit) {
			return fail("limit must be between 0 and %d, got %d", searchMaxSortLimit, l)
		}
	}
	var err error
	if r.q, err = parseSearchQuery(r.query); err == nil {
		err = checkQuery(r.q)
	}
	if err != nil {
		return fail("Failed to parse search request \"%s\"; %v", r.query, err)
	}
	for _, ss := range p.Msgs("sort_spec") {
		src := ss.Str("sort_expression")
		x, err := parseExpr(src)
		if err != nil {
			return fail("Failed to parse search request \"%s\"; %v", r.query, err)
		}
		spec := searchSortSpec{expr: x, src: src, desc: !ss.Has("sort_descending") || ss.Bool("sort_descending"),
			defText: ss.Str("default_value_text"), defNum: ss.Float("default_value_numeric")}
		if x.kind == 'f' && x.str == "_rank" && !spec.desc {
			return fail("Failed to parse search request \"%s\"; SortSpec order must be descending in '_rank'", r.query)
		}
		r.sorts = append(r.sorts, spec)
	}
	fs := p.Msg("field_spec")
	if names := fs.BytesList("name"); len(names) > 0 {
		if len(names) > searchMaxReturnFields {
			return fail("cannot return more than %d fields", searchMaxReturnFields)
		}
		r.names = make(map[string]bool)
		for _, n := range names {
			r.names[string(n)] = true
		}
	}
	r.keysOnly = p.Bool("keys_only")
	for _, e := range fs.Msgs("expression") {
		if err := searchValidFieldName(e.Str("name")); err != nil {
			return fail("%v", err)
		}
		x, err := parseExpr(e.Str("expression"))
		if err != nil {
			return fail("%v", err)
		}
		r.exprs = append(r.exprs, struct {
			name string
			expr *xnode
		}{e.Str("name"), x})
	}
	return r, nil
}

func searchSearch(s *Server, in, out pmsg) error {
	params := in.Msg("params")
	key, err := searchSpecKey(params.Msg("index_spec"))
	if err != nil {
		return err
	}
	out.Set("matched_count", int64(0))
	st := out.Mutable("status")
	invalid := func(err error) error {
		out.Clear("result")
		out.Clear("facet_result")
		out.Set("matched_count", int64(0))
		setStatus(st, searchInvalidRequest, err.Error())
		return nil
	}
	req, err := parseSearchRequest(params)
	if err != nil {
		return invalid(err)
	}
	facets, err := parseFacetRequest(params)
	if err != nil {
		return invalid(err)
	}
	x := s.search
	x.mu.RLock()
	defer x.mu.RUnlock()
	setStatus(st, searchOK, "")
	idx := x.indexes[key]
	if idx == nil {
		return nil // an index nobody put to is empty
	}
	m := newSearchMatcher()
	results := make([]*searchResult, 0, len(idx.docs))
	for _, d := range idx.docs {
		if req.q == nil || m.match(req.q, d) {
			results = append(results, &searchResult{doc: d})
		}
	}
	results = facets.refine(results)
	if req.score {
		scoreDocs(idx, req.q, results)
	}
	if err := sortResults(results, req); err != nil {
		return invalid(err)
	}
	out.Set("matched_count", int64(len(results)))

	start := req.offset
	if req.cursorOK {
		if start, err = decodeSearchCursor(req, results); err != nil {
			return invalid(err)
		}
	}
	end := min(start+req.limit, len(results))
	for i := start; i < end; i++ {
		if err := fillSearchResult(out.AppendMsg("result"), results[i], i, req); err != nil {
			return invalid(err)
		}
	}
	if req.single && end < len(results) && end > start {
		out.Set("cursor", encodeSearchCursor(req, end-1, results[end-1].doc.id))
	}
	if err := facets.fill(out, results); err != nil {
		return invalid(err)
	}
	return nil
}

// sortResults orders results: by the sort expressions if there are any,
// else by score if scoring was asked for, else by rank, highest first.
// Ties keep rank order, then ID order, so a search answers the same way
// each time.
func sortResults(results []*searchResult, req *searchRequest) error {
	for _, r := range results {
		env := &xenv{r: r, sort: true}
		for _, spec := range req.sorts {
			k := searchSortKey{text: spec.defText, num: spec.defNum}
			v, err := env.eval(spec.expr)
			switch {
			case errors.Is(err, errNoValue):
			case err != nil:
				return err // "Failed to parse sort expression ...", as the SDK stub says
			case v.typ == sfNumber || v.typ == sfDate:
				k.num = v.num
			case v.typ == sfGeo:
			default:
				k.text = v.str
			}
			r.keys = append(r.keys, k)
		}
	}
	sort.SliceStable(results, func(i, j int) bool {
		a, b := results[i], results[j]
		for n, spec := range req.sorts {
			c := strings.Compare(a.keys[n].text, b.keys[n].text)
			if c == 0 {
				switch {
				case a.keys[n].num < b.keys[n].num:
					c = -1
				case a.keys[n].num > b.keys[n].num:
					c = 1
				}
			}
			if c != 0 {
				return c < 0 != spec.desc
			}
		}
		if len(req.sorts) == 0 && req.score && a.score != b.score {
			return a.score > b.score
		}
		if a.doc.rank != b.doc.rank {
			return a.doc.rank > b.doc.rank
		}
		return a.doc.id < b.doc.id
	})
	return nil
}

// fillSearchResult writes one result: the document (its ID only for
// keys_only; else its language, rank and the fields asked for), its score,
// cursor and expressions. Facets come back from Get and List, not with
// search results, as in the SDK stub.
func fillSearchResult(res pmsg, r *searchResult, pos int, req *searchRequest) error {
	doc := res.Mutable("document")
	doc.Set("id", r.doc.id)
	if !req.keysOnly {
		if r.doc.pb.Has("language") {
			doc.Set("language", r.doc.pb.Str("language"))
		}
		for _, f := range r.doc.pb.Msgs("field") {
			if req.names == nil || req.names[f.Str("name")] {
				doc.AppendMsg("field").CopyFrom(f)
			}
		}
		doc.Set("order_id", r.doc.rank)
	}
	if req.perRes {
		res.Set("cursor", encodeSearchCursor(req, pos, r.doc.id))
	}
	if req.score {
		res.Append("score", r.score)
	}
	env := &xenv{r: r}
	for _, e := range req.exprs {
		v, err := env.eval(e.expr)
		if errors.Is(err, errNoValue) {
			continue // production leaves out what a document cannot compute
		}
		if err != nil {
			return err
		}
		f := res.AppendMsg("expression")
		f.Set("name", e.name)
		fv := f.Mutable("value")
		fv.Set("type", v.typ)
		switch v.typ {
		case sfNumber:
			fv.Set("string_value", strconv.FormatFloat(v.num, 'g', -1, 64))
		case sfDate:
			fv.Set("string_value", strconv.FormatInt(int64(v.num), 10))
		case sfGeo:
			g := fv.Mutable("geo")
			g.Set("lat", v.lat)
			g.Set("lng", v.lng)
		default:
			fv.Set("string_value", v.str)
		}
	}
	return nil
}

// A search cursor names the document it follows and where that document
// was, and is bound to the query and sort it came from:
// "v1|<hash>|<position>|<doc id>", base64url. Resuming finds that document
// among the results and starts after it.
func searchCursorHash(req *searchRequest) string {
	h := sha256.New()
	h.Write([]byte(req.query))
	for _, s := range req.sorts {
		fmt.Fprintf(h, "\x00%s\x00%v", s.src, s.desc)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

func encodeSearchCursor(req *searchRequest, pos int, id string) string {
	return base64.URLEncoding.EncodeToString([]byte("v1|" + searchCursorHash(req) + "|" + strconv.Itoa(pos) + "|" + id))
}

// decodeSearchCursor returns where the results after a cursor start. A
// cursor whose document has since left the results starts where that
// document was.
func decodeSearchCursor(req *searchRequest, results []*searchResult) (int, error) {
	raw, err := base64.URLEncoding.DecodeString(req.cursor)
	parts := strings.SplitN(string(raw), "|", 4)
	var pos int
	if err == nil && len(parts) == 4 {
		pos, err = strconv.Atoi(parts[2])
	}
	if err != nil || len(parts) != 4 || parts[0] != "v1" || pos < 0 {
		return 0, fmt.Errorf("Failed to parse search request \"%s\"; Invalid cursor string: %s", req.query, req.cursor)
	}
	if parts[1] != searchCursorHash(req) {
		return 0, fmt.Errorf("Failed to execute search request \"%s\"", req.query)
	}
	for i, r := range results {
		if r.doc.id == parts[3] {
			return i + 1, nil
		}
	}
	// The document has left the results (deleted, or changed so that it
	// no longer matches): those that followed it moved up by one.
	return min(pos, len(results)), nil
}
