package aelocal

import (
	"testing"
)

// FuzzSearchQuery feeds arbitrary queries and expressions to the parsers
// and runs what parses against a few documents: no input may panic.
func FuzzSearchQuery(f *testing.F) {
	for _, seed := range []string{
		"", "hello", `"a b" OR -c`, "f:(a OR b) NOT g:~c", "price >= 5 d < 2020-01-01",
		"distance(w, geopoint(1, 2)) < 5", "a AND (b", `x\`, "NOT", "(((", "~", "+\"\"",
	} {
		f.Add(seed, "snippet(\"a\", t, 10) + count(t)")
	}
	f.Add("a", "max(n, -1) / 0")
	f.Add("a", `snippet("a", t, -1)`)
	f.Add("a", "distance(g, geopoint(n, 2)) * _score - _rank")
	var docs []*searchDoc
	for _, fields := range [][][3]any{
		{{"t", sfText, "Hello a b c world"}, {"n", sfNumber, "5"}, {"g", sfGeo, ""}},
		{{"t", sfHTML, "<b>a</b> &amp; b"}, {"a", sfAtom, "A B"}, {"d", sfDate, "1577836800000"}},
	} {
		pb, _ := newMsg("search.v2.Document")
		pb.Set("id", "x")
		for _, fl := range fields {
			fm := pb.AppendMsg("field")
			fm.Set("name", fl[0].(string))
			v := fm.Mutable("value")
			v.Set("type", int64(fl[1].(int)))
			if fl[1].(int) == sfGeo {
				g := v.Mutable("geo")
				g.Set("lat", 1.0)
				g.Set("lng", 2.0)
			} else {
				v.Set("string_value", fl[2].(string))
			}
		}
		d, err := decodeSearchDoc(pb)
		if err != nil {
			f.Fatal(err)
		}
		docs = append(docs, d)
	}
	f.Fuzz(func(t *testing.T, query, expr string) {
		if q, err := parseSearchQuery(query); err == nil && checkQuery(q) == nil && q != nil {
			m := newSearchMatcher()
			for _, d := range docs {
				m.match(q, d)
			}
			_ = q.String()
		}
		x, err := parseExpr(expr)
		if err != nil {
			return
		}
		for _, d := range docs {
			env := &xenv{r: &searchResult{doc: d, score: 1}}
			env.eval(x)
		}
	})
}
