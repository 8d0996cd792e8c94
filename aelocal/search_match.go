package aelocal

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Matching a parsed query against documents, by production's documented
// rules for each field type:
//
//   - text and HTML fields hold a value that appears among their words; a
//     quoted phrase, or a value that tokenizes to several words, must
//     appear as consecutive words; "~word" matches words of the same stem.
//   - an atom field holds a value equal to its whole content, ignoring case.
//   - number fields compare with = : < <= > >= against a number.
//   - date fields compare with = : < <= > >= against a date written
//     yyyy-mm-dd, by the day (production keeps dates as days).
//   - geo fields match only through distance(field, geopoint(lat, lng))
//     with < <= > >= and a distance in meters.
//
// A global value (no field) matches a document with any field that holds
// it, by those rules with ":".

// earthRadiusMeters is the radius production's distance() uses (the SDK's
// geo_util).
const earthRadiusMeters = 6371010

// searchDistance is the great-circle distance in meters (haversine).
func searchDistance(lat1, lng1, lat2, lng2 float64) float64 {
	rad := math.Pi / 180
	dlat := (lat1 - lat2) * rad
	dlng := (lng1 - lng2) * rad
	a := math.Pow(math.Sin(dlat/2), 2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Pow(math.Sin(dlng/2), 2)
	return 2 * earthRadiusMeters * math.Asin(math.Sqrt(a))
}

// checkQuery refuses what production refuses before it looks at a
// document: "!=", an inequality with neither a number nor a date, a
// malformed distance().
func checkQuery(n *qnode) error {
	if n == nil {
		return nil
	}
	if n.op != qRestrict {
		for _, k := range n.kids {
			if err := checkQuery(k); err != nil {
				return err
			}
		}
		return nil
	}
	if n.cmp == "!=" {
		return &qerr{"!= comparison operator is not available"}
	}
	if n.fn != nil {
		_, _, _, err := distanceArgs(n)
		return err
	}
	switch n.cmp {
	case "<", "<=", ">", ">=":
		if _, err := strconv.ParseFloat(n.val.text, 64); err == nil {
			return nil
		}
		if _, ok := searchParseDate(n.val.text); ok {
			return nil
		}
		return &qerr{fmt.Sprintf("Unable to compare %q with %q", n.field, n.val.text)}
	}
	return nil
}

// distanceArgs reads distance(field, geopoint(lat, lng)) OP meters, in
// either argument order.
func distanceArgs(n *qnode) (field string, lat, lng float64, err error) {
	f := n.fn
	if f.name != "distance" || len(f.args) != 2 {
		return "", 0, 0, &qerr{fmt.Sprintf("Unable to compare %s() with %q", f.name, n.val.text)}
	}
	a, b := f.args[0], f.args[1]
	if a.fn != nil {
		a, b = b, a
	}
	if a.fn != nil || b.fn == nil || b.fn.name != "geopoint" || len(b.fn.args) != 2 {
		return "", 0, 0, &qerr{"distance() takes a field and a geopoint(latitude, longitude)"}
	}
	var ll [2]float64
	for i, x := range b.fn.args {
		v, perr := strconv.ParseFloat(x.val.text, 64)
		if x.fn != nil || perr != nil {
			return "", 0, 0, &qerr{"geopoint() takes two numbers"}
		}
		ll[i] = v
	}
	switch n.cmp {
	case "<", "<=", ">", ">=":
	case ":", "=":
		return "", 0, 0, &qerr{"Equality comparison not available for Geo type"}
	default:
		return "", 0, 0, &qerr{n.cmp + " comparison operator is not available"}
	}
	if _, perr := strconv.ParseFloat(n.val.text, 64); perr != nil {
		return "", 0, 0, &qerr{fmt.Sprintf("Unable to compare \"distance()\" with %q", n.val.text)}
	}
	return a.val.text, ll[0], ll[1], nil
}

// searchMatcher matches one query against the documents of one index.
type searchMatcher struct {
	stems map[string]string
}

func newSearchMatcher() *searchMatcher { return &searchMatcher{stems: make(map[string]string)} }

func (m *searchMatcher) stem(w string) string {
	s, ok := m.stems[w]
	if !ok {
		s = searchStem(w)
		if len(m.stems) < 1<<16 {
			m.stems[w] = s
		}
	}
	return s
}

// match reports whether d satisfies n.
func (m *searchMatcher) match(n *qnode, d *searchDoc) bool {
	switch n.op {
	case qAnd:
		for _, k := range n.kids {
			if !m.match(k, d) {
				return false
			}
		}
		return true
	case qSeq:
		all := true
		for _, k := range n.kids {
			if !m.match(k, d) {
				all = false
				break
			}
		}
		return all || m.matchSeqAsAtom(n, d)
	case qOr:
		for _, k := range n.kids {
			if m.match(k, d) {
				return true
			}
		}
		return false
	case qNot:
		return !m.match(n.kids[0], d)
	}
	if n.fn != nil {
		name, lat, lng, err := distanceArgs(n)
		if err != nil {
			return false
		}
		limit, _ := strconv.ParseFloat(n.val.text, 64)
		for _, f := range d.fields {
			if f.name == name && f.typ == sfGeo && searchCompare(searchDistance(f.lat, f.lng, lat, lng), n.cmp, limit) {
				return true
			}
		}
		return false
	}
	for i := range d.fields {
		f := &d.fields[i]
		if (n.field == "" || f.name == n.field) && m.matchField(f, n.cmp, n.val) {
			return true
		}
	}
	return false
}

// matchSeqAsAtom lets words written side by side match an atom field
// holding them, as "blue guitar" matches the atom "Blue Guitar" (the SDK
// stub does this for a sequence of global values).
func (m *searchMatcher) matchSeqAsAtom(n *qnode, d *searchDoc) bool {
	parts := make([]string, len(n.kids))
	for i, k := range n.kids {
		if k.op != qRestrict || k.field != "" || k.fn != nil || k.val.stem {
			return false
		}
		parts[i] = k.val.text
	}
	want := searchAtomNorm(strings.Join(parts, " "))
	for _, f := range d.fields {
		if f.typ == sfAtom && searchAtomNorm(f.str) == want {
			return true
		}
	}
	return false
}

// searchCompare applies a comparator.
func searchCompare(a float64, cmp string, b float64) bool {
	switch cmp {
	case ":", "=":
		return a == b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	case ">=":
		return a >= b
	}
	return false
}

// matchField reports whether one field satisfies "cmp v".
func (m *searchMatcher) matchField(f *searchField, cmp string, v qval) bool {
	switch f.typ {
	case sfText, sfHTML:
		if cmp != ":" && cmp != "=" {
			return false
		}
		return m.matchWords(f.words, v.terms, v.stem)
	case sfAtom:
		return (cmp == ":" || cmp == "=") && searchAtomNorm(f.str) == searchAtomNorm(v.text)
	case sfNumber:
		return v.isNum && searchCompare(f.num, cmp, v.num)
	case sfDate:
		return v.isDay && searchCompare(searchDays(f.num), cmp, v.day)
	}
	return false
}

// matchWords reports whether terms appear in words consecutively. No terms
// (a value of punctuation only) match, as in the SDK stub.
func (m *searchMatcher) matchWords(words []searchWord, terms []string, stem bool) bool {
	if len(terms) == 0 {
		return true
	}
	eq := func(w, t string) bool {
		if stem {
			return m.stem(w) == m.stem(t)
		}
		return w == t
	}
	for i := 0; i+len(terms) <= len(words); i++ {
		ok := true
		for j, t := range terms {
			if !eq(words[i+j].norm, t) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// queryTerms collects the words of a query's values, for scoring and
// snippets.
func queryTerms(n *qnode, into map[string]bool) {
	if n == nil {
		return
	}
	if n.op != qRestrict {
		for _, k := range n.kids {
			queryTerms(k, into)
		}
		return
	}
	if n.fn == nil {
		for _, t := range n.val.terms {
			into[t] = true
		}
	}
}

// termFrequency counts the occurrences of term in d's string fields.
func termFrequency(d *searchDoc, term string) int {
	n := 0
	for _, f := range d.fields {
		switch f.typ {
		case sfText, sfHTML:
			for _, w := range f.words {
				if w.norm == term {
					n++
				}
			}
		case sfAtom:
			if searchAtomNorm(f.str) == term {
				n++
			}
		}
	}
	return n
}

// scoreDocs gives each matched document the SDK stub's match score: the
// sum over the query's words of term frequency times log10 of the
// documents in the index over those holding the word. Production's
// scorers are not documented beyond "term frequency"; the order is what
// tests may rely on, not the values.
func scoreDocs(idx *searchIndex, q *qnode, docs []*searchResult) {
	terms := map[string]bool{}
	queryTerms(q, terms)
	for t := range terms {
		df := 0
		for _, d := range idx.docs {
			if termFrequency(d, t) > 0 {
				df++
			}
		}
		if df == 0 {
			continue
		}
		idf := math.Log10(float64(len(idx.docs)) / float64(df))
		for _, r := range docs {
			r.score += float64(termFrequency(r.doc, t)) * idf
		}
	}
}
