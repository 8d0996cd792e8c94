package aelocal

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
)

var rowKeyRE = regexp.MustCompile(`<td data-label="Key"><a href="/datastore/entity\?key=[^"]+">([^<]+)</a>`)

// listedKeys returns the key paths a kind's listing shows, in order.
func listedKeys(page string) []string {
	var out []string
	for _, m := range rowKeyRE.FindAllStringSubmatch(page, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

func TestConsoleKindListing(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	// More entities than one query batch skips, so that paging and
	// counting go through several calls.
	const n = 2345
	type thing struct {
		N    int
		Mod  int
		Name string
	}
	for start := 0; start < n; start += 500 {
		var keys []*datastore.Key
		var vals []thing
		for i := start; i < min(start+500, n); i++ {
			keys = append(keys, datastore.NewKey(ctx, "Thing", "", int64(i+1), nil))
			vals = append(vals, thing{N: i + 1, Mod: (i + 1) % 7, Name: fmt.Sprintf("thing-%04d", i+1)})
		}
		if _, err := datastore.PutMulti(ctx, keys, vals); err != nil {
			t.Fatal(err)
		}
	}
	_, page := getPage(t, s, "/datastore")
	mustContain(t, page, `>Thing</a></td><td data-label="Entities" class="num">2345</td>`)

	code, page := getPage(t, s, "/datastore/kind?kind=Thing")
	if code != http.StatusOK {
		t.Fatalf("%d\n%s", code, page)
	}
	mustContain(t, page, "Entities 1–20 of 2345", `rel="next"`)
	if got := listedKeys(page); len(got) != 20 || got[0] != "/Thing,1" || got[19] != "/Thing,20" {
		t.Fatalf("first page: %v", got)
	}
	// The last page, beyond several batches of skipping.
	_, page = getPage(t, s, "/datastore/kind?kind=Thing&n=100&offset=2300")
	mustContain(t, page, "Entities 2301–2345 of 2345", `rel="prev"`)
	if strings.Contains(page, `rel="next"`) {
		t.Fatal("the last page links to a next one")
	}
	if got := listedKeys(page); len(got) != 45 || got[0] != "/Thing,2301" {
		t.Fatalf("last page: %d keys from %v", len(got), got[:1])
	}
	// Descending by a property, with an equality filter.
	_, page = getPage(t, s, "/datastore/kind?kind=Thing&sort=N&desc=1&fprop=Mod&fop=eq&fval=3")
	mustContain(t, page, "Entities 1–20 of 335", "matching Mod = 3")
	if got := listedKeys(page); got[0] != "/Thing,2341" || got[1] != "/Thing,2334" {
		t.Fatalf("Mod = 3 by N descending: %v", got[:2])
	}
	// An inequality filter sorts by its property first.
	_, page = getPage(t, s, "/datastore/kind?kind=Thing&sort=Name&fprop=N&fop=gt&fval=2340")
	mustContain(t, page, "Entities 1–5 of 5", "Sorted by N, then by Name: the datastore sorts")
	// Filters on the key, and typed values.
	_, page = getPage(t, s, "/datastore/kind?kind=Thing&fprop=__key__&fop=ge&fval=/Thing,2344")
	if got := listedKeys(page); len(got) != 2 || got[1] != "/Thing,2345" {
		t.Fatalf("__key__ >= /Thing,2344: %v", got)
	}
	_, page = getPage(t, s, "/datastore/kind?kind=Thing&fprop=Name&fop=eq&fval=thing-0042")
	if got := listedKeys(page); len(got) != 1 || got[0] != "/Thing,42" {
		t.Fatalf("Name = thing-0042: %v", got)
	}
	_, page = getPage(t, s, "/datastore/kind?kind=Thing&fprop=N&fop=eq&fval=42&ftype=string")
	mustContain(t, page, "No entities matching N = 42 (string).")
	// Bad filters say what is wrong.
	for q, want := range map[string]string{
		"fprop=N&fop=eq&fval=many&ftype=int":       `filter N: &#34;many&#34; is not an integer`,
		"fprop=N&fop=like&fval=1":                  `unknown filter operator &#34;like&#34;`,
		"fprop=__key__&fop=eq&fval=Thing":          `is not an encoded key`,
		"fprop=N&fop=gt&fval=1&fprop=N":            "Entities 1–20 of 2344",
		"sort=N&fprop=Mod&fop=gt&fval=1&ftype=int": "Sorted by Mod, then by N: ",
	} {
		_, page := getPage(t, s, "/datastore/kind?kind=Thing&"+q)
		mustContain(t, page, want)
	}
}

// TestConsoleKindProperties: the sort and filter choices list every
// indexed property of the kind, also those no entity on the page has.
func TestConsoleKindProperties(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	for i := 1; i <= 30; i++ {
		props := datastore.PropertyList{{Name: "N", Value: int64(i)}, {Name: "Note", Value: "long", NoIndex: true}}
		if i == 30 {
			props = append(props, datastore.Property{Name: "Rare", Value: "only here"})
		}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Item", "", int64(i), nil), &props); err != nil {
			t.Fatal(err)
		}
	}
	datastore.Put(ctx, datastore.NewKey(ctx, "Other", "x", 0, nil), &datastore.PropertyList{{Name: "Elsewhere", Value: int64(1)}})
	_, page := getPage(t, s, "/datastore/kind?kind=Item")
	mustContain(t, page, "Entities 1–20 of 30",
		`<datalist id="props"><option value="__key__"><option value="N"><option value="Rare"></datalist>`,
		`<select name="sort"><option value="">key</option><option>N</option><option>Rare</option></select>`)
	if strings.Contains(page, "<th>Rare") || strings.Contains(page, "Elsewhere") || strings.Contains(page, "<option>Note") {
		t.Fatal("the page shows a column of no entity on it, a property of another kind, or an unindexed property as a choice")
	}
	// Sorting by it from the form, and the form keeps the choice.
	_, page = getPage(t, s, "/datastore/kind?kind=Item&sort=Rare&desc=1")
	mustContain(t, page, "Entities 1–1 of 1", `<option selected>Rare</option>`, `name="desc" value="1" checked`)
	if got := listedKeys(page); len(got) != 1 || got[0] != "/Item,30" {
		t.Fatalf("sorted by Rare: %v", got)
	}
	// A sort by a property the kind lacks is kept in the form too.
	_, page = getPage(t, s, "/datastore/kind?kind=Item&sort=Missing")
	mustContain(t, page, "No entities", `<option selected>Missing</option>`)
}

func TestConsoleEntityEdits(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	key := datastore.NewKey(ctx, "Book", "", 2, nil)
	enc := key.Encode()
	edit := func(prop string, i int, typ, value string, indexed bool) (int, string) {
		t.Helper()
		_, page := getPage(t, s, "/datastore/entity?key="+enc)
		ver := regexp.MustCompile(`name="ver" value="([^"]+)"`).FindStringSubmatch(page)[1]
		form := url.Values{"csrf": {s.console.token("/datastore/edit")}, "key": {enc}, "prop": {prop}, "i": {strconv.Itoa(i)}, "type": {typ}, "value": {value}, "ver": {ver}}
		if indexed {
			form.Set("indexed", "1")
		}
		resp := postForm(t, s, "/datastore/edit", form, nil)
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	props := func() datastore.PropertyList {
		t.Helper()
		var pl datastore.PropertyList
		if err := datastore.Get(ctx, key, &pl); err != nil {
			t.Fatal(err)
		}
		return pl
	}
	prop := func(name string) []datastore.Property {
		var out []datastore.Property
		for _, p := range props() {
			if p.Name == name {
				out = append(out, p)
			}
		}
		return out
	}
	when := time.Date(2025, 3, 4, 5, 6, 7, 8000, time.UTC)
	pub := datastore.NewKey(ctx, "Publisher", "penguin", 0, nil)
	for _, tc := range []struct {
		prop, typ, value string
		indexed          bool
		want             any
	}{
		{"Title", "string", "Dune Messiah", true, "Dune Messiah"},
		{"Year", "int", " 1969 ", true, int64(1969)},
		{"Price", "float", "-1.5e3", true, -1500.0},
		{"InPrint", "bool", "false", true, false},
		{"Added", "time", "2025-03-04T06:06:07.000008+01:00", true, when},
		{"Added", "time", "2025-03-04 05:06:07.000008", true, when},
		{"Publisher", "key", `/Publisher,"penguin"`, true, pub},
		{"Publisher", "key", pub.Encode(), true, pub},
		{"Shelf", "geopt", "-33.9, 151.2", true, appengine.GeoPoint{Lat: -33.9, Lng: 151.2}},
		{"Cover", "bytes", "00 ff 7a", false, []byte{0, 0xff, 0x7a}},
		{"Summary", "text", "line one\nline two", false, "line one\nline two"},
		{"Author", "null", "", true, nil},
	} {
		code, body := edit(tc.prop, 0, tc.typ, tc.value, tc.indexed)
		if code != http.StatusSeeOther {
			t.Fatalf("%s as %s %q: status %d\n%s", tc.prop, tc.typ, tc.value, code, body)
		}
		got := prop(tc.prop)
		if len(got) != 1 || !reflect.DeepEqual(got[0].Value, tc.want) || got[0].NoIndex == tc.indexed {
			t.Fatalf("%s as %s %q: the app reads %#v, want %#v (indexed %v)", tc.prop, tc.typ, tc.value, got, tc.want, tc.indexed)
		}
	}
	// A list: edit its second value, add a third, the rest stays.
	if code, body := edit("Tags", 1, "string", "classic", true); code == http.StatusSeeOther {
		t.Fatalf("Tags has one value, yet editing value 1 answered %d\n%s", code, body)
	}
	if code, _ := edit("Tags", -1, "string", "classic", true); code != http.StatusSeeOther {
		t.Fatal(code)
	}
	if code, _ := edit("Tags", 1, "string", "desert", true); code != http.StatusSeeOther {
		t.Fatal(code)
	}
	if code, _ := edit("Tags", -1, "int", "7", false); code != http.StatusSeeOther {
		t.Fatal(code)
	}
	if got := prop("Tags"); len(got) != 3 || got[0].Value != "sf" || got[1].Value != "desert" || got[2].Value != int64(7) || !got[2].NoIndex || !got[0].Multiple {
		t.Fatalf("Tags: %+v", got)
	}
	// Mistakes: refused with a message, nothing written.
	before := props()
	for _, tc := range []struct{ prop, typ, value, want string }{
		{"Year", "int", "1e3", `&#34;1e3&#34; is not an integer`},
		{"Price", "float", "cheap", `&#34;cheap&#34; is not a number`},
		{"InPrint", "bool", "yes", "use true or false"},
		{"Added", "time", "yesterday", "is not a time: use RFC 3339"},
		{"Publisher", "key", "/Publisher,penguin", "neither a positive ID nor a quoted name"},
		{"Publisher", "key", "Publisher", "is not an encoded key"},
		{"Shelf", "geopt", "91, 0", "out of range"},
		{"Cover", "bytes", "0g", "hexadecimal"},
		{"Author", "user", "nobody", "is not an email address"},
		{"Author", "null", "x", "a null value has no text"},
		{"Author", "float64", "1", "unknown type"},
		{"Title", "string", strings.Repeat("x", 1501), "the limit is 1500 bytes"},
		{"", "string", "x", "a property needs a name"},
	} {
		i := 0
		if tc.prop == "" {
			i = -1
		}
		code, body := edit(tc.prop, i, tc.typ, tc.value, true)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Fatalf("%s as %s %q: status %d, want 400 saying %q\n%s", tc.prop, tc.typ, shorten(tc.value), code, tc.want, body)
		}
	}
	if after := props(); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused edit changed the entity:\n%v\n%v", before, after)
	}

	// An edit from a stale form is refused.
	_, page := getPage(t, s, "/datastore/entity?key="+enc)
	ver := regexp.MustCompile(`name="ver" value="([^"]+)"`).FindStringSubmatch(page)[1]
	if _, err := datastore.Put(ctx, key, &consoleBook{Title: "Changed by the app"}); err != nil {
		t.Fatal(err)
	}
	resp := postForm(t, s, "/datastore/edit", url.Values{"csrf": {s.console.token("/datastore/edit")}, "key": {enc}, "prop": {"Title"}, "i": {"0"}, "type": {"string"}, "value": {"mine"}, "indexed": {"1"}, "ver": {ver}}, nil)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("a stale edit: %d", resp.StatusCode)
	}
	if got := prop("Title"); got[0].Value != "Changed by the app" {
		t.Fatalf("a stale edit wrote %v", got)
	}
	resp = postForm(t, s, "/datastore/delprop", url.Values{"csrf": {s.console.token("/datastore/delprop")}, "key": {enc}, "prop": {"Title"}, "ver": {ver}}, nil)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("a stale removal: %d", resp.StatusCode)
	}

	// Remove a property.
	_, page = getPage(t, s, "/datastore/entity?key="+enc)
	ver = regexp.MustCompile(`name="ver" value="([^"]+)"`).FindStringSubmatch(page)[1]
	resp = postForm(t, s, "/datastore/delprop", url.Values{"csrf": {s.console.token("/datastore/delprop")}, "key": {enc}, "prop": {"Title"}, "ver": {ver}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("removing Title: %d", resp.StatusCode)
	}
	if got := prop("Title"); len(got) != 0 {
		t.Fatalf("Title after its removal: %v", got)
	}

	// Pages for keys that are bad or gone.
	for q, want := range map[string]int{
		"/datastore/entity?key=nonsense!":                                              http.StatusBadRequest,
		"/datastore/entity?key=" + datastore.NewKey(ctx, "Book", "", 99, nil).Encode(): http.StatusNotFound,
		"/datastore/edit?key=" + enc + "&prop=Nope&i=0":                                http.StatusNotFound,
	} {
		if code, body := getPage(t, s, q); code != want {
			t.Fatalf("GET %s: %d, want %d\n%s", q, code, want, body)
		}
	}
}

func TestConsoleCreateAndDelete(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	create := func(form url.Values) (int, string, string) {
		t.Helper()
		form.Set("csrf", s.console.token("/datastore/new"))
		if form.Get("app") == "" {
			form.Set("app", DefaultAppID)
		}
		resp := postForm(t, s, "/datastore/new", form, nil)
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(b)
	}
	// Namespaces and kinds with their counts.
	_, page := getPage(t, s, "/datastore")
	mustContain(t, page, `(default) <span class="count">7</span>`, `tenant-a <span class="count">1</span>`,
		`>Book</a></td><td data-label="Entities" class="num">6</td>`, `<td class="num" data-label="Total">7</td>`)
	_, page = getPage(t, s, "/datastore?ns=tenant-a")
	mustContain(t, page, `(default) <span class="count">7</span>`, `>Setting</a></td><td data-label="Entities" class="num">1</td>`)

	// The form offers the kind's properties with their types.
	_, page = getPage(t, s, "/datastore/new?kind=Book")
	mustContain(t, page, `name="p0.name" value="Added"`, `name="p10.name" value="Year"`)

	code, loc, body := create(url.Values{"kind": {"Review"}, "parent": {"/Book,1"}, "id": {"first"}, "rows": {"3"},
		"p0.name": {"Stars"}, "p0.type": {"int"}, "p0.value": {"5"}, "p0.indexed": {"1"},
		"p1.name": {"Stars"}, "p1.type": {"int"}, "p1.value": {"4"},
		"p2.name": {"Unused"}, "p2.type": {"time"}, "p2.value": {""}})
	if code != http.StatusSeeOther {
		t.Fatalf("create: %d\n%s", code, body)
	}
	parent := datastore.NewKey(ctx, "Book", "", 1, nil)
	rk := datastore.NewKey(ctx, "Review", "first", 0, parent)
	if !strings.Contains(loc, url.QueryEscape(rk.Encode())) {
		t.Fatalf("after create, redirected to %s", loc)
	}
	var pl datastore.PropertyList
	if err := datastore.Get(ctx, rk, &pl); err != nil {
		t.Fatal(err)
	}
	if len(pl) != 2 || pl[0].Value != int64(5) || pl[1].Value != int64(4) || pl[0].NoIndex || !pl[1].NoIndex || !pl[0].Multiple {
		t.Fatalf("created %+v", pl)
	}
	// An automatic ID, and an ID given as a number.
	if code, loc, body = create(url.Values{"kind": {"Note"}, "rows": {"1"}, "p0.name": {"T"}, "p0.type": {"string"}, "p0.value": {"x"}}); code != http.StatusSeeOther {
		t.Fatalf("create with an automatic ID: %d\n%s", code, body)
	}
	if code, _, _ = create(url.Values{"kind": {"Note"}, "id": {"42"}}); code != http.StatusSeeOther {
		t.Fatal(code)
	}
	if code, _, _ = create(url.Values{"kind": {"Note"}, "id": {`"42"`}}); code != http.StatusSeeOther {
		t.Fatal(code)
	}
	if n, _ := datastore.NewQuery("Note").Count(ctx); n != 3 {
		t.Fatalf("%d notes", n)
	}
	if err := datastore.Get(ctx, datastore.NewKey(ctx, "Note", "42", 0, nil), &datastore.PropertyList{}); err != nil {
		t.Fatalf("the quoted name: %v", err)
	}
	// Mistakes, all of them reported at once; nothing is written.
	code, _, body = create(url.Values{"kind": {"__Bad__"}, "parent": {"/Book"}, "rows": {"2"},
		"p0.name": {"N"}, "p0.type": {"int"}, "p0.value": {"x"}, "p1.type": {"string"}, "p1.value": {"orphan"}})
	if code != http.StatusBadRequest {
		t.Fatalf("a bad form: %d", code)
	}
	mustContain(t, body, "parent: key", `property N: &#34;x&#34; is not an integer`, "row 2 has a value but no property name", `value="orphan"`)
	code, _, body = create(url.Values{"kind": {"__Bad__"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "reserved") {
		t.Fatalf("a reserved kind: %d\n%s", code, body)
	}
	code, _, body = create(url.Values{"kind": {"Note"}, "parent": {rk.Encode()}, "ns": {"tenant-a"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "not in this entity&#39;s app") {
		t.Fatalf("a parent in another namespace: %d\n%s", code, body)
	}

	// Delete two books from the listing's form, and return to it.
	_, page = getPage(t, s, "/datastore/kind?kind=Book&sort=Year")
	back := html.UnescapeString(regexp.MustCompile(`name="back" value="([^"]+)"`).FindStringSubmatch(page)[1])
	resp := postForm(t, s, "/datastore/delete", url.Values{"csrf": {tokenFor(t, page, "/datastore/delete")}, "back": {back},
		"key": {datastore.NewKey(ctx, "Book", "", 5, nil).Encode(), datastore.NewKey(ctx, "Book", "", 6, nil).Encode()}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != back+"&done=deleted" {
		t.Fatalf("delete: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n, _ := datastore.NewQuery("Book").Count(ctx); n != 4 {
		t.Fatalf("%d books after deleting two of six", n)
	}
	// The return address must be the console's.
	resp = postForm(t, s, "/datastore/delete", url.Values{"csrf": {tokenFor(t, page, "/datastore/delete")}, "back": {"//evil.example/"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/datastore?done=nothingdel" {
		t.Fatalf("delete with a foreign return address went to %q", loc)
	}
}

func TestParsePathText(t *testing.T) {
	for in, want := range map[string]string{
		`/Book,1`:                     `/Book,1`,
		`Book,1`:                      `/Book,1`,
		`/A,"x/y,z"/B,7`:              `/A,"x/y,z"/B,7`,
		` /Parent,"p\"q"/Child,12 `:   `/Parent,"p\"q"/Child,12`,
		`/Kind with space,"n"`:        `/Kind with space,"n"`,
		`/K,9223372036854775807`:      `/K,9223372036854775807`,
		`/Publisher,"penguin"/Book,2`: `/Publisher,"penguin"/Book,2`,
	} {
		p, err := parsePathText(in)
		if err != nil || pathText(p) != want {
			t.Errorf("%q: %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{``, `/`, `/Book`, `/Book,`, `/Book,0`, `/Book,-1`, `/Book,x`, `/Book,""`, `/Book,"x`, `/,1`, `/Book,1/`, `/Book,1//A,2`, `/Book,"a"b`, `/Book,1x`} {
		if p, err := parsePathText(in); err == nil {
			t.Errorf("%q parsed as %s", in, p)
		}
	}
}

// FuzzConsoleValue checks that no typed text makes the console panic, and
// that what the console shows of a value it parsed parses back to the same
// value.
func FuzzConsoleValue(f *testing.F) {
	for _, typ := range valueTypes {
		f.Add(typ, "")
	}
	for _, seed := range [][2]string{{"int", "-42"}, {"float", "NaN"}, {"float", "-0"}, {"time", "2024-05-06T07:08:09.123456789+02:00"},
		{"time", "0001-01-01T00:00:00Z"}, {"key", `/A,"b"/C,3`}, {"key", "agtkZXZ-YWVsb2NhbHIKCxIEQm9vaxgBDA"}, {"geopt", "-90, 180"},
		{"bytes", "00 ff"}, {"bytestring", "41"}, {"user", "a@b"}, {"string", "\x00\xff"}, {"text", "line\n"}} {
		f.Add(seed[0], seed[1])
	}
	sp := nsKey{app: DefaultAppID}
	f.Fuzz(func(t *testing.T, typ, text string) {
		p, err := buildProperty("P", typ, text, sp)
		if err != nil {
			return
		}
		v := viewValue(p, sp)
		if v.Type != typ && !(typ == "user" && v.Type == "user") {
			t.Fatalf("%s %q shows as a %s", typ, text, v.Type)
		}
		again, err := buildProperty("P", v.Type, v.Text, sp)
		if err != nil {
			t.Fatalf("%s %q shows as %q, which does not parse: %v", typ, text, v.Text, err)
		}
		a, _ := p.Marshal()
		b, _ := again.Marshal()
		if string(a) != string(b) {
			t.Fatalf("%s %q: shown as %q, which parses to another value", typ, text, v.Text)
		}
	})
}

// TestConsoleQueriesNeedNoIndex: browsing is not the app's querying, so a
// listing that would need a composite index neither fails under
// RequireIndexes nor lands in index.yaml.
func TestConsoleQueriesNeedNoIndex(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{IndexYAML: filepath.Join(dir, "written.yaml"), WriteIndexYAML: true},
		{IndexYAML: writeTemp(t, "indexes:\n"), RequireIndexes: true},
	} {
		s, err := NewServerOptions(&o)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		seedConsole(t, s)
		code, page := getPage(t, s, "/datastore/kind?kind=Book&sort=Title&desc=1&fprop=Year&fop=ge&fval=1980")
		if code != http.StatusOK {
			t.Fatalf("%+v: %d\n%s", o, code, page)
		}
		mustContain(t, page, "Entities 1–4 of 4", "Sorted by Year, then by Title, descending: ")
		if got := s.IndexYAML(); strings.Contains(got, "Book") {
			t.Fatalf("%+v: the console's query was recorded:\n%s", o, got)
		}
		if b, _ := os.ReadFile(o.IndexYAML); strings.Contains(string(b), "Book") {
			t.Fatalf("%+v: the console's query was written to index.yaml:\n%s", o, b)
		}
	}
}

// TestConsoleEditsLargeValue saves a bytes value of 600 KB through the
// edit form: its hex form, 1.2 MB, is more than the front door lets other
// pages post, but within what the console's forms take.
func TestConsoleEditsLargeValue(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	key := datastore.NewKey(ctx, "Book", "", 2, nil)
	enc := key.Encode()
	_, page := getPage(t, s, "/datastore/entity?key="+enc)
	ver := regexp.MustCompile(`name="ver" value="([^"]+)"`).FindStringSubmatch(page)[1]
	cover := bytes.Repeat([]byte{0xab}, 600<<10)
	form := url.Values{"csrf": {s.console.token("/datastore/edit")}, "key": {enc}, "prop": {"Cover"}, "i": {"0"}, "type": {"bytes"}, "value": {hex.EncodeToString(cover)}, "ver": {ver}}
	resp := postForm(t, s, "/datastore/edit", form, nil)
	if resp.StatusCode != http.StatusSeeOther {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d\n%s", resp.StatusCode, b)
	}
	var b consoleBook
	if err := datastore.Get(ctx, key, &b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Cover, cover) {
		t.Fatalf("Cover has %d bytes, want the %d posted", len(b.Cover), len(cover))
	}
}

// TestConsoleRefusesOversizedForm answers a form past consoleMaxForm with
// 413, not as if it were forged.
func TestConsoleRefusesOversizedForm(t *testing.T) {
	s := newTestServer(t)
	form := url.Values{"csrf": {s.console.token("/memcache/flush")}, "pad": {strings.Repeat("x", consoleMaxForm)}}
	if resp := postForm(t, s, "/memcache/flush", form, nil); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}
