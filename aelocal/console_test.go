package aelocal

import (
	"context"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/appengine/v2"
	"google.golang.org/appengine/v2/datastore"
	"google.golang.org/appengine/v2/memcache"
)

// consoleBook is the sample kind the console tests browse.
type consoleBook struct {
	Title     string
	Author    string
	Year      int
	Price     float64
	InPrint   bool
	Added     time.Time
	Tags      []string
	Summary   string `datastore:",noindex"`
	Cover     []byte
	Publisher *datastore.Key
	Shelf     appengine.GeoPoint
}

// seedConsole fills s with a small datastore and memcache through the real
// client, as an app would, and returns the context it used.
func seedConsole(t testing.TB, s *Server) context.Context {
	t.Helper()
	ctx := middlewareContext(t, s)
	pub := datastore.NewKey(ctx, "Publisher", "penguin", 0, nil)
	if _, err := datastore.Put(ctx, pub, &struct{ Name, City string }{"Penguin Books", "London"}); err != nil {
		t.Fatal(err)
	}
	books := []consoleBook{
		{Title: "The Go Programming Language", Author: "Donovan & Kernighan", Year: 2015, Price: 34.99, InPrint: true, Tags: []string{"go", "programming"}},
		{Title: "Dune", Author: "Frank Herbert", Year: 1965, Price: 9.99, InPrint: true, Tags: []string{"sf"}},
		{Title: "Neuromancer", Author: "William Gibson", Year: 1984, Price: 8.5, InPrint: true, Tags: []string{"sf", "cyberpunk"}},
		{Title: "The Left Hand of Darkness", Author: "Ursula K. Le Guin", Year: 1969, Price: 10.25, InPrint: true, Tags: []string{"sf"}},
		{Title: "Structure and Interpretation of Computer Programs", Author: "Abelson & Sussman", Year: 1985, Price: 55, InPrint: false, Tags: []string{"lisp", "programming"}},
		{Title: "Snow Crash", Author: "Neal Stephenson", Year: 1992, Price: 12, InPrint: true, Tags: []string{"sf", "cyberpunk"}},
	}
	for i, b := range books {
		b.Added = time.Date(2024, 1, 2+i, 10, 30, 0, 0, time.UTC)
		b.Summary = fmt.Sprintf("Shelf %c, copy %d.", 'A'+i, i+1)
		b.Cover = []byte{0x89, 'P', 'N', 'G', byte(i)}
		b.Publisher = pub
		b.Shelf = appengine.GeoPoint{Lat: 47.5 + float64(i)/10, Lng: 19.04}
		if _, err := datastore.Put(ctx, datastore.NewKey(ctx, "Book", "", int64(i+1), nil), &b); err != nil {
			t.Fatal(err)
		}
	}
	nsCtx, err := appengine.Namespace(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := datastore.Put(nsCtx, datastore.NewIncompleteKey(nsCtx, "Setting", nil), &struct{ Value string }{"dark"}); err != nil {
		t.Fatal(err)
	}
	if err := memcache.Set(ctx, &memcache.Item{Key: "greeting", Value: []byte("hello, console"), Expiration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := memcache.Set(ctx, &memcache.Item{Key: "binary", Value: []byte{0, 1, 2, 0xfe, 0xff}}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// consoleClient is a browser stand-in for the HTTP tests: it keeps no
// cookies (the console needs none) and does not follow redirects, so a
// test sees each answer.
var consoleClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func getPage(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, err := consoleClient.Get(s.URL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// tokenFor finds the CSRF token of the form on page that posts to action.
func tokenFor(t *testing.T, page, action string) string {
	t.Helper()
	re := regexp.MustCompile(`action="` + regexp.QuoteMeta(action) + `"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form posting to %s on the page", action)
	}
	return m[1]
}

func postForm(t *testing.T, s *Server, path string, form url.Values, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", s.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := consoleClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func mustContain(t *testing.T, page string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Fatalf("page lacks %q:\n%s", w, page)
		}
	}
}

// consolePosts are the console's actions with a valid form for each, given
// a page that carries their tokens.
var consoleActions = []string{"/datastore/edit", "/datastore/delprop", "/datastore/delete", "/datastore/new", "/memcache/delete", "/memcache/flush", "/rpcs/reset", "/cron/run"}

func TestConsoleGETChangesNothing(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	key := datastore.NewKey(ctx, "Book", "", 1, nil)
	enc := key.Encode()
	before := s.Stats()
	// Every page, and every action's path with the parameters its form
	// would post, as a GET: a link or an image on another site can do
	// no more than this.
	pages := []string{"/", "/datastore", "/datastore?ns=tenant-a", "/datastore/kind?kind=Book&sort=Year&desc=1&fprop=Year&fop=gt&fval=1970",
		"/datastore/entity?key=" + enc, "/datastore/edit?key=" + enc + "&prop=Price&i=0", "/datastore/new?kind=Book",
		"/memcache", "/memcache?key=greeting", "/rpcs", "/cron", "/console.css"}
	for _, p := range pages {
		if code, body := getPage(t, s, p); code != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", p, code, body)
		}
	}
	for _, a := range consoleActions {
		q := "?key=" + enc + "&prop=Price&i=0&type=float&value=1&ns=&job=0&kind=Book&rows=1&p0.name=X&p0.type=int&p0.value=1"
		want := http.StatusMethodNotAllowed
		if a == "/datastore/edit" || a == "/datastore/new" {
			want = http.StatusOK // the form itself
		}
		if code, _ := getPage(t, s, a+q); code != want {
			t.Fatalf("GET %s: %d, want %d", a, code, want)
		}
	}
	if n, err := datastore.NewQuery("Book").Count(ctx); err != nil || n != 6 {
		t.Fatalf("%d books after the GETs (%v), want 6", n, err)
	}
	before["datastore_v3.RunQuery"]++ // the Count above
	if after := s.Stats(); !maps.Equal(before, after) {
		t.Fatalf("the pages made RPCs that count: before %v, after %v", before, after)
	}
	var b consoleBook
	if err := datastore.Get(ctx, key, &b); err != nil || b.Price != 34.99 {
		t.Fatalf("Book 1 after the GETs: %+v, %v", b, err)
	}
	st, err := memcache.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Items != 2 || st.Hits != 0 || st.Misses != 0 {
		t.Fatalf("memcache after the GETs: %+v; a look-up must be a peek", st)
	}
}

func TestConsoleRefusesForgedPosts(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	_, page := getPage(t, s, "/memcache")
	flushToken := tokenFor(t, page, "/memcache/flush")
	deleteToken := tokenFor(t, page+`<form method="post" action="/memcache/delete" class="inline">
<input type="hidden" name="csrf" value="`+s.console.token("/memcache/delete")+`">`, "/memcache/delete")
	self := "http://" + strings.TrimPrefix(s.URL(), "http://")
	for _, tc := range []struct {
		name   string
		form   url.Values
		header http.Header
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {"x" + flushToken[1:]}}, nil},
		{"another form's token", url.Values{"csrf": {deleteToken}}, nil},
		{"another server's token", url.Values{"csrf": {newTestServer(t).console.token("/memcache/flush")}}, nil},
		{"cross-site", url.Values{"csrf": {flushToken}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"same-site", url.Values{"csrf": {flushToken}}, http.Header{"Sec-Fetch-Site": {"same-site"}}},
		{"other origin", url.Values{"csrf": {flushToken}}, http.Header{"Origin": {"http://evil.example"}}},
		{"null origin", url.Values{"csrf": {flushToken}}, http.Header{"Origin": {"null"}}},
		{"other port", url.Values{"csrf": {flushToken}}, http.Header{"Origin": {"http://127.0.0.1:1"}}},
	} {
		resp := postForm(t, s, "/memcache/flush", tc.form, tc.header)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403", tc.name, resp.StatusCode)
		}
		if _, err := memcache.Get(ctx, "greeting"); err != nil {
			t.Fatalf("%s: memcache was flushed (%v)", tc.name, err)
		}
	}
	resp := postForm(t, s, "/memcache/flush", url.Values{"csrf": {flushToken}},
		http.Header{"Origin": {self}, "Sec-Fetch-Site": {"same-origin"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/memcache?done=flushed" {
		t.Fatalf("a good post: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, err := memcache.Get(ctx, "greeting"); err != memcache.ErrCacheMiss {
		t.Fatalf("after the flush: %v", err)
	}
}

func TestConsoleHeaders(t *testing.T) {
	s := newTestServer(t)
	resp, err := http.Get(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if code, body := getPage(t, s, "/no/such/page"); code != http.StatusNotFound || !strings.Contains(body, "no such page") {
		t.Fatalf("an unknown page: %d\n%s", code, body)
	}
	// The bridge is still where clients look for it.
	if code, _ := getPage(t, s, "/rpc_http"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /rpc_http: %d", code)
	}
}

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
	mustContain(t, page, "Entities 1–5 of 5", "Sorted by N first")
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
	mustContain(t, page, "No entities match the filter")
	// Bad filters say what is wrong.
	for q, want := range map[string]string{
		"fprop=N&fop=eq&fval=many&ftype=int":       `filter N: &#34;many&#34; is not an integer`,
		"fprop=N&fop=like&fval=1":                  `unknown filter operator &#34;like&#34;`,
		"fprop=__key__&fop=eq&fval=Thing":          `is not an encoded key`,
		"fprop=N&fop=gt&fval=1&fprop=N":            "Entities 1–20 of 2344",
		"sort=N&fprop=Mod&fop=gt&fval=1&ftype=int": "Sorted by Mod first",
	} {
		_, page := getPage(t, s, "/datastore/kind?kind=Thing&"+q)
		mustContain(t, page, want)
	}
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
	// The form offers the kind's properties with their types.
	_, page := getPage(t, s, "/datastore/new?kind=Book")
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

func TestConsoleMemcache(t *testing.T) {
	s := newTestServer(t)
	ctx := seedConsole(t, s)
	nsCtx, _ := appengine.Namespace(ctx, "tenant-a")
	memcache.Set(nsCtx, &memcache.Item{Key: "greeting", Value: []byte("szia")})
	memcache.Delete(ctx, "gone") // a miss, counted
	memcache.Get(ctx, "greeting")

	_, page := getPage(t, s, "/memcache")
	mustContain(t, page, `id="mc-items">3<`, `id="mc-hits">1<`, `id="mc-misses">0<`)
	_, page = getPage(t, s, "/memcache?key=greeting")
	mustContain(t, page, "hello, console", "(text)")
	if !regexp.MustCompile(`id="mc-expires">[^<]*\(in (59m5\ds|1h0m0s)\)`).MatchString(page) {
		t.Fatalf("the expiry is not an hour from now:\n%s", page)
	}
	_, page = getPage(t, s, "/memcache?ns=tenant-a&key=greeting")
	mustContain(t, page, "szia", `id="mc-expires">never<`)
	_, page = getPage(t, s, "/memcache?key=binary")
	mustContain(t, page, "(binary, hex)", "00 01 02 fe ff")
	_, page = getPage(t, s, "/memcache?key=nothing")
	mustContain(t, page, "No item under <code>nothing</code>")
	code, page := getPage(t, s, "/memcache?key="+strings.Repeat("k", 251))
	if code != http.StatusBadRequest || !strings.Contains(page, "exceeds the 250-byte limit") {
		t.Fatalf("a key too long: %d", code)
	}
	// Delete one key of one namespace.
	resp := postForm(t, s, "/memcache/delete", url.Values{"csrf": {s.console.token("/memcache/delete")}, "ns": {"tenant-a"}, "key": {"greeting"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/memcache?done=mcdeleted&key=greeting&ns=tenant-a" {
		t.Fatalf("after delete: %q", loc)
	}
	if _, err := memcache.Get(nsCtx, "greeting"); err != memcache.ErrCacheMiss {
		t.Fatal(err)
	}
	if _, err := memcache.Get(ctx, "greeting"); err != nil {
		t.Fatalf("the default namespace's greeting: %v", err)
	}
	resp = postForm(t, s, "/memcache/delete", url.Values{"csrf": {s.console.token("/memcache/delete")}, "key": {"nothing"}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "done=mcmissing") {
		t.Fatalf("deleting a missing key: %q", loc)
	}
	// A delete-locked key shows its lock.
	memcache.Set(ctx, &memcache.Item{Key: "locked", Value: []byte("v")})
	if _, err := mcCall(t, ctx, "Delete", "DeleteRequest", "DeleteResponse", func(in pmsg) {
		it := in.AppendMsg("item")
		it.Set("key", "locked")
		it.Set("delete_time", uint32(60))
	}); err != nil {
		t.Fatal(err)
	}
	_, page = getPage(t, s, "/memcache?key=locked")
	mustContain(t, page, "Deleted, and locked against add until")
}

func TestConsoleRPCs(t *testing.T) {
	s := newTestServer(t)
	ctx := middlewareContext(t, s)
	memcache.Set(ctx, &memcache.Item{Key: "k", Value: []byte("v")})
	s.FailNext("memcache", "Get", 1)
	memcache.Get(ctx, "k")
	s.SetLatency("memcache.Delete", 20*time.Millisecond)
	memcache.Delete(ctx, "k")
	datastore.Get(ctx, datastore.NewKey(ctx, "", "x", 0, nil), &datastore.PropertyList{}) // refused by the client: no RPC
	datastore.Get(ctx, datastore.NewKey(ctx, "K", "x", 0, nil), &datastore.PropertyList{})

	_, page := getPage(t, s, "/rpcs")
	mustContain(t, page, "4 calls since",
		`<td data-label="Service">memcache</td><td data-label="Method">Get</td><td data-label="Calls" class="num">1</td>`,
		`<td data-label="Service">datastore_v3</td><td data-label="Method">Get</td><td data-label="Calls" class="num">1</td>`,
		"application error 1: aelocal: injected failure of memcache.Get")
	calls := s.rpcs.latest(0, 10)
	if len(calls) != 4 || calls[0].Name != "datastore_v3.Get" || calls[3].Name != "memcache.Set" || calls[2].OK || !calls[0].OK {
		t.Fatalf("the log: %+v", calls)
	}
	if d := calls[1].Duration; calls[1].Name != "memcache.Delete" || d < 20*time.Millisecond {
		t.Fatalf("the delayed call: %s took %v", calls[1].Name, d)
	}
	// Reset empties both.
	resp := postForm(t, s, "/rpcs/reset", url.Values{"csrf": {tokenFor(t, page, "/rpcs/reset")}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	_, page = getPage(t, s, "/rpcs?done=reset")
	mustContain(t, page, "0 calls since", "No calls yet.", "No calls logged.", "RPC counts and the call log were reset.")
	if len(s.Stats()) != 0 || len(s.rpcs.latest(0, 10)) != 0 {
		t.Fatal("reset left counts or calls")
	}
	// The log keeps the last rpcLogSize calls and pages through them.
	for i := range rpcLogSize + 30 {
		memcache.Set(ctx, &memcache.Item{Key: "k" + strconv.Itoa(i), Value: []byte("v")})
	}
	all := s.rpcs.latest(0, 2*rpcLogSize)
	if len(all) != rpcLogSize || all[0].Seq != all[rpcLogSize-1].Seq+rpcLogSize-1 {
		t.Fatalf("the log holds %d calls, from %d to %d", len(all), all[rpcLogSize-1].Seq, all[0].Seq)
	}
	_, page = getPage(t, s, "/rpcs")
	older := regexp.MustCompile(`href="/rpcs\?before=(\d+)" rel="next"`).FindStringSubmatch(page)
	if older == nil || strings.Count(page, "<td data-label=\"#\">") != rpcsPerPage {
		t.Fatalf("the first page of the log: %v", older)
	}
	_, page = getPage(t, s, "/rpcs?before="+older[1])
	mustContain(t, page, `<td data-label="#">`+strconv.FormatUint(all[rpcsPerPage].Seq, 10)+`</td>`, "« Newest")
}

func TestRPCLogConcurrent(t *testing.T) {
	l := newRPCLog()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				var err error
				if i%2 == 0 {
					err = &serviceError{code: int32(g), detail: "x"}
				}
				l.record("s.M", time.Now(), i, &err)
				l.latest(0, 5)
			}
		}()
	}
	wg.Wait()
	got := l.latest(0, rpcLogSize+10)
	if len(got) != rpcLogSize || got[0].Seq != 1600 || got[rpcLogSize-1].Seq != 1600-rpcLogSize+1 {
		t.Fatalf("%d records, %d..%d", len(got), got[len(got)-1].Seq, got[0].Seq)
	}
}

func TestConsoleCron(t *testing.T) {
	var hits []*http.Request
	var mu sync.Mutex
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r)
		mu.Unlock()
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/login", http.StatusFound)
		case "/binary":
			w.Write([]byte{0, 1, 2})
		default:
			w.Write([]byte("done"))
		}
	}))
	defer app.Close()
	dir := t.TempDir()
	yamlPath := filepath.Join(dir, "cron.yaml")
	write := func(text string) {
		if err := os.WriteFile(yamlPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cron:\n- url: /a?x=1\n  schedule: every 5 minutes\n  retry_parameters:\n    job_retry_limit: 2\n- url: /redirect\n  schedule: every day 00:00\n  target: worker\n- url: /binary\n  schedule: every 1 hours\n")

	// Mistakes in the settings stop the server at once.
	for name, o := range map[string]Options{
		"no file":      {CronYAML: filepath.Join(dir, "missing.yaml")},
		"bad app URL":  {AppURL: "127.0.0.1:8080"},
		"ftp app URL":  {AppURL: "ftp://127.0.0.1"},
		"bad yaml":     {CronYAML: writeTemp(t, "cron: [url: /x")},
		"no url":       {CronYAML: writeTemp(t, "cron:\n- schedule: every 5 minutes\n")},
		"relative url": {CronYAML: writeTemp(t, "cron:\n- url: x\n  schedule: every 5 minutes\n")},
		"no schedule":  {CronYAML: writeTemp(t, "cron:\n- url: /x\n")},
	} {
		if s, err := NewServerOptions(&o); err == nil {
			s.Close()
			t.Errorf("%s: the server started", name)
		}
	}

	s, err := NewServerOptions(&Options{CronYAML: yamlPath, AppURL: app.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, page := getPage(t, s, "/cron")
	mustContain(t, page, "/a?x=1", "every 5 minutes", "target worker", "never")
	run := func(job int, url_ string) *http.Response {
		t.Helper()
		return postForm(t, s, "/cron/run", url.Values{"csrf": {tokenFor(t, page, "/cron/run")}, "job": {strconv.Itoa(job)}, "url": {url_}}, nil)
	}
	if resp := run(0, "/a?x=1"); resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	if resp := run(1, "/redirect"); resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	run(2, "/binary")
	mu.Lock()
	if len(hits) != 3 || hits[0].URL.String() != "/a?x=1" || hits[0].Method != "GET" || hits[0].Header.Get("X-Appengine-Cron") != "true" || hits[1].URL.Path != "/redirect" {
		t.Fatalf("the app got %d requests: %v", len(hits), hits)
	}
	mu.Unlock()
	_, page = getPage(t, s, "/cron")
	mustContain(t, page, "200 OK", "done", "302 Found", "00 01 02")
	// The yaml changed under the page: refused.
	write("cron:\n- url: /b\n  schedule: every 5 minutes\n")
	if resp := run(0, "/a?x=1"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("a job that is gone: %d", resp.StatusCode)
	}
	// A broken file is reported on the page, not fatal.
	write("cron: [")
	code, page := getPage(t, s, "/cron")
	if code != http.StatusOK || !strings.Contains(page, "cron.yaml") || !strings.Contains(page, `class="error"`) {
		t.Fatalf("a broken cron.yaml: %d", code)
	}
	// The app is down: the run says so.
	write("cron:\n- url: /b\n  schedule: every 5 minutes\n")
	app.Close()
	_, page = getPage(t, s, "/cron")
	run(0, "/b")
	_, page = getPage(t, s, "/cron")
	mustContain(t, page, "failed", "connect")

	// Without settings the page says how to give them, and runs nothing.
	s2 := newTestServer(t)
	_, page = getPage(t, s2, "/cron")
	mustContain(t, page, "No cron.yaml was given", "-cron_yaml")
	resp := postForm(t, s2, "/cron/run", url.Values{"csrf": {s2.console.token("/cron/run")}, "job": {"0"}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("running without cron.yaml: %d", resp.StatusCode)
	}
}

func writeTemp(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cron.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
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
