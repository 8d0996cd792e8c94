package aelocal

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/appengine/v2/datastore"
)

// Each row states one rule of when a query needs a composite index, and
// the index it then needs (as dev_appserver writes it to index.yaml). All
// queries are of kind K unless they say otherwise.
func TestCompositeIndexRules(t *testing.T) {
	eq := func(p string) idxFilter { return idxFilter{p, opEqual} }
	gt := func(p string) idxFilter { return idxFilter{p, opGreater} }
	lt := func(p string) idxFilter { return idxFilter{p, opLess} }
	asc := func(p string) idxOrder { return idxOrder{p, false} }
	desc := func(p string) idxOrder { return idxOrder{p, true} }
	type F = []idxFilter
	type O = []idxOrder
	type S = []string
	for _, c := range []struct {
		rule  string
		q     idxQuery
		index string // "" if no composite index is needed
	}{
		// Served by the built-in indexes.
		{rule: "a kind alone", q: idxQuery{}},
		{rule: "a kindless query", q: idxQuery{kind: "-", filters: F{gt("__key__")}}},
		{rule: "a kindless ancestor query", q: idxQuery{kind: "-", ancestor: true}},
		{rule: "one equality filter", q: idxQuery{filters: F{eq("A")}}},
		{rule: "equality filters alone (merge join)", q: idxQuery{filters: F{eq("A"), eq("B"), eq("C")}}},
		{rule: "equality filters alone with an ancestor", q: idxQuery{ancestor: true, filters: F{eq("A"), eq("B")}}},
		{rule: "an ancestor alone", q: idxQuery{ancestor: true}},
		{rule: "one inequality filter", q: idxQuery{filters: F{gt("A")}}},
		{rule: "inequalities on one property", q: idxQuery{filters: F{gt("A"), lt("A")}}},
		{rule: "one sort order", q: idxQuery{orders: O{asc("A")}}},
		{rule: "one descending sort order", q: idxQuery{orders: O{desc("A")}}},
		{rule: "an inequality sorted by its property", q: idxQuery{filters: F{gt("A")}, orders: O{desc("A")}}},
		{rule: "key order ascending", q: idxQuery{orders: O{asc("__key__")}}},
		{rule: "an ancestor with key order ascending", q: idxQuery{ancestor: true, orders: O{asc("__key__")}}},
		{rule: "equality filters with key order ascending", q: idxQuery{filters: F{eq("A"), eq("B")}, orders: O{asc("__key__")}}},
		{rule: "a sort order on an equality-filtered property is dropped", q: idxQuery{filters: F{eq("A")}, orders: O{asc("A")}}},
		{rule: "an equality on __key__ drops every sort order", q: idxQuery{filters: F{eq("__key__")}, orders: O{asc("A"), asc("B")}}},
		{rule: "key inequalities with equality filters", q: idxQuery{filters: F{gt("__key__"), eq("A")}}},
		{rule: "sort orders after __key__ are dropped", q: idxQuery{orders: O{asc("__key__"), asc("A")}}},
		{rule: "a projection of one property", q: idxQuery{project: S{"A"}}},
		{rule: "a projection sorted by its property", q: idxQuery{project: S{"A"}, orders: O{desc("A")}}},
		{rule: "a projection with an inequality on its property", q: idxQuery{project: S{"A"}, filters: F{gt("A")}}},
		{rule: "a distinct projection of one property", q: idxQuery{project: S{"A"}, groupBy: S{"A"}}},
		{rule: "IN of one value is an equality", q: idxQuery{filters: F{{"A", opIn}, {"B", opIn}}}},

		// Need a composite index.
		{rule: "key order descending", q: idxQuery{orders: O{desc("__key__")}},
			index: "- kind: K\n  properties:\n  - name: __key__\n    direction: desc\n"},
		{rule: "key inequality with key order descending", q: idxQuery{filters: F{gt("__key__")}, orders: O{desc("__key__")}},
			index: "- kind: K\n  properties:\n  - name: __key__\n    direction: desc\n"},
		{rule: "an ancestor with a sort order", q: idxQuery{ancestor: true, orders: O{asc("A")}},
			index: "- kind: K\n  ancestor: yes\n  properties:\n  - name: A\n"},
		{rule: "an ancestor with an inequality", q: idxQuery{ancestor: true, filters: F{lt("A")}},
			index: "- kind: K\n  ancestor: yes\n  properties:\n  - name: A\n"},
		{rule: "an ancestor with key order descending", q: idxQuery{ancestor: true, orders: O{desc("__key__")}},
			index: "- kind: K\n  ancestor: yes\n  properties:\n  - name: __key__\n    direction: desc\n"},
		{rule: "an equality filter with a sort order on another property", q: idxQuery{filters: F{eq("A")}, orders: O{desc("B")}},
			index: "- kind: K\n  properties:\n  - name: A\n  - name: B\n    direction: desc\n"},
		{rule: "equality properties come first, by name", q: idxQuery{filters: F{eq("B"), eq("A")}, orders: O{asc("C")}},
			index: "- kind: K\n  properties:\n  - name: A\n  - name: B\n  - name: C\n"},
		{rule: "an equality filter with key order descending", q: idxQuery{filters: F{eq("A")}, orders: O{desc("__key__")}},
			index: "- kind: K\n  properties:\n  - name: A\n  - name: __key__\n    direction: desc\n"},
		{rule: "two sort orders", q: idxQuery{orders: O{asc("A"), desc("B")}},
			index: "- kind: K\n  properties:\n  - name: A\n  - name: B\n    direction: desc\n"},
		{rule: "an inequality with an equality on another property", q: idxQuery{filters: F{gt("A"), eq("B")}},
			index: "- kind: K\n  properties:\n  - name: B\n  - name: A\n"},
		{rule: "an inequality sorted by its property then another", q: idxQuery{filters: F{gt("A")}, orders: O{asc("A"), asc("B")}},
			index: "- kind: K\n  properties:\n  - name: A\n  - name: B\n"},
		{rule: "a projection of two properties", q: idxQuery{project: S{"B", "A"}},
			index: "- kind: K\n  properties:\n  - name: A\n  - name: B\n"},
		{rule: "a projection with an equality on another property", q: idxQuery{project: S{"A"}, filters: F{eq("B")}},
			index: "- kind: K\n  properties:\n  - name: B\n  - name: A\n"},
		{rule: "a projection with an inequality on another property", q: idxQuery{project: S{"A"}, filters: F{gt("B")}},
			index: "- kind: K\n  properties:\n  - name: B\n  - name: A\n"},
		{rule: "a projection sorted by another property", q: idxQuery{project: S{"A"}, orders: O{desc("B")}},
			index: "- kind: K\n  properties:\n  - name: B\n    direction: desc\n  - name: A\n"},
		{rule: "a projection with an ancestor", q: idxQuery{ancestor: true, project: S{"A"}},
			index: "- kind: K\n  ancestor: yes\n  properties:\n  - name: A\n"},
		{rule: "a distinct projection of two properties", q: idxQuery{project: S{"A", "B"}, groupBy: S{"B", "A"}},
			index: "- kind: K\n  properties:\n  - name: A\n  - name: B\n"},
		{rule: "grouped properties come before the other projected ones", q: idxQuery{project: S{"A", "B"}, groupBy: S{"B"}},
			index: "- kind: K\n  properties:\n  - name: B\n  - name: A\n"},
	} {
		if c.q.kind == "" {
			c.q.kind = "K"
		} else if c.q.kind == "-" {
			c.q.kind = ""
		}
		need, required := indexNeed(c.q)
		got := ""
		if required {
			got = need.recommended().yaml()
		}
		if got != c.index {
			t.Errorf("%s: needs\n%s\nwant\n%s", c.rule, orNone(got), orNone(c.index))
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(no composite index)"
	}
	return s
}

// Declared indexes serve a query alone, or merged when they share the
// query's sort orders; otherwise the error names the smallest index that
// completes them (MinimalCompositeIndexForQuery).
func TestCompositeIndexMatching(t *testing.T) {
	declared, err := parseIndexYAML(`
indexes:
- kind: K
  properties:
  - name: A
  - name: B
    direction: desc
- kind: K
  properties:
  - name: D
  - name: E
- kind: K
  properties:
  - name: F
  - name: E
- kind: K
  ancestor: yes
  properties:
  - name: C
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		q       idxQuery
		missing string // "" if served
		minimal bool   // missing is the minimal index, not the recommended one
	}{
		{name: "exact", q: idxQuery{filters: []idxFilter{{"A", opEqual}}, orders: []idxOrder{{"B", true}}}},
		{name: "sort orders of a declared index", q: idxQuery{orders: []idxOrder{{"A", false}, {"B", true}}}},
		{name: "wrong direction", q: idxQuery{orders: []idxOrder{{"A", false}, {"B", false}}},
			missing: "- kind: K\n  properties:\n  - name: A\n  - name: B\n"},
		{name: "merge join of two indexes sharing the sort order", q: idxQuery{filters: []idxFilter{{"D", opEqual}, {"F", opEqual}}, orders: []idxOrder{{"E", false}}}},
		{name: "one equality left over", q: idxQuery{filters: []idxFilter{{"D", opEqual}, {"G", opEqual}}, orders: []idxOrder{{"E", false}}},
			missing: "- kind: K\n  properties:\n  - name: G\n  - name: E\n", minimal: true},
		{name: "the ancestor left over", q: idxQuery{ancestor: true, filters: []idxFilter{{"D", opEqual}}, orders: []idxOrder{{"E", false}}},
			missing: "- kind: K\n  ancestor: yes\n  properties:\n  - name: E\n", minimal: true},
		{name: "an ancestor index serves ancestor queries only", q: idxQuery{orders: []idxOrder{{"C", false}, {"D", false}}},
			missing: "- kind: K\n  properties:\n  - name: C\n  - name: D\n"},
		{name: "ancestor index", q: idxQuery{ancestor: true, orders: []idxOrder{{"C", false}}}},
		{name: "projected properties in any order and direction", q: idxQuery{project: []string{"B", "A"}}},
		{name: "another kind", q: idxQuery{kind: "L", orders: []idxOrder{{"A", false}, {"B", true}}},
			missing: "- kind: L\n  properties:\n  - name: A\n  - name: B\n    direction: desc\n"},
	} {
		if c.q.kind == "" {
			c.q.kind = "K"
		}
		need, required := indexNeed(c.q)
		if !required {
			t.Fatalf("%s: needs no composite index", c.name)
		}
		ix, efficient := need.missingIndex(declared)
		got := ""
		if ix != nil {
			got = ix.yaml()
		}
		if got != c.missing || (ix != nil && efficient == c.minimal) {
			t.Errorf("%s: missing\n%s (efficient %v)\nwant\n%s (minimal %v)", c.name, orNone(got), efficient, orNone(c.missing), c.minimal)
		}
	}
}

func TestParseIndexYAML(t *testing.T) {
	got, err := parseIndexYAML(`application: dev~app
indexes:
# a comment
- kind: K
  ancestor: yes
  properties:
  - name: A
    direction: descending
  - name: "b c"
    direction: ascending
- kind: L
  ancestor: no
  properties: [{name: X, direction: desc}, {name: Z}]
- kind: Geo
  properties:
  - name: P
    mode: geospatial
`)
	if err != nil {
		t.Fatal(err)
	}
	var text string
	for _, ix := range got {
		text += ix.yaml()
	}
	want := "- kind: K\n  ancestor: yes\n  properties:\n  - name: A\n    direction: desc\n  - name: \"b c\"\n" +
		"- kind: L\n  properties:\n  - name: X\n    direction: desc\n  - name: Z\n"
	if text != want {
		t.Fatalf("parsed\n%s\nwant\n%s", text, want)
	}
	for _, empty := range []string{"", "indexes:\n", "# nothing\n"} {
		if got, err := parseIndexYAML(empty); err != nil || len(got) != 0 {
			t.Fatalf("%q: %v, %v", empty, got, err)
		}
	}
	for text, want := range map[string]string{
		"indexes:\n- properties:\n  - name: A\n":                                                      "has no kind",
		"indexes:\n- kind: K\n  properties:\n  - direction: desc\n":                                   "has no name",
		"indexes:\n- kind: K\n  properties:\n  - name: A\n    direction: up\n":                        "is not asc or desc",
		"indexes:\n- kind: K\n  properties:\n  - name: A\n    mode: spatial\n":                        "is not geospatial",
		"indexes:\n- kind: K\n  properties:\n  - name: A\n    mode: geospatial\n    direction: asc\n": "mutually exclusive",
		"indexes:\n- kind: K\n  parent: yes\n":                                                        "parent",
		"indexes: [":                                                                                  "index.yaml",
	} {
		if _, err := parseIndexYAML(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", text, err, want)
		}
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRequireIndexes(t *testing.T) {
	var path string
	opts := func(t *testing.T) *Options {
		path = filepath.Join(t.TempDir(), "index.yaml")
		writeFile(t, path, "indexes:\n- kind: Task\n  properties:\n  - name: Done\n  - name: Due\n    direction: desc\n")
		return &Options{IndexYAML: path, RequireIndexes: true}
	}
	bothPathsWith(t, opts, func(t *testing.T, s *Server, ctx context.Context) {
		type task struct {
			Done  bool
			Due   int
			Owner string
		}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Task", "t", 0, nil), &task{Due: 3, Owner: "ann"}); err != nil {
			t.Fatal(err)
		}
		// Built-in indexes, and the declared one.
		for _, q := range []*datastore.Query{
			datastore.NewQuery("Task"),
			datastore.NewQuery("Task").Filter("Done =", false).Filter("Owner =", "ann"),
			datastore.NewQuery("Task").Order("-Due"),
			datastore.NewQuery("Task").Filter("Done =", false).Order("-Due"),
			datastore.NewQuery("__kind__"),
			datastore.NewQuery("__property__").Ancestor(datastore.NewKey(ctx, "__kind__", "Task", 0, nil)),
		} {
			if _, err := q.KeysOnly().GetAll(ctx, nil); err != nil {
				t.Fatalf("%v: %v", q, err)
			}
		}
		// Production's error, with the entry to add.
		q := datastore.NewQuery("Task").Filter("Owner =", "ann").Order("Due")
		_, err := q.KeysOnly().GetAll(ctx, nil)
		wantAPIError(t, err, "NEED_INDEX", "no matching index found. recommended index is:\n- kind: Task\n  properties:\n  - name: Owner\n  - name: Due\n")
		if !strings.Contains(err.Error(), path) {
			t.Fatalf("the error does not name %s: %v", path, err)
		}
		if _, err := q.Count(ctx); err == nil {
			t.Fatal("Count of the same query: no error")
		}
		// A merge with the declared index needs only what it lacks.
		_, err = datastore.NewQuery("Task").Filter("Done =", false).Filter("Owner =", "ann").Order("-Due").KeysOnly().GetAll(ctx, nil)
		wantAPIError(t, err, "NEED_INDEX", "The following index is the minimum index required:\n- kind: Task\n  properties:\n  - name: Owner\n  - name: Due\n    direction: desc\n")

		// index.yaml is read again when it changes.
		writeFile(t, path, readFile(t, path)+"- kind: Task\n  properties:\n  - name: Owner\n  - name: Due\n")
		if _, err := q.KeysOnly().GetAll(ctx, nil); err != nil {
			t.Fatalf("after adding the index: %v", err)
		}
		writeFile(t, path, "indexes: [")
		_, err = q.KeysOnly().GetAll(ctx, nil)
		wantAPIError(t, err, "NEED_INDEX", "cannot read index.yaml")
	})
}

func TestIndexYAMLRecordsNeededIndexes(t *testing.T) {
	bothPaths(t, func(t *testing.T, s *Server, ctx context.Context) {
		if got, want := s.IndexYAML(), "indexes:\n"+indexAutoMarker+indexAutoComment; got != want {
			t.Fatalf("before any query:\n%s", got)
		}
		queries := []*datastore.Query{
			datastore.NewQuery("Task").Filter("Owner =", "ann").Order("-Due"),
			datastore.NewQuery("Task").Filter("Owner =", "bob").Order("-Due"), // the same index
			datastore.NewQuery("Task").Order("Due"),                           // none
			datastore.NewQuery("Note").Ancestor(datastore.NewKey(ctx, "Task", "t", 0, nil)).Order("When"),
			datastore.NewQuery("Task").Project("Owner", "Due").Distinct(),
		}
		for _, q := range queries {
			if _, err := q.GetAll(ctx, &[]datastore.PropertyList{}); err != nil {
				t.Fatalf("%v: %v", q, err)
			}
		}
		want := "indexes:\n" + indexAutoMarker + indexAutoComment +
			"\n- kind: Note\n  ancestor: yes\n  properties:\n  - name: When\n" +
			"\n- kind: Task\n  properties:\n  - name: Due\n  - name: Owner\n" +
			"\n- kind: Task\n  properties:\n  - name: Owner\n  - name: Due\n    direction: desc\n"
		if got := s.IndexYAML(); got != want {
			t.Fatalf("IndexYAML:\n%s\nwant\n%s", got, want)
		}

		// The status page lists them.
		resp, err := http.Get(s.URL() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "# needed by 2 queries\n- kind: Task\n  properties:\n  - name: Owner\n") ||
			!strings.Contains(string(body), "Composite indexes that queries needed and index.yaml lacks: 3\n# needed by 1 query\n- kind: Note\n") {
			t.Fatalf("status page:\n%s", body)
		}
	})
}

func TestWriteIndexYAML(t *testing.T) {
	dir := t.TempDir()
	run := func(t *testing.T, path string) {
		t.Helper()
		s, err := NewServerOptions(&Options{IndexYAML: path, WriteIndexYAML: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := middlewareContext(t, s)
		for _, q := range []*datastore.Query{
			datastore.NewQuery("Task").Filter("Owner =", "ann").Order("-Due"),
			datastore.NewQuery("Task").Order("A").Order("B"),
		} {
			if _, err := q.KeysOnly().GetAll(ctx, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	generated := "\n- kind: Task\n  properties:\n  - name: A\n  - name: B\n" +
		"\n- kind: Task\n  properties:\n  - name: Owner\n  - name: Due\n    direction: desc\n"

	// A new file, as dev_appserver writes it.
	fresh := filepath.Join(dir, "fresh.yaml")
	run(t, fresh)
	if got, want := readFile(t, fresh), "indexes:\n"+indexAutoMarker+indexAutoComment+generated; got != want {
		t.Fatalf("new index.yaml:\n%s\nwant\n%s", got, want)
	}
	// Run again: nothing changes.
	run(t, fresh)
	if got := readFile(t, fresh); strings.Count(got, "- kind: Task") != 2 {
		t.Fatalf("second run:\n%s", got)
	}

	// Indexes above the marker stay and are not repeated below it.
	mixed := filepath.Join(dir, "mixed.yaml")
	manual := "indexes:\n\n# mine\n- kind: Task\n  properties:\n  - name: A\n  - name: B\n"
	writeFile(t, mixed, manual+indexAutoMarker+"\n- kind: Old\n  properties:\n  - name: X\n  - name: Z\n")
	run(t, mixed)
	want := manual + indexAutoMarker + indexAutoComment +
		"\n- kind: Old\n  properties:\n  - name: X\n  - name: Z\n" +
		"\n- kind: Task\n  properties:\n  - name: Owner\n  - name: Due\n    direction: desc\n"
	if got := readFile(t, mixed); got != want {
		t.Fatalf("index.yaml with a manual part:\n%s\nwant\n%s", got, want)
	}

	// A file without the marker is managed by hand: left alone.
	hand := filepath.Join(dir, "hand.yaml")
	writeFile(t, hand, manual)
	run(t, hand)
	if got := readFile(t, hand); got != manual {
		t.Fatalf("a hand-managed index.yaml was changed:\n%s", got)
	}
}

func TestIndexOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "indexes:\n- kind: K\n  properties:\n  - name: A\n    direction: sideways\n")
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{WriteIndexYAML: true}, "WriteIndexYAML needs IndexYAML"},
		{Options{IndexYAML: filepath.Join(dir, "x.yaml"), WriteIndexYAML: true, RequireIndexes: true}, "exclude each other"},
		{Options{IndexYAML: filepath.Join(dir, "missing.yaml"), RequireIndexes: true}, "does not exist"},
		{Options{IndexYAML: bad}, "is not asc or desc"},
	} {
		s, err := NewServerOptions(&c.o)
		if err == nil {
			s.Close()
			t.Fatalf("%+v: no error", c.o)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
	// Without RequireIndexes a missing file is fine: nothing is declared.
	s, err := NewServerOptions(&Options{IndexYAML: filepath.Join(dir, "missing.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
