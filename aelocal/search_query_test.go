package aelocal

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/search"
)

// TestSearchQueryParse holds the parse trees of the SDK's query parser
// tests (query_parser_test.py), in aelocal's notation: "*" is a global
// value, SEQ words written side by side.
func TestSearchQueryParse(t *testing.T) {
	cases := []struct{ query, want string }{
		{"hello", "*:hello"},
		{"12402102-AAA5-480D-B26E-6B955D97685A", "*:12402102-AAA5-480D-B26E-6B955D97685A"},
		{"hello AND world", "(AND *:hello *:world)"},
		{"hello OR world", "(OR *:hello *:world)"},
		{"NOT world", "(NOT *:world)"},
		{"-world", "(NOT *:world)"},
		{"title:hello", "title:hello"},
		{"foo != bar", "foo!=bar"},
		{"foo!= bar", "foo!=bar"},
		{"foo !=bar", "foo!=bar"},
		{"foo!=bar", "foo!=bar"},
		{`"hello world"`, `*:"hello world"`},
		{"field > 99 field < 199", "(SEQ field>99 field<199)"},
		{"(hello OR hola) AND (world OR mundo) NOT today",
			"(AND (OR *:hello *:hola) (SEQ (OR *:world *:mundo) (NOT *:today)))"},
		{"a OR b c AND d", "(AND (SEQ (OR *:a *:b) *:c) *:d)"},
		{"color:(red OR white)", "(OR color:red color:white)"},
		{"~cat", "*:~cat"},
		{"price:-5", "price:-5"},
		{"distance(home, geopoint(35.2, 40.5)) < 100", "distance(home,geopoint(35.2,40.5))<100"},
		{`title:"Tom&Jerry"`, `title:"Tom&Jerry"`},
		{`say\:hi`, "*:say:hi"},
		{"   ", "<all>"},
	}
	for _, c := range cases {
		n, err := parseSearchQuery(c.query)
		if err != nil {
			t.Errorf("%q: %v", c.query, err)
			continue
		}
		if got := n.String(); got != c.want {
			t.Errorf("%q: %s, want %s", c.query, got, c.want)
		}
	}
	for _, bad := range []string{"OR AND NOT !!!", "(hello", "hello AND", `"open`, "foo(bar)", "a:(b:c)", "2020-01-01:x", "5:x", "a:"} {
		if n, err := parseSearchQuery(bad); err == nil {
			t.Errorf("%q parsed to %s", bad, n)
		}
	}
}

// searchCorpus puts the documents the query table searches. Ranks fix the
// default order: p1, p2, p3, p4.
func searchCorpus(t *testing.T, ctx context.Context, idx *search.Index) {
	t.Helper()
	day := func(s string) time.Time {
		d, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	docs := map[string]*searchFLS{
		"p1": {fields: []search.Field{
			{Name: "name", Value: "The quick brown fox"},
			{Name: "code", Value: search.Atom("Blue Guitar")},
			{Name: "body", Value: search.HTML(`<p class="strong">real-time</p> systems`)},
			{Name: "price", Value: 10.0},
			{Name: "released", Value: day("2020-01-15 18:00")},
			{Name: "where", Value: appengine.GeoPoint{Lat: 52.52, Lng: 13.405}}, // Berlin
		}, meta: &search.DocumentMetadata{Rank: 4}},
		"p2": {fields: []search.Field{
			{Name: "name", Value: "Lazy dogs sleeping"},
			{Name: "code", Value: search.Atom("red")},
			{Name: "body", Value: "caring cats"},
			{Name: "price", Value: 25.5},
			{Name: "released", Value: day("2021-06-01 12:00")},
			{Name: "where", Value: appengine.GeoPoint{Lat: 48.8566, Lng: 2.3522}}, // Paris
		}, meta: &search.DocumentMetadata{Rank: 3}},
		"p3": {fields: []search.Field{
			{Name: "name", Value: "C++ and C# for I.B.M. café"},
			{Name: "code", Value: search.Atom("BG-1")},
			{Name: "body", Value: "John's farmer_market & more"},
			{Name: "price", Value: 100.0},
			{Name: "released", Value: day("2019-12-31 23:59")},
			{Name: "where", Value: appengine.GeoPoint{Lat: 51.5074, Lng: -0.1278}}, // London
		}, meta: &search.DocumentMetadata{Rank: 2}},
		"p4": {fields: []search.Field{
			{Name: "name", Value: "brown dog"},
			{Name: "price", Value: 5.0},
		}, meta: &search.DocumentMetadata{Rank: 1}},
	}
	for id, d := range docs {
		if _, err := idx.Put(ctx, id, d); err != nil {
			t.Fatal(err)
		}
	}
}

// searchQueryCases are the query-language cases: what production's
// documentation (and the SDK stub where it agrees) says each query matches
// in searchCorpus, IDs in result order.
var searchQueryCases = []struct {
	query string
	want  string // IDs in result order, space separated
}{
	// Global values: words in text and HTML fields, whole atoms,
	// numbers and dates.
	{"", "p1 p2 p3 p4"},
	{"brown", "p1 p4"},
	{"BROWN", "p1 p4"},
	{"quick brown", "p1"},
	{"blue guitar", "p1"}, // the atom, whole
	{"blue", ""},          // atoms are not tokenized
	{"bg-1", "p3"},
	{"100", "p3"},
	{"2020-01-15", "p1"},
	// Boolean operators: NOT binds tighter than OR, OR than AND.
	{"quick OR lazy", "p1 p2"},
	{"quick or lazy", ""}, // lower-case "or" is a word
	{"NOT brown", "p2 p3"},
	{"-brown", "p2 p3"},
	{"brown AND NOT dog", "p1"},
	{"quick OR lazy brown", "p1"},
	{"(quick OR lazy) AND NOT fox", "p2"},
	{"NOT name:brown OR price:100", "p2 p3"},
	// Phrases.
	{`"quick brown"`, "p1"},
	{`"brown quick"`, ""},
	{`name:"brown fox"`, "p1"},
	// Field restrictions.
	{"name:fox", "p1"},
	{"name=fox", "p1"},
	{"code:fox", ""},
	{"code:red", "p2"},
	{"code:RED", "p2"},
	{`code:"blue guitar"`, "p1"},
	{"code:blue", ""},
	{"name:(quick OR lazy)", "p1 p2"},
	{"name:(quick lazy)", ""},
	{"nosuchfield:brown", ""},
	{"NOT nosuchfield:brown", "p1 p2 p3 p4"},
	// Numbers.
	{"price < 20", "p1 p4"},
	{"price<=10", "p1 p4"},
	{"price >= 25.5", "p2 p3"},
	{"price > 100", ""},
	{"price:100", "p3"},
	{"price = 100", "p3"},
	{"price < 20 price > 8", "p1"},
	{"price:abc", ""},
	// Dates compare by the day.
	{"released < 2020-01-01", "p3"},
	{"released >= 2020-01-15", "p1 p2"},
	{"released:2021-06-01", "p2"},
	{"released > 2020-1-15", "p2"},
	// Geo points: distance in meters.
	{"distance(where, geopoint(52.52, 13.405)) < 1000", "p1"},
	{"distance(where, geopoint(52.52, 13.405)) < 900000", "p1 p2"},
	{"distance(geopoint(52.52, 13.405), where) > 900000", "p3"},
	// Tokenizing: hyphens break words, markup is not text, "_"
	// and "&" do not break, c++ and c# and acronyms are words,
	// accents do not count, an inner apostrophe stays.
	{"time", "p1"},
	{"real-time", "p1"},
	{"strong", ""},
	{"class", ""},
	{"c++", "p3"},
	{"c#", "p3"},
	{"ibm", "p3"},
	{"i.b.m.", "p3"},
	{"cafe", "p3"},
	{"CAFÉ", "p3"},
	{"john's", "p3"},
	{"farmer_market", "p3"},
	{"farmer", ""},
	// Stemming with ~.
	{"dog", "p4"},
	{"~dogs", "p2 p4"},
	{"~dog", "p2 p4"},
	{"~cat", "p2"},
	{"cat", ""},
	{"~care", "p2"},
	{"name:~dog", "p2 p4"},
}

// searchQueryErrors are queries production refuses, with what the error
// says.
var searchQueryErrors = []struct{ query, want string }{
	{"price != 5", "!= comparison operator is not available"},
	{"name < abc", `Unable to compare "name" with "abc"`},
	{"foo(bar)", "unknown function 'foo'"},
	{"(quick", "missing )"},
	{"quick AND", "Failed to parse search request"},
	{"2020-01-01:x", "Invalid field name"},
	{"name:(code:x)", "Restriction on name and code"},
	{"distance(where, geopoint(1, 2)) = 5", "Equality comparison not available for Geo type"},
	{strings.Repeat("a", 2001), "query must be under 2000 bytes"},
	// aelocal's own bound, so that no query recurses deeply.
	{strings.Repeat("(", 101) + "a" + strings.Repeat(")", 101), "nest deeper than 100"},
}

// TestSearchQueryLanguage is the table of query-language cases: what
// production's documentation (and the SDK stub where it agrees) says each
// query matches, run through the real client.
func TestSearchQueryLanguage(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		idx := openIndex(t, "corpus")
		searchCorpus(t, ctx, idx)
		cases := searchQueryCases
		for _, c := range cases {
			ids, err := searchIDs(ctx, idx, c.query, nil)
			if err != nil {
				t.Errorf("%q: %v", c.query, err)
				continue
			}
			if got := strings.Join(ids, " "); got != c.want {
				t.Errorf("%q: [%s], want [%s]", c.query, got, c.want)
			}
		}
		errs := searchQueryErrors
		for _, c := range errs {
			_, err := searchIDs(ctx, idx, c.query, nil)
			if err == nil || !strings.Contains(err.Error(), "INVALID_REQUEST") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%.40q: %v, want INVALID_REQUEST with %q", c.query, err, c.want)
			}
		}
	})
}

func TestSearchStemAndTokens(t *testing.T) {
	for w, want := range map[string]string{
		"cats": "cat", "caresses": "caress", "ponies": "poni", "caring": "care",
		"relational": "relat", "hopping": "hop", "agreed": "agre", "happy": "happi",
		"generalization": "gener", "dogs": "dog", "running": "run", "c++": "c++",
	} {
		if got := searchStem(w); got != want {
			t.Errorf("stem(%q) = %q, want %q", w, got, want)
		}
	}
	for s, want := range map[string][]string{
		"Hello, World!":            {"hello", "world"},
		"real-time":                {"real", "time"},
		"I.B.M. and U.S.A":         {"ibm", "and", "usa"},
		"pi is 3.14.":              {"pi", "is", "3.14"},
		"C++, C# and #golang":      {"c++", "c#", "and", "#golang"},
		"'quoted' john's":          {"quoted", "john's"},
		"a_b a&b __ & Ünïcödé":     {"a_b", "a&b", "unicode"},
		"end.of.sentence":          {"end", "of", "sentence"},
		"x+y 1+1":                  {"x", "y", "1", "1"},
		"emails: a@b.com path/to/": {"emails", "a", "b", "com", "path", "to"},
	} {
		if got := searchTokens(s); !reflect.DeepEqual(got, want) {
			t.Errorf("tokens(%q) = %q, want %q", s, got, want)
		}
	}
	if got := searchStripHTML(`<p class="x">fish &amp; chips</p>`); strings.TrimSpace(got) != "fish & chips" {
		t.Errorf("strip HTML: %q", got)
	}
}
